//! The Redis outbox: Laravel batches held back by the breaker or after
//! their retries, kept in the list `wagate:outbox` (oldest first), so they
//! survive a gateway restart and are replayed, in order and with their
//! batch ids, by `LaravelClient` once Laravel answers. Each entry is
//! `id \n endpoint \n items \n created_ms \n body`; the head is removed
//! only if it is still the batch that was delivered (a Lua check-and-pop).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use super::outbox::{Outbox, OutboxError};
use super::payload::{Endpoint, OutboundBatch};
use crate::redis::health::RedisHealth;
use crate::redis::{keys, RedisConn};

const POP_IF_HEAD: &str = r"
local head = redis.call('LINDEX', KEYS[1], 0)
if head and string.sub(head, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\n' then
  redis.call('LPOP', KEYS[1])
  return 1
end
return 0
";

pub struct RedisOutbox {
    conn: RedisConn,
    health: Arc<RedisHealth>,
    pop_if_head: redis::Script,
}

impl RedisOutbox {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>) -> Self {
        Self {
            conn,
            health,
            pop_if_head: redis::Script::new(POP_IF_HEAD),
        }
    }

    fn check<T>(&self, r: redis::RedisResult<T>) -> Result<T, OutboxError> {
        r.map_err(|e| OutboxError::Unavailable(self.health.observe(&e)))
    }
}

fn encode(b: &OutboundBatch) -> Vec<u8> {
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        b.id,
        b.endpoint.label(),
        b.items,
        b.created_ms
    )
    .into_bytes();
    out.extend_from_slice(&b.body);
    out
}

fn decode(raw: &[u8]) -> Option<OutboundBatch> {
    let mut parts = raw.splitn(5, |&c| c == b'\n');
    let mut text = || std::str::from_utf8(parts.next()?).ok();
    let id = text()?.to_owned();
    let endpoint = Endpoint::from_label(text()?)?;
    let items = text()?.parse().ok()?;
    let created_ms = text()?.parse().ok()?;
    let body = Bytes::copy_from_slice(parts.next()?);
    Some(OutboundBatch {
        id,
        endpoint,
        body,
        items,
        created_ms,
    })
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn push(&self, batch: OutboundBatch) -> Result<(), OutboxError> {
        let mut c = self.conn.clone();
        self.check(c.rpush::<_, _, ()>(keys::OUTBOX, encode(&batch)).await)
    }

    async fn front(&self) -> Result<Option<OutboundBatch>, OutboxError> {
        let mut c = self.conn.clone();
        let raw: Option<Vec<u8>> = self.check(c.lindex(keys::OUTBOX, 0).await)?;
        match raw {
            None => Ok(None),
            Some(raw) => match decode(&raw) {
                Some(b) => Ok(Some(b)),
                None => {
                    // Never block the queue on an unreadable entry: drop it loudly.
                    tracing::error!("dropping an unreadable entry at the head of the outbox");
                    self.check(c.lpop::<_, ()>(keys::OUTBOX, None).await)?;
                    Box::pin(self.front()).await
                }
            },
        }
    }

    async fn peek(&self, n: usize) -> Result<Vec<OutboundBatch>, OutboxError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let raw: Vec<Vec<u8>> = self.check(c.lrange(keys::OUTBOX, 0, n as isize - 1).await)?;
        let mut batches = Vec::with_capacity(raw.len());
        for entry in &raw {
            match decode(entry) {
                Some(b) => batches.push(b),
                // Only the head is ever dropped (by `front`); an unreadable
                // entry further on ends the run, and `front` drops it on its turn.
                None if batches.is_empty() => return Ok(self.front().await?.into_iter().collect()),
                None => break,
            }
        }
        Ok(batches)
    }

    async fn remove_front(&self, batch_id: &str) -> Result<(), OutboxError> {
        let mut c = self.conn.clone();
        let _: i64 = self.check(
            self.pop_if_head
                .key(keys::OUTBOX)
                .arg(batch_id)
                .invoke_async(&mut c)
                .await,
        )?;
        Ok(())
    }

    async fn len(&self) -> Result<usize, OutboxError> {
        let mut c = self.conn.clone();
        self.check(c.llen(keys::OUTBOX).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_newlines_in_the_body() {
        let mut b = OutboundBatch::new::<u8>(Endpoint::MessagesBatch, "messages", &[1, 2], 42);
        b.body = Bytes::from_static(b"{\"a\":\n\"x\"}");
        assert_eq!(decode(&encode(&b)), Some(b));
        assert_eq!(decode(b"garbage"), None);
    }
}
