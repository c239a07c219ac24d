//! [`Gateway::start`]: wires the actor system, one named step per part, in
//! the order the parts need each other (views and threads, the Laravel
//! client, the batchers, the connector, the registry, the message queue).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{Backends, Batchers, ConnectorChoice, Gateway, GatewayConfig, StartError};
use crate::batch::inbound::InboundBatcher;
use crate::batch::qr::{QrBatcher, QrPayload};
use crate::batch::status::StatusBatcher;
use crate::batch::BatchConfig;
use crate::clock;
use crate::connector::simulator::Simulator;
use crate::connector::Connector;
use crate::events::EventBus;
use crate::incoming_media::IncomingMedia;
use crate::journal::Journal;
use crate::laravel::breaker::BreakerView;
use crate::laravel::client::{LaravelClient, LaravelConfig};
use crate::laravel::delivery::{DeliveryHealth, DeliveryView};
use crate::laravel::outbox::Outbox;
use crate::mailbox::{MailboxMeter, MeteredAddr};
use crate::messages::handle::{MessagesHandle, MessagesParts, QueueGauge};
use crate::messages::queue::{MessageQueue, MessageQueueConfig, QueueDeps};
use crate::messages::{MessageLog, QueueLimits};
use crate::metrics::Metrics;
use crate::qr_render::QrRenderer;
use crate::redis::health::RedisHealth;
use crate::redis::RedisConn;
use crate::registry::{RegistryConfig, RegistryHandle, RestoreProgress, SessionRegistry};
use crate::runtime_tasks::RuntimeTasks;
use crate::session::index::SessionIndex;
use crate::session::publisher::StatePublisher;
use crate::session::SessionDeps;
use crate::stats::GatewayStats;
use crate::store::counts::KeyCounts;
use crate::store::Store;
use crate::webhooks::sender::{FallbackBatch, WebhookSender};
use crate::webhooks::{WebhookConfig, WebhooksHandle};

/// How often Redis is pinged for `/health`.
const REDIS_PING_EVERY: Duration = Duration::from_secs(1);

/// The threads the gateway owns: control actors (registry) on their own,
/// the batchers, the Laravel client and the message queue on an I/O one,
/// sessions spread over `sessions`.
struct Threads {
    io: ArbiterHandle,
    control: ArbiterHandle,
    /// Webhooks and the fallback URL: a slow receiver never delays the
    /// batchers or the Laravel client.
    webhooks: ArbiterHandle,
    sessions: Vec<ArbiterHandle>,
}

impl Threads {
    fn start(session_arbiters: usize) -> Self {
        Self {
            io: Arbiter::new().handle(),
            control: Arbiter::new().handle(),
            webhooks: Arbiter::new().handle(),
            sessions: (0..session_arbiters.max(1))
                .map(|_| Arbiter::new().handle())
                .collect(),
        }
    }

    /// Registers every thread's runtime, and the caller's as `main`, for
    /// `wagate_runtime_alive_tasks`.
    fn watch(&self) -> Arc<RuntimeTasks> {
        let tasks = Arc::new(RuntimeTasks::default());
        tasks.watch_current("main");
        tasks.watch_arbiter("io".into(), &self.io);
        tasks.watch_arbiter("control".into(), &self.control);
        tasks.watch_arbiter("webhooks".into(), &self.webhooks);
        for (n, a) in self.sessions.iter().enumerate() {
            tasks.watch_arbiter(format!("session-{n}"), a);
        }
        tasks
    }

    /// Every handle, for the stop on shutdown.
    fn into_all(self) -> Vec<ArbiterHandle> {
        let mut all = self.sessions;
        all.push(self.io);
        all.push(self.control);
        all.push(self.webhooks);
        all
    }
}

/// What every step needs: the metrics and the batchers' counters.
struct Shared {
    metrics: Arc<Metrics>,
    stats: Arc<GatewayStats>,
}

impl Shared {
    fn meter(&self, actor: &str) -> MailboxMeter {
        MailboxMeter::new(&self.metrics, actor)
    }
}

