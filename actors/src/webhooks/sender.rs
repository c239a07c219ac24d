//! `WebhookSender`: the actor that POSTs to webhooks and to Laravel's
//! fallback URL, on its own arbiter. It reads every event of the
//! [`EventBus`] (as one more subscriber), offers each to the targets whose
//! subscription wants it, and drives each [`Target`] (pure: batching,
//! bounds, retries, breaker) with one request at a time per target; a
//! 250 ms tick wakes retries and breaker probes. The `LaravelClient` sends
//! it [`FallbackBatch`] while Laravel's breaker is open. Started by
//! `Gateway::start`; HTTP reaches it through
//! [`WebhooksHandle`](super::WebhooksHandle).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use secrecy::SecretString;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::target::{Dropped, Outcome, Poll, Target, TargetConfig};
use super::{load, WebhookConfig, WebhookSpec, RELOAD_EVERY};
use crate::clock::unix_ms;
use crate::events::{Event, EventBus};
use crate::laravel::attempt::{Attempt, Failure, FailureKind};
use crate::laravel::breaker::{BreakerConfig, BreakerState};
use crate::laravel::payload::OutboundBatch;
use crate::laravel::request::{signed_json_post, Signing};
use crate::laravel::signature::SignatureVersion;
use crate::metrics::Metrics;
use crate::store::Store;

/// Retries and breaker probes are looked at this often.
const TICK: Duration = Duration::from_millis(250);
/// The fallback target's name in statuses and metric labels.
pub const FALLBACK: &str = "fallback";

/// Creates or replaces a subscription on this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Upsert(pub WebhookSpec);

/// Forgets a subscription on this node, dropping what waited for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Remove(pub String);

/// How each target is doing.
#[derive(Message)]
#[rtype(result = "Vec<(String, WebhookStatus)>")]
pub struct Statuses;

/// A batch Laravel's breaker kept from Laravel: a copy for the fallback.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FallbackBatch(pub OutboundBatch);

/// The subscriptions as the store has them (the periodic reload).
struct Reloaded {
    specs: Vec<WebhookSpec>,
    started: Instant,
}

/// One target's delivery, as `GET /webhooks` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStatus {
    pub breaker: BreakerState,
    /// Items waiting, the batch being delivered included.
    pub pending: usize,
    /// Items delivered (events, or Laravel batches for the fallback).
    pub delivered: u64,
    pub dropped: u64,
    pub last_success_ms: Option<u64>,
    /// The last failure and when (unix ms); cleared by a success.
    pub last_error: Option<(Failure, u64)>,
}

impl Default for WebhookStatus {
    fn default() -> Self {
        Self {
            breaker: BreakerState::Closed,
            pending: 0,
            delivered: 0,
            dropped: 0,
            last_success_ms: None,
            last_error: None,
        }
    }
}

/// Which target a request was for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Hook(String),
    Fallback,
}

impl Key {
    fn label(&self) -> &str {
        match self {
            Key::Hook(id) => id,
            Key::Fallback => FALLBACK,
        }
    }
}

struct Hook {
    spec: Arc<WebhookSpec>,
    target: Target<Arc<Event>>,
    status: WebhookStatus,
}

struct Fallback {
    url: String,
    token: Option<SecretString>,
    secret: Option<SecretString>,
    target: Target<OutboundBatch>,
    status: WebhookStatus,
}

pub struct WebhookSender {
    config: WebhookConfig,
    tls: Arc<rustls::ClientConfig>,
    /// Built in `started` (awc clients are bound to their thread).
    http: Option<awc::Client>,
    store: Arc<dyn Store>,
    events: EventBus,
    hooks: HashMap<String, Hook>,
    fallback: Option<Fallback>,
    /// The last create or delete made through this node, so a reload that
    /// read the store before it does not undo it.
    last_local_change: Option<Instant>,
    reloading: bool,
    metrics: Arc<Metrics>,
}

impl WebhookSender {
    pub fn new(
        config: WebhookConfig,
        tls: Arc<rustls::ClientConfig>,
        store: Arc<dyn Store>,
        events: EventBus,
        metrics: Arc<Metrics>,
    ) -> Self {
        let fallback = config.fallback_url.as_ref().map(|url| Fallback {
            url: url.trim_end_matches('/').to_owned(),
            token: config.fallback_token.clone(),
            secret: config.fallback_signing_secret.clone(),
            // One Laravel batch per request: Laravel's own contract.
            target: Target::new(TargetConfig {
                batch_items: 1,
                ..target_config(&config)
            }),
            status: WebhookStatus::default(),
        });
        Self {
            config,
            tls,
            http: None,
            store,
            events,
            hooks: HashMap::new(),
            fallback,
            last_local_change: None,
            reloading: false,
            metrics,
        }
    }

