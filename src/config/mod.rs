//! Configuration: `config/default.toml` (embedded in the binary), then the
//! file named by `WAGATE_CONFIG`, then environment variables — the old
//! gateway's names (`PORT`, `BATCH_SIZE`, …, see [`ENV_NAMES`]) and
//! `WAGATE_<SECTION>__<KEY>` for any key. A bad value fails at start with
//! an error that names the key. Each section checks and converts itself in
//! its own module; this one loads, runs the checks in order and assembles
//! the actor system's [`GatewayConfig`]. Called by `main` and by tests.

mod connector;
mod env;
mod laravel;
mod media;
mod messages;
#[cfg(test)]
mod props;
mod rules;
mod server;
mod sessions;
mod store;
#[cfg(test)]
mod tests;
mod webhooks;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use wagate_actors::redis::RedisSettings;
use wagate_actors::GatewayConfig;

pub use self::connector::{
    ConnectorKind, ConnectorSection, SimulatorSection, WaPresence, WhatsAppSection,
};
pub use self::env::ENV_NAMES;
pub use self::laravel::{BreakerSection, LaravelSection, QrFormatSetting};
pub use self::media::MediaSection;
pub use self::messages::{BatchSection, MessagesSection, QrSection};
pub use self::rules::cores;
pub use self::server::{LogFormat, LogSection, ServerConfig};
pub use self::sessions::SessionsSection;
pub use self::store::{RedisSection, StoreKind, StoreSection};
pub use self::webhooks::WebhooksSection;

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Parse(String),
    #[error("configuration error: {key} {message}")]
    Invalid { key: &'static str, message: String },
}

/// Every setting. `Debug` is safe to log: secrets print as `[REDACTED]`.
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
    pub media: MediaSection,
    pub connector: ConnectorSection,
    pub whatsapp: WhatsAppSection,
    pub simulator: SimulatorSection,
    pub qr: QrSection,
    pub webhooks: WebhooksSection,
    pub log: LogSection,
}

/// Refuses, by name, a variable figment would mangle or panic on
/// ([`env::misparsed_by_figment`]), before figment reads it.
fn refuse_misparsed_env() -> Result<(), ConfigError> {
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        let ours = name.to_ascii_uppercase().starts_with("WAGATE_")
            || ENV_NAMES.iter().any(|(n, _)| name.eq_ignore_ascii_case(n));
        if ours && env::misparsed_by_figment(value) {
            return Err(ConfigError::Parse(format!(
                "{name}: a quoted value with a backslash escape after a non-ASCII \
                 character cannot be read; write the value without quotes or escapes"
            )));
        }
    }
    Ok(())
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
        refuse_misparsed_env()?;
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

    /// Checks ranges serde cannot express, section by section, then the
    /// production guard. Keys are named as operators set them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.laravel.validate()?;
        self.breaker.validate()?;
        self.batch.validate()?;
        self.sessions.validate()?;
        self.redis.validate()?;
        self.store.validate(&self.redis)?;
        self.messages.validate()?;
        self.media.validate()?;
        self.connector.validate(&self.whatsapp)?;
        self.simulator.validate()?;
        self.qr.validate()?;
        self.webhooks.validate()?;
        crate::production::check(self)
    }

    /// The Redis to use, or `None` for the memory store.
    pub fn redis(&self) -> Option<RedisSettings> {
        self.store
            .uses_redis(&self.redis)
            .then(|| self.redis.settings())
    }

    /// The actor system's view of this configuration.
    pub fn gateway(&self) -> GatewayConfig {
        let node_id = self.store.node_id();
        GatewayConfig {
            registry: self.sessions.registry(&self.store, node_id.clone()),
            batch: self.batch.batching(self.laravel.legacy),
            qr_payload: self.laravel.qr_payload(),
            laravel: self.laravel.client(&self.breaker, self.batch.size),
            tls: self.laravel.tls(),
            qr_workers: self.qr.max_concurrent,
            qr_cache_capacity: self.qr.cache_capacity,
            session_arbiters: self.sessions.arbiters(),
            messages: self.messages.queue(node_id),
            connector: self.connector.choice(&self.simulator, &self.whatsapp),
            key_counts_interval: std::time::Duration::from_secs(
                self.store.key_counts_interval_secs,
            ),
            incoming_media: self.media.incoming(&self.laravel.signing_secret),
            webhooks: self.webhooks.sender(&self.laravel),
        }
    }
}
