//! The Redis store (production): session records in `session:{id}:info`
//! plus the set `wagate:sessions`, credentials in `session:{id}:creds` (no
//! TTL), and the cache keys `session:{id}:{qr,status,connection}` with a
//! TTL that the registry renews while the session lives. Values are JSON in
//! the old gateway's shapes. Every failure marks Redis down in
//! [`RedisHealth`] at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Cmd};
use serde_json::json;

use super::{CacheCounts, CacheWrite, RecordSet, SessionRecord, Store, StoreError};
use crate::connector::Credentials;
use crate::ids::SessionId;
use crate::redis::health::RedisHealth;
use crate::redis::{keys, RedisConn};

/// Keys written or expired per pipeline.
const CHUNK: usize = 500;

pub struct RedisStore {
    conn: RedisConn,
    health: Arc<RedisHealth>,
    /// TTL of the cache keys (`CACHE_TTL`, seed: 60 s).
    ttl_secs: u64,
}

impl RedisStore {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>, ttl: Duration) -> Self {
        Self {
            conn,
            health,
            ttl_secs: ttl.as_secs().max(1),
        }
    }

    /// Records a failure in the health view; the error keeps its cause.
    fn check<T>(&self, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        result.map_err(|e| {
            self.health.observe(&e);
            StoreError::Unavailable(e)
        })
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn load_credentials(&self, id: &SessionId) -> Result<Option<Credentials>, StoreError> {
        let raw: Option<Vec<u8>> = self.check(self.conn().get(keys::session(id, "creds")).await)?;
        Ok(raw.map(Credentials))
    }

    async fn save_credentials(
        &self,
        id: &SessionId,
        creds: &Credentials,
    ) -> Result<(), StoreError> {
        self.check(
            self.conn()
                .set::<_, _, ()>(keys::session(id, "creds"), &creds.0)
                .await,
        )
    }

    async fn delete_credentials(&self, id: &SessionId) -> Result<(), StoreError> {
        self.check(self.conn().del::<_, ()>(keys::session(id, "creds")).await)
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let body = serde_json::to_string(record).expect("records serialize");
        self.check(
            self.conn
                .run_all(vec![
                    Cmd::set(keys::session(&record.id, "info"), body),
                    Cmd::sadd(keys::SESSIONS, record.id.as_str()),
                ])
                .await,
        )
    }

    async fn delete_session(&self, id: &SessionId) -> Result<(), StoreError> {
        // Out of the set first: a half-done delete is never restored.
        self.check(
            self.conn()
                .srem::<_, _, ()>(keys::SESSIONS, id.as_str())
                .await,
        )?;
        let keys: Vec<String> = ["info", "creds", "qr", "status", "connection"]
            .iter()
            .map(|suffix| keys::session(id, suffix))
            .collect();
        // One hash tag: a single DEL is fine on a Cluster too.
        self.check(self.conn().del::<_, ()>(keys).await)
    }

    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        // Bytes, not strings: one member or record that is not UTF-8 (a
        // hand edit, another tool) must be skipped, not fail the restore.
        let ids: Vec<Vec<u8>> = self.check(self.conn().smembers(keys::SESSIONS).await)?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut gets = Vec::with_capacity(chunk.len());
            let mut valid = Vec::with_capacity(chunk.len());
            for raw in chunk {
                let raw = String::from_utf8_lossy(raw);
                match SessionId::parse(&raw) {
                    Ok(id) => {
                        gets.push(Cmd::get(keys::session(&id, "info")));
                        valid.push(id);
                    }
                    Err(_) => tracing::warn!(id = %raw, "skipping an invalid session id in Redis"),
                }
            }
            let bodies: Vec<Option<Vec<u8>>> = self.check(self.conn.query_all(gets).await)?;
            for (id, body) in valid.into_iter().zip(bodies) {
                let Some(body) = body else {
                    // In the set but without a record: a delete that was cut short.
                    tracing::warn!(session = %id, "session listed without a record; skipping");
                    continue;
                };
                match serde_json::from_slice::<SessionRecord>(&body) {
                    Ok(r) if r.id == id => records.push(r),
                    Ok(_) | Err(_) => tracing::error!(
                        session = %id,
                        "corrupt session record in Redis; skipping it"
                    ),
                }
            }
        }
        Ok(records)
    }

    async fn session_exists(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.check(self.conn().exists(keys::session(id, "info")).await)
    }

    async fn cache(&self, id: &SessionId, write: CacheWrite) -> Result<(), StoreError> {
        let ttl = self.ttl_secs;
        // All keys of one session share a hash tag: one pipeline is fine.
        let mut pipe = redis::pipe();
        match write {
            CacheWrite::State {
                status,
                connection,
                timestamp,
            } => {
                pipe.set_ex(
                    keys::session(id, "status"),
                    status_record(status, timestamp),
                    ttl,
                )
                .ignore()
                .set_ex(
                    keys::session(id, "connection"),
                    json!({ "connection_state": connection }).to_string(),
                    ttl,
                )
                .ignore();
            }
            CacheWrite::Qr { qr, timestamp } => {
                pipe.set_ex(
                    keys::session(id, "qr"),
                    json!({ "qr": qr, "timestamp": timestamp, "sent": false }).to_string(),
                    ttl,
                )
                .ignore();
            }
            CacheWrite::ClearQr => {
                pipe.del(keys::session(id, "qr")).ignore();
            }
        }
        self.check(pipe.query_async::<()>(&mut self.conn()).await)
    }

    async fn refresh_cache(&self, ids: &[SessionId]) -> Result<(), StoreError> {
        let ttl = self.ttl_secs as i64;
        for chunk in ids.chunks(CHUNK) {
            let cmds = chunk
                .iter()
                .flat_map(|id| {
                    ["status", "connection", "qr"]
                        .into_iter()
                        .map(move |suffix| Cmd::expire(keys::session(id, suffix), ttl))
                })
                .collect();
            self.check(self.conn.run_all(cmds).await)?;
        }
        Ok(())
    }

    async fn cached_status(&self, id: &SessionId) -> Result<Option<String>, StoreError> {
        let key = keys::session(id, "status");
        let raw: Option<String> = self.check(self.conn().get(&key).await)?;
        let Some(raw) = raw else { return Ok(None) };
        status_word(&raw).map_err(|e| StoreError::Corrupt {
            key,
            source: Arc::new(e),
        })
    }

    /// Four SCANs: called only by the `counts` refresh task, at its pace.
    async fn cache_counts(&self) -> Result<Option<CacheCounts>, StoreError> {
        let count = |suffix: &'static str| {
            let conn = self.conn();
            async move { conn.count_keys(&keys::session_pattern(suffix)).await }
        };
        let qr = self.check(count("qr").await)?;
        let status = self.check(count("status").await)?;
        let connection = self.check(count("connection").await)?;
        let info = self.check(count("info").await)?;
        let counts = CacheCounts {
            total_keys: qr + status + connection + info,
            qr_keys: qr,
            status_keys: status,
            connection_keys: connection,
            session_keys: info,
        };
        Ok(Some(counts))
    }

    async fn save_record(&self, set: RecordSet, id: &str, json: &str) -> Result<(), StoreError> {
        self.check(
            self.conn()
                .hset::<_, _, _, ()>(keys::records(set), id, json)
                .await,
        )
    }

    async fn delete_record(&self, set: RecordSet, id: &str) -> Result<bool, StoreError> {
        let removed: u64 = self.check(self.conn().hdel(keys::records(set), id).await)?;
        Ok(removed > 0)
    }

    async fn load_records(&self, set: RecordSet) -> Result<Vec<String>, StoreError> {
        self.check(self.conn().hvals(keys::records(set)).await)
    }
}

