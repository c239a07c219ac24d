//! `MessageQueue`: the actor that sends accepted outbound messages. It
//! reads the [`MessageLog`] (its own unacknowledged entries first, after a
//! restart), keeps one lane per session so each session's messages go out
//! in order, at most `max_concurrent` at once across sessions, with a
//! minimum gap per session (pacing). A failed send is retried with
//! exponential backoff and jitter; after the last retry the message is
//! `failed` and dead-lettered. A message whose session is not connected
//! waits for it up to `max_wait`. Results go to Laravel as `send_result`
//! items through the `InboundBatcher`. Started by `Gateway::start`; HTTP
//! wakes it after each accepted message.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Delivery, MessageLog, MessageRecord, MessageStatus, OutboundMessage, QueueCounts};
use crate::batch::inbound::{InboundBatcher, RecordInbound};
use crate::clock::unix_ms;
use crate::connector::ConnectorError;
use crate::ids::SessionId;
use crate::laravel::payload::{delivery_rank, InboundItem};
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::registry::{RegistryError, RegistryHandle, RestoreProgress};
use crate::session::index::SessionIndex;
use crate::session::machine::SessionState;

/// How often the queue looks for work, pacing deadlines and retries.
const TICK: Duration = Duration::from_millis(100);
/// How often the `/health` figures are read from the log.
const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// A session that is not running is looked at again after this long.
const WAIT_RECHECK: Duration = Duration::from_millis(500);

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
}

/// `/health`'s `messageQueue`, refreshed every second; lock-free reads.
#[derive(Debug, Default)]
pub struct QueueGauge {
    active: AtomicU64,
    waiting: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// The last read from the log succeeded.
    fresh: AtomicBool,
}

impl QueueGauge {
    pub fn read(&self) -> (QueueCounts, bool) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            QueueCounts {
                active: r(&self.active),
                waiting: r(&self.waiting),
                completed: r(&self.completed),
                failed: r(&self.failed),
            },
            self.fresh.load(Ordering::Relaxed),
        )
    }

    fn store(&self, c: QueueCounts) {
        self.active.store(c.active, Ordering::Relaxed);
        self.waiting.store(c.waiting, Ordering::Relaxed);
        self.completed.store(c.completed, Ordering::Relaxed);
        self.failed.store(c.failed, Ordering::Relaxed);
        self.fresh.store(true, Ordering::Relaxed);
    }
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

struct Job {
    entry: String,
    message: OutboundMessage,
    attempts: u32,
    last_error: Option<String>,
    /// Read before: check its record before sending (it may be sent already).
    redelivered: bool,
}

impl Job {
    fn record(&self, status: MessageStatus) -> MessageRecord {
        MessageRecord {
            status,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            updated_ms: unix_ms(),
            ..MessageRecord::queued(&self.message)
        }
    }
}

#[derive(Default)]
struct Lane {
    jobs: VecDeque<Job>,
    /// A send of this session is in flight.
    busy: bool,
    /// Pacing or retry backoff: nothing starts before this.
    not_before: Option<Instant>,
    /// In `ready` or `timed`: the lane will be looked at again.
    scheduled: bool,
}

/// A result that still has to reach the log (Redis may be down).
enum Finish {
    Sent(String, MessageRecord),
    Dead(String, OutboundMessage, MessageRecord),
}