    fn upsert(&mut self, spec: WebhookSpec) {
        match self.hooks.get_mut(&spec.id) {
            Some(hook) => {
                if hook.spec.differs(&spec) {
                    hook.spec = Arc::new(spec);
                }
            }
            None => {
                let id = spec.id.clone();
                self.metrics
                    .webhook_pending
                    .with_label_values(&[&id])
                    .set(0);
                self.hooks.insert(
                    id,
                    Hook {
                        spec: Arc::new(spec),
                        target: Target::new(target_config(&self.config)),
                        status: WebhookStatus::default(),
                    },
                );
            }
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(mut hook) = self.hooks.remove(id) {
            let dropped = hook.target.clear();
            if dropped > 0 {
                tracing::info!(
                    webhook_id = id,
                    dropped,
                    "webhook deleted with events still waiting; they are dropped"
                );
            }
            let m = &self.metrics;
            let _ = m.webhook_pending.remove_label_values(&[id]);
            for outcome in ["ok", "failed", "throttled", "refused"] {
                let _ = m.webhook_requests.remove_label_values(&[id, outcome]);
            }
            for reason in ["overflow", "refused", "gave_up"] {
                let _ = m.webhook_dropped.remove_label_values(&[id, reason]);
            }
        }
    }

    fn on_event(&mut self, event: Arc<Event>, ctx: &mut Context<Self>) {
        let mut offered = Vec::new();
        for (id, hook) in &mut self.hooks {
            if hook.spec.wants(&event) {
                let dropped = hook.target.offer(Arc::clone(&event), event.json.len());
                note_dropped(&self.metrics, &mut hook.status, id, dropped);
                offered.push(Key::Hook(id.clone()));
            }
        }
        for key in offered {
            self.pump(key, ctx);
        }
    }

    /// Sends the target's next batch if it may go now.
    fn pump(&mut self, key: Key, ctx: &mut Context<Self>) {
        let Some(http) = self.http.as_ref() else {
            return;
        };
        let now = Instant::now();
        let fresh = || uuid::Uuid::now_v7().to_string();
        let timeout = self.config.timeout;
        let post = match &key {
            Key::Hook(id) => {
                let Some(hook) = self.hooks.get_mut(id) else {
                    return;
                };
                let pending = hook.target.pending();
                self.metrics
                    .webhook_pending
                    .with_label_values(&[id])
                    .set(pending as i64);
                let Poll::Send {
                    id: delivery,
                    attempt,
                } = hook.target.poll(now, fresh)
                else {
                    return;
                };
                let batch = hook.target.batch().expect("a send has a batch");
                let body = webhook_body(&hook.spec.id, &delivery, &batch.items);
                let extra = [
                    ("X-Wagate-Webhook-Id", hook.spec.id.clone()),
                    ("X-Wagate-Delivery-Attempt", attempt.to_string()),
                    ("User-Agent", user_agent()),
                ];
                signed_json_post(
                    http,
                    &hook.spec.url,
                    timeout,
                    &delivery,
                    body,
                    Signing {
                        token: None,
                        secret: Some(&hook.spec.secret),
                        version: SignatureVersion::V2,
                    },
                    &extra,
                )
            }
            Key::Fallback => {
                let Some(fb) = self.fallback.as_mut() else {
                    return;
                };
                let Poll::Send { attempt, .. } = fb.target.poll(now, fresh) else {
                    return;
                };
                let batch = &fb.target.batch().expect("a send has a batch").items[0];
                let extra = [
                    ("X-Wagate-Fallback", "1".to_owned()),
                    ("X-Wagate-Delivery-Attempt", attempt.to_string()),
                    ("User-Agent", user_agent()),
                ];
                // Laravel's own batch id, so a receiver that also gets the
                // replay to Laravel (the same app) can tell it apart.
                signed_json_post(
                    http,
                    &format!("{}{}", fb.url, batch.endpoint.path()),
                    timeout,
                    &batch.id,
                    batch.body.clone(),
                    Signing {
                        token: fb.token.as_ref(),
                        secret: fb.secret.as_ref(),
                        version: self.config.fallback_signature,
                    },
                    &extra,
                )
            }
        };
        ctx.spawn(post.into_actor(self).map(move |attempt, act, ctx| {
            act.finished(key.clone(), attempt);
            act.pump(key, ctx);
        }));
    }

    fn finished(&mut self, key: Key, attempt: Attempt) {
        let now = Instant::now();
        let (outcome, failure, label) = match attempt {
            Attempt::Ok => (Outcome::Delivered, None, "ok"),
            Attempt::Failed(f) => (Outcome::Failed, Some(f), "failed"),
            Attempt::Throttled {
                retry_after,
                failure,
            } => (Outcome::Throttled(retry_after), Some(failure), "throttled"),
            Attempt::Refused(f) => (Outcome::Refused, Some(f), "refused"),
        };
        let jitter = rand::random::<f64>();
        let metrics = Arc::clone(&self.metrics);
        let name = key.label().to_owned();
        let (status, delivered, dropped) = match &key {
            Key::Hook(id) => {
                let Some(hook) = self.hooks.get_mut(id) else {
                    return;
                };
                let items = hook.target.batch().map_or(0, |b| b.items.len());
                let dropped = hook.target.finished(outcome, now, jitter);
                hook.status.breaker = hook.target.breaker_state();
                hook.status.pending = hook.target.pending();
                (&mut hook.status, items, dropped)
            }
            Key::Fallback => {
                let Some(fb) = self.fallback.as_mut() else {
                    return;
                };
                let dropped = fb.target.finished(outcome, now, jitter);
                fb.status.breaker = fb.target.breaker_state();
                fb.status.pending = fb.target.pending();
                (&mut fb.status, 1, dropped)
            }
        };
        metrics
            .webhook_requests
            .with_label_values(&[&name, label])
            .inc();
        match failure {
            None => {
                status.delivered += delivered as u64;
                status.last_success_ms = Some(unix_ms());
                status.last_error = None;
            }
            Some(mut failure) => {
                if let FailureKind::Http(code) = failure.kind {
                    // `attempt` words its statuses for Laravel's settings.
                    failure.message = format!("the receiver answered HTTP {code}");
                }
                if status.last_error.is_none() {
                    tracing::warn!(target_name = %name, error = %failure.message, "webhook delivery failed; retrying with backoff");
                }
                status.last_error = Some((failure, unix_ms()));
            }
        }
        note_dropped(&metrics, status, &name, dropped);
    }

    fn pump_all(&mut self, ctx: &mut Context<Self>) {
        let keys: Vec<Key> = self
            .hooks
            .keys()
            .map(|id| Key::Hook(id.clone()))
            .chain(self.fallback.as_ref().map(|_| Key::Fallback))
            .collect();
        for key in keys {
            self.pump(key, ctx);
        }
    }

    fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.reloading {
            return;
        }
        self.reloading = true;
        let store = Arc::clone(&self.store);
        let started = Instant::now();
        ctx.spawn(async move { load(&*store).await }.into_actor(self).map(
            move |res, act, _ctx| {
                act.reloading = false;
                match res {
                    Ok(specs) => act.apply(Reloaded { specs, started }),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reload webhooks; keeping the ones this node has")
                    }
                }
            },
        ));
    }

    fn apply(&mut self, msg: Reloaded) {
        if self.last_local_change.is_some_and(|t| t >= msg.started) {
            // Read before a change made here: the next reload sees it.
            return;
        }
        let gone: Vec<String> = self
            .hooks
            .keys()
            .filter(|id| !msg.specs.iter().any(|s| &s.id == *id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id);
        }
        for spec in msg.specs {
            self.upsert(spec);
        }
    }
}

