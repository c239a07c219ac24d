//! `MessageQueue`: the actor that sends accepted outbound messages. It
//! reads the [`MessageLog`] (its own unacknowledged entries first, after a
//! restart), hands them to the [`Lanes`] (one per session: in order, paced,
//! retried with backoff and jitter, waiting for a disconnected session up
//! to `max_wait`, dead-lettered after the last retry or at once when
//! WhatsApp refuses for good) and carries out what they decide, at most
//! `max_concurrent` sends at once. Outcomes are written back to the log and
//! go to Laravel as `send_result` items through the `InboundBatcher`.
//! Started by `Gateway::start`; `MessagesHandle` wakes it after each
//! accepted message.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

mod log_io;

use super::handle::QueueGauge;
use super::lanes::{LaneRules, Lanes, Now, Outcome, Step};
use super::{Delivery, Finished, MessageLog, MessageRecord, MessageStatus, OutboundMessage};
use crate::batch::inbound::InboundBatcher;
use crate::connector::{ChatAction, ChatState, ConnectorError};
use crate::error_chain::Chain;
use crate::events::EventBus;
use crate::ids::SessionId;
use crate::journal::Journal;
use crate::laravel::payload::{delivery_rank, InboundItem};
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::registry::{RegistryError, RegistryHandle, RestoreProgress};
use crate::session::index::SessionIndex;

/// How often the queue looks for work, pacing deadlines and retries.
const TICK: Duration = Duration::from_millis(100);
/// How often the `/health` figures are read from the log.
const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// Most outcomes written to the log in one round trip. Under load outcomes
/// pile up while a write runs, and the next write takes them all: one
/// at a time, the log's round trips capped end-to-end sends.
const WRITE_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct MessageQueueConfig {
    /// This node's consumer name in the log (`NODE_ID`).
    pub consumer: String,
    /// Sends in flight at once, all sessions together (`MAX_CONCURRENT_MESSAGES`).
    pub max_concurrent: usize,
    /// Retries after the first attempt (`MESSAGE_MAX_RETRIES`).
    pub max_retries: u32,
    /// First retry delay; doubles per retry, with jitter (`MESSAGE_RETRY_DELAY`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Longest one send may take before it counts as failed
    /// (`MESSAGE_PROCESSING_TIMEOUT`); also how long an entry may sit
    /// unacknowledged before another node takes it over.
    pub processing_timeout: Duration,
    /// Minimum gap between two sends of one session (`MESSAGE_MIN_GAP`).
    pub pacing: Duration,
    /// Longest a message waits for its session to connect (`MESSAGE_MAX_WAIT`).
    pub max_wait: Duration,
    /// Accepted messages not yet finished, beyond which intake answers 429
    /// (`MESSAGE_QUEUE_LIMIT`).
    pub queue_limit: u64,
    /// `MESSAGE_QUEUE_LIMIT_PER_SESSION`: checked at intake, like `queue_limit`.
    pub queue_limit_per_session: u64,
    /// Messages held in memory at once (read from the log, not yet finished).
    pub buffer: usize,
    /// Messages that do not say `humane` type first (`MESSAGE_HUMANE`).
    pub humane_default: bool,
    /// How long a humane message types (`HUMANE_TYPING_*`).
    pub humane: super::humane::HumaneRules,
}

/// New work is in the log (sent by HTTP after an accepted message).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Graceful stop: start nothing new, let sends in flight finish and their
/// results be written; unstarted messages stay in the log for the next start.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DrainSends {
    pub done: oneshot::Sender<()>,
}

/// What the queue works with besides its configuration (built by `Gateway::start`).
pub struct QueueDeps {
    pub log: Arc<dyn MessageLog>,
    /// Sends go through the registry to the session's actor.
    pub registry: RegistryHandle,
    /// Whether a session is connected, read without asking its actor.
    pub index: SessionIndex,
    /// Results reach Laravel as `send_result` items through it.
    pub inbound: MeteredAddr<InboundBatcher>,
    /// Numbers the results' journal records (the log writes them).
    pub journal: Journal,
    /// Results are live `send_result` events once written.
    pub events: EventBus,
    /// Nothing starts before stored sessions are restored.
    pub restore: Arc<RestoreProgress>,
    pub gauge: Arc<QueueGauge>,
    pub metrics: Arc<Metrics>,
}

