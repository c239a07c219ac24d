//! Property tests of [`super::Lanes`]: any interleaving of pushes, polls
//! (any free slots, any sessions connected), send outcomes and time steps.
//! Invariants: a session never has two sends at once; each session's
//! messages start and end in push order; every message ends exactly once
//! (sent or failed), none is lost once sessions connect; a message is
//! attempted at most `max_retries + 1` times; only a connected session's
//! message is started; slots are never exceeded.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::messages::OutboundContent;

const SESSIONS: usize = 3;
const MAX_RETRIES: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    /// Free slots; bit `s` of the mask: session `s` connected; bit `s + 4`:
    /// session `s` does not exist.
    Poll(usize, u8),
    /// Ends the send in flight picked by the index (if any) with an outcome.
    Finish(usize, u8),
    Advance(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..SESSIONS).prop_map(Op::Push),
            3 => (0usize..4, any::<u8>()).prop_map(|(s, m)| Op::Poll(s, m)),
            3 => (0usize..4, 0u8..4).prop_map(|(i, o)| Op::Finish(i, o)),
            2 => prop_oneof![0u64..200, 400u64..7_000].prop_map(Op::Advance),
        ],
        0..150,
    )
}

fn sid(s: usize) -> SessionId {
    SessionId::parse(&format!("s{s}")).expect("a valid id")
}

/// What the test expects of the lanes.
#[derive(Default)]
struct Model {
    /// Per session: ids pushed and not ended, in push order.
    open: HashMap<SessionId, VecDeque<String>>,
    /// Sends in flight: session → message id.
    busy: Vec<(SessionId, String)>,
    /// Attempts per message (starts that were not `NotConnected`).
    attempts: HashMap<String, u32>,
    ended: Vec<String>,
}

impl Model {
    fn end(&mut self, session: &SessionId, id: &str) -> Result<(), TestCaseError> {
        let front = self.open.get_mut(session).and_then(VecDeque::pop_front);
        prop_assert_eq!(front.as_deref(), Some(id), "{} ended out of order", id);
        prop_assert!(!self.ended.iter().any(|e| e == id), "{} ended twice", id);
        self.ended.push(id.to_owned());
        Ok(())
    }

    fn steps(
        &mut self,
        steps: Vec<Step>,
        slots: usize,
        connected: impl Fn(&SessionId) -> bool,
    ) -> Result<(), TestCaseError> {
        prop_assert!(
            steps.len() <= slots,
            "{} steps for {} slots",
            steps.len(),
            slots
        );
        for step in steps {
            match step {
                Step::Start {
                    session, message, ..
                } => {
                    prop_assert!(connected(&session), "started for a session not connected");
                    prop_assert!(
                        !self.busy.iter().any(|(s, _)| *s == session),
                        "two sends at once for {}",
                        session
                    );
                    let front = self.open.get(&session).and_then(|q| q.front()).cloned();
                    prop_assert_eq!(
                        front.as_deref(),
                        Some(message.id.as_str()),
                        "started out of order"
                    );
                    let n = self.attempts.entry(message.id.clone()).or_default();
                    *n += 1;
                    prop_assert!(
                        *n <= MAX_RETRIES + 1,
                        "{} attempted {} times",
                        message.id,
                        n
                    );
                    self.busy.push((session, message.id));
                }
                Step::Fail { entry, message, .. } => {
                    prop_assert_eq!(&entry, &message.id);
                    prop_assert!(
                        !self.busy.iter().any(|(s, _)| *s == message.session),
                        "failed while its send is in flight"
                    );
                    self.end(&message.session, &entry)?;
                }
                other => prop_assert!(false, "poll returned {:?}", other),
            }
        }
        Ok(())
    }
}

fn message(session: usize, n: u32, unix_ms: u64) -> Delivery {
    let id = format!("m{n}");
    Delivery {
        entry: id.clone(),
        message: OutboundMessage {
            id,
            session: sid(session),
            to: "5215512345678".into(),
            content: OutboundContent::Text {
                text: format!("text {n}"),
            },
            quoted_message_id: None,
            mentions: Vec::new(),
            idempotency_key: None,
            humane: false,
            created_ms: unix_ms,
        },
        redelivered: false,
    }
}

