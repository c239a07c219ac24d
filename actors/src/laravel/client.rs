//! `LaravelClient`: the one actor that talks to Laravel. Batchers send it
//! [`DeliverBatch`]; it signs and POSTs with awc (HTTP/1.1 keep-alive over
//! plain TCP or rustls, timeouts), retries with exponential backoff and
//! jitter, guards Laravel with the circuit breaker and honours its
//! `Retry-After` (`throttle`). What cannot be delivered now goes to the
//! [`Outbox`] and is replayed in order, merged into full batches, once
//! Laravel answers again (`replay`); while the outbox holds anything, new
//! batches queue behind it, so order holds across an outage. It keeps
//! `/health`'s delivery view (`delivery`) and logs state changes for
//! operators, rate-limited (`notice`).
//! Every decision is a pure part (`breaker`, `throttle`, `attempt`,
//! `merge`, `replay`, `delivery`) and one signed POST is `request`'s; what
//! is left here is the actor's mailbox and the I/O that carries them out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::prelude::*;
use secrecy::SecretString;
use tokio::sync::oneshot;

use super::attempt::{Attempt, Failure};
use super::breaker::{Admission, BreakerConfig, BreakerState, BreakerView, CircuitBreaker};
use super::delivery::{DeliveryHealth, DeliveryView};
use super::notice::Notice;
use super::outbox::Outbox;
use super::payload::OutboundBatch;
use super::signature::SignatureVersion;
use super::throttle::{Throttle, ThrottleConfig};
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::metrics::Metrics;
use crate::webhooks::sender::FallbackBatch;

/// At most one "batch held" / "retrying" / "stale QR dropped" line per
/// this interval, each with the count of the lines it stands for.
const NOTICE_EVERY: Duration = Duration::from_secs(30);

/// Settings for talking to Laravel.
#[derive(Debug, Clone)]
pub struct LaravelConfig {
    /// `LARAVEL_API`; `None` runs the gateway without forwarding.
    pub base_url: Option<String>,
    /// `LARAVEL_TOKEN`, sent as `Authorization: Bearer`. A secret: prints
    /// as `[REDACTED]`.
    pub token: Option<SecretString>,
    /// HMAC key for `X-Wagate-Signature` (`LARAVEL_SIGNING_SECRET`, else the
    /// token). A secret too.
    pub signing_secret: Option<SecretString>,
    /// What the signature covers (`LARAVEL_SIGNATURE_VERSION`).
    pub signature_version: SignatureVersion,
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
    /// Items per merged replay request (`BATCH_SIZE`).
    pub replay_max_items: usize,
    /// `/health` says DEGRADED when nothing was delivered for this long
    /// while held batches waited as long (`LARAVEL_DEGRADED_AFTER`).
    pub degraded_after: Duration,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Laravel answered 2xx.
    Sent,
    /// Kept in the outbox; it will be replayed in order.
    Held,
    /// Kept in this process's memory because the outbox store refused it
    /// (Redis away); it moves to the outbox once Redis answers, but a
    /// `kill -9` before that loses it, so its journal records must stay.
    Spilled,
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
    /// Told when the batch, having ended [`Delivery::Spilled`], reaches
    /// the outbox (what it carries is durable then); dropped for any other
    /// outcome, and by a process killed first.
    pub stored: Option<oneshot::Sender<()>>,
}

/// The breaker's open period, for the "closed again" line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outage {
    since: Instant,
    /// Batches that waited in the outbox during it: those already held
    /// when it opened plus those held since.
    held: u64,
}

