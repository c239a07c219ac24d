//! The wagate service: configuration, logging and the HTTP API around the
//! actor system of `wagate-actors`. [`Application::build`] is used by `main`
//! and by the integration tests (port 0), so both run the same app.

pub mod audit;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod production;
pub mod signals;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use wagate_actors::redis::RedisConn;
use wagate_actors::{Backends, Gateway};

use crate::config::Config;
use crate::http::auth::ApiKeys;
use crate::http::AppState;

/// The longest the drain after the HTTP server stopped may take (sends in
/// flight, sessions, batchers); a stop grace must cover this plus
/// `SHUTDOWN_TIMEOUT` (see `deploy/docker-compose.yml`).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A built, listening gateway.
pub struct Application {
    server: Server,
    port: u16,
    gateway: Arc<Gateway>,
    shutting_down: Arc<AtomicBool>,
}

impl Application {
    /// Starts the actors and binds the HTTP server (port 0 picks a free one).
    /// Must run inside an actix `System`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((config.server.host.as_str(), config.server.port))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}:{}: {e}",
                    config.server.host,
                    config.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let mut gateway_config = config.gateway();
        gateway_config.incoming_media.public_url = config::MediaSection::public_url(
            &gateway_config.incoming_media.public_url,
            listener.local_addr()?,
        );
        let redis = config.redis();
        // Safe to print: tokens, passwords and URLs with passwords are
        // `SecretString`s and show as [REDACTED] (a test reads this line).
        tracing::debug!(config = ?gateway_config, redis = ?redis, "actor system configuration");
        let forwarding = gateway_config.laravel.base_url.is_some();
        let backends = match redis {
            None => Backends::memory(config.messages.log_bounds(), config.laravel.outbox_bounds()),
            Some(settings) => {
                let conn = RedisConn::connect(&settings).await.map_err(|e| {
                    anyhow::anyhow!("cannot reach Redis at {}: {e}", settings.describe())
                })?;
                tracing::info!(redis = %settings.describe(), mode = conn.mode(), "using the Redis store");
                Backends::redis(
                    conn,
                    Duration::from_secs(config.store.cache_ttl_secs),
                    config.messages.log_bounds(),
                    config.laravel.outbox_bounds(),
                )
            }
        };
        let gateway = Arc::new(Gateway::start(gateway_config, backends)?);
        let api_keys = ApiKeys::new(&config.server.api_keys());
        let request_timeout = Duration::from_millis(config.server.client_request_timeout_ms);
        announce(&config, port, forwarding, &api_keys, &gateway);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            gateway: Arc::clone(&gateway),
            api_keys,
            started: Instant::now(),
            environment: config.server.environment.clone(),
            shutting_down: Arc::clone(&shutting_down),
            body_limit: config.server.body_limit_bytes,
            forwarding,
            metrics_key: ApiKeys::new(&config.server.metrics_keys()),
            audit: audit::AuditLimiter::default(),
            body_timeout: request_timeout,
            http: http::observe::HttpMetrics::register(&gateway.metrics().registry)?,
            media: config.messages.media_limits(),
            rate_limits: http::rate_limit::RateLimits::new(&config.server.rate_limits()),
            scoped_keys: http::keys::ScopedKeys::new(Arc::clone(gateway.store())),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    http::body_timeout::limit_body_time,
                ))
                .wrap(actix_web::middleware::from_fn(http::limits::limit_request))
                .wrap(http::error::json_error_bodies())
                .wrap(actix_web::middleware::from_fn(http::observe::observe))
                .configure(http::configure(state.clone()))
        })
        .client_request_timeout(request_timeout)
        .workers(config.server.http_workers())
        // Our drain decides when the actor system stops (see `signals`).
        .disable_signals()
        .shutdown_timeout(config.server.shutdown_timeout_secs)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            port,
            gateway,
            shutting_down,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The actor system, for in-process tests and tools.
    pub fn gateway(&self) -> Arc<Gateway> {
        Arc::clone(&self.gateway)
    }

    /// Stops the HTTP server (as SIGTERM would); `run_until_stopped` then drains.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// What `main` runs: serves until SIGTERM or SIGINT, then drains as
    /// [`Self::run_until_stopped`] does. A second signal during the drain
    /// exits at once (what remains queued in Redis is sent after a restart).
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        actix_rt::spawn(async move {
            match signals::stop_requested().await {
                Ok(signal) => {
                    tracing::info!(
                        signal,
                        "stop requested; draining (a second signal exits at once)"
                    );
                    handle.stop(true).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch stop signals");
                    return;
                }
            }
            if let Ok(signal) = signals::stop_requested().await {
                tracing::warn!(
                    signal,
                    "second stop signal: exiting before the drain finished"
                );
                std::process::exit(1);
            }
        });
        self.run_until_stopped().await
    }

    /// Serves until `handle().stop()`, then stops accepting, stops the
    /// sessions and flushes the batchers to Laravel.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutting_down.store(true, Ordering::Relaxed);
        tracing::info!("HTTP server stopped; draining sessions and batchers");
        let started = Instant::now();
        if tokio::time::timeout(DRAIN_LIMIT, self.gateway.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain did not finish within DRAIN_LIMIT; exiting anyway");
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "drained; bye"
        );
        result
    }
}

fn announce(config: &Config, port: u16, forwarding: bool, api_keys: &ApiKeys, gateway: &Gateway) {
    tracing::info!(
        port,
        http_workers = config.server.http_workers(),
        connector = gateway.connector_kind(),
        store = gateway.store_kind(),
        max_active_sessions = config.sessions.max_active,
        batch_size = config.batch.size,
        batch_interval_ms = config.batch.interval_ms,
        legacy = config.laravel.legacy,
        "wagate listening"
    );
    if !forwarding {
        tracing::warn!(
            "LARAVEL_API is not set: running without forwarding; no update reaches Laravel"
        );
    }
    if api_keys.is_empty() {
        tracing::warn!("API_KEYS is not set: the API is open to anyone who can reach this port");
    }
    // Keys only change with a restart: the audit log says which are in force.
    let fingerprints: Vec<String> = config
        .server
        .api_keys()
        .iter()
        .map(|k| audit::fingerprint(k.expose_secret()))
        .collect();
    tracing::info!(
        target: "audit",
        event = "keys_loaded",
        api_keys = fingerprints.join(","),
        metrics_key = !config.server.metrics_keys().is_empty(),
        "API keys in force (SHA-256 fingerprints)"
    );
    if gateway.store_kind() == "memory" {
        tracing::warn!(
            "memory store: sessions, credentials, queued messages and the Laravel outbox do not survive a restart (set REDIS_URL for durability)"
        );
    }
}
