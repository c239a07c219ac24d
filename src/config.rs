//! Configuration: `config/default.toml` (embedded in the binary), then the
//! file named by `WAGATE_CONFIG`, then environment variables — the old
//! gateway's names (`PORT`, `BATCH_SIZE`, …, see [`ENV_NAMES`]) and
//! `WAGATE_<SECTION>__<KEY>` for any key. A bad value fails at start with
//! an error that names the key. Called by `main` and by tests.

use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};
use wagate_actors::batch::qr::QrPayload;
use wagate_actors::batch::BatchConfig;
use wagate_actors::bounds::{LogBounds, OutboxBounds};
use wagate_actors::connector::simulator::SimulatorConfig;
#[cfg(feature = "whatsapp-web")]
use wagate_actors::connector::whatsapp::{Presence, WhatsAppConfig};
use wagate_actors::laravel::breaker::BreakerConfig;
use wagate_actors::laravel::client::LaravelConfig;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_actors::messages::queue::MessageQueueConfig;
use wagate_actors::redis::{RedisSettings, RedisTopology};
use wagate_actors::registry::supervision::{Lifetimes, RestartPolicy};
use wagate_actors::registry::RegistryConfig;
use wagate_actors::tls::TlsSettings;
use wagate_actors::{ConnectorChoice, GatewayConfig};

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable → config key. The first column is what operators
/// of the old gateway already set.
pub const ENV_NAMES: &[(&str, &str)] = &[
    ("HOST", "server.host"),
    ("BIND", "server.host"),
    ("PORT", "server.port"),
    ("CLUSTER_WORKERS", "server.workers"),
    ("BODY_LIMIT_BYTES", "server.body_limit_bytes"),
    ("API_KEYS", "server.api_keys"),
    ("SHUTDOWN_TIMEOUT", "server.shutdown_timeout_secs"),
    ("NODE_ENV", "server.environment"),
    ("CLIENT_REQUEST_TIMEOUT", "server.client_request_timeout_ms"),
    ("API_KEY_MIN_LENGTH", "server.api_key_min_length"),
    ("METRICS_KEY", "server.metrics_key"),
    ("LARAVEL_API", "laravel.api"),
    ("LARAVEL_TOKEN", "laravel.token"),
    ("LARAVEL_SIGNING_SECRET", "laravel.signing_secret"),
    ("LARAVEL_SIGNATURE_VERSION", "laravel.signature_version"),
    ("LARAVEL_LEGACY", "laravel.legacy"),
    ("QR_FORMAT", "laravel.qr_format"),
    ("LARAVEL_TIMEOUT", "laravel.timeout_ms"),
    ("LARAVEL_MAX_RETRIES", "laravel.max_retries"),
    ("LARAVEL_RETRY_BASE", "laravel.retry_base_ms"),
    ("LARAVEL_RETRY_MAX", "laravel.retry_max_ms"),
    ("LARAVEL_MAX_CONNECTIONS", "laravel.max_connections"),
    ("QR_STALE_AFTER", "laravel.qr_stale_after_ms"),
    ("LARAVEL_CA_FILE", "laravel.ca_file"),
    ("LARAVEL_DEGRADED_AFTER", "laravel.degraded_after_secs"),
    ("CIRCUIT_BREAKER_THRESHOLD", "breaker.threshold"),
    ("CIRCUIT_BREAKER_RESET", "breaker.reset_ms"),
    ("BATCH_SIZE", "batch.size"),
    ("BATCH_INTERVAL", "batch.interval_ms"),
    ("PRIORITY_INTERVAL", "batch.priority_interval_ms"),
    ("MESSAGES_BATCH_INTERVAL", "batch.messages_interval_ms"),
    ("MAX_ACTIVE_SESSIONS", "sessions.max_active"),
    ("SESSION_IDLE_TTL", "sessions.idle_ttl_secs"),
    ("SESSION_MAX_LIFETIME", "sessions.max_lifetime_secs"),
    ("SESSION_SWEEP_INTERVAL", "sessions.sweep_interval_secs"),
    ("SESSION_RESTART_MAX", "sessions.restart_max"),
    ("SESSION_RESTART_WINDOW", "sessions.restart_window_secs"),
    (
        "SESSION_RESTART_BACKOFF",
        "sessions.restart_backoff_base_ms",
    ),
    ("SESSION_ARBITERS", "sessions.arbiters"),
    ("MAX_STORED_SESSIONS", "sessions.max_stored"),
    ("SESSION_RETENTION", "sessions.retention_secs"),
    ("STORE", "store.kind"),
    ("NODE_ID", "store.node_id"),
    ("RESTORE_RATE", "store.restore_rate"),
    ("CACHE_TTL", "store.cache_ttl_secs"),
    ("METRICS_CACHE_INTERVAL", "store.key_counts_interval_secs"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_HOST", "redis.host"),
    ("REDIS_PORT", "redis.port"),
    ("REDIS_PASSWORD", "redis.password"),
    ("REDIS_DB", "redis.db"),
    ("REDIS_CLUSTER", "redis.cluster"),
    ("REDIS_NODES", "redis.nodes"),
    ("REDIS_SENTINEL", "redis.sentinel"),
    ("REDIS_SENTINEL_URLS", "redis.sentinel_urls"),
    ("REDIS_SENTINEL_MASTER", "redis.sentinel_master"),
    ("REDIS_CONNECT_TIMEOUT", "redis.connect_timeout_ms"),
    ("REDIS_RESPONSE_TIMEOUT", "redis.response_timeout_ms"),
    ("MAX_CONCURRENT_MESSAGES", "messages.max_concurrent"),
    ("MESSAGE_MAX_RETRIES", "messages.max_retries"),
    ("MESSAGE_RETRY_DELAY", "messages.retry_delay_ms"),
    ("MESSAGE_RETRY_MAX", "messages.retry_max_ms"),
    (
        "MESSAGE_PROCESSING_TIMEOUT",
        "messages.processing_timeout_ms",
    ),
    ("MESSAGE_MIN_GAP", "messages.min_gap_ms"),
    ("MESSAGE_MAX_WAIT", "messages.max_wait_secs"),
    ("MESSAGE_QUEUE_LIMIT", "messages.queue_limit"),
    ("MESSAGE_BUFFER", "messages.buffer"),
    ("MESSAGE_RECORD_TTL", "messages.record_ttl_secs"),
    (
        "MESSAGE_QUEUE_LIMIT_PER_SESSION",
        "messages.queue_limit_per_session",
    ),
    ("MESSAGE_LOG_MAX", "messages.log_max"),
    ("DEAD_LETTER_MAX", "messages.dead_max"),
    ("DEAD_LETTER_TTL", "messages.dead_ttl_secs"),
    ("DEAD_LETTER_TEXT_MAX", "messages.dead_text_max"),
    ("OUTBOX_MAX_BATCHES", "laravel.outbox_max_batches"),
    ("OUTBOX_MAX_BYTES", "laravel.outbox_max_bytes"),
    ("CONNECTOR", "connector.kind"),
    ("DATA_DIR", "whatsapp.data_dir"),
    ("WA_URL", "whatsapp.url"),
    ("WA_VERSION", "whatsapp.version"),
    ("WA_THREADS", "whatsapp.threads"),
    ("WA_FORWARD_STATUS", "whatsapp.forward_status"),
    ("WA_PRESENCE", "whatsapp.presence"),
    ("SIM_QR_FIRST_MS", "simulator.qr_first_ms"),
    ("SIM_QR_ROTATE_MS", "simulator.qr_rotate_ms"),
    ("SIM_QR_COUNT", "simulator.qr_count"),
    ("SIM_RECONNECT_MS", "simulator.reconnect_ms"),
    ("SIM_SEND_LATENCY_MS", "simulator.send_latency_ms"),
    ("SIM_SEND_FAIL_FIRST", "simulator.send_fail_first"),
    ("SIM_SEND_FAIL_RATE", "simulator.send_fail_rate"),
    ("MAX_CONCURRENT_QR", "qr.max_concurrent"),
    ("QR_CACHE_CAPACITY", "qr.cache_capacity"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_LEVEL", "log.level"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Parse(String),
    #[error("configuration error: {key} {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub laravel: LaravelSection,
    pub breaker: BreakerSection,
    pub batch: BatchSection,
    pub sessions: SessionsSection,
    pub store: StoreSection,
    pub redis: RedisSection,
    pub messages: MessagesSection,
    pub connector: ConnectorSection,
    pub whatsapp: WhatsAppSection,
    pub simulator: SimulatorSection,
    pub qr: QrSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub body_limit_bytes: usize,
    #[serde(deserialize_with = "lenient_string")]
    pub api_keys: String,
    pub shutdown_timeout_secs: u64,
    pub environment: String,
    /// Longest wait for a request's head and body (slow senders get 408).
    pub client_request_timeout_ms: u64,
    /// Shortest API key accepted at start.
    pub api_key_min_length: usize,
    /// When set, `/metrics*` want this key (empty: open).
    #[serde(deserialize_with = "lenient_string")]
    pub metrics_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaravelSection {
    pub api: String,
    #[serde(deserialize_with = "lenient_string")]
    pub token: String,
    #[serde(deserialize_with = "lenient_string")]
    pub signing_secret: String,
    /// 2 signs the Idempotency-Key too; 1 only for a Laravel with the old middleware.
    pub signature_version: u8,
    pub legacy: bool,
    pub qr_format: QrFormatSetting,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_connections: usize,
    pub qr_stale_after_ms: u64,
    /// A PEM file of extra CA certificates for HTTPS to Laravel; empty = none.
    pub ca_file: String,
    pub degraded_after_secs: u64,
    pub outbox_max_batches: usize,
    pub outbox_max_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QrFormatSetting {
    Png,
    Raw,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    pub threshold: u32,
    pub reset_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    pub size: usize,
    pub interval_ms: u64,
    pub priority_interval_ms: u64,
    pub messages_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    pub max_active: usize,
    pub idle_ttl_secs: u64,
    pub max_lifetime_secs: u64,
    pub sweep_interval_secs: u64,
    pub restart_max: u32,
    pub restart_window_secs: u64,
    pub restart_backoff_base_ms: u64,
    pub restart_backoff_max_ms: u64,
    pub arbiters: usize,
    /// Sessions held in any state; creating one more answers 429.
    pub max_stored: usize,
    /// Stopped, failed or logged-out sessions are forgotten this long after
    /// they ended (never a stopped linked one: see the registry sweep).
    pub retention_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Auto,
    Memory,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub kind: StoreKind,
    pub node_id: String,
    pub restore_rate: u32,
    pub cache_ttl_secs: u64,
    pub key_counts_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    pub url: String,
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "lenient_string")]
    pub password: String,
    pub db: i64,
    pub cluster: bool,
    pub nodes: String,
    pub sentinel: bool,
    pub sentinel_urls: String,
    pub sentinel_master: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorKind {
    Simulator,
    WhatsappWeb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSection {
    pub kind: ConnectorKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSection {
    pub data_dir: String,
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub version: String,
    pub threads: usize,
    /// Forward status posts, newsletters and broadcast lists as messages.
    pub forward_status: bool,
    pub presence: WaPresence,
}

/// `WA_PRESENCE`: what linked devices announce once online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaPresence {
    /// Keeps the phone's notifications on (the default).
    Unavailable,
    Available,
}

/// `WA_VERSION`: `2.3000.1023456789`, or empty to fetch the current one.
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim().split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSection {
    pub qr_first_ms: u64,
    pub qr_rotate_ms: u64,
    pub qr_count: u32,
    pub reconnect_ms: u64,
    pub send_latency_ms: u64,
    pub send_fail_first: u32,
    pub send_fail_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesSection {
    pub max_concurrent: usize,
    pub max_retries: u32,
    pub retry_delay_ms: u64,
    pub retry_max_ms: u64,
    pub processing_timeout_ms: u64,
    pub min_gap_ms: u64,
    pub max_wait_secs: u64,
    pub queue_limit: u64,
    pub buffer: usize,
    pub record_ttl_secs: u64,
    pub queue_limit_per_session: u64,
    /// Memory store: message records kept at most (oldest finished go first).
    pub log_max: usize,
    pub dead_max: usize,
    pub dead_ttl_secs: u64,
    /// Characters of a dead letter's text kept (the rest is cut, with a hash).
    pub dead_text_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrSection {
    pub max_concurrent: usize,
    pub cache_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: LogFormat,
    pub level: String,
}

/// The non-empty items of a comma-separated setting.
fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `host:port` → `redis://host:port`; URLs stay as they are.
fn as_url(node: &str) -> String {
    if node.contains("://") {
        node.to_owned()
    } else {
        format!("redis://{node}")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Accepts a string or any scalar (a token of digits parses as a number).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

fn legacy_env() -> Env {
    Env::raw().filter_map(|key| {
        ENV_NAMES
            .iter()
            .find(|(name, _)| key.as_str().eq_ignore_ascii_case(name))
            .map(|(_, path)| (*path).into())
    })
}

/// Names each bad key the way an operator sets it: `BATCH_SIZE (batch.size)`.
fn describe(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let path = e.path.join(".").to_ascii_lowercase();
            let env = ENV_NAMES.iter().find(|(_, p)| *p == path).map(|(n, _)| *n);
            let key = match env {
                Some(name) => format!("{name} ({path})"),
                None if path.is_empty() => "config".to_owned(),
                None => path,
            };
            format!("{key}: {}", e.kind)
        })
        .collect();
    ConfigError::Parse(lines.join("; "))
}

impl Config {
    /// Defaults + `WAGATE_CONFIG` file + environment.
    pub fn load() -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Ok(path) = std::env::var("WAGATE_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment
            .merge(legacy_env())
            .merge(Env::prefixed("WAGATE_").split("__").ignore(&["CONFIG"]));
        Self::extract(figment)
    }

    /// The embedded defaults alone (tests start from here).
    pub fn defaults() -> Self {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
            .expect("config/default.toml is valid")
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges serde cannot express. Keys are named as operators set them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 9] = [
            ("BATCH_SIZE", self.batch.size as u64),
            ("BATCH_INTERVAL", self.batch.interval_ms),
            ("MESSAGES_BATCH_INTERVAL", self.batch.messages_interval_ms),
            ("CIRCUIT_BREAKER_THRESHOLD", self.breaker.threshold as u64),
            ("CIRCUIT_BREAKER_RESET", self.breaker.reset_ms),
            ("MAX_CONCURRENT_QR", self.qr.max_concurrent as u64),
            ("LARAVEL_TIMEOUT", self.laravel.timeout_ms),
            ("SESSION_SWEEP_INTERVAL", self.sessions.sweep_interval_secs),
            ("BODY_LIMIT_BYTES", self.server.body_limit_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                });
            }
        }
        if self.sessions.max_active == 0 {
            return Err(ConfigError::Invalid {
                key: "MAX_ACTIVE_SESSIONS",
                message: "must be greater than 0".into(),
            });
        }
        for (key, value) in [
            ("RESTORE_RATE", u64::from(self.store.restore_rate)),
            ("CACHE_TTL", self.store.cache_ttl_secs),
            ("REDIS_CONNECT_TIMEOUT", self.redis.connect_timeout_ms),
            ("REDIS_RESPONSE_TIMEOUT", self.redis.response_timeout_ms),
            (
                "MAX_CONCURRENT_MESSAGES",
                self.messages.max_concurrent as u64,
            ),
            ("MESSAGE_RETRY_DELAY", self.messages.retry_delay_ms),
            (
                "MESSAGE_PROCESSING_TIMEOUT",
                self.messages.processing_timeout_ms,
            ),
            ("MESSAGE_QUEUE_LIMIT", self.messages.queue_limit),
            ("MESSAGE_BUFFER", self.messages.buffer as u64),
            ("MESSAGE_RECORD_TTL", self.messages.record_ttl_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.simulator.send_fail_rate) {
            return Err(ConfigError::Invalid {
                key: "SIM_SEND_FAIL_RATE",
                message: "must be between 0 and 1".into(),
            });
        }
        let r = &self.redis;
        if r.cluster && list(&r.nodes).next().is_none() {
            return Err(ConfigError::Invalid {
                key: "REDIS_NODES",
                message: "must list at least one host:port when REDIS_CLUSTER=true".into(),
            });
        }
        if r.sentinel && list(&r.sentinel_urls).next().is_none() {
            return Err(ConfigError::Invalid {
                key: "REDIS_SENTINEL_URLS",
                message: "must list at least one host:port when REDIS_SENTINEL=true".into(),
            });
        }
        if self.store.kind == StoreKind::Redis
            && r.url.trim().is_empty()
            && r.host.trim().is_empty()
            && !r.cluster
            && !r.sentinel
        {
            return Err(ConfigError::Invalid {
                key: "STORE",
                message: "is redis, but none of REDIS_URL, REDIS_HOST, REDIS_CLUSTER, REDIS_SENTINEL is set".into(),
            });
        }
        let wa = &self.whatsapp;
        if !wa.version.trim().is_empty() && parse_version(&wa.version).is_none() {
            return Err(ConfigError::Invalid {
                key: "WA_VERSION",
                message: format!(
                    "must be three numbers like 2.3000.1023456789, got {:?}",
                    wa.version
                ),
            });
        }
        let url = wa.url.trim();
        if !(url.is_empty() || url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(ConfigError::Invalid {
                key: "WA_URL",
                message: format!("must be a ws:// or wss:// URL, got {url:?}"),
            });
        }
        if self.connector.kind == ConnectorKind::WhatsappWeb {
            if !cfg!(feature = "whatsapp-web") {
                return Err(ConfigError::Invalid {
                    key: "CONNECTOR",
                    message: "is whatsapp-web, but this build has no whatsapp-web feature".into(),
                });
            }
            if wa.data_dir.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "DATA_DIR",
                    message: "must name a directory for the WhatsApp keys".into(),
                });
            }
        }
        if let Some(path) = Self::non_empty(&self.laravel.ca_file) {
            wagate_actors::tls::check_ca_file(std::path::Path::new(&path)).map_err(|e| {
                ConfigError::Invalid {
                    key: "LARAVEL_CA_FILE",
                    message: format!("must name a PEM file of CA certificates: {e}"),
                }
            })?;
        }
        if self.laravel.degraded_after_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "LARAVEL_DEGRADED_AFTER",
                message: "must be greater than 0".into(),
            });
        }
        if SignatureVersion::from_number(self.laravel.signature_version).is_none() {
            return Err(ConfigError::Invalid {
                key: "LARAVEL_SIGNATURE_VERSION",
                message: format!(
                    "must be 2 (signs the Idempotency-Key too) or 1 (a Laravel with the old middleware), got {}",
                    self.laravel.signature_version
                ),
            });
        }
        let api = self.laravel.api.trim();
        if !(api.is_empty() || api.starts_with("http://") || api.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "LARAVEL_API",
                message: format!("must be an http:// or https:// URL, got {api:?}"),
            });
        }
        self.validate_security()?;
        crate::production::check(self)
    }

    /// The bounds must be positive and every key long enough (issue 17).
    fn validate_security(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "CLIENT_REQUEST_TIMEOUT",
                self.server.client_request_timeout_ms,
            ),
            (
                "METRICS_CACHE_INTERVAL",
                self.store.key_counts_interval_secs,
            ),
            ("MAX_STORED_SESSIONS", self.sessions.max_stored as u64),
            ("SESSION_RETENTION", self.sessions.retention_secs),
            (
                "MESSAGE_QUEUE_LIMIT_PER_SESSION",
                self.messages.queue_limit_per_session,
            ),
            ("MESSAGE_LOG_MAX", self.messages.log_max as u64),
            ("DEAD_LETTER_MAX", self.messages.dead_max as u64),
            ("DEAD_LETTER_TTL", self.messages.dead_ttl_secs),
            ("OUTBOX_MAX_BATCHES", self.laravel.outbox_max_batches as u64),
            ("OUTBOX_MAX_BYTES", self.laravel.outbox_max_bytes as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                });
            }
        }
        if self.sessions.max_stored < self.sessions.max_active {
            return Err(ConfigError::Invalid {
                key: "MAX_STORED_SESSIONS",
                message: format!(
                    "must be at least MAX_ACTIVE_SESSIONS ({})",
                    self.sessions.max_active
                ),
            });
        }
        let min = self.server.api_key_min_length;
        // Never echo a key: name its position and length only.
        if let Some((i, k)) = self
            .api_keys()
            .iter()
            .enumerate()
            .find(|(_, k)| k.chars().count() < min)
        {
            return Err(ConfigError::Invalid {
                key: "API_KEYS",
                message: format!(
                    "key #{} has {} characters; at least {min} are required (API_KEY_MIN_LENGTH)",
                    i + 1,
                    k.chars().count()
                ),
            });
        }
        let metrics_key = self.server.metrics_key.trim();
        if !metrics_key.is_empty() && metrics_key.chars().count() < min {
            return Err(ConfigError::Invalid {
                key: "METRICS_KEY",
                message: format!(
                    "has {} characters; at least {min} are required (API_KEY_MIN_LENGTH)",
                    metrics_key.chars().count()
                ),
            });
        }
        Ok(())
    }

    /// The Redis to use, or `None` for the memory store.
    pub fn redis(&self) -> Option<RedisSettings> {
        let r = &self.redis;
        let configured =
            !r.url.trim().is_empty() || !r.host.trim().is_empty() || r.cluster || r.sentinel;
        let wanted = match self.store.kind {
            StoreKind::Memory => false,
            StoreKind::Redis => true,
            StoreKind::Auto => configured,
        };
        if !wanted {
            return None;
        }
        let password = Self::non_empty(&r.password);
        let topology = if r.cluster {
            RedisTopology::Cluster {
                nodes: list(&r.nodes).map(as_url).collect(),
                password,
            }
        } else if r.sentinel {
            RedisTopology::Sentinel {
                urls: list(&r.sentinel_urls).map(as_url).collect(),
                master: r.sentinel_master.clone(),
                password,
                db: r.db,
            }
        } else if let Some(url) = Self::non_empty(&r.url) {
            RedisTopology::Single { url }
        } else {
            let host = Self::non_empty(&r.host).unwrap_or_else(|| "127.0.0.1".into());
            let auth = password
                .map(|p| format!(":{}@", percent_encode(&p)))
                .unwrap_or_default();
            RedisTopology::Single {
                url: format!("redis://{auth}{host}:{}/{}", r.port, r.db),
            }
        };
        Some(RedisSettings {
            topology,
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            response_timeout: Duration::from_millis(r.response_timeout_ms),
        })
    }

    /// This node's name: `NODE_ID`, else the host name.
    pub fn node_id(&self) -> String {
        Self::non_empty(&self.store.node_id)
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .and_then(|h| Self::non_empty(&h))
            })
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .and_then(|h| Self::non_empty(&h))
            })
            .unwrap_or_else(|| "wagate".into())
    }

    /// API keys from the comma-separated setting.
    pub fn api_keys(&self) -> Vec<String> {
        self.server
            .api_keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect()
    }

    /// `METRICS_KEY` as a key list (empty when unset: metrics are open).
    pub fn metrics_keys(&self) -> Vec<String> {
        Self::non_empty(&self.server.metrics_key)
            .into_iter()
            .collect()
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// A thread count setting: 0 means one per core.
    fn per_core(n: usize) -> usize {
        match n {
            0 => Self::cores(),
            n => n,
        }
    }

    pub fn http_workers(&self) -> usize {
        Self::per_core(self.server.workers)
    }

    fn non_empty(s: &str) -> Option<String> {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }

    /// Bounds of the message log (both stores) and of the Laravel outbox.
    pub fn log_bounds(&self) -> LogBounds {
        let m = &self.messages;
        LogBounds {
            record_ttl: Duration::from_secs(m.record_ttl_secs),
            max_records: m.log_max,
            dead_max: m.dead_max,
            dead_ttl: Duration::from_secs(m.dead_ttl_secs),
            dead_text_max: m.dead_text_max,
        }
    }

    pub fn outbox_bounds(&self) -> OutboxBounds {
        OutboxBounds {
            max_batches: self.laravel.outbox_max_batches,
            max_bytes: self.laravel.outbox_max_bytes,
        }
    }

    /// The actor system's view of this configuration.
    pub fn gateway(&self) -> GatewayConfig {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let s = &self.sessions;
        GatewayConfig {
            registry: RegistryConfig {
                max_active_sessions: s.max_active,
                lifetimes: Lifetimes {
                    idle_ttl: secs(s.idle_ttl_secs),
                    // 0 = never renew.
                    max_lifetime: (s.max_lifetime_secs > 0).then(|| secs(s.max_lifetime_secs)),
                },
                sweep_interval: secs(s.sweep_interval_secs),
                node_id: self.node_id(),
                restore_per_sec: self.store.restore_rate,
                cache_refresh: Duration::from_secs((self.store.cache_ttl_secs / 3).max(1)),
                max_stored_sessions: s.max_stored,
                retention: secs(s.retention_secs),
                restart: RestartPolicy {
                    max_restarts: s.restart_max,
                    window: secs(s.restart_window_secs),
                    backoff_base: ms(s.restart_backoff_base_ms),
                    backoff_max: ms(s.restart_backoff_max_ms),
                },
            },
            batch: BatchConfig {
                size: self.batch.size,
                interval: ms(self.batch.interval_ms),
                priority_interval: ms(self.batch.priority_interval_ms),
                inbound_interval: ms(self.batch.messages_interval_ms),
                legacy: self.laravel.legacy,
            },
            qr_payload: match self.laravel.qr_format {
                QrFormatSetting::Png => QrPayload::PngDataUrl,
                QrFormatSetting::Raw => QrPayload::Raw,
            },
            laravel: LaravelConfig {
                base_url: Self::non_empty(&self.laravel.api)
                    .map(|u| u.trim_end_matches('/').to_owned()),
                token: Self::non_empty(&self.laravel.token),
                signing_secret: Self::non_empty(&self.laravel.signing_secret),
                signature_version: SignatureVersion::from_number(self.laravel.signature_version)
                    .expect("validate() accepts only 1 and 2"),
                timeout: ms(self.laravel.timeout_ms),
                max_retries: self.laravel.max_retries,
                retry_base: ms(self.laravel.retry_base_ms),
                retry_max: ms(self.laravel.retry_max_ms),
                breaker: BreakerConfig {
                    failure_threshold: self.breaker.threshold,
                    reset_after: ms(self.breaker.reset_ms),
                },
                qr_stale_after: ms(self.laravel.qr_stale_after_ms),
                max_connections: self.laravel.max_connections,
                replay_max_items: self.batch.size,
                degraded_after: secs(self.laravel.degraded_after_secs),
            },
            tls: TlsSettings {
                extra_ca_file: Self::non_empty(&self.laravel.ca_file).map(Into::into),
            },
            qr_workers: self.qr.max_concurrent,
            qr_cache_capacity: self.qr.cache_capacity,
            session_arbiters: Self::per_core(s.arbiters),
            messages: MessageQueueConfig {
                consumer: self.node_id(),
                max_concurrent: self.messages.max_concurrent,
                max_retries: self.messages.max_retries,
                retry_base: ms(self.messages.retry_delay_ms),
                retry_max: ms(self.messages.retry_max_ms),
                processing_timeout: ms(self.messages.processing_timeout_ms),
                pacing: ms(self.messages.min_gap_ms),
                max_wait: secs(self.messages.max_wait_secs),
                queue_limit: self.messages.queue_limit,
                queue_limit_per_session: self.messages.queue_limit_per_session,
                buffer: self.messages.buffer,
            },
            connector: match self.connector.kind {
                ConnectorKind::Simulator => ConnectorChoice::Simulator(SimulatorConfig {
                    qr_first: ms(self.simulator.qr_first_ms),
                    qr_rotate: ms(self.simulator.qr_rotate_ms),
                    qr_count: self.simulator.qr_count,
                    reconnect_delay: ms(self.simulator.reconnect_ms),
                    send_latency: ms(self.simulator.send_latency_ms),
                    send_fail_first: self.simulator.send_fail_first,
                    send_fail_rate: self.simulator.send_fail_rate,
                }),
                #[cfg(feature = "whatsapp-web")]
                ConnectorKind::WhatsappWeb => ConnectorChoice::WhatsAppWeb(WhatsAppConfig {
                    data_dir: self.whatsapp.data_dir.clone().into(),
                    url: Self::non_empty(&self.whatsapp.url),
                    version: parse_version(&self.whatsapp.version),
                    threads: Self::per_core(self.whatsapp.threads),
                    forward_status: self.whatsapp.forward_status,
                    presence: match self.whatsapp.presence {
                        WaPresence::Unavailable => Presence::Unavailable,
                        WaPresence::Available => Presence::Available,
                    },
                }),
                #[cfg(not(feature = "whatsapp-web"))]
                ConnectorKind::WhatsappWeb => unreachable!("validate() refuses it"),
            },
            key_counts_interval: secs(self.store.key_counts_interval_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    // figment's Jail closures must return its (large) error type.
    #![allow(clippy::result_large_err)]
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_match_the_seed() {
        let c = Config::defaults();
        assert_eq!(c.server.port, 4000);
        assert_eq!(c.batch.size, 50);
        assert_eq!(c.batch.interval_ms, 5000);
        assert_eq!(c.breaker.threshold, 10);
        assert_eq!(c.breaker.reset_ms, 120_000);
        assert_eq!(c.sessions.max_active, 250);
        assert_eq!(c.qr.max_concurrent, 10);
    }

    #[test]
    fn every_env_name_is_documented_in_default_toml_and_vice_versa() {
        for (name, path) in ENV_NAMES {
            let key = path.rsplit('.').next().unwrap();
            let line = DEFAULT_TOML.lines().find(|l| {
                l.trim_start().starts_with(&format!("{key} ")) && l.contains(&format!("# {name}"))
            });
            assert!(
                line.is_some(),
                "{name} ({path}) is not documented beside its key in default.toml"
            );
        }
        for line in DEFAULT_TOML.lines().filter(|l| l.contains(" = ")) {
            if let Some(comment) = line.split("# ").nth(1) {
                let name = comment.split([':', ' ', '(']).next().unwrap();
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                    assert!(
                        ENV_NAMES.iter().any(|(n, _)| *n == name),
                        "{name} in default.toml is not mapped"
                    );
                }
            }
        }
    }

    #[test]
    fn seed_names_and_prefixed_names_override() {
        Jail::expect_with(|jail| {
            jail.set_env("PORT", "8080");
            jail.set_env("BATCH_INTERVAL", "250");
            jail.set_env("API_KEYS", "k1-0123456789abcd, 1234567890123456");
            jail.set_env("LARAVEL_TOKEN", "98765");
            jail.set_env("WAGATE_LARAVEL__MAX_RETRIES", "7");
            let c = Config::load().expect("valid");
            assert_eq!(c.server.port, 8080);
            assert_eq!(c.batch.interval_ms, 250);
            assert_eq!(c.api_keys(), vec!["k1-0123456789abcd", "1234567890123456"]);
            assert_eq!(c.laravel.token, "98765");
            assert_eq!(c.laravel.max_retries, 7);
            Ok(())
        });
    }

    #[test]
    fn redis_comes_from_the_seed_names() {
        Jail::expect_with(|jail| {
            assert!(
                Config::load().unwrap().redis().is_none(),
                "memory by default"
            );
            jail.set_env("REDIS_HOST", "cache");
            jail.set_env("REDIS_PASSWORD", "p@ss:w");
            let r = Config::load().unwrap().redis().expect("auto picks redis");
            assert_eq!(
                r.topology,
                RedisTopology::Single {
                    url: "redis://:p%40ss%3Aw@cache:6379/0".into()
                }
            );
            jail.set_env("REDIS_CLUSTER", "true");
            jail.set_env("REDIS_NODES", "a:7000, b:7001");
            match Config::load().unwrap().redis().expect("cluster").topology {
                RedisTopology::Cluster { nodes, password } => {
                    assert_eq!(nodes, vec!["redis://a:7000", "redis://b:7001"]);
                    assert_eq!(password.as_deref(), Some("p@ss:w"));
                }
                other => panic!("{other:?}"),
            }
            jail.set_env("STORE", "memory");
            assert!(Config::load().unwrap().redis().is_none());
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STORE", "redis");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("STORE"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("BATCH_SIZE", "lots");
            let err = Config::load().unwrap_err().to_string();
            assert!(
                err.contains("BATCH_SIZE (batch.size)") && err.contains("lots"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("BATCH_SIZE", "0");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("BATCH_SIZE"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARAVEL_API", "ftp://x");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("LARAVEL_API"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CONNECTOR", "telegram");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("CONNECTOR (connector.kind)"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn laravel_ca_file_is_checked_at_start() {
        Jail::expect_with(|jail| {
            jail.set_env("LARAVEL_CA_FILE", "/nonexistent/ca.pem");
            let err = Config::load().unwrap_err().to_string();
            assert!(
                err.contains("LARAVEL_CA_FILE") && err.contains("/nonexistent/ca.pem"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("junk.pem", "not a certificate")?;
            jail.set_env("LARAVEL_CA_FILE", "junk.pem");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("LARAVEL_CA_FILE"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            let ca = wagate_testkit::TestCa::new("config test CA");
            jail.create_file("ca.pem", &ca.pem())?;
            jail.set_env("LARAVEL_CA_FILE", "ca.pem");
            jail.set_env("LARAVEL_DEGRADED_AFTER", "30");
            let c = Config::load().expect("a PEM CA file is accepted");
            let g = c.gateway();
            assert_eq!(
                g.tls.extra_ca_file.as_deref(),
                Some(std::path::Path::new("ca.pem"))
            );
            assert_eq!(g.laravel.degraded_after, Duration::from_secs(30));
            assert_eq!(g.laravel.replay_max_items, c.batch.size);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARAVEL_DEGRADED_AFTER", "0");
            let err = Config::load().unwrap_err().to_string();
            assert!(err.contains("LARAVEL_DEGRADED_AFTER"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn signature_version_defaults_to_2_and_only_1_or_2_start() {
        Jail::expect_with(|_| {
            let c = Config::load().expect("valid");
            assert_eq!(c.gateway().laravel.signature_version, SignatureVersion::V2);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARAVEL_SIGNATURE_VERSION", "1");
            let c = Config::load().expect("valid");
            assert_eq!(c.gateway().laravel.signature_version, SignatureVersion::V1);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARAVEL_SIGNATURE_VERSION", "3");
            let err = Config::load().unwrap_err().to_string();
            assert!(
                err.contains("LARAVEL_SIGNATURE_VERSION") && err.contains("got 3"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    #[cfg(feature = "whatsapp-web")]
    fn whatsapp_web_settings_parse_and_bad_ones_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("CONNECTOR", "whatsapp-web");
            jail.set_env("DATA_DIR", "/var/lib/wagate");
            jail.set_env("WA_VERSION", "2.3000.1023456789");
            let c = Config::load().expect("valid");
            assert_eq!(c.connector.kind, ConnectorKind::WhatsappWeb);
            assert_eq!(
                parse_version(&c.whatsapp.version),
                Some((2, 3000, 1023456789))
            );
            assert!(matches!(
                c.gateway().connector,
                ConnectorChoice::WhatsAppWeb(ref wa) if wa.data_dir.ends_with("wagate")
                    && wa.presence == Presence::Unavailable
                    && !wa.forward_status
            ));
            jail.set_env("WA_PRESENCE", "available");
            jail.set_env("WA_FORWARD_STATUS", "true");
            let c = Config::load().expect("valid");
            assert!(matches!(
                c.gateway().connector,
                ConnectorChoice::WhatsAppWeb(ref wa)
                    if wa.presence == Presence::Available && wa.forward_status
            ));
            Ok(())
        });
        for (key, value) in [
            ("WA_VERSION", "latest"),
            ("WA_URL", "http://relay"),
            ("WA_PRESENCE", "away"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(key, value);
                let err = Config::load().unwrap_err().to_string();
                assert!(err.contains(key), "{err}");
                Ok(())
            });
        }
    }
}
