//! Logging set-up: `tracing` to stdout, human-readable or JSON lines
//! (`LOG_FORMAT=json`), level from `RUST_LOG` or `LOG_LEVEL`. Called once by
//! `main`; tests may call it repeatedly (later calls are no-ops).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

pub fn init(log: &LogSection) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) finds a subscriber already set; that is fine.
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
