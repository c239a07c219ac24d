//! wagate's actor system: everything between WhatsApp connections and
//! Laravel, with no HTTP server in it (the `wagate` crate adds that).
//!
//! # Layout
//! ```text
//!  HTTP (wagate crate) ──RegistryHandle──► SessionRegistry ──start/stop──► Session (one per account,
//!      │                     (SessionTable decides,  ▲                     │  on one arbiter per core)
//!      │ reads                the actor carries out) └─ SessionExited ─────┤◄── ConnectorEvent stream
//!      ▼                                                (a Recipient)      │     (simulator | WhatsApp Web)
//!  SessionIndex (DashMap snapshots) ◄── StatePublisher ◄── states ─────────┤ (registry too, for sessions
//!                                       ├─ Redis state cache               │  without an actor)
//!                                       └─ RecordStatus ──► StatusBatcher ─┼────────────────────────┐
//!                                                                          ├── PublishQr/ClearQr ─► QrBatcher ──────┤ DeliverBatch
//!                                                                          └── RecordInbound ─────► InboundBatcher ─┤
//!  QrRenderer pool (SyncArbiter) ◄── PNG/SVG renders (QrBatcher, HTTP)                                             ▼
//!                                                                   LaravelClient ── breaker ── outbox ──► Laravel
//! ```
//! Outbound messages: HTTP ──`MessagesHandle::submit`──► `MessageLog`, then
//! `Wake` ─► `MessageQueue` (decisions in `messages::lanes`) ─► `RegistryHandle`
//! ─► Session; results ─► `InboundBatcher`.
//! The registry's decisions (limits, restarts with backoff, idle / lifetime
//! sweep, retention, restore pacing) live in the pure
//! [`registry::table::SessionTable`]; a session's state reaches the index,
//! the Redis cache and Laravel only through [`session::publisher`]. Sessions
//! never name the registry: they report their end through a
//! `MeteredRecipient<SessionExited>` in the `SessionDeps` that
//! [`Gateway::start`] builds in the registry's start closure.
//! Control actors (registry) run on their own arbiter, the batchers and the
//! Laravel client on an I/O arbiter, sessions on `session_arbiters` arbiters.
//! Every mailbox is measured ([`mailbox`]). [`Gateway::start`] wires it all,
//! building the shared TLS client configuration ([`tls`]) once; the
//! Laravel client publishes its delivery health for `/health`
//! ([`laravel::delivery`]).

pub mod backoff;
pub mod batch;
pub mod bounds;
pub mod clock;
pub mod connector;
pub mod error_chain;
pub mod ids;
pub mod journal;
pub mod laravel;
pub mod mailbox;
pub mod messages;
pub mod metrics;
pub mod qr_render;
pub mod redis;
pub mod registry;
pub mod session;
pub mod stats;
pub mod store;
pub mod tls;

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::batch::inbound::InboundBatcher;
use crate::batch::qr::{QrBatcher, QrPayload};
use crate::batch::status::StatusBatcher;
use crate::batch::{BatchConfig, Drain};
use crate::connector::simulator::{Simulator, SimulatorConfig};
use crate::connector::Connector;
use crate::journal::Journal;
use crate::laravel::breaker::BreakerView;
use crate::laravel::client::{LaravelClient, LaravelConfig};
use crate::laravel::delivery::{DeliveryHealth, DeliveryView};
use crate::laravel::outbox::Outbox;
use crate::mailbox::{MailboxMeter, MeteredAddr};
use crate::messages::handle::{MessagesHandle, MessagesParts, QueueGauge};
use crate::messages::queue::{MessageQueue, MessageQueueConfig, QueueDeps};
use crate::messages::MessageLog;
use crate::metrics::Metrics;
use crate::qr_render::QrRenderer;
use crate::redis::health::RedisHealth;
use crate::redis::RedisConn;
use crate::registry::{RegistryConfig, RegistryHandle, RestoreProgress, SessionRegistry};
use crate::session::index::SessionIndex;
use crate::session::publisher::StatePublisher;
use crate::session::SessionDeps;
use crate::stats::GatewayStats;
use crate::store::counts::KeyCounts;
use crate::store::Store;

