//! `InboundBatcher`: incoming messages and receipts to
//! `POST /whatsapp/messages/batch`. Nothing is coalesced or dropped; one
//! request is in flight at a time, so Laravel sees each session's messages in
//! order. Flushes at `BATCH_SIZE` items or every `MESSAGES_BATCH_INTERVAL`.
//! Sessions send [`RecordInbound`]; the message queue sends
//! [`RecordHeld`] once outcomes are written. Incoming messages were journaled before
//! their arrival was acknowledged ([`crate::journal`]); a delivered (or
//! outboxed) batch releases its records, and at start the batcher first
//! replays what a killed predecessor left in the journal. Every
//! [`SWEEP_INTERVAL`] it also resends this process's own records that
//! nothing carries any more ([`plan::inbound_orphans`]), so a message
//! journaled just before its session stopped still reaches Laravel.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::buffer::Fifo;
use super::{deliver_then_release, BatchConfig, Drain, DrainWaiters, Journaled};
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::journal::{journal_key, plan, HeldInbound, Journal};
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

/// Send results whose outcomes the message log has written, with the
/// journal records written beside them: each item's JSON is built once,
/// there ([`crate::journal::Journal::held`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordHeld {
    pub reports: Vec<HeldInbound>,
}

/// An item waiting for its batch: its JSON as sent, and its journal key
/// when it is journaled (messages).
#[derive(Debug)]
struct Waiting {
    key: Option<String>,
    json: serde_json::Value,
}

/// Pause before reading the journal again when Redis is down at start.
const REPLAY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often this process's journal records are checked for orphans. An
/// orphan is resent at the second sweep that finds it, so it reaches
/// Laravel within two intervals; each sweep is one `HGETALL` of a hash that
/// holds only what waits in the buffers.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

pub struct InboundBatcher {
    config: BatchConfig,
    /// Everything not yet sent, in arrival order.
    pending: Fifo<SessionId, Waiting>,
    in_flight: bool,
    client: MeteredAddr<LaravelClient>,
    /// Where incoming messages wait until Laravel (or the outbox) has them.
    journal: Journal,
    /// Journal keys waiting in `pending` or in the batch in flight: what
    /// the sweep must not resend.
    queued: HashSet<String>,
    /// Own journal records the last sweep found unqueued; still unqueued at
    /// the next one, they are orphans.
    suspects: HashSet<String>,
    drain: DrainWaiters,
    stats: Arc<GatewayStats>,
}

impl InboundBatcher {
    pub fn new(
        config: BatchConfig,
        client: MeteredAddr<LaravelClient>,
        journal: Journal,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            config,
            pending: Fifo::default(),
            in_flight: false,
            client,
            journal,
            queued: HashSet::new(),
            suspects: HashSet::new(),
            drain: DrainWaiters::default(),
            stats,
        }
    }

    /// Resends this process's journal records that nothing carries any more
    /// (see [`plan::inbound_orphans`]); skipped while Redis is away.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let journal = self.journal.clone();
        ctx.spawn(
            async move { journal.backend().held_inbound().await }
                .into_actor(self)
                .map(|held, act, ctx| {
                    let Ok(held) = held else { return };
                    let (orphans, suspects) =
                        plan::inbound_orphans(held, act.journal.boot(), &act.queued, &act.suspects);
                    act.suspects = suspects;
                    if !orphans.is_empty() {
                        tracing::info!(
                            messages = orphans.len(),
                            "resending journaled incoming messages nothing carried"
                        );
                    }
                    for h in orphans {
                        act.push_held(h);
                    }
                    act.flush(ctx);
                }),
        );
    }

    /// Queues what earlier processes journaled and Laravel never got;
    /// retried while the journal is unreachable.
    fn replay_journal(&mut self, ctx: &mut Context<Self>) {
        let journal = self.journal.clone();
        ctx.spawn(
            async move { journal.backend().held_inbound().await }
                .into_actor(self)
                .map(|held, act, ctx| match held {
                    Ok(held) => {
                        let replay = plan::inbound_replay(held, act.journal.boot());
                        if !replay.is_empty() {
                            tracing::info!(
                                messages = replay.len(),
                                "replaying incoming messages journaled before a crash"
                            );
                        }
                        for h in replay {
                            act.push_held(h);
                        }
                        act.flush(ctx);
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "cannot read the incoming-message journal; retrying");
                        ctx.run_later(REPLAY_RETRY, |act, ctx| act.replay_journal(ctx));
                    }
                }),
        );
    }

    fn push_held(&mut self, h: HeldInbound) {
        let session = h
            .key
            .split_once('/')
            .and_then(|(s, _)| SessionId::parse(s).ok());
        let Some(session) = session else {
            tracing::warn!(key = %h.key, "journaled message with a malformed key; dropped");
            return;
        };
        self.queued.insert(h.key.clone());
        let waiting = Waiting {
            key: Some(h.key),
            json: h.item,
        };
        self.pending.push(session, waiting, Instant::now());
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
        let (keys, items): (Vec<Option<String>>, Vec<serde_json::Value>) = self
            .pending
            .take(self.config.size, |_| false)
            .into_iter()
            .map(|(_, w)| (w.key, w.json))
            .unzip();
        let keys: Vec<String> = keys.into_iter().flatten().collect();
        self.in_flight = true;
        let batch = OutboundBatch::new(Endpoint::MessagesBatch, "messages", &items, unix_ms());
        let (client, stats) = (self.client.clone(), Arc::clone(&self.stats));
        let journal = self.journal.clone();
        ctx.spawn(
            async move {
                let records = Journaled::Messages(keys.clone());
                deliver_then_release(client, batch, &stats.inbound, journal, records).await;
                keys
            }
            .into_actor(self)
            .map(|keys, act, ctx| {
                for k in &keys {
                    act.queued.remove(k);
                }
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
        self.replay_journal(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, ctx| act.sweep(ctx));
        ctx.run_interval(
            super::linger_tick(self.config.inbound_interval),
            |act, ctx| act.flush(ctx),
        );
    }
}

crate::metered_actor!(InboundBatcher: RecordInbound, RecordHeld, Drain);

impl Handler<RecordInbound> for InboundBatcher {
    type Result = ();

    fn handle(&mut self, msg: RecordInbound, ctx: &mut Self::Context) {
        let key = journal_key(&msg.item);
        if let Some(k) = &key {
            self.queued.insert(k.clone());
        }
        let waiting = Waiting {
            key,
            json: serde_json::to_value(&msg.item).expect("payload items serialize to JSON"),
        };
        self.pending
            .push(msg.item.session_id().clone(), waiting, Instant::now());
        self.flush(ctx);
    }
}

impl Handler<RecordHeld> for InboundBatcher {
    type Result = ();

    fn handle(&mut self, msg: RecordHeld, ctx: &mut Self::Context) {
        for h in msg.reports {
            self.push_held(h);
        }
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
