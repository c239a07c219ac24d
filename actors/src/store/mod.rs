//! Durable state behind a trait: the sessions that should exist (and
//! whether they should run), each session's connector credentials, and the
//! cache of session state under the old gateway's keys. Called by Session
//! actors (credentials, cache), the `SessionRegistry` (records, restore,
//! TTL refresh) and HTTP (`/metrics/cache`). [`memory`] is the zero-setup
//! default where nothing survives a restart; [`redis`] is production.

pub mod counts;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::connector::Credentials;
use crate::ids::SessionId;

/// A failed store call. The cause is kept as the source (log it with
/// [`crate::error_chain::Chain`]), not repeated in the message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    #[error("the store holds a corrupt value at {key}")]
    Corrupt {
        key: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
}

/// Whether a persisted session should run after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

/// What survives a restart about one session (`session:{id}:info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub desired: Desired,
    pub created_ms: u64,
    /// The node that runs it (`NODE_ID`).
    pub node: String,
}

/// One cache write, named after the key it lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheWrite {
    /// `session:{id}:status` = `{status, timestamp}` and
    /// `session:{id}:connection` = `{connection_state}`.
    State {
        status: &'static str,
        connection: &'static str,
        timestamp: u64,
    },
    /// `session:{id}:qr` = `{qr, timestamp, sent}`.
    Qr { qr: String, timestamp: u64 },
    /// The QR is gone (scanned, expired, session ended).
    ClearQr,
}

/// Key counts for `/metrics/cache`, in the old gateway's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheCounts {
    pub total_keys: u64,
    pub qr_keys: u64,
    pub status_keys: u64,
    pub connection_keys: u64,
    pub session_keys: u64,
}

/// The gateway-wide records kept beside the sessions, each set a table of
/// opaque JSON by id (a Redis hash when Redis is configured, so every node
/// reads the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordSet {
    /// Scoped API keys (a digest, never the key): `src/http/keys.rs`.
    ApiKeys,
    /// Webhook subscriptions (with their signing secrets): `webhooks`.
    Webhooks,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory` or `redis`, for logs and `/health`.
    fn kind(&self) -> &'static str;

    async fn load_credentials(&self, id: &SessionId) -> Result<Option<Credentials>, StoreError>;
    async fn save_credentials(&self, id: &SessionId, creds: &Credentials)
        -> Result<(), StoreError>;
    async fn delete_credentials(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Creates or replaces the record of a session.
    async fn save_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    /// Forgets a session: its record, credentials and cache keys.
    async fn delete_session(&self, id: &SessionId) -> Result<(), StoreError>;
    /// Every persisted session, for restore at start.
    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Whether a session record exists (another node may run it).
    async fn session_exists(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Whether this backend keeps a cache at all; callers skip the cache
    /// work (spawned writes, TTL renewals) when it does not.
    fn caches(&self) -> bool {
        true
    }

    /// Writes a session's state to the cache (with its TTL).
    async fn cache(&self, id: &SessionId, write: CacheWrite) -> Result<(), StoreError>;
    /// Renews the cache TTLs of live sessions.
    async fn refresh_cache(&self, ids: &[SessionId]) -> Result<(), StoreError>;
    /// The cached status word of a session, if any (second-level read).
    async fn cached_status(&self, id: &SessionId) -> Result<Option<String>, StoreError>;
    /// Key counts by kind; `None` when the backend has no keys to count.
    async fn cache_counts(&self) -> Result<Option<CacheCounts>, StoreError>;

    /// Creates or replaces one gateway-wide record of `set` (opaque JSON
    /// by id; the HTTP layer owns its shape).
    async fn save_record(&self, set: RecordSet, id: &str, json: &str) -> Result<(), StoreError>;
    /// Forgets one record of `set`; `false` when there was none.
    async fn delete_record(&self, set: RecordSet, id: &str) -> Result<bool, StoreError>;
    /// Every record of `set`.
    async fn load_records(&self, set: RecordSet) -> Result<Vec<String>, StoreError>;
}