/// Which WhatsApp the sessions talk to.
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

/// Where state lives: the memory default, or Redis with its connection.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub outbox: Arc<dyn Outbox>,
    pub messages: Arc<dyn MessageLog>,
    /// What must reach Laravel across a `kill -9` (terminal statuses,
    /// incoming messages) while it waits in a batcher.
    pub journal: Journal,
    /// Set when Redis is configured: pinged for `/health`.
    pub redis: Option<(RedisConn, Arc<RedisHealth>)>,
}

impl Backends {
    /// Nothing survives a restart: the zero-setup default.
    pub fn memory(log: bounds::LogBounds, outbox: bounds::OutboxBounds) -> Self {
        Self {
            store: Arc::new(store::MemoryStore::default()),
            outbox: Arc::new(laravel::outbox::MemoryOutbox::new(outbox)),
            messages: Arc::new(messages::memory::MemoryMessageLog::new(log)),
            journal: Journal::memory(),
            redis: None,
        }
    }

    /// Store, cache, outbox and message queue in Redis, over one shared
    /// connection. Message records are kept `record_ttl` after their last change.
    pub fn redis(
        conn: RedisConn,
        cache_ttl: std::time::Duration,
        log: bounds::LogBounds,
        outbox: bounds::OutboxBounds,
    ) -> Self {
        let health = Arc::new(RedisHealth::default());
        Self {
            store: Arc::new(store::RedisStore::new(
                conn.clone(),
                Arc::clone(&health),
                cache_ttl,
            )),
            outbox: Arc::new(laravel::outbox_redis::RedisOutbox::new(
                conn.clone(),
                Arc::clone(&health),
                outbox,
            )),
            messages: Arc::new(messages::redis::RedisMessageLog::new(
                conn.clone(),
                Arc::clone(&health),
                log,
            )),
            journal: Journal::new(Arc::new(journal::redis::RedisJournal::new(
                conn.clone(),
                Arc::clone(&health),
            ))),
            redis: Some((conn, health)),
        }
    }
}

/// How long a graceful stop waits for sends in flight before it stops the
/// sessions and flushes the batchers (Docker's default stop grace is 10 s).
pub const SEND_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long shutdown waits for stopped WhatsApp clients to flush their keys
/// (each client has 5 s to disconnect before it is aborted).
pub const CLIENT_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How often Redis is pinged for `/health`.
const REDIS_PING_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything the actor system needs to start.
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
}

/// A running actor system. Clone-free handles for the HTTP layer.
pub struct Gateway {
    pub registry: RegistryHandle,
    pub index: SessionIndex,
    pub renderer: QrRenderer,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<GatewayStats>,
    pub breaker: BreakerView,
    /// Delivery to Laravel as `/health` reports it (last success, last
    /// error, held batches, DEGRADED).
    pub delivery: DeliveryView,
    pub qr_batcher: MeteredAddr<QrBatcher>,
    pub status_batcher: MeteredAddr<StatusBatcher>,
    inbound_batcher: MeteredAddr<InboundBatcher>,
    /// Set when the simulator is the connector (enables `simulate/*`).
    pub simulator: Option<Arc<Simulator>>,
    pub connector_kind: &'static str,
    /// The connector all sessions open connections through.
    pub connector: Arc<dyn Connector>,
    pub store_kind: &'static str,
    pub store: Arc<dyn Store>,
    /// Redis reachability, when Redis is configured.
    pub redis_health: Option<Arc<RedisHealth>>,
    /// The shared Redis connection, when Redis is configured.
    pub redis: Option<RedisConn>,
    /// Progress of the start-up restore of stored sessions.
    pub restore: Arc<RestoreProgress>,
    /// The store's key counts, refreshed in the background.
    pub key_counts: Arc<KeyCounts>,
    /// Outbound messages: intake, status reads, `/health` figures.
    pub messages: MessagesHandle,
    /// Threads owned by the gateway, stopped on shutdown.
    arbiters: Vec<ArbiterHandle>,
}

