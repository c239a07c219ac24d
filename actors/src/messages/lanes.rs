//! The message queue's lane scheduler, pure: which message starts next,
//! which fails, when a lane is due again. One lane per session keeps that
//! session's messages in order; a lane waits out pacing (`MESSAGE_MIN_GAP`),
//! retry backoff and a disconnected session (up to `MESSAGE_MAX_WAIT`).
//! A humane message first "types" ([`Step::Type`], then the lane waits
//! out the typing time of [`super::humane::typing`] like a pacing gap, so
//! no thread or task waits, other lanes go on, and a restart types anew).
//! [`super::queue::MessageQueue`] feeds it the time, free send slots and
//! outcomes, and carries out the [`Step`]s; unit tests drive it by hand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::humane::{self, HumaneRules};
use super::{Delivery, MessageRecord, MessageStatus, OutboundMessage};
use crate::connector::{ChatState, ConnectorError};
use crate::ids::SessionId;
use crate::registry::RegistryError;
use crate::session::machine::SessionState;

/// A session that is not connected is looked at again after this long.
pub const WAIT_RECHECK: Duration = Duration::from_millis(500);

/// The time twice: `at` orders the lanes (monotonic), `unix_ms` is compared
/// with a message's `created_ms` (wall clock, set at intake, maybe on
/// another node) for `MESSAGE_MAX_WAIT` and stamped on records.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub unix_ms: u64,
}

impl Now {
    pub fn read() -> Self {
        Self {
            at: Instant::now(),
            unix_ms: crate::clock::unix_ms(),
        }
    }
}

/// What the lanes need from the queue's configuration.
#[derive(Debug, Clone, Copy)]
pub struct LaneRules {
    pub max_retries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub pacing: Duration,
    pub max_wait: Duration,
    /// How long humane messages type before they are sent.
    pub humane: HumaneRules,
}

/// A random number in `[0, 1)` for retry jitter; injected so tests are exact.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// One message in a lane.
#[derive(Debug)]
pub struct Job {
    /// The log entry to acknowledge when it ends.
    pub entry: String,
    pub message: OutboundMessage,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Read before: its record is checked before sending (it may be sent already).
    pub redelivered: bool,
    /// A humane message is typing (until then) for its coming attempt;
    /// cleared when an attempt does not go out, so the next one types again.
    pub typing_until: Option<Instant>,
}

impl Job {
    pub fn record(&self, status: MessageStatus, unix_ms: u64) -> MessageRecord {
        MessageRecord {
            status,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            updated_ms: unix_ms,
            ..MessageRecord::queued(&self.message)
        }
    }
}

/// How one send ended, as the lanes tell outcomes apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The session was not running or not connected: not an attempt; the
    /// message waits for the session again.
    NotConnected,
    /// WhatsApp refused the message for good (nack, not on WhatsApp): a
    /// retry would be refused again, so it fails at once.
    Rejected(String),
    /// Anything else (timeout, network): retried with backoff.
    Failed(String),
}

