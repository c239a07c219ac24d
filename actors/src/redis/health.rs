//! Redis reachability for `/health` and `/health/ready`: a task pings the
//! shared connection every second and records whether it answered and how
//! fast. Sentinel connections are re-resolved after repeated failures.
//! Started by `Gateway::start` when Redis is configured; read by HTTP.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::RedisConn;

/// Failed pings in a row before a Sentinel master is looked up again.
const RERESOLVE_AFTER: u32 = 3;

/// What the last ping showed. Shared, lock-free reads.
#[derive(Default)]
pub struct RedisHealth {
    connected: AtomicBool,
    latency_us: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Set once the first ping finished (either way).
    probed: AtomicBool,
}

/// A copy for `/health`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisHealthView {
    pub connected: bool,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RedisHealth {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> RedisHealthView {
        RedisHealthView {
            connected: self.is_connected(),
            latency_ms: self.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            error: self.last_error.lock().clone(),
        }
    }

    /// Records a command's outcome seen elsewhere (a failed write marks
    /// Redis down at once instead of at the next ping).
    pub fn record(&self, ok: bool, error: Option<String>) {
        let was = self.connected.swap(ok, Ordering::Relaxed);
        self.probed.store(true, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!("Redis is reachable again");
            } else {
                tracing::error!(
                    error = error.as_deref().unwrap_or("?"),
                    "Redis is unreachable"
                );
            }
        }
        *self.last_error.lock() = if ok { None } else { error };
    }

    /// Notes a failed Redis command: a connection-level error (I/O, timeout,
    /// dropped connection) marks Redis down at once. Returns the message,
    /// for the caller's own error type.
    pub fn observe(&self, e: &redis::RedisError) -> String {
        let message = e.to_string();
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            self.record(false, Some(message.clone()));
        }
        message
    }

    /// Pings until the process ends, timing each ping into
    /// `wagate_redis_ping_seconds`. Runs on the I/O arbiter.
    pub async fn run(
        self: Arc<Self>,
        conn: RedisConn,
        every: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let mut c = conn.clone();
            let result: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            match result {
                Ok(_) => {
                    failures = 0;
                    let took = started.elapsed();
                    self.latency_us
                        .store(took.as_micros() as u64, Ordering::Relaxed);
                    metrics.redis_ping_seconds.observe(took.as_secs_f64());
                    self.record(true, None);
                }
                Err(e) => {
                    failures += 1;
                    self.record(false, Some(e.to_string()));
                    if failures % RERESOLVE_AFTER == 0 {
                        if let Err(e) = conn.reresolve().await {
                            tracing::warn!(error = %e, "cannot find the Redis master through Sentinel");
                        }
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}