fn target_config(c: &WebhookConfig) -> TargetConfig {
    TargetConfig {
        batch_items: c.batch_items,
        max_pending: c.max_pending,
        max_pending_bytes: c.max_pending_bytes,
        retry_base: c.retry_base,
        retry_max: c.retry_max,
        give_up_after: c.give_up_after,
        breaker: BreakerConfig {
            failure_threshold: c.breaker_threshold,
            reset_after: c.breaker_reset,
        },
    }
}

fn note_dropped(
    metrics: &Metrics,
    status: &mut WebhookStatus,
    name: &str,
    dropped: Option<Dropped>,
) {
    if let Some(d) = dropped {
        status.dropped += d.items as u64;
        metrics
            .webhook_dropped
            .with_label_values(&[name, d.reason.as_str()])
            .inc_by(d.items as u64);
        tracing::warn!(
            target_name = name,
            items = d.items,
            reason = d.reason.as_str(),
            "webhook items dropped"
        );
    }
}

/// `{"webhookId","deliveryId","events":[…]}`, the events as published.
fn webhook_body(webhook: &str, delivery: &str, events: &[Arc<Event>]) -> Bytes {
    let size: usize = events.iter().map(|e| e.json.len() + 1).sum();
    let mut body = String::with_capacity(size + 96);
    body.push_str(r#"{"webhookId":"#);
    body.push_str(&serde_json::to_string(webhook).expect("strings serialize"));
    body.push_str(r#","deliveryId":"#);
    body.push_str(&serde_json::to_string(delivery).expect("strings serialize"));
    body.push_str(r#","events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str("]}");
    Bytes::from(body)
}

fn user_agent() -> String {
    concat!("wagate/", env!("CARGO_PKG_VERSION")).to_owned()
}

impl Actor for WebhookSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::clone(&self.tls))
            .timeout(self.config.timeout)
            .handshake_timeout(self.config.timeout);
        self.http = Some(
            awc::Client::builder()
                .connector(connector)
                .timeout(self.config.timeout)
                .disable_redirects()
                .finish(),
        );
        ctx.add_stream(BroadcastStream::new(self.events.subscribe(None).live));
        ctx.run_interval(TICK, |act, ctx| act.pump_all(ctx));
        self.reload(ctx);
        ctx.run_interval(RELOAD_EVERY, |act, ctx| act.reload(ctx));
    }
}