pub struct LaravelClient {
    pub(super) config: LaravelConfig,
    /// Shared TLS settings (roots, private CA), built once by the gateway.
    tls: Arc<rustls::ClientConfig>,
    /// Built in `started` on this actor's arbiter (awc clients are thread-bound).
    http: Option<awc::Client>,
    pub(super) breaker: CircuitBreaker,
    /// Published copy of the breaker for `/health`.
    view: BreakerView,
    /// Laravel's `Retry-After`: while paused, batches are held.
    pub(super) throttle: Throttle,
    /// What `/health` says about delivery (last success, last error, held).
    pub(super) delivery: DeliveryHealth,
    delivery_view: DeliveryView,
    pub(super) outbox: Arc<dyn Outbox>,
    /// Batches in the outbox and the spill. While non-zero, new batches
    /// queue behind them.
    pub(super) held: usize,
    /// Batches the outbox store refused (Redis down), oldest first; they
    /// belong after everything in the outbox and move there once it is back.
    pub(super) spill: std::collections::VecDeque<OutboundBatch>,
    /// A spilled batch is being written to the outbox.
    pub(super) spilling: bool,
    /// Who waits for a spilled batch to reach the outbox, by batch id.
    pub(super) spill_waiters: HashMap<String, oneshot::Sender<()>>,
    /// A replay request (or its outbox read) is under way.
    pub(super) draining: bool,
    /// An outbox length read for [`Self::recount`] is under way.
    pub(super) recounting: bool,
    /// Wakes the replay when the breaker or the throttle allows the next try.
    pub(super) drain_timer: Option<SpawnHandle>,
    /// Set while the breaker is open, for the line logged when it closes.
    outage: Option<Outage>,
    /// Rate limit of the "batch held" warning.
    held_notice: Notice,
    /// Rate limit of the "request failed; retrying" warning.
    retry_notice: Notice,
    /// Rate limit of the "stale QR batch dropped" warning.
    pub(super) dropped_notice: Notice,
    pub(super) metrics: Arc<Metrics>,
    /// `LARAVEL_FALLBACK_URL`'s sender: gets a copy of each batch held
    /// while the breaker is open.
    fallback: Option<crate::mailbox::MeteredRecipient<FallbackBatch>>,
}

impl LaravelClient {
    pub fn new(
        config: LaravelConfig,
        tls: Arc<rustls::ClientConfig>,
        outbox: Arc<dyn Outbox>,
        views: (BreakerView, DeliveryView),
        metrics: Arc<Metrics>,
    ) -> Self {
        let (view, delivery_view) = views;
        Self {
            breaker: CircuitBreaker::new(config.breaker),
            throttle: Throttle::new(ThrottleConfig {
                max_wait: config.breaker.reset_after,
                persist_after: config.breaker.reset_after,
            }),
            delivery: DeliveryHealth::new(config.degraded_after, unix_ms()),
            config,
            tls,
            http: None,
            view,
            delivery_view,
            outbox,
            held: 0,
            spill: Default::default(),
            spilling: false,
            spill_waiters: HashMap::new(),
            draining: false,
            recounting: false,
            drain_timer: None,
            outage: None,
            held_notice: Notice::new(NOTICE_EVERY),
            retry_notice: Notice::new(NOTICE_EVERY),
            dropped_notice: Notice::new(NOTICE_EVERY),
            metrics,
            fallback: None,
        }
    }

    /// Sends copies of the batches held while the breaker is open to
    /// `fallback` (the webhook sender's `LARAVEL_FALLBACK_URL` target).
    pub fn with_fallback(
        mut self,
        fallback: Option<crate::mailbox::MeteredRecipient<FallbackBatch>>,
    ) -> Self {
        self.fallback = fallback;
        self
    }

    /// Copies breaker and delivery state to their views and gauges.
    pub(super) fn publish(&self) {
        self.view.publish(&self.breaker);
        self.metrics.breaker_state.set(match self.breaker.state() {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        });
        self.delivery_view.publish(&self.delivery);
        let age = self.delivery.oldest_held_age(unix_ms()).unwrap_or_default();
        self.metrics
            .outbox_oldest_age_seconds
            .set(age.as_secs_f64());
    }

    /// `oldest_ms`: the oldest held batch's `created_ms`, when just learnt.
    pub(super) fn set_held(&mut self, held: usize, oldest_ms: Option<u64>) {
        self.held = held;
        self.metrics.outbox_depth.set(held as i64);
        self.delivery.set_held(held, oldest_ms);
        self.publish();
    }

