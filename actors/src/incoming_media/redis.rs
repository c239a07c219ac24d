//! The Redis media store: one hash per media, `wagate:inmedia:<id>`, with
//! fields `meta` (JSON) and `data` (the bytes), written with its expiry in
//! one transaction, so Redis itself drops it at `MEDIA_TTL` and nothing
//! leaks if the gateway dies. Any node can serve any media.

use std::sync::Arc;

use async_trait::async_trait;

use super::{MediaMeta, MediaStore, MediaStoreError, StoredMedia};
use crate::redis::health::RedisHealth;
use crate::redis::{keys, RedisConn};

pub struct RedisMediaStore {
    conn: RedisConn,
    health: Arc<RedisHealth>,
}

impl RedisMediaStore {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>) -> Self {
        Self { conn, health }
    }

    /// Records a failure in the health view; the error keeps its cause.
    fn check<T>(&self, r: ::redis::RedisResult<T>) -> Result<T, MediaStoreError> {
        r.map_err(|e| {
            self.health.observe(&e);
            MediaStoreError::Unavailable(e)
        })
    }
}

#[async_trait]
impl MediaStore for RedisMediaStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn put(&self, id: &str, media: &StoredMedia, now_ms: u64) -> Result<(), MediaStoreError> {
        let key = keys::incoming_media(id);
        let meta = serde_json::to_string(&media.meta).expect("media meta serializes to JSON");
        let ttl_ms = media.meta.expires_at.saturating_sub(now_ms).max(1);
        let mut c = self.conn.clone();
        let r: ::redis::RedisResult<()> = ::redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(
                &key,
                &[("meta", meta.as_bytes()), ("data", media.bytes.as_ref())],
            )
            .ignore()
            .pexpire(&key, ttl_ms as i64)
            .ignore()
            .query_async(&mut c)
            .await;
        self.check(r)
    }

    async fn get(&self, id: &str, now_ms: u64) -> Result<Option<StoredMedia>, MediaStoreError> {
        let mut c = self.conn.clone();
        let (meta, data): (Option<String>, Option<Vec<u8>>) = self.check(
            ::redis::cmd("HMGET")
                .arg(keys::incoming_media(id))
                .arg("meta")
                .arg("data")
                .query_async(&mut c)
                .await,
        )?;
        let (Some(meta), Some(data)) = (meta, data) else {
            return Ok(None);
        };
        let meta: MediaMeta =
            serde_json::from_str(&meta).map_err(|e| MediaStoreError::Corrupt {
                id: id.to_owned(),
                source: Arc::new(e),
            })?;
        // Redis expires the key itself; this covers the last millisecond.
        Ok((meta.expires_at > now_ms).then(|| StoredMedia {
            meta,
            bytes: bytes::Bytes::from(data),
        }))
    }

    async fn count(&self, _now_ms: u64) -> Result<u64, MediaStoreError> {
        // For tests and diagnostics only, so a SCAN is fine here.
        self.check(self.conn.count_keys(keys::INCOMING_MEDIA_PATTERN).await)
    }
}