impl Gateway {
    /// Starts every actor. Must run inside an actix `System`. Fails only
    /// when the configured connector cannot start (its data directory) or
    /// the TLS trust cannot be built.
    pub fn start(config: GatewayConfig, backends: Backends) -> Result<Self, StartError> {
        let GatewayConfig {
            registry: registry_config,
            batch,
            qr_payload,
            laravel,
            tls,
            qr_workers,
            qr_cache_capacity,
            session_arbiters,
            connector: connector_choice,
            messages: messages_config,
            key_counts_interval,
            incoming_media: incoming_media_config,
            webhooks: webhooks_config,
        } = config;
        let Backends {
            store,
            outbox,
            messages: message_log,
            journal,
            incoming_media: media_store,
            redis,
        } = backends;
        let incoming_media = IncomingMedia::new(media_store, incoming_media_config);
        let shared = Shared {
            metrics: Arc::new(Metrics::new()),
            stats: Arc::new(GatewayStats::default()),
        };
        message_log.attach_metrics(&shared.metrics.bounds);
        outbox.attach_metrics(&shared.metrics.bounds);
        // Built once: loading the system roots reads a few hundred KB.
        let tls = crate::tls::client_config(&tls)?;
        let threads = Threads::start(session_arbiters);
        let runtime_tasks = threads.watch();
        let index = SessionIndex::new(Arc::clone(&shared.metrics));
        let renderer = start_renderer(&shared, qr_workers, qr_cache_capacity);
        let key_counts = count_keys(&threads, &shared, &store, key_counts_interval);
        ping_redis(&threads, &shared, redis.as_ref());
        // Without Laravel nothing is sent: rendering PNGs would be wasted CPU.
        let qr_payload = match laravel.base_url {
            Some(_) => qr_payload,
            None => QrPayload::Raw,
        };
        let breaker = BreakerView::default();
        let delivery = DeliveryView::new(DeliveryHealth::new(
            laravel.degraded_after,
            clock::unix_ms(),
        ));
        let events = EventBus::new(shared.metrics.events.clone());
        let webhooks = start_webhooks(
            &threads,
            &shared,
            webhooks_config,
            Arc::clone(&tls),
            &store,
            &events,
        );
        let client = start_laravel_client(
            &threads,
            &shared,
            laravel,
            tls,
            outbox,
            (breaker.clone(), delivery.clone()),
            webhooks.fallback(),
        );
        let batchers = start_batchers(
            &threads, &shared, batch, qr_payload, &client, &renderer, &journal,
        );
        let (connector, simulator) =
            start_connector(connector_choice, redis.as_ref(), &journal, &incoming_media)?;
        let restore = Arc::new(RestoreProgress::default());
        let publisher = StatePublisher::new(
            index.clone(),
            batchers.status.clone(),
            Arc::clone(&store),
            journal.clone(),
            events.clone(),
        );
        let registry = start_registry(
            &threads,
            &shared,
            registry_config,
            SessionParts {
                connector: Arc::clone(&connector),
                store: Arc::clone(&store),
                batchers: batchers.clone(),
                publisher,
            },
            &restore,
        );
        let redis_health = redis.map(|(_, h)| h);
        let messages = start_messages(
            &threads,
            &shared,
            messages_config,
            MessagesInputs {
                log: message_log,
                registry: registry.clone(),
                index: index.clone(),
                inbound: batchers.inbound.clone(),
                journal,
                restore: Arc::clone(&restore),
                store: Arc::clone(&store),
                redis_health: redis_health.clone(),
                events: events.clone(),
            },
        );
        Ok(Self {
            registry,
            index,
            renderer,
            metrics: shared.metrics,
            stats: shared.stats,
            breaker,
            delivery,
            batchers,
            simulator,
            connector_kind: connector.kind(),
            connector,
            store_kind: store.kind(),
            store,
            redis_health,
            restore,
            key_counts,
            messages,
            arbiters: threads.into_all(),
            runtime_tasks,
            incoming_media,
            events,
            webhooks,
        })
    }
}

/// The QR render pool (its own sync threads), counting cache hits.
fn start_renderer(shared: &Shared, workers: usize, cache_capacity: usize) -> QrRenderer {
    let family = &shared.metrics.qr_render_cache;
    QrRenderer::start(
        workers,
        cache_capacity,
        family.with_label_values(&["hit"]),
        family.with_label_values(&["miss"]),
    )
}

