//! The in-process message log: the zero-setup default. Same semantics as
//! the Redis Stream log (entries pending per consumer until completed,
//! claimable when idle, idempotency keys, a dead letter), but nothing
//! survives the process. Used by `Gateway` when no Redis is configured.
//! Bounded like the Redis keys expire ([`LogBounds`]): finished records
//! after `MESSAGE_RECORD_TTL` or beyond `MESSAGE_LOG_MAX`, idempotency keys
//! after 24 h, dead letters by count and age with their text cut. Pruning
//! runs on every write, oldest first, so it costs O(1) amortised.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    Delivery, Enqueued, Finished, MessageLog, MessageRecord, MessageStatus, OutboundMessage,
    QueueCounts, QueueError, QueueLimits,
};
use crate::bounds::{dead_letter_text, LogBounds};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::metrics::BoundMetrics;

/// How long an idempotency key maps to its message (as in Redis).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;

/// A source of Unix milliseconds, so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

struct Pending {
    consumer: String,
    delivered_ms: u64,
    message: OutboundMessage,
}

#[derive(Default)]
struct Inner {
    next_entry: u64,
    /// Accepted and not read yet, oldest first.
    new: VecDeque<(String, OutboundMessage)>,
    /// Read and not finished, by entry id (ordered by id).
    pending: std::collections::BTreeMap<u64, Pending>,
    records: HashMap<String, MessageRecord>,
    /// Finished records in finishing order, `(finished at, the record's
    /// updated_ms, message id)`: the pruning order. An entry whose record
    /// changed since is skipped.
    finished: VecDeque<(u64, u64, String)>,
    /// Key → (message id, when the key was taken).
    idempotency: HashMap<(SessionId, String), (String, u64)>,
    /// Idempotency keys in the order they were taken (expiry order).
    idempotency_order: VecDeque<(u64, (SessionId, String))>,
    /// `(when, message with its text cut, record)`, oldest first.
    dead: VecDeque<(u64, OutboundMessage, MessageRecord)>,
    /// Unfinished messages per session (the per-session quota).
    per_session: HashMap<SessionId, u64>,
    /// Media bytes by message id, from intake until the message ends.
    blobs: HashMap<String, bytes::Bytes>,
    /// Media being uploaded, by message id, until sealed into `blobs` or
    /// dropped.
    uploads: HashMap<String, bytes::BytesMut>,
    completed: u64,
    failed: u64,
}

impl Inner {
    /// Drops what expired or no longer fits; returns how many records and
    /// dead letters were dropped for room (not age).
    fn prune(&mut self, now: u64, b: &LogBounds) -> (u64, u64) {
        let record_ttl = b.record_ttl.as_millis() as u64;
        let (mut records_cut, mut dead_cut) = (0, 0);
        while let Some((t, updated, id)) = self.finished.front().cloned() {
            let expired = now.saturating_sub(t) >= record_ttl;
            let over = self.records.len() > b.max_records;
            if !expired && !over {
                break;
            }
            self.finished.pop_front();
            let current = self
                .records
                .get(&id)
                .is_some_and(|r| r.updated_ms == updated && is_final(r.status));
            if current {
                self.records.remove(&id);
                if !expired {
                    records_cut += 1;
                }
            }
        }
        while let Some((t, key)) = self.idempotency_order.front().cloned() {
            let expired = now.saturating_sub(t) >= IDEMPOTENCY_TTL_MS;
            if !expired && self.idempotency.len() <= b.max_records {
                break;
            }
            self.idempotency_order.pop_front();
            if self.idempotency.get(&key).is_some_and(|(_, at)| *at == t) {
                self.idempotency.remove(&key);
            }
        }
        let dead_ttl = b.dead_ttl.as_millis() as u64;
        while let Some((t, _, _)) = self.dead.front() {
            let expired = now.saturating_sub(*t) >= dead_ttl;
            let over = self.dead.len() > b.dead_max;
            if !expired && !over {
                break;
            }
            self.dead.pop_front();
            if !expired {
                dead_cut += 1;
            }
        }
        (records_cut, dead_cut)
    }
}

fn is_final(status: MessageStatus) -> bool {
    matches!(status, MessageStatus::Sent | MessageStatus::Failed)
}

