//! `[server]` (listen address, HTTP workers, API keys, limits) and `[log]`.
//! API keys and the metrics key are secrets: they print as `[REDACTED]`
//! and a refusal names a key by position and length, never by value.
//! Used by `Config` and by `Application::build`.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::rules::{invalid, lenient_secret, list, non_empty_secret, per_core, positive};
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub body_limit_bytes: usize,
    /// Comma-separated (`API_KEYS`).
    #[serde(deserialize_with = "lenient_secret")]
    pub api_keys: SecretString,
    pub shutdown_timeout_secs: u64,
    pub environment: String,
    /// Longest wait for a request's head and body (slow senders get 408).
    pub client_request_timeout_ms: u64,
    /// Shortest API key accepted at start.
    pub api_key_min_length: usize,
    /// When set, `/metrics*` want this key (empty: open).
    #[serde(deserialize_with = "lenient_secret")]
    pub metrics_key: SecretString,
    /// API requests a minute per client IP (0: off).
    pub rate_limit_per_ip: u32,
    /// API requests a minute per API key (0: off).
    pub rate_limit_per_key: u32,
    /// Requests at once before the pace applies (0: a minute's worth).
    pub rate_limit_burst: u32,
    /// Comma-separated addresses or CIDR blocks of proxies whose
    /// `X-Forwarded-For` names the client.
    pub trusted_proxies: String,
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("BODY_LIMIT_BYTES", self.body_limit_bytes)?;
        positive("CLIENT_REQUEST_TIMEOUT", self.client_request_timeout_ms)?;
        // Never echo a key: name its position and length only.
        for (i, key) in self.api_keys().iter().enumerate() {
            self.long_enough("API_KEYS", &format!("key #{} has", i + 1), key)?;
        }
        for key in self.metrics_keys() {
            self.long_enough("METRICS_KEY", "has", &key)?;
        }
        self.trusted_proxies()?;
        Ok(())
    }

    /// `TRUSTED_PROXIES`: an address is a block of one.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        list(&self.trusted_proxies)
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "TRUSTED_PROXIES",
                            format!("'{item}' is neither an IP address nor a CIDR block"),
                        )
                    })
            })
            .collect()
    }

    /// The rate limits of `http::rate_limit`.
    pub fn rate_limits(&self) -> crate::http::rate_limit::RateLimitConfig {
        crate::http::rate_limit::RateLimitConfig {
            per_key_per_minute: self.rate_limit_per_key,
            per_ip_per_minute: self.rate_limit_per_ip,
            burst: self.rate_limit_burst,
            trusted_proxies: self.trusted_proxies().unwrap_or_default(),
        }
    }

    fn long_enough(
        &self,
        key: &'static str,
        what: &str,
        secret: &SecretString,
    ) -> Result<(), ConfigError> {
        let min = self.api_key_min_length;
        let len = secret.expose_secret().chars().count();
        if len < min {
            return Err(invalid(
                key,
                format!(
                    "{what} {len} characters; at least {min} are required (API_KEY_MIN_LENGTH)"
                ),
            ));
        }
        Ok(())
    }

    /// API keys from the comma-separated setting.
    pub fn api_keys(&self) -> Vec<SecretString> {
        list(self.api_keys.expose_secret())
            .map(SecretString::from)
            .collect()
    }

    /// `METRICS_KEY` as a key list (empty when unset: metrics are open).
    pub fn metrics_keys(&self) -> Vec<SecretString> {
        non_empty_secret(&self.metrics_key).into_iter().collect()
    }

    /// HTTP worker threads (`CLUSTER_WORKERS`, 0 = one per core).
    pub fn http_workers(&self) -> usize {
        per_core(self.workers)
    }
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
