//! The Redis message log (production): accepted messages are entries of
//! the Stream `wagate:messages`, read through the consumer group `senders`
//! (one consumer per node, named by `NODE_ID`); a finished entry is
//! acknowledged and deleted, so the Stream holds only unfinished work.
//! Records live in `wagate:message:{id}` (JSON, expiring `record_ttl`
//! after their last change), idempotency keys in
//! `wagate:idem:{session}:{key}` (24 h), failures in `wagate:messages:dead`
//! (capped by `DEAD_LETTER_MAX`, trimmed by age to `DEAD_LETTER_TTL`, text
//! cut to `DEAD_LETTER_TEXT_MAX` characters plus a hash). Each session's
//! unfinished messages are counted in `wagate:queued:{session}` for the
//! per-session quota. No command blocks: the connection is shared and
//! multiplexed.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Cmd, RedisError, RedisResult};

use super::{
    Delivery, Enqueued, Finished, MessageLog, MessageRecord, OutboundMessage, QueueCounts,
    QueueError, QueueLimits,
};
use crate::bounds::{dead_letter_text, LogBounds};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::journal;
use crate::metrics::BoundMetrics;
use crate::redis::health::RedisHealth;
use crate::redis::{keys, RedisConn};

/// How long an idempotency key maps to its message.
const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;

pub struct RedisMessageLog {
    conn: RedisConn,
    health: Arc<RedisHealth>,
    record_ttl_secs: u64,
    bounds: LogBounds,
    /// Where this process is in re-reading its own unacknowledged entries
    /// (`Some(last id)`), or `None` once they are all read.
    history: Mutex<Option<String>>,
    /// XAUTOCLAIM's cursor.
    claim_cursor: Mutex<String>,
    /// Set by `Gateway::start`.
    metrics: OnceLock<BoundMetrics>,
}

fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

