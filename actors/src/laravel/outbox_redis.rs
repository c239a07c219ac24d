//! The Redis outbox: Laravel batches held back by the breaker or after
//! their retries, kept in the list `wagate:outbox` (oldest first), so they
//! survive a gateway restart and are replayed, in order and with their
//! batch ids, by `LaravelClient` once Laravel answers. Each entry is
//! `id \n endpoint \n items \n created_ms \n body`; the head is removed
//! only if it is still the batch that was delivered (a Lua check-and-pop).
//! Bounded like the memory outbox: `{wagate:outbox}:bytes` counts the bytes
//! held (the hash tag puts it in the list's Cluster slot, so one script
//! touches both); a push that crosses a bound sheds in the same script, by
//! the same ranks as [`crate::bounds::plan_shed`], down to 90 % of the
//! bounds so the scan runs once per tenth of a fill, not on every push.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use super::outbox::{report_shed, Outbox, OutboxError};
use super::payload::{Endpoint, OutboundBatch};
use crate::bounds::{shed_rank, OutboxBounds};
use crate::metrics::BoundMetrics;
use crate::redis::health::RedisHealth;
use crate::redis::{keys, RedisConn};

const POP_IF_HEAD: &str = r"
local head = redis.call('LINDEX', KEYS[1], 0)
if head and string.sub(head, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\n' then
  redis.call('LPOP', KEYS[1])
  local left = redis.call('DECRBY', KEYS[2], string.len(head))
  if left < 0 or redis.call('LLEN', KEYS[1]) == 0 then redis.call('SET', KEYS[2], 0) end
  return 1
end
return 0
";

/// KEYS: list, byte counter. ARGV: entry, max batches, max bytes, then the
/// comma-separated endpoint labels of rank 0 and of rank 1 (QR, then
/// messages; the rest — statuses — are rank 2). Returns the batches held
/// after, then the labels of those shed.
const PUSH_BOUNDED: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
local bytes = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))
local n = redis.call('LLEN', KEYS[1])
local max_n, max_b = tonumber(ARGV[2]), tonumber(ARGV[3])
if n <= max_n and bytes <= max_b then return {tostring(n)} end
local all = redis.call('LRANGE', KEYS[1], 0, -1)
local rank, label, size = {}, {}, {}
bytes = 0
for i, e in ipairs(all) do
  local ep = string.match(e, '^[^\n]*\n([^\n]*)\n') or ''
  label[i] = ep
  size[i] = string.len(e)
  bytes = bytes + size[i]
  rank[i] = 2
  if string.find(',' .. ARGV[5] .. ',', ',' .. ep .. ',', 1, true) then rank[i] = 1 end
  if string.find(',' .. ARGV[4] .. ',', ',' .. ep .. ',', 1, true) then rank[i] = 0 end
end
local goal_n, goal_b = math.floor(max_n * 0.9), math.floor(max_b * 0.9)
local drop, shed = {}, {}
for r = 0, 2 do
  for i = 1, #all do
    if n <= goal_n and bytes <= goal_b then break end
    if rank[i] == r and not drop[i] then
      drop[i] = true
      n = n - 1
      bytes = bytes - size[i]
      table.insert(shed, label[i])
    end
  end
end
if #shed > 0 then
  local kept = {}
  for i = 1, #all do if not drop[i] then table.insert(kept, all[i]) end end
  redis.call('DEL', KEYS[1])
  for i = 1, #kept, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 999, #kept)))
  end
end
redis.call('SET', KEYS[2], bytes)
table.insert(shed, 1, tostring(n))
return shed
";

/// The byte counter, in the list's Cluster slot (same hash tag).
const OUTBOX_BYTES: &str = "{wagate:outbox}:bytes";

pub struct RedisOutbox {
    conn: RedisConn,
    health: Arc<RedisHealth>,
    pop_if_head: redis::Script,
    push_bounded: redis::Script,
    bounds: OutboxBounds,
    /// Set by `Gateway::start`.
    metrics: OnceLock<BoundMetrics>,
}

impl RedisOutbox {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>, bounds: OutboxBounds) -> Self {
        Self {
            conn,
            health,
            pop_if_head: redis::Script::new(POP_IF_HEAD),
            push_bounded: redis::Script::new(PUSH_BOUNDED),
            bounds,
            metrics: OnceLock::new(),
        }
    }

    /// Records a failure in the health view; the error keeps its cause.
    fn check<T>(&self, r: redis::RedisResult<T>) -> Result<T, OutboxError> {
        r.map_err(|e| {
            self.health.observe(&e);
            OutboxError::Unavailable(e)
        })
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn push(&self, batch: OutboundBatch) -> Result<usize, OutboxError> {
        let mut c = self.conn();
        let mut invocation = self.push_bounded.key(keys::OUTBOX);
        invocation
            .key(OUTBOX_BYTES)
            .arg(encode(&batch))
            .arg(self.bounds.max_batches)
            .arg(self.bounds.max_bytes)
            .arg(rank_labels(0))
            .arg(rank_labels(1));
        let reply: Vec<String> = self.check(invocation.invoke_async(&mut c).await)?;
        let held = reply.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        let shed: Vec<Endpoint> = reply
            .iter()
            .skip(1)
            .filter_map(|l| Endpoint::from_label(l))
            .collect();
        report_shed(self.metrics.get(), &shed, self.bounds);
        if let Some(m) = self.metrics.get() {
            if let Ok(bytes) = c.get::<_, Option<i64>>(OUTBOX_BYTES).await {
                m.outbox_bytes.set(bytes.unwrap_or(0));
            }
        }
        Ok(held)
    }

    async fn front(&self) -> Result<Option<OutboundBatch>, OutboxError> {
        let mut c = self.conn();
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
        let mut c = self.conn();
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
        let mut c = self.conn();
        let _: i64 = self.check(
            self.pop_if_head
                .key(keys::OUTBOX)
                .key(OUTBOX_BYTES)
                .arg(batch_id)
                .invoke_async(&mut c)
                .await,
        )?;
        Ok(())
    }

    async fn len(&self) -> Result<usize, OutboxError> {
        let mut c = self.conn();
        self.check(c.llen(keys::OUTBOX).await)
    }

    fn attach_metrics(&self, metrics: &BoundMetrics) {
        let _ = self.metrics.set(metrics.clone());
    }
}

/// The labels of the endpoints of one shedding rank, comma-separated.
fn rank_labels(rank: u8) -> String {
    [
        Endpoint::QrBatch,
        Endpoint::LegacyQr,
        Endpoint::MessagesBatch,
        Endpoint::StatusBatch,
        Endpoint::LegacyStatus,
    ]
    .into_iter()
    .filter(|e| shed_rank(*e) == rank)
    .map(Endpoint::label)
    .collect::<Vec<_>>()
    .join(",")
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

#[cfg(test)]
#[path = "outbox_redis_props.rs"]
mod props;
