//! The in-process message log: the zero-setup default. Same semantics as
//! the Redis Stream log (entries pending per consumer until completed,
//! claimable when idle, idempotency keys, a dead letter), but nothing
//! survives the process. Used by `Gateway` when no Redis is configured.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    Delivery, Enqueued, MessageLog, MessageRecord, OutboundMessage, QueueCounts, QueueError,
};
use crate::clock::unix_ms;
use crate::ids::SessionId;

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
    idempotency: HashMap<(SessionId, String), String>,
    dead: Vec<(OutboundMessage, MessageRecord)>,
    completed: u64,
    failed: u64,
}

pub struct MemoryMessageLog {
    inner: Mutex<Inner>,
    clock: Clock,
}

impl Default for MemoryMessageLog {
    fn default() -> Self {
        Self::with_clock(Arc::new(unix_ms))
    }
}

fn entry_id(n: u64) -> String {
    format!("{n}-0")
}

fn entry_number(entry: &str) -> Option<u64> {
    entry.split('-').next()?.parse().ok()
}

impl MemoryMessageLog {
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
        }
    }

    /// Messages that failed for good, oldest first (tests, diagnostics).
    pub fn dead_letters(&self) -> Vec<(OutboundMessage, MessageRecord)> {
        self.inner.lock().dead.clone()
    }

    fn finish(&self, entry: &str, record: &MessageRecord) -> Option<Pending> {
        let mut inner = self.inner.lock();
        inner
            .records
            .insert(record.message_id.clone(), record.clone());
        let n = entry_number(entry)?;
        inner.pending.remove(&n)
    }
}

#[async_trait]
impl MessageLog for MemoryMessageLog {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, message: &OutboundMessage, limit: u64) -> Result<Enqueued, QueueError> {
        let mut inner = self.inner.lock();
        if let Some(key) = &message.idempotency_key {
            let k = (message.session.clone(), key.clone());
            if let Some(existing) = inner.idempotency.get(&k) {
                return Ok(Enqueued::Duplicate(existing.clone()));
            }
        }
        if (inner.new.len() + inner.pending.len()) as u64 >= limit {
            return Err(QueueError::Full { limit });
        }
        if let Some(key) = &message.idempotency_key {
            inner
                .idempotency
                .insert((message.session.clone(), key.clone()), message.id.clone());
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

    async fn complete(&self, entry: &str, record: &MessageRecord) -> Result<(), QueueError> {
        if self.finish(entry, record).is_some() {
            self.inner.lock().completed += 1;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        entry: &str,
        message: &OutboundMessage,
        record: &MessageRecord,
    ) -> Result<(), QueueError> {
        if self.finish(entry, record).is_some() {
            let mut inner = self.inner.lock();
            inner.failed += 1;
            inner.dead.push((message.clone(), record.clone()));
        }
        Ok(())
    }

    async fn get(
        &self,
        session: &SessionId,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, QueueError> {
        Ok(self
            .inner
            .lock()
            .records
            .get(message_id)
            .filter(|r| &r.session == session)
            .cloned())
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::messages::MessageStatus;

    fn message(session: &str, key: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            id: OutboundMessage::new_id(),
            session: SessionId::parse(session).unwrap(),
            to: "5215512345678".into(),
            text: "hi".into(),
            idempotency_key: key.map(str::to_owned),
            created_ms: 1,
        }
    }

    #[actix_rt::test]
    async fn delivers_in_order_and_counts() {
        let log = MemoryMessageLog::default();
        let (a, b) = (message("s", None), message("s", None));
        log.enqueue(&a, 10).await.unwrap();
        log.enqueue(&b, 10).await.unwrap();
        let read = log.read("n1", 10).await.unwrap();
        assert_eq!(
            read.iter().map(|d| &d.message).collect::<Vec<_>>(),
            vec![&a, &b]
        );
        let mut sent = MessageRecord::queued(&a);
        sent.status = MessageStatus::Sent;
        log.complete(&read[0].entry, &sent).await.unwrap();
        let mut failed = MessageRecord::queued(&b);
        failed.status = MessageStatus::Failed;
        log.dead_letter(&read[1].entry, &b, &failed).await.unwrap();
        let counts = log.counts().await.unwrap();
        assert_eq!((counts.completed, counts.failed, counts.active), (1, 1, 0));
        assert_eq!(log.dead_letters().len(), 1);
        let got = log.get(&a.session, &a.id).await.unwrap().unwrap();
        assert_eq!(got.status, MessageStatus::Sent);
        let other = SessionId::parse("other").unwrap();
        assert_eq!(log.get(&other, &a.id).await.unwrap(), None);
    }

    #[actix_rt::test]
    async fn idempotency_and_limit() {
        let log = MemoryMessageLog::default();
        let first = message("s", Some("k"));
        assert_eq!(log.enqueue(&first, 2).await.unwrap(), Enqueued::New);
        let again = message("s", Some("k"));
        assert_eq!(
            log.enqueue(&again, 2).await.unwrap(),
            Enqueued::Duplicate(first.id.clone())
        );
        log.enqueue(&message("s", None), 2).await.unwrap();
        assert_eq!(
            log.enqueue(&message("s", None), 2).await,
            Err(QueueError::Full { limit: 2 })
        );
    }

    #[actix_rt::test]
    async fn idle_entries_are_claimed_unless_kept_alive() {
        let now = Arc::new(AtomicU64::new(1_000));
        let clock = Arc::clone(&now);
        let log = MemoryMessageLog::with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
        log.enqueue(&message("s", None), 10).await.unwrap();
        log.enqueue(&message("s", None), 10).await.unwrap();
        let read = log.read("dead-node", 10).await.unwrap();
        now.store(1_500, Ordering::SeqCst);
        log.keep_alive("dead-node", &[read[1].entry.clone()])
            .await
            .unwrap();
        now.store(2_100, Ordering::SeqCst);
        let claimed = log.claim_idle("n2", 1_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "only the entry not kept alive");
        assert_eq!(claimed[0].entry, read[0].entry);
    }
}
