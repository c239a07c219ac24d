//! Every Prometheus metric the gateway exports, in one registry per gateway
//! instance (tests run several in one process). Actors receive an
//! `Arc<Metrics>` at start; `GET /metrics` encodes [`Metrics::registry`].

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Handles to all metric families. Cloning a prometheus metric is an `Arc`
/// bump, so actors keep their own pre-labelled children.
pub struct Metrics {
    pub registry: Registry,
    pub mailbox_depth: IntGaugeVec,
    pub mailbox_wait_seconds: HistogramVec,
    pub handle_seconds: HistogramVec,
    pub messages_handled: IntCounterVec,
    pub laravel_requests: IntCounterVec,
    pub laravel_request_seconds: HistogramVec,
    pub breaker_state: IntGauge,
    pub sessions_by_state: IntGaugeVec,
    pub batch_items: HistogramVec,
    pub qr_events: IntCounter,
    pub status_updates: IntCounterVec,
    pub outbox_depth: IntGauge,
    pub outbox_dropped: IntCounterVec,
    pub outbox_oldest_age_seconds: Gauge,
    pub laravel_failures: IntCounterVec,
    pub laravel_last_success: Gauge,
    pub qr_render_cache: IntCounterVec,
    pub session_restarts: IntCounter,
    pub session_cache_lookups: IntCounterVec,
    pub messages_finished: IntCounterVec,
    pub message_queue: IntGaugeVec,
    pub redis_up: IntGauge,
    pub redis_ping_seconds: Histogram,
    pub connector_tasks: IntGauge,
    pub runtime_alive_tasks: IntGaugeVec,
    /// The bounds on what outside input can grow (issue 17).
    pub bounds: BoundMetrics,
    pub connector_incoming: IntCounterVec,
    /// Live events (`GET /events`, `GET /events/ws`).
    pub events: crate::events::EventMetrics,
    /// Webhooks and the fallback URL, by webhook id (`fallback` for it).
    pub webhook_requests: IntCounterVec,
    pub webhook_dropped: IntCounterVec,
    pub webhook_pending: IntGaugeVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        // Names are unique literals in this file; a clash is a programming error.
        .expect("metric names in metrics.rs are unique");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::families();
        // Known labels start at 0, so dashboards and rate() see them at once.
        for kind in crate::events::EventKind::ALL {
            m.events.published.with_label_values(&[kind.as_str()]);
        }
        for reason in ["slow", "lagged"] {
            m.events.dropped.with_label_values(&[reason]);
        }
        m
    }

    fn families() -> Self {
        let r = Registry::new_custom(Some("wagate".into()), None)
            .expect("the prefix 'wagate' is a valid metric name");
        // 50 µs .. ~13 s: mailbox waits are usually microseconds, but a stuck
        // actor must still land in a finite bucket.
        let latency = exponential_buckets(0.000_05, 2.0, 19).expect("valid buckets");
        let sizes = exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
        let hist = |name: &str, help: &str, labels: &[&str], buckets: &Vec<f64>| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.clone()),
                labels,
            )
            .expect("valid histogram definition")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge definition")
        };
        Self {
            mailbox_depth: register(
                &r,
                gauge(
                    "actor_mailbox_depth",
                    "Messages waiting in mailboxes, per actor type",
                    &["actor"],
                ),
            ),
            mailbox_wait_seconds: register(
                &r,
                hist(
                    "actor_mailbox_wait_seconds",
                    "Time from enqueue to the start of handling",
                    &["actor"],
                    &latency,
                ),
            ),
            handle_seconds: register(
                &r,
                hist(
                    "actor_handle_seconds",
                    "Time spent in a message handler (synchronous part)",
                    &["actor"],
                    &latency,
                ),
            ),
            messages_handled: register(
                &r,
                counter(
                    "actor_messages_handled_total",
                    "Messages handled, per actor type",
                    &["actor"],
                ),
            ),
            laravel_requests: register(
                &r,
                counter(
                    "laravel_requests_total",
                    "Requests to Laravel by endpoint and outcome",
                    &["endpoint", "outcome"],
                ),
            ),
            laravel_request_seconds: register(
                &r,
                hist(
                    "laravel_request_seconds",
                    "Latency of requests to Laravel",
                    &["endpoint"],
                    &latency,
                ),
            ),
            breaker_state: register(
                &r,
                IntGauge::new(
                    "circuit_breaker_state",
                    "Laravel circuit breaker: 0 closed, 1 open, 2 half-open",
                )
                .expect("valid gauge"),
            ),
            sessions_by_state: register(&r, gauge("sessions", "Sessions by state", &["state"])),
            batch_items: register(
                &r,
                hist(
                    "batch_items",
                    "Items per request sent to Laravel",
                    &["kind"],
                    &sizes,
                ),
            ),
            qr_events: register(
                &r,
                IntCounter::new("qr_events_total", "New QR codes seen (after dedup)")
                    .expect("valid counter"),
            ),
            status_updates: register(
                &r,
                counter(
                    "status_updates_total",
                    "Status updates produced, by lane",
                    &["priority"],
                ),
            ),
            outbox_depth: register(
                &r,
                IntGauge::new("outbox_depth", "Batches held for Laravel in the outbox")
                    .expect("valid gauge"),
            ),
            outbox_dropped: register(
                &r,
                counter(
                    "outbox_dropped_total",
                    "Batches dropped from the outbox (stale QR only)",
                    &["kind"],
                ),
            ),
            outbox_oldest_age_seconds: register(
                &r,
                Gauge::new(
                    "outbox_oldest_age_seconds",
                    "Age of the oldest batch held for Laravel in the outbox; 0 when none is held",
                )
                .expect("valid gauge"),
            ),
            laravel_failures: register(
                &r,
                counter(
                    "laravel_failures_total",
                    "Failed requests to Laravel by cause: tls, dns, refused, timeout, connect, protocol, http_<status>",
                    &["kind"],
                ),
            ),
            laravel_last_success: register(
                &r,
                Gauge::new(
                    "laravel_last_success_timestamp_seconds",
                    "Unix time of the last batch Laravel accepted; 0 before the first",
                )
                .expect("valid gauge"),
            ),
            qr_render_cache: register(
                &r,
                counter(
                    "qr_render_cache_total",
                    "QR image cache lookups",
                    &["result"],
                ),
            ),
            session_restarts: register(
                &r,
                IntCounter::new(
                    "session_restarts_total",
                    "Session actors restarted after a crash or failure",
                )
                .expect("valid counter"),
            ),
            session_cache_lookups: register(
                &r,
                counter(
                    "session_cache_lookups_total",
                    "Is-this-session-active reads by where they were answered: local, redis, miss",
                    &["level"],
                ),
            ),
            messages_finished: register(
                &r,
                counter(
                    "messages_finished_total",
                    "Outbound messages finished by this node, by outcome: sent, failed",
                    &["outcome"],
                ),
            ),
            message_queue: register(
                &r,
                gauge(
                    "message_queue",
                    "Outbound messages not finished: waiting (not read by a sender) or active (being sent)",
                    &["state"],
                ),
            ),
            redis_up: register(
                &r,
                IntGauge::new("redis_up", "1 while Redis answers (0 without Redis)")
                    .expect("valid gauge"),
            ),
            connector_tasks: register(
                &r,
                IntGauge::new(
                    "connector_tasks",
                    "Tasks alive on the WhatsApp Web runtime (0 with the simulator); falls back when sessions stop",
                )
                .expect("valid gauge"),
            ),
            runtime_alive_tasks: register(
                &r,
                gauge(
                    "runtime_alive_tasks",
                    "Tasks alive on each tokio runtime of the gateway (main, io, control, session-<n>); actors on an arbiter's LocalSet are not counted",
                    &["runtime"],
                ),
            ),
            events: crate::events::EventMetrics {
                published: register(
                    &r,
                    counter("events_published_total", "Live events published, by type", &["type"]),
                ),
                subscribers: register(
                    &r,
                    IntGauge::new(
                        "events_subscribers",
                        "Live event subscribers connected (SSE and WebSocket)",
                    )
                    .expect("valid gauge"),
                ),
                dropped: register(
                    &r,
                    counter(
                        "events_dropped_subscribers_total",
                        "Live event subscribers dropped for falling behind (slow: not reading; lagged: behind the fan-out)",
                        &["reason"],
                    ),
                ),
            },
            webhook_requests: register(
                &r,
                counter(
                    "webhook_requests_total",
                    "Requests to webhooks and to LARAVEL_FALLBACK_URL, by webhook id ('fallback') and outcome (ok, failed, throttled, refused)",
                    &["webhook", "outcome"],
                ),
            ),
            webhook_dropped: register(
                &r,
                counter(
                    "webhook_dropped_total",
                    "Items a webhook or the fallback gave up on, by webhook id and reason (overflow, refused, gave_up; lagged: every webhook, id '*')",
                    &["webhook", "reason"],
                ),
            ),
            webhook_pending: register(
                &r,
                gauge(
                    "webhook_pending",
                    "Items waiting for a webhook or the fallback, the batch being delivered included",
                    &["webhook"],
                ),
            ),
            connector_incoming: register(
                &r,
                counter(
                    "connector_incoming_total",
                    "Incoming WhatsApp traffic not forwarded as a chat message (status posts, newsletters, broadcast lists dropped; unsupported kinds forwarded; undecryptable)",
                    &["kind"],
                ),
            ),
            redis_ping_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("redis_ping_seconds", "Round trip of the Redis health ping")
                        .buckets(latency.clone()),
                )
                .expect("valid histogram"),
            ),
            bounds: BoundMetrics::register(&r),
            registry: r,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            // The text encoder writes into a Vec and only fails on I/O errors.
            .expect("encoding metrics into memory cannot fail");
        String::from_utf8(buf).expect("the text encoder emits UTF-8")
    }

    /// Histogram child for one batch kind.
    pub fn batch_size(&self, kind: &str) -> Histogram {
        self.batch_items.with_label_values(&[kind])
    }
}

