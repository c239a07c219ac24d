//! `LaravelClient`: the one actor that talks to Laravel. Batchers send it
//! [`DeliverBatch`]; it signs and POSTs with awc (keep-alive, timeouts),
//! retries with exponential backoff and jitter, and guards Laravel with the
//! circuit breaker. What cannot be delivered now goes to the [`Outbox`] and
//! is replayed in order, one request at a time, once Laravel answers again;
//! while the outbox holds anything, new batches queue behind it, so order
//! holds across an outage. Stale QR batches may be dropped on replay.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, LocalBoxActorFuture, WrapFuture};
use actix::prelude::*;
use awc::http::StatusCode;

use super::breaker::{Admission, BreakerConfig, BreakerView, CircuitBreaker};
use super::outbox::Outbox;
use super::payload::{signature, OutboundBatch};
use crate::clock::unix_ms;
use crate::metrics::Metrics;
use crate::stats::GatewayStats;

/// Settings for talking to Laravel.
#[derive(Debug, Clone)]
pub struct LaravelConfig {
    /// `LARAVEL_API`; `None` runs the gateway without forwarding.
    pub base_url: Option<String>,
    /// `LARAVEL_TOKEN`, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// HMAC key for `X-Wagate-Signature` (`LARAVEL_SIGNING_SECRET`, else the token).
    pub signing_secret: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Attempts after the first before a batch goes to the outbox.
    pub max_retries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub breaker: BreakerConfig,
    /// QR batches older than this are dropped on replay instead of sent.
    pub qr_stale_after: Duration,
    /// Connection pool limit of the HTTP client.
    pub max_connections: usize,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Laravel answered 2xx.
    Sent,
    /// Kept in the outbox; it will be replayed in order.
    Held,
    /// Laravel refused it for good (a 4xx other than auth/not-found/rate limit).
    Rejected,
    /// `LARAVEL_API` is not set.
    NotForwarded,
    /// The client actor is gone (the gateway stopped under the batcher).
    Lost,
}

/// Deliver one batch, now or via the outbox.
#[derive(Debug, Message)]
#[rtype(result = "Delivery")]
pub struct DeliverBatch {
    pub batch: OutboundBatch,
}

/// The outcome of one HTTP attempt.
#[derive(Debug)]
enum Attempt {
    Ok,
    /// Worth retrying / holding: transport error, timeout, 5xx, 408, 429,
    /// 401/403/404 (a misconfiguration the operator can fix).
    Failed(String),
    /// Laravel understood and refused: retrying would not help.
    Refused(StatusCode),
}

pub struct LaravelClient {
    config: LaravelConfig,
    /// Built in `started` on this actor's arbiter (awc clients are thread-bound).
    http: Option<awc::Client>,
    breaker: CircuitBreaker,
    /// Published copy of the breaker for `/health`.
    view: BreakerView,
    outbox: Arc<dyn Outbox>,
    /// Batches in the outbox and the spill. While non-zero, new batches
    /// queue behind them.
    held: usize,
    /// Batches the outbox store refused (Redis down), oldest first; they
    /// belong after everything in the outbox and move there once it is back.
    spill: std::collections::VecDeque<OutboundBatch>,
    /// A spilled batch is being written to the outbox.
    spilling: bool,
    /// A replay request (or its outbox read) is under way.
    draining: bool,
    /// Wakes the replay when the breaker allows the next probe.
    drain_timer: Option<SpawnHandle>,
    metrics: Arc<Metrics>,
    stats: Arc<GatewayStats>,
}

