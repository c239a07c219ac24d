//! `[laravel]` (where updates go, how they are signed and retried, the
//! outbox bounds) and `[breaker]`. The token and the signing secret are
//! secrets: they print as `[REDACTED]` and leave this module only inside
//! the actor system's `LaravelConfig`. Used by `Config::gateway`.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use wagate_actors::batch::qr::QrPayload;
use wagate_actors::bounds::OutboxBounds;
use wagate_actors::laravel::breaker::BreakerConfig;
use wagate_actors::laravel::client::LaravelConfig;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_actors::tls::TlsSettings;

use super::rules::{invalid, lenient_secret, non_empty, non_empty_secret, positive};
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaravelSection {
    pub api: String,
    #[serde(deserialize_with = "lenient_secret")]
    pub token: SecretString,
    #[serde(deserialize_with = "lenient_secret")]
    pub signing_secret: SecretString,
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
    /// Gets a copy of every batch held while the breaker is open; empty = none.
    pub fallback_url: String,
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

impl BreakerSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("CIRCUIT_BREAKER_THRESHOLD", self.threshold)?;
        positive("CIRCUIT_BREAKER_RESET", self.reset_ms)
    }

    fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.threshold,
            reset_after: Duration::from_millis(self.reset_ms),
        }
    }
}

impl LaravelSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("LARAVEL_TIMEOUT", self.timeout_ms)?;
        positive("LARAVEL_DEGRADED_AFTER", self.degraded_after_secs)?;
        positive("OUTBOX_MAX_BATCHES", self.outbox_max_batches)?;
        positive("OUTBOX_MAX_BYTES", self.outbox_max_bytes)?;
        if let Some(path) = non_empty(&self.ca_file) {
            wagate_actors::tls::check_ca_file(Path::new(&path)).map_err(|e| {
                invalid(
                    "LARAVEL_CA_FILE",
                    format!("must name a PEM file of CA certificates: {e}"),
                )
            })?;
        }
        if SignatureVersion::from_number(self.signature_version).is_none() {
            return Err(invalid(
                "LARAVEL_SIGNATURE_VERSION",
                format!(
                    "must be 2 (signs the Idempotency-Key too) or 1 (a Laravel with the old middleware), got {}",
                    self.signature_version
                ),
            ));
        }
        for (key, url) in [
            ("LARAVEL_API", &self.api),
            ("LARAVEL_FALLBACK_URL", &self.fallback_url),
        ] {
            let url = url.trim();
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    key,
                    format!("must be an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if !self.fallback_url.trim().is_empty() && self.api.trim().is_empty() {
            return Err(invalid(
                "LARAVEL_FALLBACK_URL",
                "receives batches while Laravel's breaker is open: set LARAVEL_API too",
            ));
        }
        Ok(())
    }

    /// The client's settings; `replay_max_items` is the batch size.
    pub(super) fn client(
        &self,
        breaker: &BreakerSection,
        replay_max_items: usize,
    ) -> LaravelConfig {
        let ms = Duration::from_millis;
        LaravelConfig {
            base_url: non_empty(&self.api).map(|u| u.trim_end_matches('/').to_owned()),
            token: non_empty_secret(&self.token),
            signing_secret: non_empty_secret(&self.signing_secret),
            signature_version: SignatureVersion::from_number(self.signature_version)
                .expect("validate() accepts only 1 and 2"),
            timeout: ms(self.timeout_ms),
            max_retries: self.max_retries,
            retry_base: ms(self.retry_base_ms),
            retry_max: ms(self.retry_max_ms),
            breaker: breaker.breaker(),
            qr_stale_after: ms(self.qr_stale_after_ms),
            max_connections: self.max_connections,
            replay_max_items,
            degraded_after: Duration::from_secs(self.degraded_after_secs),
        }
    }

    pub(super) fn tls(&self) -> TlsSettings {
        TlsSettings {
            extra_ca_file: non_empty(&self.ca_file).map(Into::into),
        }
    }

    pub(super) fn qr_payload(&self) -> QrPayload {
        match self.qr_format {
            QrFormatSetting::Png => QrPayload::PngDataUrl,
            QrFormatSetting::Raw => QrPayload::Raw,
        }
    }

    pub fn outbox_bounds(&self) -> OutboxBounds {
        OutboxBounds {
            max_batches: self.outbox_max_batches,
            max_bytes: self.outbox_max_bytes,
        }
    }
}