    /// One signed POST. The returned future owns everything it needs.
    pub(super) fn post(
        &self,
        batch: &OutboundBatch,
    ) -> impl std::future::Future<Output = Attempt> + 'static {
        let http = self
            .http
            .as_ref()
            .expect("the HTTP client is built in started()");
        super::request::signed_post(http, &self.config, batch, &self.metrics)
    }

    /// Retry `attempt` (from 0) waits this long.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::equal_jitter(self.config.retry_base, self.config.retry_max, attempt)
    }

    /// Feeds an outcome to the breaker, the throttle and the delivery view,
    /// and logs breaker transitions. For a throttled answer, returns when
    /// the next request may go.
    pub(super) fn record(&mut self, outcome: &Attempt) -> Option<Instant> {
        let now = Instant::now();
        let before = self.breaker.state();
        let mut resume_at = None;
        match outcome {
            Attempt::Ok => {
                self.breaker.record_success();
                self.throttle.on_answer();
                self.delivery.record_success(unix_ms());
                self.metrics
                    .laravel_last_success
                    .set(unix_ms() as f64 / 1000.0);
            }
            Attempt::Refused(failure) => {
                // Laravel is up; it just will not take this batch.
                self.breaker.record_success();
                self.throttle.on_answer();
                self.note_failure(failure);
            }
            Attempt::Failed(failure) => {
                self.breaker.record_failure(now);
                self.throttle.on_answer();
                self.note_failure(failure);
            }
            Attempt::Throttled {
                retry_after,
                failure,
            } => {
                let t = self
                    .throttle
                    .on_throttled(now, *retry_after, self.backoff(0));
                if t.breaker_failure {
                    self.breaker.record_failure(now);
                }
                self.note_failure(failure);
                resume_at = Some(t.resume_at);
            }
        }
        self.log_breaker_change(before, now, outcome);
        self.publish();
        resume_at
    }

    fn note_failure(&mut self, failure: &Failure) {
        self.delivery.record_failure(failure, unix_ms());
        self.metrics
            .laravel_failures
            .with_label_values(&[&failure.kind.label()])
            .inc();
    }

    /// One WARN when the breaker opens, one INFO when it closes.
    fn log_breaker_change(&mut self, before: BreakerState, now: Instant, outcome: &Attempt) {
        let after = self.breaker.state();
        if after == BreakerState::Open && self.outage.is_none() {
            // Batches already waiting count as held in this outage too.
            self.outage = Some(Outage {
                since: now,
                held: self.held as u64,
            });
            let cause = match outcome {
                Attempt::Failed(f) | Attempt::Throttled { failure: f, .. } => f.message.as_str(),
                _ => "",
            };
            tracing::warn!(
                failures = self.breaker.failure_count(),
                reset_after_ms = self.config.breaker.reset_after.as_millis() as u64,
                cause,
                "circuit breaker OPEN: Laravel is failing; batches are held in the outbox until a probe succeeds"
            );
        } else if after == BreakerState::Closed && before != BreakerState::Closed {
            if let Some(outage) = self.outage.take() {
                tracing::info!(
                    held_batches = outage.held,
                    outage_secs = now.saturating_duration_since(outage.since).as_secs(),
                    still_held = self.held,
                    "circuit breaker CLOSED: Laravel answers again; replaying the outbox"
                );
            }
        }
    }

    /// Sends now if the breaker, the throttle and the outbox allow, else holds.
    fn dispatch(
        &mut self,
        batch: OutboundBatch,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Delivery> {
        let now = Instant::now();
        if self.held > 0 {
            return self.hold(batch, "earlier batches wait in the outbox", ctx);
        }
        if self.throttle.paused_until(now).is_some() {
            return self.hold(batch, "Laravel asked to wait (Retry-After)", ctx);
        }
        match self.breaker.admit(now) {
            Admission::Allowed | Admission::Probe => self.attempt(batch, attempt),
            Admission::Rejected { .. } => self.hold(batch, "the circuit breaker is open", ctx),
        }
    }

    fn attempt(&mut self, batch: OutboundBatch, attempt: u32) -> ResponseActFuture<Self, Delivery> {
        let request = self.post(&batch);
        Box::pin(request.into_actor(self).then(move |outcome, act, ctx| {
            act.record(&outcome);
            match outcome {
                Attempt::Ok => ready(Delivery::Sent).boxed_local(),
                Attempt::Refused(failure) => {
                    tracing::error!(batch_id = %batch.id, endpoint = batch.endpoint.path(), error = %failure.message, "Laravel refused a batch; it is dropped");
                    ready(Delivery::Rejected).boxed_local()
                }
                // Not a retry: the batch waits in the outbox, and the replay
                // resumes when Laravel said, merged with what piles up meanwhile.
                Attempt::Throttled { failure, .. } => act.hold(batch, &failure.message, ctx),
                Attempt::Failed(failure) => {
                    if attempt < act.config.max_retries {
                        let delay = act.backoff(attempt);
                        if let Some(suppressed) = act.retry_notice.event(Instant::now()) {
                            tracing::warn!(batch_id = %batch.id, kind = %failure.kind.label(), error = %failure.message, attempt, ?delay, similar_lines_suppressed = suppressed, "Laravel request failed; retrying");
                        }
                        actix::clock::sleep(delay)
                            .into_actor(act)
                            .then(move |_, act, ctx| act.dispatch(batch, attempt + 1, ctx))
                            .boxed_local()
                    } else {
                        act.hold(batch, &failure.message, ctx)
                    }
                }
            }
        }))
    }

    /// Puts `batch` at the tail of the outbox (or the spill). `why` goes
    /// into the rate-limited warning.
    fn hold(
        &mut self,
        batch: OutboundBatch,
        why: &str,
        _ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Delivery> {
        let oldest = (self.held == 0).then_some(batch.created_ms);
        self.set_held(self.held + 1, oldest);
        if let Some(outage) = &mut self.outage {
            outage.held += 1;
        }
        if let Some(suppressed) = self.held_notice.event(Instant::now()) {
            tracing::warn!(
                batch_id = %batch.id,
                endpoint = batch.endpoint.path(),
                held = self.held,
                similar_lines_suppressed = suppressed,
                reason = why,
                "holding a batch for Laravel in the outbox"
            );
        }
        self.metrics
            .laravel_requests
            .with_label_values(&[batch.endpoint.label(), "held"])
            .inc();
        if self.breaker.state() != BreakerState::Closed {
            if let Some(fallback) = &self.fallback {
                // A copy: the outbox still replays it to Laravel.
                fallback.do_send(FallbackBatch(batch.clone()));
            }
        }
        if !self.spill.is_empty() {
            // Keep order: behind what is already waiting for the outbox.
            self.spill.push_back(batch);
            return Box::pin(ready(Delivery::Spilled));
        }
        let outbox = Arc::clone(&self.outbox);
        let kept = batch.clone();
        Box::pin(async move { outbox.push(batch).await }.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(held) => {
                    // The outbox may have shed batches for room (its bounds);
                    // the oldest held age stays what it was (a shed QR batch
                    // may have been the oldest: the age errs on the old side).
                    act.set_held(held + act.spill.len(), None);
                    act.schedule_drain(ctx);
                    Delivery::Held
                }
                Err(e) => {
                    tracing::warn!(batch_id = %kept.id, error = %Chain(&e), "the outbox store is unavailable; keeping the batch in memory until it is back");
                    act.spill.push_back(kept);
                    Delivery::Spilled
                }
            }
        }))
    }
}