impl Outcome {
    /// How the lanes see a send's result through the registry.
    pub fn of(result: Result<String, RegistryError>) -> Self {
        match result {
            Ok(_) => Outcome::Sent,
            Err(
                RegistryError::NotRunning(_)
                | RegistryError::NotFound(_)
                | RegistryError::Connector(ConnectorError::NotConnected),
            ) => Outcome::NotConnected,
            Err(RegistryError::Connector(e @ ConnectorError::Rejected(_))) => {
                Outcome::Rejected(e.to_string())
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// What the queue has to do.
#[derive(Debug)]
pub enum Step {
    /// Show `state` to `to` now (a humane message types before its send;
    /// the lane holds it meanwhile). Best effort: a lost one changes nothing.
    Type {
        session: SessionId,
        to: String,
        state: ChatState,
    },
    /// Send the lane's first message (`sending` is its record to write first).
    Start {
        session: SessionId,
        message: OutboundMessage,
        redelivered: bool,
        sending: MessageRecord,
        /// It typed before: show `paused` first, then send.
        pause_first: bool,
    },
    /// Sent: record it and report it.
    Succeed {
        entry: String,
        record: MessageRecord,
    },
    /// Failed for good: record it, dead-letter it and report it.
    Fail {
        entry: String,
        message: OutboundMessage,
        record: MessageRecord,
    },
    /// Failed, to be tried again after `delay`: record the error meanwhile.
    Retry {
        record: MessageRecord,
        delay: Duration,
    },
}

#[derive(Debug, Default)]
struct Lane {
    jobs: VecDeque<Job>,
    /// A send of this session is in flight: the next one waits for its outcome.
    busy: bool,
    /// Pacing or retry backoff: nothing starts before this.
    not_before: Option<Instant>,
    /// In `ready` or `timed`: the lane will be looked at again; never in both,
    /// never twice.
    scheduled: bool,
}

pub struct Lanes {
    rules: LaneRules,
    jitter: Jitter,
    lanes: HashMap<SessionId, Lane>,
    /// Lanes to look at now, oldest first: only these are visited, so the
    /// cost of a send does not grow with the number of waiting sessions.
    ready: VecDeque<SessionId>,
    /// Lanes to look at later (pacing, backoff, a session not connected).
    timed: BinaryHeap<Reverse<(Instant, SessionId)>>,
}

impl Lanes {
    pub fn new(rules: LaneRules, jitter: Jitter) -> Self {
        Self {
            rules,
            jitter,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            timed: BinaryHeap::new(),
        }
    }

    /// Adds a message read from the log to its session's lane, behind the
    /// ones already there.
    pub fn push(&mut self, delivery: Delivery, now: Instant) {
        let session = delivery.message.session.clone();
        let lane = self.lanes.entry(session.clone()).or_default();
        lane.jobs.push_back(Job {
            entry: delivery.entry,
            message: delivery.message,
            attempts: 0,
            last_error: None,
            redelivered: delivery.redelivered,
            typing_until: None,
        });
        if !lane.busy {
            let at = lane.not_before;
            self.schedule(session, at, now);
        }
    }

    /// The earliest time a lane waiting on a timer is due (`None`: none
    /// is): the queue wakes then, so a pacing gap lasts what it says and
    /// not until the next tick.
    pub fn next_due(&self) -> Option<Instant> {
        self.timed.peek().map(|Reverse((at, _))| *at)
    }

    /// No lane holds a message or a pacing gap (a lane is dropped once idle
    /// and past its gap, so idle sessions cost nothing).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Up to `slots` steps that may happen now: sends to start (their
    /// session is connected) and messages that waited too long for their
    /// session. Both take a slot: a failure holds one until it is written.
    /// `state` reads a session's state (`None`: it does not exist).
    pub fn poll(
        &mut self,
        now: Now,
        slots: usize,
        state: impl Fn(&SessionId) -> Option<SessionState>,
    ) -> Vec<Step> {
        while let Some(Reverse((at, _))) = self.timed.peek() {
            if *at > now.at {
                break;
            }
            let Some(Reverse((_, session))) = self.timed.pop() else {
                break;
            };
            self.ready.push_back(session);
        }
        let max_wait = self.rules.max_wait.as_millis() as u64;
        let mut steps = Vec::new();
        while steps.len() < slots {
            let Some(session) = self.ready.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&session) else {
                continue;
            };
            lane.scheduled = false;
            if lane.busy {
                continue; // looked at again when its send ends
            }
            if let Some(t) = lane.not_before.filter(|t| *t > now.at) {
                self.schedule(session, Some(t), now.at);
                continue;
            }
            let Some(job) = lane.jobs.front_mut() else {
                self.lanes.remove(&session); // idle, and its pacing gap is over
                continue;
            };
            let state = state(&session);
            if state == Some(SessionState::Connected) {
                let typing = (job.message.humane && job.typing_until.is_none())
                    .then(|| {
                        humane::typing(&job.message.content, &self.rules.humane, (self.jitter)())
                    })
                    .flatten();
                if let Some((chat_state, typing)) = typing {
                    let until = now.at + typing;
                    job.typing_until = Some(until);
                    lane.not_before = Some(until);
                    steps.push(Step::Type {
                        session: session.clone(),
                        to: job.message.to.clone(),
                        state: chat_state,
                    });
                    self.schedule(session, Some(until), now.at);
                    continue;
                }
                lane.busy = true;
                job.attempts += 1;
                steps.push(Step::Start {
                    session,
                    message: job.message.clone(),
                    redelivered: job.redelivered,
                    sending: job.record(MessageStatus::Sending, now.unix_ms),
                    pause_first: job.typing_until.is_some(),
                });
            } else if now.unix_ms.saturating_sub(job.message.created_ms) > max_wait {
                job.last_error = Some(match state {
                    None => "the session does not exist".to_owned(),
                    Some(s) => format!(
                        "the session was not connected within {} s (state: {})",
                        max_wait / 1000,
                        s.as_str()
                    ),
                });
                if let Some(job) = lane.jobs.pop_front() {
                    steps.push(fail(job, now.unix_ms));
                }
                self.schedule(session, None, now.at);
            } else {
                self.schedule(session, Some(now.at + WAIT_RECHECK), now.at);
            }
        }
        steps
    }

    /// The send `poll` started for `session` ended with `outcome`.
    pub fn finished(&mut self, session: SessionId, outcome: Outcome, now: Now) -> Option<Step> {
        let lane = self.lanes.get_mut(&session)?;
        lane.busy = false;
        let (step, next) = match outcome {
            Outcome::Sent => {
                let step = lane.jobs.pop_front().map(|job| Step::Succeed {
                    record: job.record(MessageStatus::Sent, now.unix_ms),
                    entry: job.entry,
                });
                (step, now.at + self.rules.pacing)
            }
            Outcome::NotConnected => {
                if let Some(job) = lane.jobs.front_mut() {
                    job.attempts -= 1;
                    job.typing_until = None;
                }
                (None, now.at + WAIT_RECHECK)
            }
            Outcome::Rejected(why) => {
                let step = lane.jobs.pop_front().map(|mut job| {
                    job.last_error = Some(why);
                    fail(job, now.unix_ms)
                });
                (step, now.at)
            }
            Outcome::Failed(why) => {
                let job = lane.jobs.front_mut()?;
                job.last_error = Some(why);
                job.typing_until = None;
                if job.attempts > self.rules.max_retries {
                    let step = lane.jobs.pop_front().map(|job| fail(job, now.unix_ms));
                    (step, now.at)
                } else {
                    let record = job.record(MessageStatus::Queued, now.unix_ms);
                    let delay = self.backoff(record.attempts);
                    (Some(Step::Retry { record, delay }), now.at + delay)
                }
            }
        };
        if let Some(lane) = self.lanes.get_mut(&session) {
            lane.not_before = Some(next);
        }
        // Looked at again when due: the next message, or the lane's removal.
        self.schedule(session, Some(next), now.at);
        step
    }

    /// The wait after failed attempt `attempt` (from 1).
    fn backoff(&mut self, attempt: u32) -> Duration {
        crate::backoff::equal_jitter_from(
            self.rules.retry_base,
            self.rules.retry_max,
            attempt.saturating_sub(1),
            (self.jitter)(),
        )
    }

    /// Puts a lane in line to be looked at, now or at `at`.
    fn schedule(&mut self, session: SessionId, at: Option<Instant>, now: Instant) {
        let Some(lane) = self.lanes.get_mut(&session) else {
            return;
        };
        if lane.scheduled {
            return;
        }
        lane.scheduled = true;
        match at {
            Some(t) if t > now => self.timed.push(Reverse((t, session))),
            _ => self.ready.push_back(session),
        }
    }
}

fn fail(job: Job, unix_ms: u64) -> Step {
    let record = job.record(MessageStatus::Failed, unix_ms);
    Step::Fail {
        entry: job.entry,
        message: job.message,
        record,
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "lanes_props.rs"]
mod props;