crate::metered_actor!(WebhookSender: Upsert, Remove, Statuses, FallbackBatch);

impl StreamHandler<Result<Arc<Event>, BroadcastStreamRecvError>> for WebhookSender {
    fn handle(
        &mut self,
        item: Result<Arc<Event>, BroadcastStreamRecvError>,
        ctx: &mut Self::Context,
    ) {
        match item {
            Ok(event) => {
                if !self.hooks.is_empty() {
                    self.on_event(event, ctx);
                }
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                if !self.hooks.is_empty() {
                    self.metrics
                        .webhook_dropped
                        .with_label_values(&["*", "lagged"])
                        .inc_by(n);
                    tracing::warn!(events = n, "the webhook sender fell behind the event bus; events dropped for every webhook");
                }
            }
        }
    }

    /// The bus lives as long as the gateway: nothing to do when it ends.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<Upsert> for WebhookSender {
    type Result = ();

    fn handle(&mut self, msg: Upsert, _ctx: &mut Self::Context) {
        self.last_local_change = Some(Instant::now());
        self.upsert(msg.0);
    }
}

impl Handler<Remove> for WebhookSender {
    type Result = ();

    fn handle(&mut self, msg: Remove, _ctx: &mut Self::Context) {
        self.last_local_change = Some(Instant::now());
        self.remove(&msg.0);
    }
}

impl Handler<Statuses> for WebhookSender {
    type Result = Response<Vec<(String, WebhookStatus)>>;

    fn handle(&mut self, _: Statuses, _ctx: &mut Self::Context) -> Self::Result {
        let mut all: Vec<(String, WebhookStatus)> = self
            .hooks
            .iter()
            .map(|(id, h)| {
                let mut s = h.status.clone();
                s.pending = h.target.pending();
                s.breaker = h.target.breaker_state();
                (id.clone(), s)
            })
            .collect();
        if let Some(fb) = &self.fallback {
            let mut s = fb.status.clone();
            s.pending = fb.target.pending();
            s.breaker = fb.target.breaker_state();
            all.push((FALLBACK.to_owned(), s));
        }
        Response::reply(all)
    }
}

impl Handler<FallbackBatch> for WebhookSender {
    type Result = ();

    fn handle(&mut self, msg: FallbackBatch, ctx: &mut Self::Context) {
        let Some(fb) = self.fallback.as_mut() else {
            return;
        };
        let bytes = msg.0.body.len();
        let dropped = fb.target.offer(msg.0, bytes);
        note_dropped(&self.metrics, &mut fb.status, FALLBACK, dropped);
        self.metrics
            .webhook_pending
            .with_label_values(&[FALLBACK])
            .set(fb.target.pending() as i64);
        self.pump(Key::Fallback, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use crate::ids::SessionId;

    #[test]
    fn the_body_carries_the_events_as_published() {
        let e = |id| {
            Arc::new(Event {
                id,
                kind: EventKind::State,
                session: SessionId::parse("s").unwrap(),
                json: Arc::from(format!(r#"{{"id":{id}}}"#)),
            })
        };
        let body = webhook_body("wh_1", "d-1", &[e(1), e(2)]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"webhookId": "wh_1", "deliveryId": "d-1", "events": [{"id": 1}, {"id": 2}]})
        );
    }
}
