//! `InboundBatcher`: incoming messages and receipts to
//! `POST /whatsapp/messages/batch`. Nothing is coalesced or dropped; one
//! request is in flight at a time, so Laravel sees each session's messages in
//! order. Flushes at `BATCH_SIZE` items or every `MESSAGES_BATCH_INTERVAL`.
//! Sessions send [`RecordInbound`].

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::buffer::Fifo;
use super::{deliver, BatchConfig, Drain, DrainWaiters};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::laravel::client::LaravelClient;
use crate::laravel::payload::{Endpoint, InboundItem, OutboundBatch};
use crate::mailbox::MeteredAddr;
use crate::stats::GatewayStats;

/// A session received a message or a receipt.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordInbound {
    pub item: InboundItem,
}

pub struct InboundBatcher {
    config: BatchConfig,
    /// Everything not yet sent, in arrival order.
    pending: Fifo<SessionId, InboundItem>,
    in_flight: bool,
    client: MeteredAddr<LaravelClient>,
    drain: DrainWaiters,
    stats: Arc<GatewayStats>,
}

impl InboundBatcher {
    pub fn new(
        config: BatchConfig,
        client: MeteredAddr<LaravelClient>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            config,
            pending: Fifo::default(),
            in_flight: false,
            client,
            drain: DrainWaiters::default(),
            stats,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.stats.inbound.set_waiting(self.pending.len());
        if self.in_flight || self.pending.is_empty() {
            return;
        }
        let ripe = self
            .pending
            .oldest()
            .is_some_and(|t| t.elapsed() >= self.config.inbound_interval);
        if !(ripe || self.drain.draining() || self.pending.len() >= self.config.size) {
            return;
        }
        let items: Vec<InboundItem> = self
            .pending
            .take(self.config.size, |_| false)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        self.in_flight = true;
        let batch = OutboundBatch::new(Endpoint::MessagesBatch, "messages", &items, unix_ms());
        let (client, stats) = (self.client.clone(), Arc::clone(&self.stats));
        ctx.spawn(
            async move { deliver(client, batch, &stats.inbound).await }
                .into_actor(self)
                .map(|_, act, ctx| {
                    act.in_flight = false;
                    act.flush(ctx);
                    act.drain.settle(!act.in_flight && act.pending.is_empty());
                }),
        );
    }
}

impl Actor for InboundBatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(
            super::linger_tick(self.config.inbound_interval),
            |act, ctx| act.flush(ctx),
        );
    }
}

crate::metered_actor!(InboundBatcher: RecordInbound, Drain);

impl Handler<RecordInbound> for InboundBatcher {
    type Result = ();

    fn handle(&mut self, msg: RecordInbound, ctx: &mut Self::Context) {
        self.pending
            .push(msg.item.session_id().clone(), msg.item, Instant::now());
        self.flush(ctx);
    }
}

impl Handler<Drain> for InboundBatcher {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) {
        self.drain.add(msg.done);
        self.flush(ctx);
        self.drain
            .settle(!self.in_flight && self.pending.is_empty());
    }
}
