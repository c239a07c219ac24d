//! `StatusBatcher`: status changes to `POST /whatsapp/status/batch` in two
//! lanes. Normal (`starting`, `stopped`, …) is coalesced per session and sent
//! at `BATCH_SIZE` or every `BATCH_INTERVAL`, one request at a time. High
//! (`active`, `inactive`, `logged_out`, `failed`) goes out at once when no
//! high request is in flight and is micro-batched while one is; an item never
//! waits more than `PRIORITY_INTERVAL` for a free slot. Per-session order
//! holds across lanes: a session with an update in flight, or a high update
//! pending, is held back, and a pending normal update is promoted ahead of a
//! new high one. Sessions send [`RecordStatus`].

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::buffer::{Coalescing, Fifo};
use super::{deliver, BatchConfig, Drain, DrainWaiters};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::laravel::client::LaravelClient;
use crate::laravel::payload::{Endpoint, OutboundBatch, Priority, StatusItem};
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::stats::GatewayStats;

/// High-lane requests allowed in flight at once when items have waited
/// `PRIORITY_INTERVAL` behind a slow one.
const MAX_HIGH_IN_FLIGHT: usize = 4;

/// A session's status changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordStatus {
    pub item: StatusItem,
}

/// Pending items and counters for `/metrics/batch`.
#[derive(Debug, Message)]
#[rtype(result = "StatusPending")]
pub struct DescribeStatusPending;

/// Counts and ages only (served without an API key by `/metrics/batch`).
#[derive(Debug, Clone, MessageResponse)]
pub struct StatusPending {
    pub high: usize,
    pub normal: usize,
    pub last_flush_ms: Option<u64>,
    /// How long the longest-waiting high-priority update has waited.
    pub oldest_high_wait_ms: Option<u64>,
    /// How long the longest-waiting normal update has waited.
    pub oldest_normal_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    High,
    Normal,
}

pub struct StatusBatcher {
    config: BatchConfig,
    /// High-priority updates, every one kept, in order.
    high: Fifo<SessionId, StatusItem>,
    /// Normal updates, latest per session.
    normal: Coalescing<SessionId, StatusItem>,
    /// Sessions with an update in a request that has not completed; their
    /// later updates wait so Laravel sees them in order.
    in_flight: HashMap<SessionId, u32>,
    high_in_flight: usize,
    normal_in_flight: bool,
    /// Wakes the high lane when its oldest item reaches `PRIORITY_INTERVAL`.
    high_timer: Option<SpawnHandle>,
    last_flush_ms: Option<u64>,
    client: MeteredAddr<LaravelClient>,
    drain: DrainWaiters,
    metrics: Arc<Metrics>,
    stats: Arc<GatewayStats>,
}