pub struct MessageQueue {
    config: MessageQueueConfig,
    deps: QueueDeps,
    /// Which message starts, waits or fails next: all decisions live here.
    lanes: Lanes,
    /// Entry ids read and not yet durably finished: dedupes re-reads and
    /// our own entries coming back from `claim_idle`, bounds what is held
    /// in memory (`buffer`), and is what `keep_alive` renews.
    held: HashSet<String>,
    /// Sends started and not yet answered; each holds a slot.
    in_flight: usize,
    /// A log read is running: at most one at a time, so two reads never
    /// take the same room in `held` twice.
    reading: bool,
    /// New entries may be in the log (a wake, a full page, a freed slot, a
    /// failed read): without it every tick would read an empty stream.
    wanted: bool,
    /// Outcomes waiting to be written to the log (Redis may be down), in
    /// the order they ended; each `send_result` goes to Laravel once its
    /// outcome is written.
    finishing: VecDeque<Finished>,
    /// Outcomes in the log write that is running: one write at a time (of
    /// up to [`WRITE_BATCH`]), so they land in order and a failed one is
    /// retried before the ones behind it.
    writing: usize,
    /// A graceful stop began: nothing new is read, claimed or started.
    draining: bool,
    /// Told once nothing is in flight and every outcome is written.
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// The timer that wakes the queue when the next lane is due, and when.
    wake: Option<(Instant, SpawnHandle)>,
}

impl MessageQueue {
    pub fn new(config: MessageQueueConfig, deps: QueueDeps) -> Self {
        let rules = LaneRules {
            max_retries: config.max_retries,
            retry_base: config.retry_base,
            retry_max: config.retry_max,
            pacing: config.pacing,
            max_wait: config.max_wait,
            humane: config.humane,
        };
        Self {
            config,
            deps,
            lanes: Lanes::new(rules, Box::new(rand::random::<f64>)),
            held: HashSet::new(),
            in_flight: 0,
            reading: false,
            wanted: true,
            finishing: VecDeque::new(),
            writing: 0,
            draining: false,
            drain_waiters: Vec::new(),
            wake: None,
        }
    }

    fn accept(&mut self, deliveries: Vec<Delivery>) {
        let now = Instant::now();
        for d in deliveries {
            if self.held.insert(d.entry.clone()) {
                self.lanes.push(d, now);
            } // else already ours (a claim of our own entry)
        }
    }