pub struct MessageQueue {
    config: MessageQueueConfig,
    log: Arc<dyn MessageLog>,
    registry: RegistryHandle,
    index: SessionIndex,
    inbound: MeteredAddr<InboundBatcher>,
    restore: Arc<RestoreProgress>,
    gauge: Arc<QueueGauge>,
    metrics: Arc<Metrics>,
    lanes: HashMap<SessionId, Lane>,
    /// Lanes to look at now, oldest first: only these are visited, so the
    /// cost of a send does not grow with the number of waiting sessions.
    ready: VecDeque<SessionId>,
    /// Lanes to look at later (pacing, backoff, a session not connected).
    timed: BinaryHeap<Reverse<(Instant, SessionId)>>,
    /// Entry ids read and not yet finished (dedupes re-reads and claims).
    held: HashSet<String>,
    in_flight: usize,
    reading: bool,
    /// New entries may be in the log.
    wanted: bool,
    finishing: VecDeque<Finish>,
    writing: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl MessageQueue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: MessageQueueConfig,
        log: Arc<dyn MessageLog>,
        registry: RegistryHandle,
        index: SessionIndex,
        inbound: MeteredAddr<InboundBatcher>,
        restore: Arc<RestoreProgress>,
        gauge: Arc<QueueGauge>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            log,
            registry,
            index,
            inbound,
            restore,
            gauge,
            metrics,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            timed: BinaryHeap::new(),
            held: HashSet::new(),
            in_flight: 0,
            reading: false,
            wanted: true,
            finishing: VecDeque::new(),
            writing: false,
            draining: false,
            drain_waiters: Vec::new(),
        }
    }

    /// The wait after failed attempt `attempt` (from 1).
    fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::equal_jitter(
            self.config.retry_base,
            self.config.retry_max,
            attempt.saturating_sub(1),
        )
    }

    fn accept(&mut self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            if !self.held.insert(d.entry.clone()) {
                continue; // already ours (a claim of our own entry)
            }
            let session = d.message.session.clone();
            let lane = self.lanes.entry(session.clone()).or_default();
            lane.jobs.push_back(Job {
                entry: d.entry,
                message: d.message,
                attempts: 0,
                last_error: None,
                redelivered: d.redelivered,
            });
            if !lane.busy && !lane.scheduled {
                let at = lane.not_before;
                self.schedule(session, at);
            }
        }
    }

    /// Puts a lane in line to be looked at, now or at `at`.
    fn schedule(&mut self, session: SessionId, at: Option<Instant>) {
        let Some(lane) = self.lanes.get_mut(&session) else {
            return;
        };
        if lane.scheduled {
            return;
        }
        lane.scheduled = true;
        match at {
            Some(t) if t > Instant::now() => self.timed.push(Reverse((t, session))),
            _ => self.ready.push_back(session),
        }
    }

    /// Reads more from the log when there is room and reason to.
    fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.draining || !self.wanted || self.held.len() >= self.config.buffer {
            return;
        }
        self.reading = true;
        self.wanted = false;
        let room = self.config.buffer - self.held.len();
        let (log, consumer) = (Arc::clone(&self.log), self.config.consumer.clone());
        ctx.spawn(
            async move { log.read(&consumer, room.min(1000)).await }
                .into_actor(self)
                .map(move |read, act, ctx| {
                    act.reading = false;
                    match read {
                        Ok(batch) => {
                            // A full page means there may be more.
                            act.wanted |= batch.len() >= room.min(1000);
                            act.accept(batch);
                            act.pump(ctx);
                        }
                        Err(e) => {
                            act.wanted = true;
                            tracing::warn!(error = %e, "cannot read the message queue; retrying");
                        }
                    }
                }),
        );
    }

    /// Takes over entries a dead node left behind, and keeps ours alive.
    fn maintain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let log = Arc::clone(&self.log);
        let consumer = self.config.consumer.clone();
        let held: Vec<String> = self.held.iter().cloned().collect();
        let min_idle = self.config.processing_timeout.as_millis() as u64;
        let room = self.config.buffer.saturating_sub(self.held.len()).min(1000);
        ctx.spawn(
            async move {
                if let Err(e) = log.keep_alive(&consumer, &held).await {
                    tracing::warn!(error = %e, "cannot renew held messages");
                }
                if room == 0 {
                    return Ok(Vec::new());
                }
                log.claim_idle(&consumer, min_idle, room).await
            }
            .into_actor(self)
            .map(|claimed, act, ctx| match claimed {
                Ok(batch) => {
                    if !batch.is_empty() {
                        tracing::info!(
                            messages = batch.len(),
                            "took over messages left by a stopped sender"
                        );
                    }
                    act.accept(batch);
                    act.pump(ctx);
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim idle messages"),
            }),
        );
    }

    /// Starts every send that may start now, visiting only lanes that are
    /// due (not every session with a message waiting).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining || !self.restore.loaded.load(Ordering::Relaxed) {
            return; // sessions are still being restored: do not fail their messages
        }
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timed.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, session))) = self.timed.pop() else {
                break;
            };
            self.ready.push_back(session);
        }
        let now_ms = unix_ms();
        let max_wait = self.config.max_wait.as_millis() as u64;
        while self.unsettled() < self.config.max_concurrent {
            let Some(session) = self.ready.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&session) else {
                continue;
            };
            lane.scheduled = false;
            if lane.busy {
                continue; // it is looked at again when its send ends
            }
            if let Some(t) = lane.not_before.filter(|t| *t > now) {
                self.schedule(session, Some(t));
                continue;
            }
            let Some(job) = lane.jobs.front() else {
                self.lanes.remove(&session); // idle, and its pacing gap is over
                continue;
            };
            let state = self.index.get(&session).map(|s| s.state);
            if state == Some(SessionState::Connected) {
                lane.busy = true;
                self.start(session, ctx);
            } else if now_ms.saturating_sub(job.message.created_ms) > max_wait {
                let why = match state {
                    None => "the session does not exist".to_owned(),
                    Some(s) => format!(
                        "the session was not connected within {} s (state: {})",
                        max_wait / 1000,
                        s.as_str()
                    ),
                };
                if let Some(mut job) = self.pop(&session) {
                    job.last_error = Some(why);
                    self.fail(job, ctx);
                }
                self.schedule(session, None);
            } else {
                self.schedule(session, Some(now + WAIT_RECHECK));
            }
        }
    }

    /// Sends that hold a slot: in flight, or finished but with the outcome
    /// not yet durable in the log. A slot is freed only once the outcome is
    /// written, so what a `kill -9` can make us send twice (re-read after the
    /// restart with no outcome recorded) is bounded by `max_concurrent`.
    fn unsettled(&self) -> usize {
        self.in_flight + self.finishing.len() + usize::from(self.writing)
    }

    fn pop(&mut self, session: &SessionId) -> Option<Job> {
        self.lanes.get_mut(session)?.jobs.pop_front()
    }

    fn start(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        let Some(job) = self
            .lanes
            .get_mut(&session)
            .and_then(|l| l.jobs.front_mut())
        else {
            return;
        };
        job.attempts += 1;
        self.in_flight += 1;
        let sending = job.record(MessageStatus::Sending);
        let m = job.message.clone();
        let check_first = job.redelivered;
        let (log, registry) = (Arc::clone(&self.log), self.registry.clone());
        let timeout = self.config.processing_timeout;
        ctx.spawn(
            async move {
                // Sent before a crash, with only the acknowledgement lost.
                if check_first {
                    if let Ok(Some(prev)) = log.get(&m.session, &m.id).await {
                        if prev.status == MessageStatus::Sent {
                            return Ok(m.id);
                        }
                    }
                }
                if let Err(e) = log.update(&sending).await {
                    tracing::debug!(message_id = %m.id, error = %e, "cannot record 'sending'");
                }
                let send = registry.send_text(m.session.clone(), m.to, m.text, m.id);
                match tokio::time::timeout(timeout, send).await {
                    Ok(result) => result,
                    Err(_) => Err(RegistryError::Connector(ConnectorError::Failed(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    )))),
                }
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.in_flight -= 1;
                act.finished(session, result, ctx);
                act.pump(ctx);
                act.check_drained();
            }),
        );
    }

    fn finished(
        &mut self,
        session: SessionId,
        result: Result<String, RegistryError>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let Some(lane) = self.lanes.get_mut(&session) else {
            return;
        };
        lane.busy = false;
        let not_connected = matches!(
            result,
            Err(RegistryError::NotRunning(_)
                | RegistryError::NotFound(_)
                | RegistryError::Connector(ConnectorError::NotConnected))
        );
        let next = match result {
            Ok(_) => {
                let next = now + self.config.pacing;
                if let Some(job) = self.pop(&session) {
                    self.succeed(job, ctx);
                }
                next
            }
            Err(_) if not_connected => {
                // Not an attempt: the session went away; wait for it.
                if let Some(job) = lane.jobs.front_mut() {
                    job.attempts -= 1;
                }
                now + WAIT_RECHECK
            }
            Err(e) => {
                let Some(job) = lane.jobs.front_mut() else {
                    return;
                };
                job.last_error = Some(e.to_string());
                let (attempts, record) = (job.attempts, job.record(MessageStatus::Queued));
                if attempts > self.config.max_retries {
                    if let Some(job) = self.pop(&session) {
                        self.fail(job, ctx);
                    }
                    now
                } else {
                    let delay = self.backoff(attempts);
                    tracing::warn!(message_id = %record.message_id, session = %session, error = %e, attempts, ?delay, "send failed; retrying");
                    let log = Arc::clone(&self.log);
                    actix_rt::spawn(async move {
                        let _ = log.update(&record).await;
                    });
                    now + delay
                }
            }
        };
        if let Some(lane) = self.lanes.get_mut(&session) {
            lane.not_before = Some(next);
        }
        // Looked at again when due: the next message, or the lane's removal.
        self.schedule(session, Some(next));
    }

    fn succeed(&mut self, job: Job, ctx: &mut Context<Self>) {
        let record = job.record(MessageStatus::Sent);
        self.report(&record);
        self.finishing.push_back(Finish::Sent(job.entry, record));
        self.write_finished(ctx);
    }

    fn fail(&mut self, job: Job, ctx: &mut Context<Self>) {
        let record = job.record(MessageStatus::Failed);
        tracing::warn!(message_id = %record.message_id, session = %record.session, error = record.last_error.as_deref().unwrap_or(""), attempts = record.attempts, "message failed for good; dead-lettered");
        self.report(&record);
        self.finishing
            .push_back(Finish::Dead(job.entry, job.message, record));
        self.write_finished(ctx);
    }

    /// Tells Laravel how a message ended.
    fn report(&self, r: &MessageRecord) {
        self.metrics
            .messages_finished
            .with_label_values(&[r.status.as_str()])
            .inc();
        self.inbound.do_send(RecordInbound {
            item: InboundItem::SendResult {
                session_id: r.session.clone(),
                message_id: r.message_id.clone(),
                to: r.to.clone(),
                status: r.status.as_str(),
                rank: delivery_rank(r.status.as_str()),
                attempts: r.attempts,
                error: r.last_error.clone(),
                timestamp: r.updated_ms,
            },
        });
    }

    /// Writes finished messages to the log, in order, one at a time; on
    /// failure retries at the next tick (the entries stay held meanwhile,
    /// so nothing is sent twice by this process).
    fn write_finished(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some(next) = self.finishing.pop_front() else {
            return;
        };
        self.writing = true;
        let log = Arc::clone(&self.log);
        ctx.spawn(
            async move {
                let result = match &next {
                    Finish::Sent(entry, record) => log.complete(entry, record).await,
                    Finish::Dead(entry, message, record) => {
                        log.dead_letter(entry, message, record).await
                    }
                };
                (next, result)
            }
            .into_actor(self)
            .map(|(next, result), act, ctx| {
                act.writing = false;
                match result {
                    Ok(()) => {
                        let entry = match &next {
                            Finish::Sent(e, _) | Finish::Dead(e, _, _) => e,
                        };
                        act.held.remove(entry);
                        act.wanted = true;
                        act.write_finished(ctx);
                        act.pump(ctx); // a slot is free now
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot record a finished message; retrying");
                        act.finishing.push_front(next);
                    }
                }
                act.check_drained();
            }),
        );
    }

    fn check_drained(&mut self) {
        if self.draining && self.in_flight == 0 && self.finishing.is_empty() && !self.writing {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn refresh_counts(&mut self, ctx: &mut Context<Self>) {
        let log = Arc::clone(&self.log);
        ctx.spawn(
            async move { log.counts().await }
                .into_actor(self)
                .map(|counts, act, _| match counts {
                    Ok(c) => {
                        act.gauge.store(c);
                        let q = &act.metrics.message_queue;
                        q.with_label_values(&["waiting"]).set(c.waiting as i64);
                        q.with_label_values(&["active"]).set(c.active as i64);
                    }
                    Err(_) => act.gauge.fresh.store(false, Ordering::Relaxed),
                }),
        );
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
