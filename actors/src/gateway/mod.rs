//! [`Gateway`]: the running actor system as the `wagate` crate (HTTP,
//! `main`) and the integration tests see it: typed handles and read-only
//! views behind accessors, never an actor address. [`Gateway::start`]
//! (in `start`) wires the actors; [`Gateway::shutdown`] stops them in order;
//! [`Gateway::health`] (in `health`) is `/health`'s one source.

mod backends;
mod batchers;
mod health;
mod start;

use std::sync::Arc;

use actix::ArbiterHandle;

pub use self::backends::Backends;
pub use self::batchers::{BatcherGone, Batchers, PendingBatches};
pub use self::health::{HealthReading, LaneCounts, RestoreReading};

use crate::batch::qr::QrPayload;
use crate::batch::BatchConfig;
use crate::connector::simulator::{Simulator, SimulatorConfig};
use crate::connector::Connector;
use crate::laravel::breaker::BreakerView;
use crate::laravel::client::LaravelConfig;
use crate::laravel::delivery::DeliveryView;
use crate::messages::handle::MessagesHandle;
use crate::messages::queue::MessageQueueConfig;
use crate::metrics::Metrics;
use crate::qr_render::QrRenderer;
use crate::redis::health::RedisHealth;
use crate::registry::{RegistryConfig, RegistryHandle, RestoreProgress};
use crate::session::index::SessionIndex;
use crate::stats::GatewayStats;
use crate::store::counts::KeyCounts;
use crate::store::Store;

/// How long a graceful stop waits for sends in flight before it stops the
/// sessions and flushes the batchers (Docker's default stop grace is 10 s).
pub const SEND_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long shutdown waits for stopped WhatsApp clients to flush their keys
/// (each client has 5 s to disconnect before it is aborted).
pub const CLIENT_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Which WhatsApp the sessions talk to.
#[derive(Debug)]
pub enum ConnectorChoice {
    Simulator(SimulatorConfig),
    #[cfg(feature = "whatsapp-web")]
    WhatsAppWeb(crate::connector::whatsapp::WhatsAppConfig),
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the connector: {0}")]
    Connector(String),
    #[error("cannot build the TLS client configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Everything the actor system needs to start. Its `Debug` output is safe
/// to log: the secrets in it print as `[REDACTED]`.
#[derive(Debug)]
pub struct GatewayConfig {
    pub registry: RegistryConfig,
    pub batch: BatchConfig,
    pub qr_payload: QrPayload,
    pub laravel: LaravelConfig,
    /// Trust for every outbound HTTPS connection (Laravel today).
    pub tls: crate::tls::TlsSettings,
    /// Render threads (`MAX_CONCURRENT_QR`).
    pub qr_workers: usize,
    pub qr_cache_capacity: usize,
    /// Arbiters (threads) that host Session actors; one per core by default.
    pub session_arbiters: usize,
    pub connector: ConnectorChoice,
    pub messages: MessageQueueConfig,
    /// Pace of the `/metrics/cache` key counts (`METRICS_CACHE_INTERVAL`).
    pub key_counts_interval: std::time::Duration,
    /// How incoming media is kept and offered to Laravel (`[media]`).
    pub incoming_media: crate::incoming_media::IncomingMediaConfig,
    /// Webhooks and `LARAVEL_FALLBACK_URL` (`[webhooks]`).
    pub webhooks: crate::webhooks::WebhookConfig,
}

/// A running actor system. Fields are private: callers use the handles
/// and views the accessors return, so the wiring can change behind them.
pub struct Gateway {
    /// Session commands (create, stop, delete, …) and the sweep.
    registry: RegistryHandle,
    /// Session snapshots for reads that must not wait on a mailbox.
    index: SessionIndex,
    /// QR PNG/SVG renders for HTTP (the QR batcher has its own clone).
    renderer: QrRenderer,
    metrics: Arc<Metrics>,
    /// The batchers' lane counters, read by [`Gateway::health`].
    stats: Arc<GatewayStats>,
    /// The Laravel client's breaker, read by [`Gateway::health`].
    breaker: BreakerView,
    /// Delivery to Laravel as `/health` reports it (last success, last
    /// error, held batches, DEGRADED).
    delivery: DeliveryView,
    /// Describing and draining the batchers.
    batchers: Batchers,
    /// Set when the simulator is the connector (enables `simulate/*`).
    simulator: Option<Arc<Simulator>>,
    connector_kind: &'static str,
    /// The connector all sessions open connections through; drained on
    /// shutdown, its task and event counts read at scrape time.
    connector: Arc<dyn Connector>,
    store_kind: &'static str,
    store: Arc<dyn Store>,
    /// Redis reachability, when Redis is configured.
    redis_health: Option<Arc<RedisHealth>>,
    /// Progress of the start-up restore of stored sessions.
    restore: Arc<RestoreProgress>,
    /// The store's key counts, refreshed in the background.
    key_counts: Arc<KeyCounts>,
    /// Outbound messages: intake, status reads, `/health` figures.
    messages: MessagesHandle,
    /// Threads owned by the gateway, stopped on shutdown.
    arbiters: Vec<ArbiterHandle>,
    /// The runtimes of those threads and of `main`, whose live task counts
    /// are read at scrape time (a leak of spawned tasks shows there).
    runtime_tasks: Arc<crate::runtime_tasks::RuntimeTasks>,
    /// Incoming media the connectors kept, served by `GET /media/{id}`.
    incoming_media: crate::incoming_media::IncomingMedia,
    /// Live events for `GET /events` and `GET /events/ws`.
    events: crate::events::EventBus,
    /// Webhook subscriptions and their delivery.
    webhooks: crate::webhooks::WebhooksHandle,
}

impl Gateway {
    /// Webhook subscriptions: `/webhooks`.
    pub fn webhooks(&self) -> &crate::webhooks::WebhooksHandle {
        &self.webhooks
    }