impl Actor for LaravelClient {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::clone(&self.tls))
            .limit(self.config.max_connections)
            .timeout(self.config.timeout)
            .handshake_timeout(self.config.timeout);
        self.http = Some(
            awc::Client::builder()
                .connector(connector)
                .timeout(self.config.timeout)
                .disable_redirects()
                .finish(),
        );
        self.publish();
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.flush_spill(ctx);
            act.recount(ctx);
            // The oldest held batch ages between events too.
            act.publish();
        });
        // Batches held by a previous run (durable outbox) are replayed first.
        let outbox = Arc::clone(&self.outbox);
        ctx.wait(
            async move { (outbox.len().await, outbox.front().await) }
                .into_actor(self)
                .map(|(len, front), act, ctx| {
                    match len {
                        Ok(n) => {
                            let oldest = front.ok().flatten().map(|b| b.created_ms);
                            act.set_held(n, oldest)
                        }
                        Err(e) => {
                            tracing::error!(error = %Chain(&e), "cannot read the outbox length at start")
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
        let Some(stored) = msg.stored else {
            return self.dispatch(msg.batch, 0, ctx);
        };
        let id = msg.batch.id.clone();
        self.spill_waiters.insert(id.clone(), stored);
        Box::pin(
            self.dispatch(msg.batch, 0, ctx)
                .map(move |outcome, act, _| {
                    // Only a spilled batch has a move to the outbox still to come.
                    if outcome != Delivery::Spilled {
                        act.spill_waiters.remove(&id);
                    }
                    outcome
                }),
        )
    }
}