impl Gateway {
    /// Starts every actor. Must run inside an actix `System`. Fails only
    /// when the configured connector cannot start (its data directory).
    pub fn start(config: GatewayConfig, backends: Backends) -> Result<Self, StartError> {
        let Backends {
            store,
            outbox,
            messages: message_log,
            journal,
            redis,
        } = backends;
        let metrics = Arc::new(Metrics::new());
        message_log.attach_metrics(&metrics.bounds);
        outbox.attach_metrics(&metrics.bounds);
        let stats = Arc::new(GatewayStats::default());
        let breaker = BreakerView::default();
        let delivery = DeliveryView::new(DeliveryHealth::new(
            config.laravel.degraded_after,
            clock::unix_ms(),
        ));
        // Built once: loading the system roots reads a few hundred KB.
        let tls = tls::client_config(&config.tls)?;
        let index = SessionIndex::new(Arc::clone(&metrics));
        let renderer = QrRenderer::start(
            config.qr_workers,
            config.qr_cache_capacity,
            metrics.qr_render_cache.with_label_values(&["hit"]),
            metrics.qr_render_cache.with_label_values(&["miss"]),
        );

        let io = Arbiter::new().handle();
        let key_counts = Arc::new(KeyCounts::default());
        io.spawn(Arc::clone(&key_counts).run(
            Arc::clone(&store),
            config.key_counts_interval,
            metrics.bounds.key_count_refreshes.clone(),
        ));
        if let Some((conn, health)) = &redis {
            let (conn, health, m) = (conn.clone(), Arc::clone(health), Arc::clone(&metrics));
            io.spawn(health.run(conn, REDIS_PING_EVERY, m));
        }
        let control = Arbiter::new().handle();
        let session_arbiters: Vec<ArbiterHandle> = (0..config.session_arbiters.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();

        let meter = |name: &str| MailboxMeter::new(&metrics, name);
        let forwarding = config.laravel.base_url.is_some();
        let client = {
            let (m, views, cfg) = (
                Arc::clone(&metrics),
                (breaker.clone(), delivery.clone()),
                config.laravel,
            );
            let addr = LaravelClient::start_in_arbiter(&io, move |_| {
                LaravelClient::new(cfg, tls, outbox, views, m)
            });
            MeteredAddr::new(addr, meter("laravel_client"), None)
        };
        let qr_batcher = {
            let (m, s, c, r) = (
                Arc::clone(&metrics),
                Arc::clone(&stats),
                client.clone(),
                renderer.clone(),
            );
            // Without Laravel nothing is sent: rendering PNGs would be wasted CPU.
            let payload = if forwarding {
                config.qr_payload
            } else {
                QrPayload::Raw
            };
            let batch = config.batch;
            let addr = QrBatcher::start_in_arbiter(&io, move |_| {
                QrBatcher::new(batch, payload, r, c, m, s)
            });
            MeteredAddr::new(addr, meter("qr_batcher"), None)
        };
        let status_batcher = {
            let (m, s, c, batch, j) = (
                Arc::clone(&metrics),
                Arc::clone(&stats),
                client.clone(),
                config.batch,
                journal.clone(),
            );
            let addr = StatusBatcher::start_in_arbiter(&io, move |_| {
                StatusBatcher::new(batch, c, j, m, s)
            });
            MeteredAddr::new(addr, meter("status_batcher"), None)
        };
        let inbound_batcher = {
            let (s, c, batch, j) = (
                Arc::clone(&stats),
                client.clone(),
                config.batch,
                journal.clone(),
            );
            let addr =
                InboundBatcher::start_in_arbiter(&io, move |_| InboundBatcher::new(batch, c, j, s));
            MeteredAddr::new(addr, meter("inbound_batcher"), None)
        };

        let (connector, simulator): (Arc<dyn Connector>, _) = match config.connector {
            ConnectorChoice::Simulator(cfg) => {
                let sim = match &redis {
                    Some((conn, _)) => Simulator::with_ledger(cfg, conn.clone(), journal.clone()),
                    None => Simulator::new(cfg, journal.clone()),
                };
                (Arc::new(Arc::clone(&sim)), Some(sim))
            }
            #[cfg(feature = "whatsapp-web")]
            ConnectorChoice::WhatsAppWeb(cfg) => {
                let wa = crate::connector::whatsapp::WhatsAppWeb::new(cfg)
                    .map_err(|e| StartError::Connector(e.to_string()))?
                    .with_journal(journal.clone());
                (Arc::new(wa), None)
            }
        };
        let connector_kind = connector.kind();
        let store_kind = store.kind();
        let publisher = StatePublisher::new(
            index.clone(),
            status_batcher.clone(),
            Arc::clone(&store),
            journal,
        );
        let restore = Arc::new(RestoreProgress::default());
        let registry = {
            let (m, cfg, arbs, progress) = (
                Arc::clone(&metrics),
                config.registry,
                session_arbiters.clone(),
                Arc::clone(&restore),
            );
            let (conn, st, qr, inbound) = (
                Arc::clone(&connector),
                Arc::clone(&store),
                qr_batcher.clone(),
                inbound_batcher.clone(),
            );
            let own_meter = meter("registry");
            let exits_meter = own_meter.clone();
            // Built here, where the registry's address exists: sessions
            // report their exits to it through a recipient.
            let addr = SessionRegistry::start_in_arbiter(&control, move |ctx| {
                let own = MeteredAddr::new(ctx.address(), exits_meter, None);
                let deps = SessionDeps {
                    connector: conn,
                    store: st,
                    qr,
                    inbound,
                    publisher,
                    exits: own.recipient(),
                };
                SessionRegistry::new(cfg, deps, arbs, progress, m)
            });
            RegistryHandle::new(MeteredAddr::new(addr, own_meter, None))
        };

        let messages = {
            let gauge = Arc::new(QueueGauge::default());
            let limits = messages::QueueLimits {
                total: config.messages.queue_limit,
                per_session: config.messages.queue_limit_per_session,
            };
            let deps = QueueDeps {
                log: Arc::clone(&message_log),
                registry: registry.clone(),
                index: index.clone(),
                inbound: inbound_batcher.clone(),
                restore: Arc::clone(&restore),
                gauge: Arc::clone(&gauge),
                metrics: Arc::clone(&metrics),
            };
            let cfg = config.messages;
            let addr = MessageQueue::start_in_arbiter(&io, move |_| MessageQueue::new(cfg, deps));
            MessagesHandle::new(MessagesParts {
                log: message_log,
                queue: MeteredAddr::new(addr, meter("message_queue"), None),
                gauge,
                limits,
                index: index.clone(),
                store: Arc::clone(&store),
                redis_health: redis.as_ref().map(|(_, h)| Arc::clone(h)),
                metrics: Arc::clone(&metrics),
            })
        };

        let mut arbiters = session_arbiters;
        arbiters.push(io);
        arbiters.push(control);
        Ok(Self {
            registry,
            index,
            renderer,
            metrics,
            stats,
            breaker,
            delivery,
            qr_batcher,
            status_batcher,
            inbound_batcher,
            simulator,
            connector_kind,
            connector,
            store_kind,
            store,
            redis_health: redis.as_ref().map(|(_, h)| Arc::clone(h)),
            redis: redis.map(|(c, _)| c),
            restore,
            key_counts,
            messages,
            arbiters,
        })
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
        let (qr_tx, qr_rx) = oneshot::channel();
        let (st_tx, st_rx) = oneshot::channel();
        let (in_tx, in_rx) = oneshot::channel();
        self.qr_batcher.do_send(Drain { done: qr_tx });
        self.status_batcher.do_send(Drain { done: st_tx });
        self.inbound_batcher.do_send(Drain { done: in_tx });
        let _ = futures_util::join!(qr_rx, st_rx, in_rx);
        for a in &self.arbiters {
            a.stop();
        }
    }
}
