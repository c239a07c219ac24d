//! The environment variables operators of the old gateway already set, and
//! the config key each one fills (`WAGATE_<SECTION>__<KEY>` reaches any key
//! too). Read by `Config::load`, by error messages that name a key the way
//! it was set, and by the test that keeps `config/default.toml` in step.

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
    ("RATE_LIMIT_PER_IP", "server.rate_limit_per_ip"),
    ("RATE_LIMIT_PER_KEY", "server.rate_limit_per_key"),
    ("RATE_LIMIT_BURST", "server.rate_limit_burst"),
    ("TRUSTED_PROXIES", "server.trusted_proxies"),
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
    ("LARAVEL_FALLBACK_URL", "laravel.fallback_url"),
    ("WEBHOOK_TIMEOUT", "webhooks.timeout_ms"),
    ("WEBHOOK_BATCH_SIZE", "webhooks.batch_size"),
    ("WEBHOOK_MAX_PENDING", "webhooks.max_pending"),
    ("WEBHOOK_MAX_PENDING_BYTES", "webhooks.max_pending_bytes"),
    ("WEBHOOK_RETRY_BASE", "webhooks.retry_base_ms"),
    ("WEBHOOK_RETRY_MAX", "webhooks.retry_max_ms"),
    ("WEBHOOK_RETRY_FOR", "webhooks.retry_for_secs"),
    ("WEBHOOK_BREAKER_THRESHOLD", "webhooks.breaker_threshold"),
    ("WEBHOOK_BREAKER_RESET", "webhooks.breaker_reset_ms"),
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
    ("MESSAGE_HUMANE", "messages.humane"),
    ("HUMANE_TYPING_PER_CHAR_MS", "messages.humane_per_char_ms"),
    ("HUMANE_TYPING_MIN_MS", "messages.humane_min_ms"),
    ("HUMANE_TYPING_MAX_MS", "messages.humane_max_ms"),
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
    ("MEDIA_MAX_BYTES", "messages.media_max_bytes"),
    ("MEDIA_FETCH_TIMEOUT", "messages.media_fetch_timeout_ms"),
    (
        "MEDIA_FETCH_ALLOW_PRIVATE",
        "messages.media_fetch_allow_private",
    ),
    ("MEDIA_TTL", "media.ttl_secs"),
    ("MEDIA_URL_SECRET", "media.url_secret"),
    ("PUBLIC_URL", "media.public_url"),
    ("MEDIA_INLINE_MAX", "media.inline_max"),
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
    ("SIM_NOT_ON_WHATSAPP", "simulator.not_on_whatsapp"),
    ("MAX_CONCURRENT_QR", "qr.max_concurrent"),
    ("QR_CACHE_CAPACITY", "qr.cache_capacity"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_LEVEL", "log.level"),
];

/// Whether figment 0.10 would misread `value`: a quoted string (`"…"`, also
/// inside `[…]` or `{…}`) with a backslash escape after a non-ASCII
/// character. Its unescaper cuts the string at the escape's character
/// index as if it were a byte index, so such a value comes out mangled, or
/// panics the loader (found by `config::props`: `HOST="¡\a"`). These are
/// refused by name instead (`Config::load`).
pub fn misparsed_by_figment(value: &str) -> bool {
    let mut chars = value.chars();
    let (mut quoted, mut non_ascii) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                non_ascii = false;
            }
            '\\' if quoted => {
                if non_ascii {
                    return true;
                }
                chars.next();
            }
            c if quoted && !c.is_ascii() => non_ascii = true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod figment_guard_tests {
    use super::misparsed_by_figment;

    #[test]
    fn only_quoted_escapes_after_non_ascii_are_flagged() {
        for bad in ["\"¡\\a\"", "[\"x\", \"ñ\\n\"]", "{k=\"日本\\t\"}"] {
            assert!(misparsed_by_figment(bad), "{bad}");
        }
        for fine in [
            "¡\\a",
            "\"\\n¡\"",
            "\"plain\"",
            "ñandú",
            "\"a\\\"ñ\"",
            "http://h/ñ",
        ] {
            assert!(!misparsed_by_figment(fine), "{fine}");
        }
    }
}