/// Counts the store's keys in the background for `/metrics/cache`.
fn count_keys(
    threads: &Threads,
    shared: &Shared,
    store: &Arc<dyn Store>,
    every: Duration,
) -> Arc<KeyCounts> {
    let key_counts = Arc::new(KeyCounts::default());
    threads.io.spawn(Arc::clone(&key_counts).run(
        Arc::clone(store),
        every,
        shared.metrics.bounds.key_count_refreshes.clone(),
    ));
    key_counts
}

/// Pings Redis, when configured, for `/health` and `wagate_redis_up`.
fn ping_redis(threads: &Threads, shared: &Shared, redis: Option<&(RedisConn, Arc<RedisHealth>)>) {
    if let Some((conn, health)) = redis {
        let run =
            Arc::clone(health).run(conn.clone(), REDIS_PING_EVERY, Arc::clone(&shared.metrics));
        threads.io.spawn(run);
    }
}

/// The webhook sender on its own thread, reading every live event.
fn start_webhooks(
    threads: &Threads,
    shared: &Shared,
    config: WebhookConfig,
    tls: Arc<rustls::ClientConfig>,
    store: &Arc<dyn Store>,
    events: &EventBus,
) -> WebhooksHandle {
    let (metrics, store_for_sender, events) = (
        Arc::clone(&shared.metrics),
        Arc::clone(store),
        events.clone(),
    );
    let fallback = config.fallback_url.is_some();
    let addr = WebhookSender::start_in_arbiter(&threads.webhooks, move |_| {
        WebhookSender::new(config, tls, store_for_sender, events, metrics)
    });
    WebhooksHandle::new(
        Arc::clone(store),
        MeteredAddr::new(addr, shared.meter("webhook_sender"), None),
        fallback,
    )
}

/// The one actor that talks to Laravel; it publishes its breaker and
/// delivery health into `views`, and hands `fallback` copies of what it
/// holds while its breaker is open.
fn start_laravel_client(
    threads: &Threads,
    shared: &Shared,
    config: LaravelConfig,
    tls: Arc<rustls::ClientConfig>,
    outbox: Arc<dyn Outbox>,
    views: (BreakerView, DeliveryView),
    fallback: Option<crate::mailbox::MeteredRecipient<FallbackBatch>>,
) -> MeteredAddr<LaravelClient> {
    let metrics = Arc::clone(&shared.metrics);
    let addr = LaravelClient::start_in_arbiter(&threads.io, move |_| {
        LaravelClient::new(config, tls, outbox, views, metrics).with_fallback(fallback)
    });
    MeteredAddr::new(addr, shared.meter("laravel_client"), None)
}

/// The QR, status and inbound batchers, each sending to the client.
fn start_batchers(
    threads: &Threads,
    shared: &Shared,
    batch: BatchConfig,
    qr_payload: QrPayload,
    client: &MeteredAddr<LaravelClient>,
    renderer: &QrRenderer,
    journal: &Journal,
) -> Batchers {
    let qr = {
        let (m, s, c, r) = (
            Arc::clone(&shared.metrics),
            Arc::clone(&shared.stats),
            client.clone(),
            renderer.clone(),
        );
        let addr = QrBatcher::start_in_arbiter(&threads.io, move |_| {
            QrBatcher::new(batch, qr_payload, r, c, m, s)
        });
        MeteredAddr::new(addr, shared.meter("qr_batcher"), None)
    };
    let status = {
        let (m, s, c, j) = (
            Arc::clone(&shared.metrics),
            Arc::clone(&shared.stats),
            client.clone(),
            journal.clone(),
        );
        let addr = StatusBatcher::start_in_arbiter(&threads.io, move |_| {
            StatusBatcher::new(batch, c, j, m, s)
        });
        MeteredAddr::new(addr, shared.meter("status_batcher"), None)
    };
    let inbound = {
        let (s, c, j) = (Arc::clone(&shared.stats), client.clone(), journal.clone());
        let addr = InboundBatcher::start_in_arbiter(&threads.io, move |_| {
            InboundBatcher::new(batch, c, j, s)
        });
        MeteredAddr::new(addr, shared.meter("inbound_batcher"), None)
    };
    Batchers {
        qr,
        status,
        inbound,
    }
}

/// The connector, and the simulator itself when it is the one.
type ConnectorParts = (Arc<dyn Connector>, Option<Arc<Simulator>>);