impl RedisMessageLog {
    pub fn new(conn: RedisConn, health: Arc<RedisHealth>, bounds: LogBounds) -> Self {
        Self {
            conn,
            health,
            record_ttl_secs: bounds.record_ttl.as_secs().max(60),
            bounds,
            history: Mutex::new(Some("0".to_owned())),
            claim_cursor: Mutex::new("0-0".to_owned()),
            metrics: OnceLock::new(),
        }
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    fn check<T>(&self, r: RedisResult<T>) -> Result<T, QueueError> {
        r.map_err(|e| {
            self.health.observe(&e);
            QueueError::Unavailable(e)
        })
    }

    /// Creates the consumer group (and the stream) if missing.
    async fn ensure_group(&self) -> RedisResult<()> {
        let created: RedisResult<()> = self
            .conn()
            .xgroup_create_mkstream(keys::MESSAGES, keys::MESSAGES_GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Runs `op`; on NOGROUP (a fresh or flushed Redis) creates the group
    /// and runs it once more.
    async fn with_group<T, F, Fut>(&self, op: F) -> RedisResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        match op().await {
            Err(e) if is_nogroup(&e) => {
                self.ensure_group().await?;
                op().await
            }
            other => other,
        }
    }

    /// Writes a message's record, expiring `record_ttl` from now.
    fn record_cmd(&self, record: &MessageRecord) -> Cmd {
        Cmd::set_ex(
            keys::message(&record.message_id),
            serde_json::to_string(record).expect("records serialize"),
            self.record_ttl_secs,
        )
    }

    /// The ordered commands that end `done` (see [`MessageLog::finish`]):
    /// dead letters, every record, the `send_result`s held in the journal,
    /// and only then the acknowledgements, deletions and counters, then one
    /// trim of the dead-letter log by age. Once a record is written a
    /// re-read entry is not sent again, so a run cut short anywhere is safe.
    fn finish_cmds(&self, done: &[Finished]) -> Vec<Cmd> {
        let mut cmds = Vec::with_capacity(done.len() * 4 + 6);
        let mut failed = 0;
        for d in done {
            if let Some(message) = &d.dead {
                failed += 1;
                cmds.push(self.dead_letter_cmd(message, &d.record));
            }
        }
        cmds.extend(done.iter().map(|d| self.record_cmd(&d.record)));
        // Before the acknowledgements: an outcome that is durable is
        // reported even if the process dies right after this write.
        cmds.push(journal::redis::hold_inbound_cmd(
            done.iter().map(|d| &d.report),
        ));
        let entries: Vec<&str> = done.iter().map(|d| d.entry.as_str()).collect();
        cmds.push(Cmd::xack(keys::MESSAGES, keys::MESSAGES_GROUP, &entries));
        cmds.push(Cmd::xdel(keys::MESSAGES, &entries));
        let completed = done.len() - failed;
        for (counter, n) in [("completed", completed), ("failed", failed)] {
            if n > 0 {
                cmds.push(Cmd::hincr(keys::MESSAGES_STATS, counter, n));
            }
        }
        // Sent or failed, the media will not be needed again (one key per
        // command: blobs of different messages sit in different slots).
        cmds.extend(
            done.iter()
                .map(|d| Cmd::del(keys::blob(&d.record.message_id))),
        );
        // May go below zero when a redelivered entry finishes twice; that
        // only loosens the quota, and the next enqueue clamps it.
        let mut per_session: Vec<(&SessionId, i64)> = Vec::new();
        for d in done {
            match per_session
                .iter_mut()
                .find(|(s, _)| *s == &d.record.session)
            {
                Some((_, n)) => *n += 1,
                None => per_session.push((&d.record.session, 1)),
            }
        }
        cmds.extend(
            per_session
                .into_iter()
                .map(|(session, n)| Cmd::decr(keys::session_queued(session), n)),
        );
        if failed > 0 {
            // Stream ids are milliseconds: everything older than the TTL goes.
            let oldest = unix_ms().saturating_sub(self.bounds.dead_ttl.as_millis() as u64);
            let mut trim = redis::cmd("XTRIM");
            trim.arg(keys::MESSAGES_DEAD)
                .arg("MINID")
                .arg("~")
                .arg(format!("{oldest}-0"));
            cmds.push(trim);
        }
        cmds
    }

    /// Copies a failed message to the dead-letter log, its text cut to
    /// `DEAD_LETTER_TEXT_MAX` characters plus a hash.
    fn dead_letter_cmd(&self, message: &OutboundMessage, record: &MessageRecord) -> Cmd {
        let mut kept = message.clone();
        if let Some(text) = kept.content.text_mut() {
            *text = dead_letter_text(text, self.bounds.dead_text_max);
        }
        let body = serde_json::to_string(&kept).expect("messages serialize");
        Cmd::xadd_maxlen(
            keys::MESSAGES_DEAD,
            redis::streams::StreamMaxlen::Approx(self.bounds.dead_max),
            "*",
            &[
                ("m", body),
                ("error", record.last_error.clone().unwrap_or_default()),
                ("attempts", record.attempts.to_string()),
            ],
        )
    }

    /// Turns stream entries into deliveries; unreadable ones are dropped
    /// from the stream (they would block nothing but could never be sent).
    async fn deliveries(&self, ids: Vec<StreamId>, redelivered: bool) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(ids.len());
        for entry in ids {
            let parsed = entry
                .get::<String>("m")
                .and_then(|raw| serde_json::from_str::<OutboundMessage>(&raw).ok());
            match parsed {
                Some(message) => out.push(Delivery {
                    entry: entry.id,
                    message,
                    redelivered,
                }),
                None => {
                    tracing::error!(entry = %entry.id, "dropping an unreadable message entry");
                    let mut c = self.conn();
                    let _: RedisResult<()> = redis::pipe()
                        .xack(keys::MESSAGES, keys::MESSAGES_GROUP, &[&entry.id])
                        .ignore()
                        .xdel(keys::MESSAGES, &[&entry.id])
                        .ignore()
                        .query_async(&mut c)
                        .await;
                }
            }
        }
        out
    }

    async fn read_from(
        &self,
        consumer: &str,
        max: usize,
        from: &str,
    ) -> RedisResult<Vec<StreamId>> {
        let reply: Option<StreamReadReply> = self
            .with_group(|| {
                let mut c = self.conn();
                let opts = StreamReadOptions::default()
                    .group(keys::MESSAGES_GROUP, consumer)
                    .count(max);
                async move { c.xread_options(&[keys::MESSAGES], &[from], &opts).await }
            })
            .await?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .unwrap_or_default())
    }
}

