//! `StatusBatcher`: status changes to `POST /whatsapp/status/batch` in two
//! lanes. Normal (`starting`, `stopped`, …) is coalesced per session and sent
//! at `BATCH_SIZE` or every `BATCH_INTERVAL`, one request at a time. High
//! (`active`, `inactive`, `logged_out`, `failed`) goes out at once when no
//! high request is in flight and is micro-batched while one is; an item never
//! waits more than `PRIORITY_INTERVAL` for a free slot. Which update goes in
//! which request, keeping per-session order across lanes, is decided by
//! [`StatusOrder`]; this actor sends, times and counts. Sessions send
//! [`RecordStatus`]. Once a batch is delivered (or held in the outbox) it
//! releases its journaled terminal statuses ([`crate::journal`]).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::status_order::{Batch, HighStep, StatusOrder};
use super::{deliver_then_release, BatchConfig, Drain, DrainWaiters, Journaled};
use crate::clock::unix_ms;
use crate::journal::Journal;
use crate::laravel::client::LaravelClient;
use crate::laravel::payload::{Endpoint, OutboundBatch, Priority, StatusItem};
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::stats::GatewayStats;

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

pub struct StatusBatcher {
    config: BatchConfig,
    /// Pending updates and what is in flight: decides every request.
    order: StatusOrder,
    /// Wakes the high lane when its oldest item reaches `PRIORITY_INTERVAL`.
    high_timer: Option<SpawnHandle>,
    last_flush_ms: Option<u64>,
    client: MeteredAddr<LaravelClient>,
    /// Terminal statuses wait here until their batch is delivered.
    journal: Journal,
    drain: DrainWaiters,
    metrics: Arc<Metrics>,
    stats: Arc<GatewayStats>,
}

impl StatusBatcher {
    pub fn new(
        config: BatchConfig,
        client: MeteredAddr<LaravelClient>,
        journal: Journal,
        metrics: Arc<Metrics>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            config,
            order: StatusOrder::new(config),
            high_timer: None,
            last_flush_ms: None,
            client,
            journal,
            drain: DrainWaiters::default(),
            metrics,
            stats,
        }
    }

    fn publish_waiting(&self) {
        self.stats.status.set_waiting(self.order.waiting());
    }

    fn idle(&self) -> bool {
        self.order.is_idle() && self.stats.status.read().0 == 0
    }

    fn flush_high(&mut self, ctx: &mut Context<Self>) {
        loop {
            match self.order.poll_high(Instant::now(), self.drain.draining()) {
                HighStep::Send(batch) => self.send(batch, ctx),
                HighStep::WakeIn(after) => return self.arm_high_timer(ctx, after),
                HighStep::Idle => return,
            }
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
        if let Some(batch) = self
            .order
            .poll_normal(Instant::now(), self.drain.draining())
        {
            self.send(batch, ctx);
        }
    }

    fn send(&mut self, batch: Batch, ctx: &mut Context<Self>) {
        let request =
            OutboundBatch::new(Endpoint::StatusBatch, "statuses", &batch.items, unix_ms());
        self.last_flush_ms = Some(unix_ms());
        self.publish_waiting();
        let client = self.client.clone();
        let stats = Arc::clone(&self.stats);
        // Every item releases, not only terminal ones: a held `stopped` may
        // have been replaced in the buffer by the session's newer `starting`.
        let records = Journaled::Statuses(batch.items.clone());
        let journal = self.journal.clone();
        ctx.spawn(
            async move {
                deliver_then_release(client, request, &stats.status, journal, records).await
            }
                .into_actor(self)
                .map(move |_, act, ctx| {
                    act.order.completed(batch.lane, &batch.items);
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
        let records = Journaled::Statuses(vec![item]);
        let journal = self.journal.clone();
        ctx.spawn(
            async move { deliver_then_release(client, batch, &stats.status, journal, records).await }
                .into_actor(self)
                .map(move |_, act, _| act.drain.settle(act.idle())),
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
        let priority = item.priority;
        self.order.record(item, Instant::now());
        match priority {
            Priority::High => self.flush_high(ctx),
            Priority::Normal => self.flush_normal(ctx),
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
        let ((high, normal), (oldest_high, oldest_normal)) =
            (self.order.pending(), self.order.oldest());
        StatusPending {
            high,
            normal,
            last_flush_ms: self.last_flush_ms,
            oldest_high_wait_ms: age(oldest_high),
            oldest_normal_wait_ms: age(oldest_normal),
        }
    }
}
