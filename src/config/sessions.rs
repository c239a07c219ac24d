//! `[sessions]`: how many sessions live and are stored, how long they may
//! idle or run, how crashed ones are restarted, which threads host them.
//! Turned into the registry's settings (with `[store]`'s node name and
//! restore pace). Used by `Config::gateway`.

use std::time::Duration;

use serde::Deserialize;
use wagate_actors::registry::supervision::{Lifetimes, RestartPolicy};
use wagate_actors::registry::RegistryConfig;

use super::rules::{invalid, per_core, positive};
use super::store::StoreSection;
use super::ConfigError;

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

impl SessionsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("MAX_ACTIVE_SESSIONS", self.max_active)?;
        positive("SESSION_SWEEP_INTERVAL", self.sweep_interval_secs)?;
        positive("MAX_STORED_SESSIONS", self.max_stored)?;
        positive("SESSION_RETENTION", self.retention_secs)?;
        if self.max_stored < self.max_active {
            return Err(invalid(
                "MAX_STORED_SESSIONS",
                format!("must be at least MAX_ACTIVE_SESSIONS ({})", self.max_active),
            ));
        }
        Ok(())
    }

    /// Threads hosting Session actors (`SESSION_ARBITERS`, 0 = one per core).
    pub fn arbiters(&self) -> usize {
        per_core(self.arbiters)
    }

    pub(super) fn registry(&self, store: &StoreSection, node_id: String) -> RegistryConfig {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        RegistryConfig {
            max_active_sessions: self.max_active,
            lifetimes: Lifetimes {
                idle_ttl: secs(self.idle_ttl_secs),
                // 0 = never renew.
                max_lifetime: (self.max_lifetime_secs > 0).then(|| secs(self.max_lifetime_secs)),
            },
            sweep_interval: secs(self.sweep_interval_secs),
            node_id,
            restore_per_sec: store.restore_rate,
            // Renewed well before the cached keys expire.
            cache_refresh: secs((store.cache_ttl_secs / 3).max(1)),
            max_stored_sessions: self.max_stored,
            retention: secs(self.retention_secs),
            restart: RestartPolicy {
                max_restarts: self.restart_max,
                window: secs(self.restart_window_secs),
                backoff_base: ms(self.restart_backoff_base_ms),
                backoff_max: ms(self.restart_backoff_max_ms),
            },
        }
    }
}
