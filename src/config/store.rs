//! `[store]` (memory or Redis, this node's name, restore pace) and `[redis]`
//! (where Redis is: one URL, host/port, a cluster or sentinels). "Redis is
//! configured" is decided once, in [`RedisSection::configured`]. `REDIS_URL`
//! and `REDIS_PASSWORD` are secrets (a URL may carry the password).
//! Used by `Config` and by the production guard.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wagate_actors::redis::{RedisSettings, RedisTopology};

use super::rules::{invalid, lenient_secret, list, non_empty, non_empty_secret, positive};
use super::ConfigError;

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
    #[serde(deserialize_with = "lenient_secret")]
    pub url: SecretString,
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "lenient_secret")]
    pub password: SecretString,
    pub db: i64,
    pub cluster: bool,
    pub nodes: String,
    pub sentinel: bool,
    pub sentinel_urls: String,
    pub sentinel_master: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
}

impl StoreSection {
    pub(super) fn validate(&self, redis: &RedisSection) -> Result<(), ConfigError> {
        positive("RESTORE_RATE", self.restore_rate)?;
        positive("CACHE_TTL", self.cache_ttl_secs)?;
        positive("METRICS_CACHE_INTERVAL", self.key_counts_interval_secs)?;
        if self.kind == StoreKind::Redis && !redis.configured() {
            return Err(invalid(
                "STORE",
                "is redis, but none of REDIS_URL, REDIS_HOST, REDIS_CLUSTER, REDIS_SENTINEL is set",
            ));
        }
        Ok(())
    }

    /// Whether the Redis store is used (`STORE`, `auto` = when configured).
    pub fn uses_redis(&self, redis: &RedisSection) -> bool {
        match self.kind {
            StoreKind::Memory => false,
            StoreKind::Redis => true,
            StoreKind::Auto => redis.configured(),
        }
    }

    /// This node's name: `NODE_ID`, else the host name.
    pub fn node_id(&self) -> String {
        non_empty(&self.node_id)
            .or_else(|| std::env::var("HOSTNAME").ok().and_then(|h| non_empty(&h)))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .and_then(|h| non_empty(&h))
            })
            .unwrap_or_else(|| "wagate".into())
    }
}

impl RedisSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("REDIS_CONNECT_TIMEOUT", self.connect_timeout_ms)?;
        positive("REDIS_RESPONSE_TIMEOUT", self.response_timeout_ms)?;
        if self.cluster && list(&self.nodes).next().is_none() {
            return Err(invalid(
                "REDIS_NODES",
                "must list at least one host:port when REDIS_CLUSTER=true",
            ));
        }
        if self.sentinel && list(&self.sentinel_urls).next().is_none() {
            return Err(invalid(
                "REDIS_SENTINEL_URLS",
                "must list at least one host:port when REDIS_SENTINEL=true",
            ));
        }
        Ok(())
    }

    /// Some way to reach Redis is set.
    pub fn configured(&self) -> bool {
        non_empty_secret(&self.url).is_some()
            || non_empty(&self.host).is_some()
            || self.cluster
            || self.sentinel
    }

    /// Where Redis is, with the password and the URLs as secrets (the
    /// connection exposes them only to the Redis client; `describe`
    /// redacts them for logs).
    pub fn settings(&self) -> RedisSettings {
        let password = non_empty_secret(&self.password);
        let topology = if self.cluster {
            RedisTopology::Cluster {
                nodes: list(&self.nodes)
                    .map(as_url)
                    .map(SecretString::from)
                    .collect(),
                password,
            }
        } else if self.sentinel {
            RedisTopology::Sentinel {
                urls: list(&self.sentinel_urls)
                    .map(as_url)
                    .map(SecretString::from)
                    .collect(),
                master: self.sentinel_master.clone(),
                password,
                db: self.db,
            }
        } else if let Some(url) = non_empty_secret(&self.url) {
            RedisTopology::Single { url }
        } else {
            let host = non_empty(&self.host).unwrap_or_else(|| "127.0.0.1".into());
            let auth = password
                .map(|p| format!(":{}@", percent_encode(p.expose_secret())))
                .unwrap_or_default();
            RedisTopology::Single {
                url: format!("redis://{auth}{host}:{}/{}", self.port, self.db).into(),
            }
        };
        RedisSettings {
            topology,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            response_timeout: Duration::from_millis(self.response_timeout_ms),
        }
    }
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
