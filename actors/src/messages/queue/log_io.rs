//! The message queue's traffic with its log
//! ([`MessageLog`](crate::messages::MessageLog)): reading new entries (its
//! own unfinished ones first after a restart), renewing the entries it
//! holds and taking over those a stopped sender left idle, writing
//! outcomes in order, many per round trip, and the `/health` figures. Methods of
//! [`MessageQueue`], called by its timers, handlers and sends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use super::{Finished, MessageQueue, WRITE_BATCH};
use crate::batch::inbound::RecordHeld;
use crate::error_chain::Chain;
use crate::events::EventKind;

impl MessageQueue {
    /// Reads more from the log when there is room and reason to.
    pub(super) fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.draining || !self.wanted || self.held.len() >= self.config.buffer {
            return;
        }
        self.reading = true;
        self.wanted = false;
        let room = (self.config.buffer - self.held.len()).min(1000);
        let (log, consumer) = (Arc::clone(&self.deps.log), self.config.consumer.clone());
        ctx.spawn(
            async move { log.read(&consumer, room).await }
                .into_actor(self)
                .map(move |read, act, ctx| {
                    act.reading = false;
                    match read {
                        Ok(batch) => {
                            // A full page means there may be more.
                            act.wanted |= batch.len() >= room;
                            act.accept(batch);
                            act.pump(ctx);
                        }
                        Err(e) => {
                            act.wanted = true;
                            tracing::warn!(error = %Chain(&e), "cannot read the message queue; retrying");
                        }
                    }
                }),
        );
    }

    /// Takes over entries a dead node left behind, and keeps ours alive.
    pub(super) fn maintain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let log = Arc::clone(&self.deps.log);
        let consumer = self.config.consumer.clone();
        let held: Vec<String> = self.held.iter().cloned().collect();
        let min_idle = self.config.processing_timeout.as_millis() as u64;
        let room = self.config.buffer.saturating_sub(self.held.len()).min(1000);
        tracing::debug!(
            held = self.held.len(),
            in_flight = self.in_flight,
            finishing = self.finishing.len(),
            writing = self.writing,
            reading = self.reading,
            loaded = self.deps.restore.loaded.load(Ordering::Relaxed),
            "message queue state"
        );
        ctx.spawn(
            async move {
                if let Err(e) = log.keep_alive(&consumer, &held).await {
                    tracing::warn!(error = %Chain(&e), "cannot renew held messages");
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
                Err(e) => tracing::warn!(error = %Chain(&e), "cannot claim idle messages"),
            }),
        );
    }

    /// Writes finished messages to the log, in order, up to
    /// [`WRITE_BATCH`] in one write and one write at a time; on failure
    /// retries at the next tick (the entries stay held meanwhile, so
    /// nothing is sent twice by this process). Once written, their
    /// `send_result`s go to Laravel.
    pub(super) fn write_finished(&mut self, ctx: &mut Context<Self>) {
        if self.writing > 0 || self.finishing.is_empty() {
            return;
        }
        let take = self.finishing.len().min(WRITE_BATCH);
        let batch: Vec<Finished> = self.finishing.drain(..take).collect();
        self.writing = batch.len();
        let log = Arc::clone(&self.deps.log);
        ctx.spawn(
            async move {
                let result = log.finish(&batch).await;
                (batch, result)
            }
            .into_actor(self)
            .map(|(batch, result), act, ctx| {
                act.writing = 0;
                match result {
                    Ok(()) => {
                        let reports = batch
                            .into_iter()
                            .map(|done| {
                                act.held.remove(&done.entry);
                                act.deps.events.publish(
                                    EventKind::SendResult,
                                    &done.record.session,
                                    &done.report.item,
                                );
                                done.report
                            })
                            .collect();
                        act.deps.inbound.do_send(RecordHeld { reports });
                        act.wanted = true;
                        act.write_finished(ctx);
                        act.pump(ctx); // slots are free now
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), messages = batch.len(), "cannot record finished messages; retrying");
                        for done in batch.into_iter().rev() {
                            act.finishing.push_front(done);
                        }
                    }
                }
                act.check_drained();
            }),
        );
    }

    /// Refreshes `/health`'s queue figures from the log (timer).
    pub(super) fn refresh_counts(&mut self, ctx: &mut Context<Self>) {
        let log = Arc::clone(&self.deps.log);
        ctx.spawn(
            async move { log.counts().await }
                .into_actor(self)
                .map(|counts, act, _| match counts {
                    Ok(c) => {
                        act.deps.gauge.store(c);
                        let q = &act.deps.metrics.message_queue;
                        q.with_label_values(&["waiting"]).set(c.waiting as i64);
                        q.with_label_values(&["active"]).set(c.active as i64);
                    }
                    Err(_) => act.deps.gauge.mark_stale(),
                }),
        );
    }
}