pub struct MemoryMessageLog {
    inner: Mutex<Inner>,
    clock: Clock,
    bounds: LogBounds,
    /// Set by `Gateway::start`; absent in unit tests.
    metrics: OnceLock<BoundMetrics>,
}

impl Default for MemoryMessageLog {
    fn default() -> Self {
        Self::new(LogBounds::default())
    }
}

fn entry_id(n: u64) -> String {
    format!("{n}-0")
}

fn entry_number(entry: &str) -> Option<u64> {
    entry.split('-').next()?.parse().ok()
}

impl MemoryMessageLog {
    pub fn new(bounds: LogBounds) -> Self {
        Self::with_clock(bounds, Arc::new(unix_ms))
    }

    pub fn with_clock(bounds: LogBounds, clock: Clock) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            bounds,
            metrics: OnceLock::new(),
        }
    }

    /// Messages that failed for good, oldest first (tests, diagnostics).
    pub fn dead_letters(&self) -> Vec<(OutboundMessage, MessageRecord)> {
        self.inner
            .lock()
            .dead
            .iter()
            .map(|(_, m, r)| (m.clone(), r.clone()))
            .collect()
    }

    /// Prunes and publishes the sizes; called with the lock held.
    fn prune(&self, inner: &mut Inner, now: u64) {
        let (records_cut, dead_cut) = inner.prune(now, &self.bounds);
        let Some(m) = self.metrics.get() else {
            return;
        };
        if records_cut > 0 {
            m.hits
                .with_label_values(&["message_log"])
                .inc_by(records_cut);
        }
        if dead_cut > 0 {
            m.hits.with_label_values(&["dead_letters"]).inc_by(dead_cut);
        }
        let set = |kind: &str, n: usize| {
            m.message_log_entries
                .with_label_values(&[kind])
                .set(n as i64)
        };
        set("records", inner.records.len());
        set("idempotency", inner.idempotency.len());
        set("dead", inner.dead.len());
    }

    fn finish_one(&self, entry: &str, record: &MessageRecord) -> Option<Pending> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        inner
            .records
            .insert(record.message_id.clone(), record.clone());
        // Sent or failed, the bytes will not be needed again.
        inner.blobs.remove(&record.message_id);
        if is_final(record.status) {
            inner
                .finished
                .push_back((now, record.updated_ms, record.message_id.clone()));
        }
        let n = entry_number(entry)?;
        let done = inner.pending.remove(&n)?;
        if let Some(c) = inner.per_session.get_mut(&done.message.session) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                inner.per_session.remove(&done.message.session);
            }
        }
        self.prune(&mut inner, now);
        Some(done)
    }
}