proptest! {
    #[test]
    fn lanes_keep_order_one_send_per_session_and_lose_nothing(ops in ops(), pacing_ms in prop_oneof![Just(0u64), 1u64..100]) {
        let rules = LaneRules {
            max_retries: MAX_RETRIES,
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            pacing: Duration::from_millis(pacing_ms),
            max_wait: Duration::from_secs(5),
            humane: crate::messages::humane::HumaneRules::default(),
        };
        let mut lanes = Lanes::new(rules, Box::new(|| 0.5));
        let t0 = Instant::now();
        let mut ms = 0u64;
        let now = |ms: u64| Now { at: t0 + Duration::from_millis(ms), unix_ms: 1_000_000 + ms };
        let mut model = Model::default();
        let mut pushed = 0u32;
        for op in ops {
            match op {
                Op::Push(s) => {
                    pushed += 1;
                    let d = message(s, pushed, now(ms).unix_ms);
                    model.open.entry(sid(s)).or_default().push_back(d.message.id.clone());
                    lanes.push(d, now(ms).at);
                }
                Op::Poll(slots, mask) => {
                    let state = |id: &SessionId| {
                        let s = (0..SESSIONS).find(|s| sid(*s) == *id)?;
                        if mask & (1 << (s + 4)) != 0 {
                            None
                        } else if mask & (1 << s) != 0 {
                            Some(SessionState::Connected)
                        } else {
                            Some(SessionState::Disconnected)
                        }
                    };
                    let steps = lanes.poll(now(ms), slots, state);
                    model.steps(steps, slots, |id| state(id) == Some(SessionState::Connected))?;
                }
                Op::Finish(i, outcome) => {
                    if model.busy.is_empty() {
                        continue;
                    }
                    let (session, id) = model.busy.remove(i % model.busy.len());
                    let outcome = match outcome {
                        0 => Outcome::Sent,
                        1 => Outcome::NotConnected,
                        2 => Outcome::Rejected("refused".into()),
                        _ => Outcome::Failed("timeout".into()),
                    };
                    let attempts = model.attempts.get(&id).copied().unwrap_or(0);
                    let step = lanes.finished(session.clone(), outcome.clone(), now(ms));
                    match (outcome, step) {
                        (Outcome::Sent, Some(Step::Succeed { entry, record })) => {
                            prop_assert_eq!(&entry, &id);
                            prop_assert_eq!(record.status, MessageStatus::Sent);
                            model.end(&session, &id)?;
                        }
                        (Outcome::NotConnected, None) => {
                            // Not an attempt: the message waits for its session.
                            *model.attempts.get_mut(&id).expect("started") -= 1;
                        }
                        (Outcome::Rejected(_), Some(Step::Fail { entry, .. })) => {
                            prop_assert_eq!(&entry, &id);
                            model.end(&session, &id)?;
                        }
                        (Outcome::Failed(_), Some(Step::Fail { entry, .. })) => {
                            prop_assert_eq!(&entry, &id);
                            prop_assert!(attempts > MAX_RETRIES, "failed for good after {} attempts", attempts);
                            model.end(&session, &id)?;
                        }
                        (Outcome::Failed(_), Some(Step::Retry { record, delay })) => {
                            prop_assert!(attempts <= MAX_RETRIES);
                            prop_assert_eq!(&record.message_id, &id);
                            prop_assert_eq!(record.status, MessageStatus::Queued);
                            prop_assert!(delay <= Duration::from_millis(100), "backoff capped: {:?}", delay);
                        }
                        (o, s) => prop_assert!(false, "{:?} gave {:?}", o, s),
                    }
                }
                Op::Advance(d) => ms += d,
            }
        }
        // Every session connects and every send succeeds: all that is open ends.
        for (session, id) in std::mem::take(&mut model.busy) {
            if let Some(Step::Succeed { entry, .. }) = lanes.finished(session.clone(), Outcome::Sent, now(ms)) {
                prop_assert_eq!(&entry, &id);
                model.end(&session, &id)?;
            } else {
                prop_assert!(false, "a send in flight did not succeed");
            }
        }
        for _ in 0..(4 * pushed + 10) {
            if model.open.values().all(VecDeque::is_empty) {
                break;
            }
            ms += 1_000;
            let steps = lanes.poll(now(ms), 8, |_| Some(SessionState::Connected));
            model.steps(steps, 8, |_| true)?;
            for (session, id) in std::mem::take(&mut model.busy) {
                match lanes.finished(session.clone(), Outcome::Sent, now(ms)) {
                    Some(Step::Succeed { entry, .. }) if entry == id => model.end(&session, &id)?,
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
        prop_assert!(model.open.values().all(VecDeque::is_empty), "messages never ended: {:?}", model.open);
        prop_assert_eq!(model.ended.len() as u32, pushed, "every message ends exactly once");
    }
}
