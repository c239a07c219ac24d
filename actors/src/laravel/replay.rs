//! `LaravelClient`'s outbox side: replaying held batches in order, one
//! request at a time, each request merging the head's batches into up to
//! `BATCH_SIZE` items (`merge::plan`), once the breaker and Laravel's
//! `Retry-After` allow; and moving batches the outbox store refused (the
//! in-memory spill) into it once it answers again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, LocalBoxActorFuture, WrapFuture};
use actix::prelude::*;

use super::attempt::Attempt;
use super::breaker::Admission;
use super::client::LaravelClient;
use super::merge;
use crate::clock::unix_ms;
use crate::error_chain::Chain;

impl LaravelClient {
    /// Moves spilled batches into the outbox, in order, once its store
    /// answers again (timer).
    pub(super) fn flush_spill(&mut self, ctx: &mut Context<Self>) {
        if self.spilling {
            return;
        }
        let Some(batch) = self.spill.front().cloned() else {
            return;
        };
        self.spilling = true;
        let outbox = Arc::clone(&self.outbox);
        ctx.spawn(
            async move { outbox.push(batch).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.spilling = false;
                    if res.is_ok() {
                        let stored = act.spill.pop_front();
                        if let Some(waiter) = stored.and_then(|b| act.spill_waiters.remove(&b.id)) {
                            let _ = waiter.send(());
                        }
                        act.flush_spill(ctx);
                        act.schedule_drain(ctx);
                    }
                }),
        );
    }

    /// Replays the outbox head when the breaker and the throttle allow; one
    /// request at a time.
    pub(super) fn schedule_drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining || self.held == 0 || self.drain_timer.is_some() {
            return;
        }
        self.draining = true;
        let outbox = Arc::clone(&self.outbox);
        // Every batch has at least one item, so this many cover a full request.
        let peek = self.config.replay_max_items.max(1);
        ctx.spawn(async move { outbox.peek(peek).await }.into_actor(self).then(|heads, act, ctx| {
            let heads = match heads {
                Ok(heads) if heads.is_empty() => {
                    act.set_held(act.spill.len(), act.spill.front().map(|b| b.created_ms));
                    act.draining = false;
                    return ready(()).boxed_local();
                }
                Ok(heads) => heads,
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "cannot read the outbox; retrying in 1 s");
                    return act.pause_drain(Duration::from_secs(1), ctx);
                }
            };
            act.set_held(act.held, Some(heads[0].created_ms));
            let now = Instant::now();
            if let Some(until) = act.throttle.paused_until(now) {
                return act.pause_drain(until - now, ctx);
            }
            let stale_after = act.config.qr_stale_after;
            let plan = merge::plan(&heads, act.config.replay_max_items, |b| {
                b.endpoint.may_go_stale()
                    && Duration::from_millis(unix_ms().saturating_sub(b.created_ms)) > stale_after
            });
            act.note_dropped(&plan.dropped);
            let Some(request) = plan.send else {
                return act.finish(plan.consumed, ctx);
            };
            match act.breaker.admit(now) {
                Admission::Rejected { retry_at } => {
                    act.pause_drain(retry_at.saturating_duration_since(now), ctx)
                }
                Admission::Allowed | Admission::Probe => {
                    let consumed = plan.consumed;
                    act.post(&request)
                        .into_actor(act)
                        .then(move |outcome, act, ctx| {
                            let resume_at = act.record(&outcome);
                            match outcome {
                                Attempt::Ok => act.finish(consumed, ctx),
                                Attempt::Refused(failure) => {
                                    tracing::error!(batch_id = %request.id, endpoint = request.endpoint.path(), error = %failure.message, "Laravel refused a replayed batch; it is dropped");
                                    act.finish(consumed, ctx)
                                }
                                Attempt::Throttled { .. } => {
                                    let wait = resume_at
                                        .map(|t| t.saturating_duration_since(Instant::now()))
                                        .unwrap_or_default();
                                    act.pause_drain(wait, ctx)
                                }
                                Attempt::Failed(failure) => {
                                    tracing::debug!(batch_id = %request.id, error = %failure.message, "outbox replay failed");
                                    let delay = act.backoff(0);
                                    act.pause_drain(delay, ctx)
                                }
                            }
                        })
                        .boxed_local()
                }
            }
        }));
    }

    /// Counts stale QR batches dropped unsent; one warning per interval.
    fn note_dropped(&mut self, dropped: &[super::payload::OutboundBatch]) {
        for batch in dropped {
            self.metrics
                .outbox_dropped
                .with_label_values(&[batch.endpoint.label()])
                .inc();
            if let Some(suppressed) = self.dropped_notice.event(Instant::now()) {
                tracing::warn!(
                    batch_id = %batch.id,
                    age_ms = unix_ms().saturating_sub(batch.created_ms),
                    similar_lines_suppressed = suppressed,
                    "dropping a stale QR batch from the outbox (the codes have expired)"
                );
            }
        }
    }

    /// Removes the delivered (or dropped) prefix, in order, and goes on.
    /// If the outbox store fails part-way, only what was removed leaves
    /// the count, and the drain retries in a second: the rest is replayed
    /// again (same `Idempotency-Key`, which Laravel dedupes) instead of the
    /// count reaching 0 with batches still held, which would stop the
    /// replay until the next restart.
    fn finish(
        &mut self,
        ids: Vec<String>,
        _ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, ()> {
        let outbox = Arc::clone(&self.outbox);
        async move {
            let mut removed = 0;
            for id in &ids {
                if let Err(e) = outbox.remove_front(id).await {
                    return (removed, Some(e));
                }
                removed += 1;
            }
            (removed, None)
        }
        .into_actor(self)
        .then(move |(removed, error), act, ctx| {
            act.set_held(act.held.saturating_sub(removed), None);
            match error {
                Some(e) => {
                    tracing::error!(error = %Chain(&e), "cannot remove replayed batches from the outbox; retrying in 1 s");
                    act.pause_drain(Duration::from_secs(1), ctx)
                }
                None => {
                    act.draining = false;
                    act.schedule_drain(ctx);
                    ready(()).boxed_local()
                }
            }
        })
        .boxed_local()
    }

    /// The held count is this actor's cache of the outbox's length; when it
    /// says nothing is held and no drain runs, the store is asked (one
    /// `LLEN` per tick), so a count that drifted below the truth (a write
    /// that failed after it took effect) cannot leave batches unreplayed.
    pub(super) fn recount(&mut self, ctx: &mut Context<Self>) {
        if self.held > 0 || self.draining || self.drain_timer.is_some() || self.recounting {
            return;
        }
        self.recounting = true;
        let outbox = Arc::clone(&self.outbox);
        ctx.spawn(
            async move { outbox.len().await }
                .into_actor(self)
                .map(|len, act, ctx| {
                    act.recounting = false;
                    if let Ok(n) = len {
                        if n > 0 && act.held == 0 {
                            tracing::warn!(
                                held = n,
                                "the outbox holds batches the count missed; replaying them"
                            );
                            act.set_held(n + act.spill.len(), None);
                            act.schedule_drain(ctx);
                        }
                    }
                }),
        );
    }

    pub(super) fn pause_drain(
        &mut self,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, ()> {
        self.draining = false;
        self.drain_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.drain_timer = None;
            act.schedule_drain(ctx);
        }));
        ready(()).boxed_local()
    }
}
