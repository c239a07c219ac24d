//! `[messages]` (outbound queue: concurrency, retries, pacing, limits, the
//! message log and dead letters), `[batch]` (how updates to Laravel are
//! grouped) and `[qr]` (rendering). Used by `Config::gateway` and by
//! `Application::build` (the log bounds).

use std::time::Duration;

use serde::Deserialize;
use wagate_actors::batch::BatchConfig;
use wagate_actors::bounds::LogBounds;
use wagate_actors::messages::humane::HumaneRules;
use wagate_actors::messages::queue::MessageQueueConfig;

use super::rules::{invalid, positive};
use super::ConfigError;

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
    /// Largest media a send may carry, decoded (`MEDIA_MAX_BYTES`).
    pub media_max_bytes: usize,
    /// Longest fetch of a media `url` (`MEDIA_FETCH_TIMEOUT`).
    pub media_fetch_timeout_ms: u64,
    /// A media `url` may point at a private or loopback address
    /// (`MEDIA_FETCH_ALLOW_PRIVATE`; off: the SSRF guard refuses them).
    pub media_fetch_allow_private: bool,
    /// `MESSAGE_HUMANE`: messages without `humane` type before they are sent.
    #[serde(default)]
    pub humane: bool,
    /// `HUMANE_TYPING_PER_CHAR_MS`, `HUMANE_TYPING_MIN_MS`, `HUMANE_TYPING_MAX_MS`.
    #[serde(default = "default_per_char")]
    pub humane_per_char_ms: u64,
    #[serde(default = "default_humane_min")]
    pub humane_min_ms: u64,
    #[serde(default = "default_humane_max")]
    pub humane_max_ms: u64,
}

fn default_per_char() -> u64 {
    HumaneRules::default().per_char.as_millis() as u64
}

fn default_humane_min() -> u64 {
    HumaneRules::default().min.as_millis() as u64
}

fn default_humane_max() -> u64 {
    HumaneRules::default().max.as_millis() as u64
}

impl MessagesSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("MAX_CONCURRENT_MESSAGES", self.max_concurrent)?;
        positive("MESSAGE_RETRY_DELAY", self.retry_delay_ms)?;
        positive("MESSAGE_PROCESSING_TIMEOUT", self.processing_timeout_ms)?;
        positive("MESSAGE_QUEUE_LIMIT", self.queue_limit)?;
        positive("MESSAGE_BUFFER", self.buffer)?;
        positive("MESSAGE_RECORD_TTL", self.record_ttl_secs)?;
        positive(
            "MESSAGE_QUEUE_LIMIT_PER_SESSION",
            self.queue_limit_per_session,
        )?;
        positive("MESSAGE_LOG_MAX", self.log_max)?;
        positive("DEAD_LETTER_MAX", self.dead_max)?;
        positive("DEAD_LETTER_TTL", self.dead_ttl_secs)?;
        positive("MEDIA_MAX_BYTES", self.media_max_bytes)?;
        positive("MEDIA_FETCH_TIMEOUT", self.media_fetch_timeout_ms)?;
        if self.humane_min_ms > self.humane_max_ms {
            return Err(invalid(
                "HUMANE_TYPING_MIN_MS",
                format!(
                    "must not exceed HUMANE_TYPING_MAX_MS ({} ms)",
                    self.humane_max_ms
                ),
            ));
        }
        if self.humane_max_ms > 60_000 {
            return Err(invalid(
                "HUMANE_TYPING_MAX_MS",
                "must be at most 60000 (a minute of typing)",
            ));
        }
        Ok(())
    }

    /// What media intake accepts.
    pub fn media_limits(&self) -> crate::http::media::MediaLimits {
        crate::http::media::MediaLimits {
            max_bytes: self.media_max_bytes,
            fetch_timeout: Duration::from_millis(self.media_fetch_timeout_ms),
            allow_private: self.media_fetch_allow_private,
        }
    }

    /// The queue's settings; `consumer` is this node's name.
    pub(super) fn queue(&self, consumer: String) -> MessageQueueConfig {
        let ms = Duration::from_millis;
        MessageQueueConfig {
            consumer,
            max_concurrent: self.max_concurrent,
            max_retries: self.max_retries,
            retry_base: ms(self.retry_delay_ms),
            retry_max: ms(self.retry_max_ms),
            processing_timeout: ms(self.processing_timeout_ms),
            pacing: ms(self.min_gap_ms),
            max_wait: Duration::from_secs(self.max_wait_secs),
            queue_limit: self.queue_limit,
            queue_limit_per_session: self.queue_limit_per_session,
            buffer: self.buffer,
            humane_default: self.humane,
            humane: HumaneRules {
                per_char: ms(self.humane_per_char_ms),
                min: ms(self.humane_min_ms),
                max: ms(self.humane_max_ms),
            },
        }
    }

    /// Bounds of the message log (both stores).
    pub fn log_bounds(&self) -> LogBounds {
        LogBounds {
            record_ttl: Duration::from_secs(self.record_ttl_secs),
            max_records: self.log_max,
            dead_max: self.dead_max,
            dead_ttl: Duration::from_secs(self.dead_ttl_secs),
            dead_text_max: self.dead_text_max,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    pub size: usize,
    pub interval_ms: u64,
    pub priority_interval_ms: u64,
    pub messages_interval_ms: u64,
}

impl BatchSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("BATCH_SIZE", self.size)?;
        positive("BATCH_INTERVAL", self.interval_ms)?;
        positive("MESSAGES_BATCH_INTERVAL", self.messages_interval_ms)
    }

    /// The batchers' settings; `legacy` is `LARAVEL_LEGACY`.
    pub(super) fn batching(&self, legacy: bool) -> BatchConfig {
        let ms = Duration::from_millis;
        BatchConfig {
            size: self.size,
            interval: ms(self.interval_ms),
            priority_interval: ms(self.priority_interval_ms),
            inbound_interval: ms(self.messages_interval_ms),
            legacy,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrSection {
    pub max_concurrent: usize,
    pub cache_capacity: usize,
}

impl QrSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("MAX_CONCURRENT_QR", self.max_concurrent)
    }
}
