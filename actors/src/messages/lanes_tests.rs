//! Unit tests of [`super::Lanes`] on a clock moved by hand (kept beside it
//! so the scheduler's file stays short).

use super::*;
use crate::messages::content::OutboundContent;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A clock the test moves: both readings advance together.
struct Clock {
    t0: Instant,
    ms: u64,
}

impl Clock {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            ms: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            at: self.t0 + MS(self.ms),
            unix_ms: 1_000_000 + self.ms,
        }
    }

    fn advance(&mut self, ms: u64) {
        self.ms += ms;
    }
}

fn rules() -> LaneRules {
    LaneRules {
        max_retries: 2,
        retry_base: MS(100),
        retry_max: MS(1_000),
        pacing: Duration::ZERO,
        max_wait: Duration::from_secs(10),
        humane: crate::messages::humane::HumaneRules::default(),
    }
}

/// Jitter fixed at one half: every delay is exactly ¾ of the capped backoff.
fn lanes(rules: LaneRules) -> Lanes {
    Lanes::new(rules, Box::new(|| 0.5))
}

/// Lanes with a minimum gap of `ms` between two sends of a session.
fn paced(ms: u64) -> Lanes {
    lanes(LaneRules {
        pacing: MS(ms),
        ..rules()
    })
}

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn delivery(session: &str, n: u32, clock: &Clock) -> Delivery {
    Delivery {
        entry: format!("{session}-{n}"),
        message: OutboundMessage {
            id: format!("3EB0{session}{n}"),
            session: sid(session),
            to: "5215512345678".into(),
            content: OutboundContent::Text {
                text: format!("message {n}"),
            },
            quoted_message_id: None,
            mentions: Vec::new(),
            idempotency_key: None,
            humane: false,
            created_ms: clock.now().unix_ms,
        },
        redelivered: false,
    }
}

fn connected(_: &SessionId) -> Option<SessionState> {
    Some(SessionState::Connected)
}

/// The ids of the messages started by `steps`, and nothing else happened.
fn started(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Start { message, .. } => message.id.clone(),
            other => panic!("expected only starts, got {other:?}"),
        })
        .collect()
}

fn failed(step: Option<Step>) -> MessageRecord {
    match step {
        Some(Step::Fail { record, .. }) => record,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn one_session_sends_in_order_one_at_a_time_while_others_proceed() {
    let clock = Clock::new();
    let mut l = lanes(rules());
    for d in [
        delivery("a", 1, &clock),
        delivery("a", 2, &clock),
        delivery("b", 1, &clock),
    ] {
        l.push(d, clock.now().at);
    }
    assert_eq!(
        started(&l.poll(clock.now(), 10, connected)),
        ["3EB0a1", "3EB0b1"],
        "a2 waits for a1's outcome"
    );
    assert!(l.poll(clock.now(), 10, connected).is_empty());
    let done = l.finished(sid("a"), Outcome::Sent, clock.now());
    assert!(matches!(done, Some(Step::Succeed { ref entry, ref record })
        if entry == "a-1" && record.status == MessageStatus::Sent && record.attempts == 1));
    assert_eq!(started(&l.poll(clock.now(), 10, connected)), ["3EB0a2"]);
}

#[test]
fn starts_no_more_than_the_free_slots() {
    let clock = Clock::new();
    let mut l = lanes(rules());
    for s in ["a", "b", "c"] {
        l.push(delivery(s, 1, &clock), clock.now().at);
    }
    assert_eq!(
        started(&l.poll(clock.now(), 2, connected)),
        ["3EB0a1", "3EB0b1"]
    );
    assert!(l.poll(clock.now(), 0, connected).is_empty());
    assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0c1"]);
}

#[test]
fn pacing_keeps_the_minimum_gap_between_two_sends_of_a_session() {
    let mut clock = Clock::new();
    let mut l = paced(150);
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.push(delivery("a", 2, &clock), clock.now().at);
    l.push(delivery("b", 1, &clock), clock.now().at);
    assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0a1"]);
    clock.advance(10);
    l.finished(sid("a"), Outcome::Sent, clock.now());
    assert_eq!(l.next_due(), Some(clock.now().at + MS(150)));
    clock.advance(149);
    assert_eq!(
        started(&l.poll(clock.now(), 10, connected)),
        ["3EB0b1"],
        "another session is not held back by a's gap"
    );
    clock.advance(1);
    assert_eq!(started(&l.poll(clock.now(), 10, connected)), ["3EB0a2"]);
}

#[test]
fn an_idle_lane_is_dropped_once_its_gap_is_over() {
    let mut clock = Clock::new();
    let mut l = paced(150);
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.poll(clock.now(), 1, connected);
    l.finished(sid("a"), Outcome::Sent, clock.now());
    clock.advance(100);
    l.push(delivery("a", 2, &clock), clock.now().at);
    assert!(
        l.poll(clock.now(), 1, connected).is_empty(),
        "a message arriving during the gap waits for its end"
    );
    clock.advance(50);
    assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0a2"]);
    l.finished(sid("a"), Outcome::Sent, clock.now());
    clock.advance(150);
    assert!(l.poll(clock.now(), 1, connected).is_empty());
    assert!(
        l.is_empty(),
        "nothing kept for a session with nothing to send"
    );
}

#[test]
fn a_message_waits_for_its_disconnected_session_then_times_out() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.push(delivery("a", 2, &clock), clock.now().at);
    let down = |_: &SessionId| Some(SessionState::Disconnected);
    assert!(l.poll(clock.now(), 10, down).is_empty());
    assert_eq!(l.next_due(), Some(clock.now().at + WAIT_RECHECK));
    clock.advance(10_000);
    assert!(
        l.poll(clock.now(), 10, down).is_empty(),
        "exactly MESSAGE_MAX_WAIT is still in time"
    );
    clock.advance(WAIT_RECHECK.as_millis() as u64);
    let steps = l.poll(clock.now(), 10, down);
    assert_eq!(steps.len(), 2, "both waited too long: {steps:?}");
    for (n, step) in steps.into_iter().enumerate() {
        let record = failed(Some(step));
        assert_eq!(record.message_id, format!("3EB0a{}", n + 1), "in order");
        assert_eq!(record.attempts, 0, "never sent");
        let why = record.last_error.unwrap();
        assert!(
            why.contains("not connected within 10 s") && why.contains("disconnected"),
            "{why}"
        );
    }
}

#[test]
fn a_waiting_message_goes_out_when_its_session_connects() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    assert!(l
        .poll(clock.now(), 1, |_| Some(SessionState::Qr))
        .is_empty());
    clock.advance(WAIT_RECHECK.as_millis() as u64 - 1);
    assert!(l.poll(clock.now(), 1, connected).is_empty(), "not due yet");
    clock.advance(1);
    assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0a1"]);
}

