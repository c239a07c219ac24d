//! The Redis journal: two hashes, `wagate:journal:status` (session id →
//! its pending terminal status, JSON) and `wagate:journal:inbound`
//! (`session/messageId` → the held message, `session/sent/messageId` → a
//! send result, JSON). A status record is
//! released by a Lua compare-and-delete, so a newer status written while the
//! older one was in flight stays. Each hash is one key (one Cluster slot):
//! they hold only what waits in the batchers' buffers, a few batches.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{HeldInbound, JournalBackend, JournalError};
use crate::laravel::payload::StatusItem;
use crate::redis::health::RedisHealth;
use crate::redis::RedisConn;

/// Hash of each session's pending terminal status.
pub const STATUS_KEY: &str = "wagate:journal:status";
/// Hash of incoming messages not yet accepted by Laravel.
pub const INBOUND_KEY: &str = "wagate:journal:inbound";

/// KEYS: the status hash. ARGV: field, seq, field, seq, … Deletes each
/// field whose record's `seq` is at most the one given: a delivered update
/// of the session with that `seq` supersedes it (Laravel applies only a
/// higher `seq`), whether it is the held item itself or a newer update that
/// replaced it in a batcher's buffer. A newer record written meanwhile, and
/// a record that does not decode, stay.
const RELEASE_SUPERSEDED: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held then
    local ok, record = pcall(cjson.decode, held)
    if ok and type(record) == 'table' and type(record.seq) == 'number'
        and record.seq <= tonumber(ARGV[i + 1]) then
      n = n + redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
end
return n
";

/// The write that holds every record of `held` (at least one), for a
/// writer that puts it in its own ordered pipeline (the message log, with
/// the outcomes it reports).
pub fn hold_inbound_cmd<'a>(held: impl IntoIterator<Item = &'a HeldInbound>) -> redis::Cmd {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(INBOUND_KEY);
    for h in held {
        let value = serde_json::to_string(h).expect("a held item serializes to JSON");
        cmd.arg(&h.key).arg(value);
    }
    cmd
}

pub struct RedisJournal {
    conn: RedisConn,
    health: Arc<RedisHealth>,
    release_superseded: redis::Script,
}

impl RedisJournal {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>) -> Self {
        Self {
            conn,
            health,
            release_superseded: redis::Script::new(RELEASE_SUPERSEDED),
        }
    }

    /// Records a failure in the health view; the error keeps its cause.
    fn check<T>(&self, r: redis::RedisResult<T>) -> Result<T, JournalError> {
        r.map_err(|e| {
            self.health.observe(&e);
            JournalError::Unavailable(e)
        })
    }

    async fn read_all(&self, key: &str) -> Result<HashMap<String, String>, JournalError> {
        let mut c = self.conn.clone();
        self.check(redis::cmd("HGETALL").arg(key).query_async(&mut c).await)
    }
}

/// The stored form of a status record: the item as sent, whose `seq` the
/// release script compares.
fn encode_status(item: &StatusItem) -> String {
    serde_json::to_string(item).expect("a status item serializes to JSON")
}

fn corrupt(field: String, e: serde_json::Error) -> JournalError {
    JournalError::Corrupt {
        field,
        source: Arc::new(e),
    }
}

#[async_trait]
impl JournalBackend for RedisJournal {
    async fn hold_status(&self, item: &StatusItem) -> Result<(), JournalError> {
        let mut c = self.conn.clone();
        let r = redis::cmd("HSET")
            .arg(STATUS_KEY)
            .arg(item.session_id.as_str())
            .arg(encode_status(item))
            .query_async::<i64>(&mut c)
            .await;
        self.check(r).map(drop)
    }

    async fn release_statuses(&self, items: &[StatusItem]) -> Result<(), JournalError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut invocation = self.release_superseded.key(STATUS_KEY);
        for item in items {
            invocation.arg(item.session_id.as_str()).arg(item.seq);
        }
        let mut c = self.conn.clone();
        let r = invocation.invoke_async::<i64>(&mut c).await;
        self.check(r).map(drop)
    }

    async fn held_statuses(&self) -> Result<Vec<StatusItem>, JournalError> {
        self.read_all(STATUS_KEY)
            .await?
            .into_iter()
            .map(|(field, v)| serde_json::from_str(&v).map_err(|e| corrupt(field, e)))
            .collect()
    }

    async fn hold_inbound(&self, held: &HeldInbound) -> Result<(), JournalError> {
        let r = hold_inbound_cmd([held])
            .query_async::<i64>(&mut self.conn.clone())
            .await;
        self.check(r).map(drop)
    }

    async fn release_inbound(&self, keys: &[String]) -> Result<(), JournalError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let r = redis::cmd("HDEL")
            .arg(INBOUND_KEY)
            .arg(keys)
            .query_async::<i64>(&mut c)
            .await;
        self.check(r).map(drop)
    }

    async fn held_inbound(&self) -> Result<Vec<HeldInbound>, JournalError> {
        self.read_all(INBOUND_KEY)
            .await?
            .into_iter()
            .map(|(field, v)| serde_json::from_str(&v).map_err(|e| corrupt(field, e)))
            .collect()
    }
}