impl LaravelClient {
    pub fn new(
        config: LaravelConfig,
        outbox: Arc<dyn Outbox>,
        view: BreakerView,
        metrics: Arc<Metrics>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            breaker: CircuitBreaker::new(config.breaker),
            config,
            http: None,
            view,
            outbox,
            held: 0,
            spill: Default::default(),
            spilling: false,
            draining: false,
            drain_timer: None,
            metrics,
            stats,
        }
    }

    fn publish(&self) {
        self.view.publish(&self.breaker);
        self.metrics.breaker_state.set(match self.breaker.state() {
            super::breaker::BreakerState::Closed => 0,
            super::breaker::BreakerState::Open => 1,
            super::breaker::BreakerState::HalfOpen => 2,
        });
    }

    fn set_held(&mut self, held: usize) {
        self.held = held;
        self.metrics.outbox_depth.set(held as i64);
        self.stats.outbox_held.store(held as u64, Ordering::Relaxed);
    }

    /// One signed POST. The returned future owns everything it needs.
    fn post(&self, batch: &OutboundBatch) -> impl std::future::Future<Output = Attempt> + 'static {
        let http = self
            .http
            .clone()
            .expect("the HTTP client is built in started()");
        let base = self.config.base_url.clone().unwrap_or_default();
        let ts = unix_ms();
        let mut req = http
            .post(format!("{base}{}", batch.endpoint.path()))
            .timeout(self.config.timeout)
            .insert_header(("Content-Type", "application/json"))
            // Laravel answers auth and validation errors as JSON (not a redirect
            // to a login page) when the client says it wants JSON.
            .insert_header(("Accept", "application/json"))
            .insert_header(("Idempotency-Key", batch.id.as_str()))
            .insert_header(("X-Wagate-Timestamp", ts.to_string()));
        if let Some(token) = &self.config.token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        if let Some(secret) = self
            .config
            .signing_secret
            .as_ref()
            .or(self.config.token.as_ref())
        {
            let sig = signature(secret.as_bytes(), ts, &batch.body);
            req = req.insert_header(("X-Wagate-Signature", format!("sha256={sig}")));
        }
        let body = batch.body.clone();
        let label = batch.endpoint.label();
        let metrics = Arc::clone(&self.metrics);
        async move {
            let started = Instant::now();
            let result = match req.send_body(body).await {
                Ok(mut resp) => {
                    // Read the body so the connection goes back to the pool.
                    let _ = resp.body().limit(64 * 1024).await;
                    let status = resp.status();
                    if status.is_success() {
                        Attempt::Ok
                    } else if status.is_server_error()
                        // Redirects are not followed: a 3xx means a wrong URL or
                        // a login page, never "delivered"; hold, do not drop.
                        || status.is_redirection()
                        || matches!(status.as_u16(), 401 | 403 | 404 | 408 | 425 | 429)
                    {
                        Attempt::Failed(format!("Laravel answered {status}"))
                    } else {
                        Attempt::Refused(status)
                    }
                }
                Err(e) => Attempt::Failed(e.to_string()),
            };
            let outcome = match &result {
                Attempt::Ok => "ok",
                Attempt::Failed(_) => "failed",
                Attempt::Refused(_) => "refused",
            };
            metrics
                .laravel_request_seconds
                .with_label_values(&[label])
                .observe(started.elapsed().as_secs_f64());
            metrics
                .laravel_requests
                .with_label_values(&[label, outcome])
                .inc();
            result
        }
    }

    /// Retry `attempt` (from 0) waits this long.
    fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::equal_jitter(self.config.retry_base, self.config.retry_max, attempt)
    }

    /// Sends now if the breaker and the outbox allow, else holds.
    fn dispatch(
        &mut self,
        batch: OutboundBatch,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Delivery> {
        if self.held > 0 {
            return self.hold(batch, ctx);
        }
        match self.breaker.admit(Instant::now()) {
            Admission::Allowed | Admission::Probe => self.attempt(batch, attempt),
            Admission::Rejected { .. } => self.hold(batch, ctx),
        }
    }

    fn attempt(&mut self, batch: OutboundBatch, attempt: u32) -> ResponseActFuture<Self, Delivery> {
        let request = self.post(&batch);
        Box::pin(request.into_actor(self).then(move |outcome, act, ctx| match outcome {
            Attempt::Ok => {
                act.breaker.record_success();
                act.publish();
                ready(Delivery::Sent).boxed_local()
            }
            Attempt::Refused(status) => {
                // Laravel is up; it just will not take this batch.
                act.breaker.record_success();
                act.publish();
                tracing::error!(batch_id = %batch.id, endpoint = batch.endpoint.path(), %status, "Laravel refused a batch; it is dropped");
                ready(Delivery::Rejected).boxed_local()
            }
            Attempt::Failed(error) => {
                act.breaker.record_failure(Instant::now());
                act.publish();
                if attempt < act.config.max_retries {
                    let delay = act.backoff(attempt);
                    tracing::warn!(batch_id = %batch.id, %error, attempt, ?delay, "Laravel request failed; retrying");
                    actix::clock::sleep(delay)
                        .into_actor(act)
                        .then(move |_, act, ctx| act.dispatch(batch, attempt + 1, ctx))
                        .boxed_local()
                } else {
                    tracing::warn!(batch_id = %batch.id, %error, "Laravel request failed; holding the batch in the outbox");
                    act.hold(batch, ctx)
                }
            }
        }))
    }

    fn hold(
        &mut self,
        batch: OutboundBatch,
        _ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Delivery> {
        self.set_held(self.held + 1);
        self.metrics
            .laravel_requests
            .with_label_values(&[batch.endpoint.label(), "held"])
            .inc();
        if !self.spill.is_empty() {
            // Keep order: behind what is already waiting for the outbox.
            self.spill.push_back(batch);
            return Box::pin(ready(Delivery::Held));
        }
        let outbox = Arc::clone(&self.outbox);
        let kept = batch.clone();
        Box::pin(async move { outbox.push(batch).await }.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(held) => {
                    // The outbox may have shed batches for room (its bounds).
                    act.set_held(held + act.spill.len());
                    act.schedule_drain(ctx)
                }
                Err(e) => {
                    tracing::warn!(batch_id = %kept.id, error = %e, "the outbox store is unavailable; keeping the batch in memory until it is back");
                    act.spill.push_back(kept);
                }
            }
            Delivery::Held
        }))
    }

    /// Moves spilled batches into the outbox, in order, once its store
    /// answers again (timer).
    fn flush_spill(&mut self, ctx: &mut Context<Self>) {
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
                        act.spill.pop_front();
                        act.flush_spill(ctx);
                        act.schedule_drain(ctx);
                    }
                }),
        );
    }

    /// Replays the outbox head when the breaker allows; one request at a time.
    fn schedule_drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining || self.held == 0 || self.drain_timer.is_some() {
            return;
        }
        self.draining = true;
        let outbox = Arc::clone(&self.outbox);
        ctx.spawn(async move { outbox.front().await }.into_actor(self).then(|front, act, ctx| {
            let batch = match front {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    act.set_held(act.spill.len());
                    act.draining = false;
                    return ready(()).boxed_local();
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                    return act.pause_drain(Duration::from_secs(1), ctx);
                }
            };
            let age = Duration::from_millis(unix_ms().saturating_sub(batch.created_ms));
            if batch.endpoint.may_go_stale() && age > act.config.qr_stale_after {
                act.metrics.outbox_dropped.with_label_values(&[batch.endpoint.label()]).inc();
                return act.finish_head(batch.id, ctx);
            }
            let now = Instant::now();
            match act.breaker.admit(now) {
                Admission::Rejected { retry_at } => act.pause_drain(retry_at.saturating_duration_since(now), ctx),
                Admission::Allowed | Admission::Probe => {
                    let request = act.post(&batch);
                    request
                        .into_actor(act)
                        .then(move |outcome, act, ctx| match outcome {
                            Attempt::Ok | Attempt::Refused(_) => {
                                if let Attempt::Refused(status) = outcome {
                                    tracing::error!(batch_id = %batch.id, endpoint = batch.endpoint.path(), %status, "Laravel refused a replayed batch; it is dropped");
                                }
                                act.breaker.record_success();
                                act.publish();
                                act.finish_head(batch.id, ctx)
                            }
                            Attempt::Failed(error) => {
                                act.breaker.record_failure(Instant::now());
                                act.publish();
                                tracing::warn!(batch_id = %batch.id, %error, "outbox replay failed");
                                let delay = act.backoff(0);
                                act.pause_drain(delay, ctx)
                            }
                        })
                        .boxed_local()
                }
            }
        }));
    }

    /// Removes the delivered (or dropped) head and goes on with the next.
    fn finish_head(
        &mut self,
        id: String,
        _ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, ()> {
        let outbox = Arc::clone(&self.outbox);
        async move { outbox.remove_front(&id).await }
            .into_actor(self)
            .map(|res, act, ctx| {
                if let Err(e) = res {
                    tracing::error!(error = %e, "cannot remove a replayed batch from the outbox");
                }
                act.set_held(act.held.saturating_sub(1));
                act.draining = false;
                act.schedule_drain(ctx);
            })
            .boxed_local()
    }

    fn pause_drain(
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

impl Actor for LaravelClient {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connector = awc::Connector::new()
            .limit(self.config.max_connections)
            .timeout(self.config.timeout);
        self.http = Some(
            awc::Client::builder()
                .connector(connector)
                .timeout(self.config.timeout)
                .disable_redirects()
                .finish(),
        );
        self.publish();
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.flush_spill(ctx));
        // Batches held by a previous run (durable outbox) are replayed first.
        let outbox = Arc::clone(&self.outbox);
        ctx.wait(
            async move { outbox.len().await }
                .into_actor(self)
                .map(|len, act, ctx| {
                    match len {
                        Ok(n) => act.set_held(n),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the outbox length at start")
                        }
                    }
                    act.schedule_drain(ctx);
                }),
        );
    }
}

crate::metered_actor!(LaravelClient: DeliverBatch);

impl Handler<DeliverBatch> for LaravelClient {
    type Result = ResponseActFuture<Self, Delivery>;

    fn handle(&mut self, msg: DeliverBatch, ctx: &mut Self::Context) -> Self::Result {
        if self.config.base_url.is_none() {
            return Box::pin(ready(Delivery::NotForwarded));
        }
        self.metrics
            .batch_size(msg.batch.endpoint.label())
            .observe(msg.batch.items as f64);
        self.dispatch(msg.batch, 0, ctx)
    }
}