#[test]
fn a_message_for_a_missing_session_says_so_when_it_fails() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("gone", 1, &clock), clock.now().at);
    clock.advance(10_001);
    let steps = l.poll(clock.now(), 1, |_| None);
    let record = failed(steps.into_iter().next());
    assert_eq!(
        record.last_error.as_deref(),
        Some("the session does not exist")
    );
}

#[test]
fn a_lost_connection_is_not_an_attempt() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.poll(clock.now(), 1, connected);
    assert!(l
        .finished(sid("a"), Outcome::NotConnected, clock.now())
        .is_none());
    assert!(l.poll(clock.now(), 1, connected).is_empty());
    clock.advance(WAIT_RECHECK.as_millis() as u64);
    match l.poll(clock.now(), 1, connected).pop() {
        Some(Step::Start { sending, .. }) => assert_eq!(sending.attempts, 1),
        other => panic!("expected a start, got {other:?}"),
    }
}

#[test]
fn failures_are_retried_with_doubling_jittered_backoff() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    // Half of 100 ms fixed plus half of the other half (jitter 0.5), then of 200 ms.
    for (attempt, delay) in [(1, 75), (2, 150)] {
        match l.poll(clock.now(), 1, connected).pop() {
            Some(Step::Start { sending, .. }) => assert_eq!(sending.attempts, attempt),
            other => panic!("expected a start, got {other:?}"),
        }
        let step = l.finished(sid("a"), Outcome::Failed("timeout".into()), clock.now());
        match step {
            Some(Step::Retry { record, delay: d }) => {
                assert_eq!(d, MS(delay), "attempt {attempt}");
                assert_eq!(record.status, MessageStatus::Queued);
                assert_eq!(record.attempts, attempt);
                assert_eq!(record.last_error.as_deref(), Some("timeout"));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        clock.advance(delay - 1);
        assert!(l.poll(clock.now(), 1, connected).is_empty(), "too early");
        clock.advance(1);
    }
}

#[test]
fn the_last_retry_failing_dead_letters_the_message() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.push(delivery("a", 2, &clock), clock.now().at);
    let mut last = None;
    for _ in 0..3 {
        clock.advance(1_000);
        assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0a1"]);
        last = l.finished(sid("a"), Outcome::Failed("boom".into()), clock.now());
    }
    let record = failed(last);
    assert_eq!(record.status, MessageStatus::Failed);
    assert_eq!(record.attempts, 3, "the first attempt and two retries");
    assert_eq!(record.last_error.as_deref(), Some("boom"));
    assert_eq!(
        started(&l.poll(clock.now(), 1, connected)),
        ["3EB0a2"],
        "the next message goes at once"
    );
}

