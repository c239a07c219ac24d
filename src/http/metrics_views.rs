//! The JSON bodies of `/metrics/batch`, `/metrics/cache` and
//! `/metrics/actors` as types, so the OpenAPI document describes each
//! field (utoipa) and the handlers in `metrics.rs` cannot drift from it.
//! The first two keep the old gateway's shapes (`{success, metrics}`).

use serde::Serialize;
use utoipa::ToSchema;
use wagate_actors::store::CacheCounts;

/// `GET /metrics/batch`: counts and ages only.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchMetrics {
    pub success: bool,
    pub metrics: BatchFigures,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchFigures {
    /// QR codes waiting for the next QR batch.
    pub qr_batch_size: usize,
    /// Status updates waiting, both lanes.
    pub status_batch_size: usize,
    /// Of them, in the high-priority lane.
    pub status_high_priority: usize,
    /// Unix ms of the last QR batch sent, if any.
    pub last_flush_qr: Option<u64>,
    pub time_since_last_flush_qr: Option<u64>,
    pub last_flush_status: Option<u64>,
    pub time_since_last_flush_status: Option<u64>,
    pub oldest_qr_wait_ms: Option<u64>,
    pub oldest_status_high_wait_ms: Option<u64>,
    pub oldest_status_normal_wait_ms: Option<u64>,
    /// Batches held for Laravel (breaker open or Laravel failing).
    pub outbox_held: usize,
}

/// `GET /metrics/cache`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheMetrics {
    pub success: bool,
    /// `memory` or `redis`.
    pub store: &'static str,
    /// Key counts in the old gateway's layout; `null` until Redis's first
    /// background count is done.
    pub metrics: Option<KeyCounts>,
    /// Unix ms of that count (Redis only; `null` with the memory store,
    /// whose counts are read when asked).
    pub counted_at: Option<u64>,
    pub session_reads: SessionReads,
    pub qr_images: QrImages,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyCounts {
    pub total_keys: u64,
    pub qr_keys: u64,
    pub status_keys: u64,
    pub connection_keys: u64,
    pub session_keys: u64,
}

impl From<CacheCounts> for KeyCounts {
    fn from(c: CacheCounts) -> Self {
        Self {
            total_keys: c.total_keys,
            qr_keys: c.qr_keys,
            status_keys: c.status_keys,
            connection_keys: c.connection_keys,
            session_keys: c.session_keys,
        }
    }
}

/// Where session-state reads were answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionReads {
    pub local: u64,
    pub redis: u64,
    pub miss: u64,
    pub hit_rate: f64,
}

/// The QR image render cache.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrImages {
    pub cached: usize,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

/// `GET /metrics/actors`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorMetrics {
    pub actors: Vec<ActorFigures>,
    /// The ten deepest session mailboxes, deepest first.
    pub deepest_session_mailboxes: Vec<SessionMailbox>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorFigures {
    /// The actor type (`Session`, `QrBatcher`, …).
    pub actor: String,
    pub mailbox_depth: f64,
    pub handled: f64,
    /// Time messages waited in the mailbox.
    pub wait: Option<Timing>,
    /// Time handlers took.
    pub handle: Option<Timing>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    pub count: u64,
    pub avg_seconds: f64,
    /// The upper bound of the histogram bucket holding the 99th percentile.
    pub p99_seconds_at_most: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionMailbox {
    /// Only behind `METRICS_KEY` (session ids name tenants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub depth: i64,
}