/// The cached `session:{id}:status` record, as the old gateway stored it.
fn status_record(status: &str, timestamp: u64) -> String {
    json!({ "status": status, "timestamp": timestamp }).to_string()
}

/// The status word of a cached status record read back (written by this
/// gateway, by an older version or by hand): `None` when it has none, an
/// error when it is not JSON.
fn status_word(raw: &str) -> Result<Option<String>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(raw)?;
    Ok(value["status"].as_str().map(str::to_owned))
}

/// Property tests of the status record read back: any bytes give a word,
/// nothing or an error, never a panic; every record written reads back.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_record_reads_as_a_word_nothing_or_an_error(raw in prop_oneof![
            any::<String>(),
            "\\{\"status\":[ -~]{0,12}(,[ -~]{0,20})?\\}",
            (any::<String>(), any::<u64>()).prop_map(|(s, t)| status_record(&s, t)),
        ]) {
            if let Ok(Some(word)) = status_word(&raw) {
                let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
                prop_assert_eq!(value["status"].as_str(), Some(word.as_str()));
            }
        }

        #[test]
        fn what_is_written_reads_back(status in any::<String>(), timestamp in any::<u64>()) {
            prop_assert_eq!(status_word(&status_record(&status, timestamp)).unwrap(), Some(status));
        }
    }
}
