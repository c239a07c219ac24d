//! `[webhooks]`: how the gateway delivers to webhook subscriptions and to
//! `LARAVEL_FALLBACK_URL` (`[laravel] fallback_url`, whose token and
//! signature are Laravel's). Used by `Config::gateway`.

use std::time::Duration;

use serde::Deserialize;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_actors::webhooks::WebhookConfig;

use super::laravel::LaravelSection;
use super::rules::{non_empty, non_empty_secret, positive};
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    pub timeout_ms: u64,
    pub batch_size: usize,
    pub max_pending: usize,
    pub max_pending_bytes: usize,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retry_for_secs: u64,
    pub breaker_threshold: u32,
    pub breaker_reset_ms: u64,
}

impl WebhooksSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("WEBHOOK_TIMEOUT", self.timeout_ms)?;
        positive("WEBHOOK_BATCH_SIZE", self.batch_size)?;
        positive("WEBHOOK_MAX_PENDING", self.max_pending)?;
        positive("WEBHOOK_MAX_PENDING_BYTES", self.max_pending_bytes)?;
        positive("WEBHOOK_RETRY_BASE", self.retry_base_ms)?;
        positive("WEBHOOK_RETRY_MAX", self.retry_max_ms)?;
        positive("WEBHOOK_RETRY_FOR", self.retry_for_secs)?;
        positive("WEBHOOK_BREAKER_THRESHOLD", self.breaker_threshold)?;
        positive("WEBHOOK_BREAKER_RESET", self.breaker_reset_ms)
    }

    /// The sender's settings; the fallback signs as Laravel's client does.
    pub(super) fn sender(&self, laravel: &LaravelSection) -> WebhookConfig {
        let ms = Duration::from_millis;
        WebhookConfig {
            timeout: ms(self.timeout_ms),
            batch_items: self.batch_size,
            max_pending: self.max_pending,
            max_pending_bytes: self.max_pending_bytes,
            retry_base: ms(self.retry_base_ms),
            retry_max: ms(self.retry_max_ms),
            give_up_after: Duration::from_secs(self.retry_for_secs),
            breaker_threshold: self.breaker_threshold,
            breaker_reset: ms(self.breaker_reset_ms),
            fallback_url: non_empty(&laravel.fallback_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            fallback_token: non_empty_secret(&laravel.token),
            fallback_signing_secret: non_empty_secret(&laravel.signing_secret),
            fallback_signature: SignatureVersion::from_number(laravel.signature_version)
                .unwrap_or_default(),
        }
    }
}