impl StatusBatcher {
    pub fn new(
        config: BatchConfig,
        client: MeteredAddr<LaravelClient>,
        metrics: Arc<Metrics>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            config,
            high: Fifo::default(),
            normal: Coalescing::default(),
            in_flight: HashMap::new(),
            high_in_flight: 0,
            normal_in_flight: false,
            high_timer: None,
            last_flush_ms: None,
            client,
            drain: DrainWaiters::default(),
            metrics,
            stats,
        }
    }

    fn publish_waiting(&self) {
        self.stats
            .status
            .set_waiting(self.high.len() + self.normal.len());
    }

    fn idle(&self) -> bool {
        self.high.is_empty()
            && self.normal.is_empty()
            && self.high_in_flight == 0
            && !self.normal_in_flight
            && self.stats.status.read().0 == 0
    }

    fn flush_high(&mut self, ctx: &mut Context<Self>) {
        while !self.high.is_empty() {
            let waited = self.high.oldest().map(|t| t.elapsed()).unwrap_or_default();
            let slot_free = self.high_in_flight == 0
                || (self.high_in_flight < MAX_HIGH_IN_FLIGHT
                    && waited >= self.config.priority_interval)
                || self.drain.draining();
            if !slot_free {
                self.arm_high_timer(ctx, self.config.priority_interval.saturating_sub(waited));
                return;
            }
            let in_flight = &self.in_flight;
            let items = self
                .high
                .take(self.config.size, |s| in_flight.contains_key(s));
            if items.is_empty() {
                // Everything left waits for an in-flight request of its session;
                // its completion flushes again.
                return;
            }
            self.send(items, Lane::High, ctx);
        }
    }

    fn arm_high_timer(&mut self, ctx: &mut Context<Self>, after: std::time::Duration) {
        if self.high_timer.is_none() {
            self.high_timer = Some(ctx.run_later(after, |act, ctx| {
                act.high_timer = None;
                act.flush_high(ctx);
            }));
        }
    }

    fn flush_normal(&mut self, ctx: &mut Context<Self>) {
        if self.normal_in_flight || self.normal.is_empty() {
            return;
        }
        // Full, or the oldest has waited BATCH_INTERVAL (a linger), or draining.
        let ripe = self
            .normal
            .oldest()
            .is_some_and(|t| t.elapsed() >= self.config.interval);
        let due = ripe || self.drain.draining() || self.normal.len() >= self.config.size;
        if !due {
            return;
        }
        let (in_flight, high) = (&self.in_flight, &self.high);
        let items = self.normal.take(self.config.size, |s| {
            in_flight.contains_key(s) || high.iter().any(|(k, _)| k == s)
        });
        if !items.is_empty() {
            self.send(items, Lane::Normal, ctx);
        }
    }

    fn send(&mut self, items: Vec<(SessionId, StatusItem)>, lane: Lane, ctx: &mut Context<Self>) {
        let sessions: Rc<Vec<SessionId>> = Rc::new(items.iter().map(|(s, _)| s.clone()).collect());
        for s in sessions.iter() {
            *self.in_flight.entry(s.clone()).or_default() += 1;
        }
        match lane {
            Lane::High => self.high_in_flight += 1,
            Lane::Normal => self.normal_in_flight = true,
        }
        let values: Vec<StatusItem> = items.into_iter().map(|(_, v)| v).collect();
        let batch = OutboundBatch::new(Endpoint::StatusBatch, "statuses", &values, unix_ms());
        self.last_flush_ms = Some(unix_ms());
        self.publish_waiting();
        let client = self.client.clone();
        let stats = Arc::clone(&self.stats);
        ctx.spawn(
            async move { deliver(client, batch, &stats.status).await }
                .into_actor(self)
                .map(move |_, act, ctx| {
                    for s in sessions.iter() {
                        if let Some(n) = act.in_flight.get_mut(s) {
                            *n -= 1;
                            if *n == 0 {
                                act.in_flight.remove(s);
                            }
                        }
                    }
                    match lane {
                        Lane::High => act.high_in_flight -= 1,
                        Lane::Normal => act.normal_in_flight = false,
                    }
                    act.flush_high(ctx);
                    act.flush_normal(ctx);
                    act.publish_waiting();
                    act.drain.settle(act.idle());
                }),
        );
    }

    fn send_legacy(&mut self, item: StatusItem, ctx: &mut Context<Self>) {
        let batch = OutboundBatch::single(Endpoint::LegacyStatus, &item, unix_ms());
        let client = self.client.clone();
        let stats = Arc::clone(&self.stats);
        ctx.spawn(
            async move { deliver(client, batch, &stats.status).await }
                .into_actor(self)
                .map(|_, act, _| act.drain.settle(act.idle())),
        );
    }
}

impl Actor for StatusBatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(super::linger_tick(self.config.interval), |act, ctx| {
            act.flush_normal(ctx)
        });
    }
}

crate::metered_actor!(StatusBatcher: RecordStatus, Drain, DescribeStatusPending);

impl Handler<RecordStatus> for StatusBatcher {
    type Result = ();

    fn handle(&mut self, msg: RecordStatus, ctx: &mut Self::Context) {
        let item = msg.item;
        self.metrics
            .status_updates
            .with_label_values(&[match item.priority {
                Priority::High => "high",
                Priority::Normal => "normal",
            }])
            .inc();
        if self.config.legacy {
            return self.send_legacy(item, ctx);
        }
        let now = Instant::now();
        let session = item.session_id.clone();
        match item.priority {
            Priority::High => {
                // An older normal update of this session goes first, in the same lane.
                if let Some(older) = self.normal.remove(&session) {
                    self.high.push(session.clone(), older, now);
                }
                self.high.push(session, item, now);
                self.flush_high(ctx);
            }
            Priority::Normal => {
                self.normal.push(session, item, now);
                self.flush_normal(ctx);
            }
        }
        self.publish_waiting();
    }
}

impl Handler<Drain> for StatusBatcher {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) {
        self.drain.add(msg.done);
        self.flush_high(ctx);
        self.flush_normal(ctx);
        self.drain.settle(self.idle());
    }
}

impl Handler<DescribeStatusPending> for StatusBatcher {
    type Result = StatusPending;

    fn handle(&mut self, _: DescribeStatusPending, _: &mut Self::Context) -> StatusPending {
        let age = |t: Option<Instant>| t.map(|t| t.elapsed().as_millis() as u64);
        StatusPending {
            high: self.high.len(),
            normal: self.normal.len(),
            last_flush_ms: self.last_flush_ms,
            oldest_high_wait_ms: age(self.high.oldest()),
            oldest_normal_wait_ms: age(self.normal.oldest()),
        }
    }
}