/// One family per bound on input-driven growth, plus what the security
/// measures count: each bound says when it was hit, so an operator sees a
/// shed or a refusal, never a silent loss.
#[derive(Clone)]
pub struct BoundMetrics {
    /// Times a bound refused or shed something, by bound.
    pub hits: IntCounterVec,
    /// Stopped, failed or logged-out sessions forgotten after `SESSION_RETENTION`.
    pub sessions_forgotten: IntCounter,
    /// Entries of the memory message log, by kind: records, idempotency, dead.
    pub message_log_entries: IntGaugeVec,
    /// Bytes of batch bodies held in the Laravel outbox.
    pub outbox_bytes: IntGauge,
    /// `/metrics/cache` key-count refreshes (SCAN rounds) run.
    pub key_count_refreshes: IntCounter,
    /// Requests refused for a missing or wrong API or metrics key.
    pub auth_failures: IntCounter,
}

impl BoundMetrics {
    fn register(r: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid counter"))
        };
        Self {
            hits: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bound_hits_total",
                        "Times a bound refused or shed input, by bound: stored_sessions, queue_per_session, message_log, dead_letters, outbox",
                    ),
                    &["bound"],
                )
                .expect("valid counter definition"),
            ),
            sessions_forgotten: counter(
                "sessions_forgotten_total",
                "Stopped, failed or logged-out sessions forgotten after SESSION_RETENTION",
            ),
            message_log_entries: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "message_log_entries",
                        "Entries of the memory message log by kind: records, idempotency, dead",
                    ),
                    &["kind"],
                )
                .expect("valid gauge definition"),
            ),
            outbox_bytes: register(
                r,
                IntGauge::new("outbox_bytes", "Bytes of batch bodies held in the Laravel outbox")
                    .expect("valid gauge"),
            ),
            key_count_refreshes: counter(
                "cache_key_count_refreshes_total",
                "Key-count refreshes (SCAN rounds) behind /metrics/cache",
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Requests refused for a missing or wrong API key or metrics key",
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