    /// Carries out what the lanes say may happen now.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining || !self.deps.restore.loaded.load(Ordering::Relaxed) {
            return; // sessions are still being restored: do not fail their messages
        }
        let slots = self.config.max_concurrent.saturating_sub(self.unsettled());
        let index = &self.deps.index;
        let steps = self
            .lanes
            .poll(Now::read(), slots, |s| index.get(s).map(|snap| snap.state));
        for step in steps {
            self.carry_out(step, ctx);
        }
        self.wake_when_due(ctx);
    }

    /// Arms a timer for the next lane that waits out a pacing gap, a
    /// backoff or a typing pause, so it starts on time rather than at the
    /// next tick (with `MESSAGE_MIN_GAP` at 20 ms a 100 ms tick alone
    /// would cap a session at a fraction of its pace).
    fn wake_when_due(&mut self, ctx: &mut Context<Self>) {
        let Some(due) = self.lanes.next_due() else {
            return;
        };
        if let Some((at, handle)) = self.wake {
            if at <= due {
                return; // an earlier wake polls this lane too
            }
            ctx.cancel_future(handle);
        }
        let after = due.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(after, |act, ctx| {
            act.wake = None;
            act.pump(ctx);
        });
        self.wake = Some((due, handle));
    }

    /// Sends that hold a slot: in flight, or finished but with the outcome
    /// not yet durable in the log. A slot is freed only once the outcome is
    /// written, so what a `kill -9` can make us send twice (re-read after the
    /// restart with no outcome recorded) is bounded by `max_concurrent`.
    fn unsettled(&self) -> usize {
        self.in_flight + self.finishing.len() + self.writing
    }

    fn carry_out(&mut self, step: Step, ctx: &mut Context<Self>) {
        match step {
            Step::Type { session, to, state } => {
                let registry = self.deps.registry.clone();
                // Best effort and detached: the lane's timer, not this task,
                // holds the message back; a lost "typing…" changes nothing.
                actix_rt::spawn(async move {
                    let action = ChatAction::Typing { to, state };
                    if let Err(e) = registry.chat_action(session.clone(), action).await {
                        tracing::debug!(%session, error = %Chain(&e), "cannot show typing before a humane send");
                    }
                });
            }
            Step::Start {
                session,
                message,
                redelivered,
                sending,
                pause_first,
            } => self.start(session, message, redelivered, sending, pause_first, ctx),
            Step::Succeed { entry, record } => self.finish(entry, record, None, ctx),
            Step::Fail {
                entry,
                message,
                record,
            } => {
                tracing::warn!(message_id = %record.message_id, session = %record.session, error = record.last_error.as_deref().unwrap_or(""), attempts = record.attempts, "message failed for good; dead-lettered");
                self.finish(entry, record, Some(Box::new(message)), ctx);
            }
            Step::Retry { record, delay } => {
                tracing::warn!(message_id = %record.message_id, session = %record.session, error = record.last_error.as_deref().unwrap_or(""), attempts = record.attempts, ?delay, "send failed; retrying");
                let log = Arc::clone(&self.deps.log);
                // Only the record shown to clients: a lost write changes nothing else.
                actix_rt::spawn(async move {
                    let _ = log.update(&record).await;
                });
            }
        }
    }

    fn start(
        &mut self,
        session: SessionId,
        m: OutboundMessage,
        check_first: bool,
        sending: MessageRecord,
        pause_first: bool,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight += 1;
        let (log, registry) = (Arc::clone(&self.deps.log), self.deps.registry.clone());
        let timeout = self.config.processing_timeout;
        ctx.spawn(
            async move {
                // Sent before a crash, with only the acknowledgement lost.
                if check_first {
                    if let Ok(Some(prev)) = log.get(&m.session, &m.id).await {
                        if prev.status == MessageStatus::Sent {
                            return Outcome::Sent;
                        }
                    }
                }
                if let Err(e) = log.update(&sending).await {
                    tracing::debug!(message_id = %m.id, error = %Chain(&e), "cannot record 'sending'");
                }
                let outgoing = match super::outgoing(&*log, m.clone()).await {
                    Ok(outgoing) => outgoing,
                    Err(e) => return Outcome::of(Err(RegistryError::Connector(e))),
                };
                if pause_first {
                    // The typing is over: "paused", then the message.
                    let paused = ChatAction::Typing {
                        to: m.to.clone(),
                        state: ChatState::Paused,
                    };
                    let _ = registry.chat_action(m.session.clone(), paused).await;
                }
                let send = registry.send(m.session.clone(), outgoing);
                match tokio::time::timeout(timeout, send).await {
                    Ok(result) => Outcome::of(result),
                    Err(_) => Outcome::of(Err(RegistryError::Connector(ConnectorError::Failed(
                        format!("no answer within {} ms", timeout.as_millis()),
                    )))),
                }
            }
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.in_flight -= 1;
                if let Some(step) = act.lanes.finished(session, outcome, Now::read()) {
                    act.carry_out(step, ctx);
                }
                act.pump(ctx);
                act.check_drained();
            }),
        );
    }

    /// A message ended (sent, or failed for good): its outcome and its
    /// `send_result` go to the log together; Laravel hears of it once
    /// they are written ([`log_io`]'s `write_finished`).
    fn finish(
        &mut self,
        entry: String,
        record: MessageRecord,
        dead: Option<Box<OutboundMessage>>,
        ctx: &mut Context<Self>,
    ) {
        let r = &record;
        self.deps
            .metrics
            .messages_finished
            .with_label_values(&[r.status.as_str()])
            .inc();
        let report = InboundItem::SendResult {
            session_id: r.session.clone(),
            message_id: r.message_id.clone(),
            to: r.to.clone(),
            kind: r.kind.as_str(),
            status: r.status.as_str(),
            rank: delivery_rank(r.status.as_str()),
            attempts: r.attempts,
            error: r.last_error.clone(),
            timestamp: r.updated_ms,
        };
        let report = self
            .deps
            .journal
            .held(&report)
            .expect("a send result has a journal key");
        self.finishing.push_back(Finished {
            entry,
            record,
            dead,
            report,
        });
        self.write_finished(ctx);
    }

    fn check_drained(&mut self) {
        if self.draining && self.in_flight == 0 && self.finishing.is_empty() && self.writing == 0 {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Actor for MessageQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| {
            act.read(ctx);
            act.pump(ctx);
            act.write_finished(ctx);
        });
        ctx.run_interval(self.config.processing_timeout / 3, |act, ctx| {
            act.wanted = true;
            act.maintain(ctx);
        });
        ctx.run_interval(COUNTS_EVERY, |act, ctx| act.refresh_counts(ctx));
        self.read(ctx);
        self.refresh_counts(ctx);
    }
}

crate::metered_actor!(MessageQueue: Wake, DrainSends);

impl Handler<Wake> for MessageQueue {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.wanted = true;
        self.read(ctx);
    }
}

impl Handler<DrainSends> for MessageQueue {
    type Result = ();

    fn handle(&mut self, msg: DrainSends, ctx: &mut Self::Context) {
        self.draining = true;
        self.drain_waiters.push(msg.done);
        self.write_finished(ctx);
        self.check_drained();
    }
}