#[test]
fn a_permanent_refusal_fails_at_once_without_retries() {
    let clock = Clock::new();
    let mut l = lanes(rules());
    l.push(delivery("a", 1, &clock), clock.now().at);
    l.push(delivery("a", 2, &clock), clock.now().at);
    l.poll(clock.now(), 1, connected);
    let why = "WhatsApp refused the message: 5215512345678 is not on WhatsApp";
    let step = l.finished(sid("a"), Outcome::Rejected(why.into()), clock.now());
    match step {
        Some(Step::Fail {
            entry,
            message,
            record,
        }) => {
            assert_eq!((entry.as_str(), message.id.as_str()), ("a-1", "3EB0a1"));
            assert_eq!(record.status, MessageStatus::Failed);
            assert_eq!(record.attempts, 1);
            assert_eq!(record.last_error.as_deref(), Some(why));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(started(&l.poll(clock.now(), 1, connected)), ["3EB0a2"]);
}

#[test]
fn send_errors_are_told_apart_refusals_from_failures() {
    let id = || sid("a");
    assert_eq!(Outcome::of(Ok("3EB0".into())), Outcome::Sent);
    for lost in [
        RegistryError::NotRunning(id()),
        RegistryError::NotFound(id()),
        RegistryError::Connector(ConnectorError::NotConnected),
    ] {
        assert_eq!(Outcome::of(Err(lost)), Outcome::NotConnected);
    }
    let refused = ConnectorError::Rejected("5215512345678 is not on WhatsApp".into());
    assert_eq!(
        Outcome::of(Err(RegistryError::Connector(refused))),
        Outcome::Rejected("WhatsApp refused the message: 5215512345678 is not on WhatsApp".into())
    );
    assert!(matches!(
        Outcome::of(Err(RegistryError::Connector(ConnectorError::Failed("timeout".into())))),
        Outcome::Failed(why) if why.contains("timeout")
    ));
}

/// A humane message of `chars` characters.
fn humane(session: &str, n: u32, chars: usize, clock: &Clock) -> Delivery {
    let mut d = delivery(session, n, clock);
    d.message.humane = true;
    d.message.content = OutboundContent::Text {
        text: "x".repeat(chars),
    };
    d
}

fn typed(step: &Step) -> (&SessionId, ChatState) {
    match step {
        Step::Type { session, state, .. } => (session, *state),
        other => panic!("expected typing, got {other:?}"),
    }
}

#[test]
fn a_humane_message_types_for_its_time_then_pauses_and_sends() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(humane("a", 1, 50, &clock), clock.now().at);
    let steps = l.poll(clock.now(), 10, connected);
    assert_eq!(steps.len(), 1);
    assert_eq!(typed(&steps[0]), (&sid("a"), ChatState::Composing));
    // 50 characters × 80 ms, jitter at one half: exactly 4 s.
    assert_eq!(l.next_due(), Some(clock.now().at + MS(4_000)));
    clock.advance(3_999);
    assert!(
        l.poll(clock.now(), 10, connected).is_empty(),
        "still typing"
    );
    clock.advance(1);
    match l.poll(clock.now(), 10, connected).as_slice() {
        [Step::Start {
            message,
            pause_first,
            ..
        }] => {
            assert_eq!(message.id, "3EB0a1");
            assert!(pause_first, "paused is shown before the send");
        }
        other => panic!("expected the send, got {other:?}"),
    }
}

#[test]
fn typing_holds_its_lane_only() {
    let clock = Clock::new();
    let mut l = lanes(rules());
    l.push(humane("a", 1, 50, &clock), clock.now().at);
    l.push(delivery("a", 2, &clock), clock.now().at);
    l.push(delivery("b", 1, &clock), clock.now().at);
    let steps = l.poll(clock.now(), 10, connected);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(typed(&steps[0]).0, &sid("a"));
    assert_eq!(
        started(&steps[1..]),
        ["3EB0b1"],
        "b is not delayed by a's typing"
    );
    assert!(
        l.poll(clock.now(), 10, connected).is_empty(),
        "a2 waits behind a1, which is typing"
    );
}

#[test]
fn an_attempt_that_did_not_go_out_types_again() {
    let mut clock = Clock::new();
    let mut l = lanes(rules());
    l.push(humane("a", 1, 10, &clock), clock.now().at);
    assert_eq!(l.poll(clock.now(), 10, connected).len(), 1);
    clock.advance(1_500);
    assert!(matches!(
        l.poll(clock.now(), 10, connected).as_slice(),
        [Step::Start { .. }]
    ));
    assert!(l
        .finished(sid("a"), Outcome::NotConnected, clock.now())
        .is_none());
    clock.advance(WAIT_RECHECK.as_millis() as u64);
    let steps = l.poll(clock.now(), 10, connected);
    assert_eq!(typed(&steps[0]).1, ChatState::Composing, "types anew");
}

#[test]
fn a_humane_reaction_is_sent_without_typing() {
    let clock = Clock::new();
    let mut l = lanes(rules());
    let mut d = delivery("a", 1, &clock);
    d.message.humane = true;
    d.message.content = OutboundContent::Reaction {
        message_id: "3EB0AA".into(),
        emoji: "👍".into(),
        from_me: false,
    };
    l.push(d, clock.now().at);
    match l.poll(clock.now(), 10, connected).as_slice() {
        [Step::Start { pause_first, .. }] => assert!(!pause_first),
        other => panic!("expected the send at once, got {other:?}"),
    }
}