    /// Live events: what `GET /events` subscribes to.
    pub fn events(&self) -> &crate::events::EventBus {
        &self.events
    }

    /// Session commands.
    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// Session snapshots (state, QR, counts per state).
    pub fn index(&self) -> &SessionIndex {
        &self.index
    }

    /// QR renders for HTTP.
    pub fn renderer(&self) -> &QrRenderer {
        &self.renderer
    }

    /// The Prometheus registry and every metric in it.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Delivery to Laravel (held batches, last success and error).
    pub fn delivery(&self) -> &DeliveryView {
        &self.delivery
    }

    /// The QR, status and inbound batchers.
    pub fn batchers(&self) -> &Batchers {
        &self.batchers
    }

    /// The simulator, when it is the connector (`simulate/*`, tests).
    pub fn simulator(&self) -> Option<&Arc<Simulator>> {
        self.simulator.as_ref()
    }

    /// `simulator` or `whatsapp-web`.
    pub fn connector_kind(&self) -> &'static str {
        self.connector_kind
    }

    /// `memory` or `redis`.
    pub fn store_kind(&self) -> &'static str {
        self.store_kind
    }

    /// Where sessions and their credentials are kept.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store's key counts (`/metrics/cache`), when Redis is the store.
    pub fn key_counts(&self) -> &Arc<KeyCounts> {
        &self.key_counts
    }

    /// Outbound messages: intake, status reads.
    pub fn messages(&self) -> &MessagesHandle {
        &self.messages
    }

    /// Incoming media kept for Laravel (`GET /media/{id}?token=`).
    pub fn incoming_media(&self) -> &crate::incoming_media::IncomingMedia {
        &self.incoming_media
    }

    /// The Prometheus text exposition, after refreshing what is read at
    /// scrape time (Redis reachability, connector tasks and event counts).
    pub fn encode_metrics(&self) -> String {
        let m = &self.metrics;
        // Read now, so a failure seen by any Redis call counts at once.
        if let Some(h) = &self.redis_health {
            m.redis_up.set(i64::from(h.is_connected()));
        }
        if let Some(tasks) = self.connector.runtime_tasks() {
            m.connector_tasks.set(tasks as i64);
        }
        for (runtime, alive) in self.runtime_tasks.counts() {
            m.runtime_alive_tasks
                .with_label_values(&[runtime.as_str()])
                .set(alive as i64);
        }
        // The connector counts on its own threads; the counter catches up here.
        for (kind, total) in self.connector.incoming_counts() {
            let counter = m.connector_incoming.with_label_values(&[kind]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        m.encode()
    }

    /// Graceful stop: let sends in flight finish (unstarted messages stay in
    /// the log), stop every session, then flush the batchers (their
    /// requests complete or land in the outbox), then stop the threads.
    pub async fn shutdown(&self) {
        // Sends in flight need their sessions: let them finish first, for a
        // short while. One still running after that stays unacknowledged in
        // the log and is sent again (same id) after the restart.
        if !self.messages.drain(SEND_DRAIN_GRACE).await {
            tracing::warn!("sends still in flight after the grace period; they stay queued");
        }
        self.registry.stop_all().await;
        // The WhatsApp clients flush their keys as they stop; the runtime
        // they run on dies with the process, so wait for them (bounded).
        if !self.connector.drain(CLIENT_FLUSH_GRACE).await {
            tracing::warn!("some WhatsApp clients did not finish flushing before shutdown");
        }
        self.batchers.drain().await;
        for a in &self.arbiters {
            a.stop();
        }
    }
}