/// The connector every session opens its connection through, and the
/// simulator itself when it is the one (for `simulate/*`).
fn start_connector(
    choice: ConnectorChoice,
    redis: Option<&(RedisConn, Arc<RedisHealth>)>,
    journal: &Journal,
    media: &IncomingMedia,
) -> Result<ConnectorParts, StartError> {
    match choice {
        ConnectorChoice::Simulator(cfg) => {
            let (journal, media) = (journal.clone(), media.clone());
            let sim = match redis {
                Some((conn, _)) => Simulator::with_ledger(cfg, conn.clone(), journal, media),
                None => Simulator::new(cfg, journal, media),
            };
            Ok((Arc::new(Arc::clone(&sim)), Some(sim)))
        }
        #[cfg(feature = "whatsapp-web")]
        ConnectorChoice::WhatsAppWeb(cfg) => {
            let wa = crate::connector::whatsapp::WhatsAppWeb::new(cfg)
                .map_err(|e| StartError::Connector(e.to_string()))?
                .with_journal(journal.clone())
                .with_media(media.clone());
            Ok((Arc::new(wa), None))
        }
    }
}

/// What every Session gets, less the exit recipient (which needs the
/// registry's own address).
struct SessionParts {
    connector: Arc<dyn Connector>,
    store: Arc<dyn Store>,
    batchers: Batchers,
    publisher: StatePublisher,
}

/// The registry on the control thread; sessions on the session threads.
fn start_registry(
    threads: &Threads,
    shared: &Shared,
    config: RegistryConfig,
    parts: SessionParts,
    restore: &Arc<RestoreProgress>,
) -> RegistryHandle {
    let (metrics, arbiters, progress) = (
        Arc::clone(&shared.metrics),
        threads.sessions.clone(),
        Arc::clone(restore),
    );
    let own_meter = shared.meter("registry");
    let exits_meter = own_meter.clone();
    // Built here, where the registry's address exists: sessions report
    // their exits to it through a recipient, never by naming its type.
    let addr = SessionRegistry::start_in_arbiter(&threads.control, move |ctx| {
        let own = MeteredAddr::new(ctx.address(), exits_meter, None);
        let deps = SessionDeps {
            connector: parts.connector,
            store: parts.store,
            qr: parts.batchers.qr,
            inbound: parts.batchers.inbound,
            publisher: parts.publisher,
            exits: own.recipient(),
        };
        SessionRegistry::new(config, deps, arbiters, progress, metrics)
    });
    RegistryHandle::new(MeteredAddr::new(addr, own_meter, None))
}

/// What the message queue and its intake handle read and call.
struct MessagesInputs {
    log: Arc<dyn MessageLog>,
    registry: RegistryHandle,
    index: SessionIndex,
    inbound: MeteredAddr<InboundBatcher>,
    journal: Journal,
    restore: Arc<RestoreProgress>,
    store: Arc<dyn Store>,
    redis_health: Option<Arc<RedisHealth>>,
    events: EventBus,
}

/// The message queue on the I/O thread, and the handle HTTP submits through.
fn start_messages(
    threads: &Threads,
    shared: &Shared,
    config: MessageQueueConfig,
    inputs: MessagesInputs,
) -> MessagesHandle {
    let gauge = Arc::new(QueueGauge::default());
    let limits = QueueLimits {
        total: config.queue_limit,
        per_session: config.queue_limit_per_session,
    };
    let deps = QueueDeps {
        log: Arc::clone(&inputs.log),
        registry: inputs.registry,
        index: inputs.index.clone(),
        inbound: inputs.inbound,
        journal: inputs.journal,
        events: inputs.events,
        restore: inputs.restore,
        gauge: Arc::clone(&gauge),
        metrics: Arc::clone(&shared.metrics),
    };
    let humane_default = config.humane_default;
    let addr =
        MessageQueue::start_in_arbiter(&threads.io, move |_| MessageQueue::new(config, deps));
    MessagesHandle::new(MessagesParts {
        log: inputs.log,
        queue: MeteredAddr::new(addr, shared.meter("message_queue"), None),
        gauge,
        limits,
        index: inputs.index,
        store: inputs.store,
        redis_health: inputs.redis_health,
        metrics: Arc::clone(&shared.metrics),
        humane_default,
    })
}