#[async_trait]
impl MessageLog for MemoryMessageLog {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(
        &self,
        message: &OutboundMessage,
        limits: QueueLimits,
    ) -> Result<Enqueued, QueueError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        self.prune(&mut inner, now);
        if let Some(key) = &message.idempotency_key {
            let k = (message.session.clone(), key.clone());
            if let Some((existing, _)) = inner.idempotency.get(&k) {
                return Ok(Enqueued::Duplicate(existing.clone()));
            }
        }
        if (inner.new.len() + inner.pending.len()) as u64 >= limits.total {
            return Err(QueueError::Full {
                limit: limits.total,
            });
        }
        let mine = inner
            .per_session
            .get(&message.session)
            .copied()
            .unwrap_or(0);
        if mine >= limits.per_session {
            if let Some(m) = self.metrics.get() {
                m.hits.with_label_values(&["queue_per_session"]).inc();
            }
            return Err(QueueError::SessionFull {
                limit: limits.per_session,
            });
        }
        *inner
            .per_session
            .entry(message.session.clone())
            .or_default() += 1;
        if let Some(key) = &message.idempotency_key {
            let k = (message.session.clone(), key.clone());
            inner
                .idempotency
                .insert(k.clone(), (message.id.clone(), now));
            inner.idempotency_order.push_back((now, k));
        }
        inner.next_entry += 1;
        let entry = entry_id(inner.next_entry);
        inner
            .records
            .insert(message.id.clone(), MessageRecord::queued(message));
        inner.new.push_back((entry, message.clone()));
        Ok(Enqueued::New)
    }

    async fn read(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let take = max.min(inner.new.len());
        let batch: Vec<(String, OutboundMessage)> = inner.new.drain(..take).collect();
        let mut out = Vec::with_capacity(batch.len());
        for (entry, message) in batch {
            if let Some(n) = entry_number(&entry) {
                inner.pending.insert(
                    n,
                    Pending {
                        consumer: consumer.to_owned(),
                        delivered_ms: now,
                        message: message.clone(),
                    },
                );
            }
            out.push(Delivery {
                entry,
                message,
                redelivered: false,
            });
        }
        Ok(out)
    }

    async fn claim_idle(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        for (n, p) in inner.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if now.saturating_sub(p.delivered_ms) >= min_idle_ms {
                p.consumer = consumer.to_owned();
                p.delivered_ms = now;
                out.push(Delivery {
                    entry: entry_id(*n),
                    message: p.message.clone(),
                    redelivered: true,
                });
            }
        }
        Ok(out)
    }

    async fn keep_alive(&self, consumer: &str, entries: &[String]) -> Result<(), QueueError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        for e in entries {
            if let Some(p) = entry_number(e).and_then(|n| inner.pending.get_mut(&n)) {
                p.consumer = consumer.to_owned();
                p.delivered_ms = now;
            }
        }
        Ok(())
    }

    async fn update(&self, record: &MessageRecord) -> Result<(), QueueError> {
        self.inner
            .lock()
            .records
            .insert(record.message_id.clone(), record.clone());
        Ok(())
    }

    async fn store_blob(&self, message_id: &str, bytes: bytes::Bytes) -> Result<(), QueueError> {
        self.inner.lock().blobs.insert(message_id.to_owned(), bytes);
        Ok(())
    }

    async fn append_blob(&self, message_id: &str, chunk: bytes::Bytes) -> Result<(), QueueError> {
        self.inner
            .lock()
            .uploads
            .entry(message_id.to_owned())
            .or_default()
            .extend_from_slice(&chunk);
        Ok(())
    }

    async fn seal_blob(&self, message_id: &str) -> Result<(), QueueError> {
        let mut inner = self.inner.lock();
        let bytes = inner
            .uploads
            .remove(message_id)
            .ok_or(QueueError::UploadLost)?;
        inner.blobs.insert(message_id.to_owned(), bytes.freeze());
        Ok(())
    }

    async fn blob(&self, message_id: &str) -> Result<Option<bytes::Bytes>, QueueError> {
        Ok(self.inner.lock().blobs.get(message_id).cloned())
    }

    async fn drop_blob(&self, message_id: &str) -> Result<(), QueueError> {
        let mut inner = self.inner.lock();
        inner.blobs.remove(message_id);
        inner.uploads.remove(message_id);
        Ok(())
    }

    async fn blob_count(&self) -> Result<u64, QueueError> {
        let inner = self.inner.lock();
        Ok((inner.blobs.len() + inner.uploads.len()) as u64)
    }

    /// Reports are not kept: the memory journal holds nothing across a
    /// restart either, and the queue reports the results once this returns.
    async fn finish(&self, done: &[Finished]) -> Result<(), QueueError> {
        for d in done {
            if self.finish_one(&d.entry, &d.record).is_none() {
                continue; // finished before (a redelivered entry)
            }
            match &d.dead {
                None => self.inner.lock().completed += 1,
                Some(message) => {
                    let mut kept = (**message).clone();
                    if let Some(text) = kept.content.text_mut() {
                        *text = dead_letter_text(text, self.bounds.dead_text_max);
                    }
                    let now = (self.clock)();
                    let mut inner = self.inner.lock();
                    inner.failed += 1;
                    inner.dead.push_back((now, kept, d.record.clone()));
                    self.prune(&mut inner, now);
                }
            }
        }
        Ok(())
    }

    async fn record(&self, message_id: &str) -> Result<Option<MessageRecord>, QueueError> {
        Ok(self.inner.lock().records.get(message_id).cloned())
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let inner = self.inner.lock();
        Ok(QueueCounts {
            active: inner.pending.len() as u64,
            waiting: inner.new.len() as u64,
            completed: inner.completed,
            failed: inner.failed,
        })
    }

    fn attach_metrics(&self, metrics: &BoundMetrics) {
        let _ = self.metrics.set(metrics.clone());
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