#[async_trait]
impl MessageLog for RedisMessageLog {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(
        &self,
        message: &OutboundMessage,
        limits: QueueLimits,
    ) -> Result<Enqueued, QueueError> {
        let limit = limits.total;
        let queued_key = keys::session_queued(&message.session);
        let mut c = self.conn();
        let idem_key = message
            .idempotency_key
            .as_ref()
            .map(|k| keys::idempotency(&message.session, k));
        if let Some(key) = &idem_key {
            let opts = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::EX(IDEMPOTENCY_TTL_SECS));
            let claimed: Option<String> =
                self.check(c.set_options(key, &message.id, opts).await)?;
            if claimed.is_none() {
                let existing: Option<String> = self.check(c.get(key).await)?;
                if let Some(existing) = existing {
                    let known: bool = self.check(c.exists(keys::message(&existing)).await)?;
                    if known {
                        return Ok(Enqueued::Duplicate(existing));
                    }
                }
                // An earlier attempt died half-way: this one takes the key.
                self.check(
                    c.set_ex::<_, _, ()>(key, &message.id, IDEMPOTENCY_TTL_SECS)
                        .await,
                )?;
            }
        }
        let release = |c: &mut RedisConn| {
            let key = idem_key.clone();
            let mut c = c.clone();
            async move {
                if let Some(key) = key {
                    let _: RedisResult<()> = c.del(key).await;
                }
            }
        };
        // One round trip: the queue length before, the record, the entry.
        // Over the limit, the entry is taken back out.
        let record = MessageRecord::queued(message);
        let body = serde_json::to_string(message).expect("messages serialize");
        let replies: RedisResult<Vec<redis::Value>> = self
            .conn
            .query_all(vec![
                Cmd::xlen(keys::MESSAGES),
                self.record_cmd(&record),
                Cmd::xadd(keys::MESSAGES, "*", &[("m", body)]),
                Cmd::incr(&queued_key, 1),
            ])
            .await;
        let replies = match replies {
            Ok(r) => r,
            Err(e) => {
                release(&mut c).await;
                let _: RedisResult<()> = c.del(keys::message(&message.id)).await;
                return Err(self.check::<()>(Err(e)).unwrap_err());
            }
        };
        let before: u64 = redis::from_redis_value(replies[0].clone()).unwrap_or(0);
        let mut mine: i64 = redis::from_redis_value(replies[3].clone()).unwrap_or(1);
        if mine < 1 {
            // Drifted below zero (double finishes): start again from this one.
            let _: RedisResult<()> = c.set(&queued_key, 1).await;
            mine = 1;
        }
        let refusal = if before >= limit {
            Some(QueueError::Full { limit })
        } else if mine as u64 > limits.per_session {
            Some(QueueError::SessionFull {
                limit: limits.per_session,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if let Ok(entry) = redis::from_redis_value::<String>(replies[2].clone()) {
                let _: RedisResult<()> = c.xdel(keys::MESSAGES, &[entry]).await;
            }
            let _: RedisResult<()> = c.del(keys::message(&message.id)).await;
            let _: RedisResult<()> = c.decr(&queued_key, 1).await;
            release(&mut c).await;
            if let (QueueError::SessionFull { .. }, Some(m)) = (&refusal, self.metrics.get()) {
                m.hits.with_label_values(&["queue_per_session"]).inc();
            }
            return Err(refusal);
        }
        Ok(Enqueued::New)
    }

    async fn read(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let resume = self.history.lock().clone();
        if let Some(from) = resume {
            // Entries this consumer read before a restart and never finished.
            let ids = self.check(self.read_from(consumer, max, &from).await)?;
            match ids.last() {
                Some(last) => *self.history.lock() = Some(last.id.clone()),
                None => *self.history.lock() = None,
            }
            if !ids.is_empty() {
                return Ok(self.deliveries(ids, true).await);
            }
        }
        let ids = self.check(self.read_from(consumer, max, ">").await)?;
        Ok(self.deliveries(ids, false).await)
    }

    async fn claim_idle(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let cursor = self.claim_cursor.lock().clone();
        let reply: StreamAutoClaimReply = self.check(
            self.with_group(|| {
                let mut c = self.conn();
                let cursor = cursor.clone();
                async move {
                    redis::cmd("XAUTOCLAIM")
                        .arg(keys::MESSAGES)
                        .arg(keys::MESSAGES_GROUP)
                        .arg(consumer)
                        .arg(min_idle_ms)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(max)
                        .query_async(&mut c)
                        .await
                }
            })
            .await,
        )?;
        *self.claim_cursor.lock() = reply.next_stream_id.clone();
        Ok(self.deliveries(reply.claimed, true).await)
    }

    async fn keep_alive(&self, consumer: &str, entries: &[String]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        for chunk in entries.chunks(500) {
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(keys::MESSAGES)
                .arg(keys::MESSAGES_GROUP)
                .arg(consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID");
            let mut c = self.conn();
            let _: Vec<String> = self.check(cmd.query_async(&mut c).await)?;
        }
        Ok(())
    }

    async fn update(&self, record: &MessageRecord) -> Result<(), QueueError> {
        self.check(self.record_cmd(record).query_async(&mut self.conn()).await)
    }

    async fn store_blob(&self, message_id: &str, bytes: bytes::Bytes) -> Result<(), QueueError> {
        // An upload's blob gets the same life from `seal_blob`. Expires with the message's record: past that the message cannot
        // be tracked either, and a blob must never outlive its message.
        self.check(
            self.conn()
                .set_ex(keys::blob(message_id), bytes.as_ref(), self.record_ttl_secs)
                .await,
        )
    }

    async fn append_blob(&self, message_id: &str, chunk: bytes::Bytes) -> Result<(), QueueError> {
        // One ordered round trip: the chunk, then the short life of an
        // unfinished upload (renewed by every chunk).
        let key = keys::blob(message_id);
        self.check(
            self.conn
                .run_in_order(vec![
                    Cmd::append(&key, chunk.as_ref()),
                    Cmd::expire(&key, super::upload::UPLOAD_TTL.as_secs() as i64),
                ])
                .await,
        )
    }

    async fn seal_blob(&self, message_id: &str) -> Result<(), QueueError> {
        let set: bool = self.check(
            self.conn()
                .expire(keys::blob(message_id), self.record_ttl_secs as i64)
                .await,
        )?;
        if set {
            Ok(())
        } else {
            Err(QueueError::UploadLost)
        }
    }

    async fn blob(&self, message_id: &str) -> Result<Option<bytes::Bytes>, QueueError> {
        let raw: Option<Vec<u8>> = self.check(self.conn().get(keys::blob(message_id)).await)?;
        Ok(raw.map(bytes::Bytes::from))
    }

    async fn drop_blob(&self, message_id: &str) -> Result<(), QueueError> {
        self.check(self.conn().del(keys::blob(message_id)).await)
    }

    async fn blob_count(&self) -> Result<u64, QueueError> {
        // Blobs are few (one per unfinished media message) and the count
        // is for tests and diagnostics, so a SCAN is fine here.
        self.check(self.conn.count_keys(keys::BLOB_PATTERN).await)
    }

    async fn finish(&self, done: &[Finished]) -> Result<(), QueueError> {
        if done.is_empty() {
            return Ok(());
        }
        self.check(self.conn.run_in_order(self.finish_cmds(done)).await)
    }

    async fn record(&self, message_id: &str) -> Result<Option<MessageRecord>, QueueError> {
        // Bytes: a record that is not UTF-8 is unreadable like any other
        // corrupt one (not found), not a Redis failure.
        let raw: Option<Vec<u8>> = self.check(self.conn().get(keys::message(message_id)).await)?;
        Ok(raw.and_then(|r| serde_json::from_slice::<MessageRecord>(&r).ok()))
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let mut c = self.conn();
        let len: u64 = self.check(c.xlen(keys::MESSAGES).await)?;
        let pending: RedisResult<redis::streams::StreamPendingReply> =
            c.xpending(keys::MESSAGES, keys::MESSAGES_GROUP).await;
        let active = match pending {
            Ok(p) => p.count() as u64,
            Err(e) if is_nogroup(&e) => 0,
            Err(e) => return Err(self.check::<u64>(Err(e)).unwrap_err()),
        };
        let stats: std::collections::HashMap<String, u64> =
            self.check(c.hgetall(keys::MESSAGES_STATS).await)?;
        Ok(QueueCounts {
            active,
            waiting: len.saturating_sub(active),
            completed: stats.get("completed").copied().unwrap_or(0),
            failed: stats.get("failed").copied().unwrap_or(0),
        })
    }

    fn attach_metrics(&self, metrics: &BoundMetrics) {
        let _ = self.metrics.set(metrics.clone());
    }
}
