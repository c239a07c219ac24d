//! The outbox: batches Laravel has not acknowledged, held in order while the
//! breaker is open or after retries are spent, and replayed by
//! `LaravelClient` when Laravel answers again. A trait, so the Redis backend
//! keeps them across restarts; the memory backend is the default.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::payload::OutboundBatch;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox store is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Appends at the tail.
    async fn push(&self, batch: OutboundBatch) -> Result<(), OutboxError>;
    /// The oldest batch, left in place.
    async fn front(&self) -> Result<Option<OutboundBatch>, OutboxError>;
    /// Up to `n` oldest batches, oldest first, left in place (a replay
    /// merges several into one request).
    async fn peek(&self, n: usize) -> Result<Vec<OutboundBatch>, OutboxError>;
    /// Removes the head if it is `batch_id` (delivered or dropped).
    async fn remove_front(&self, batch_id: &str) -> Result<(), OutboxError>;
    async fn len(&self) -> Result<usize, OutboxError>;

    async fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len().await? == 0)
    }
}

/// An in-process outbox: survives Laravel outages, not gateway restarts.
#[derive(Default)]
pub struct MemoryOutbox {
    queue: Mutex<VecDeque<OutboundBatch>>,
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn push(&self, batch: OutboundBatch) -> Result<(), OutboxError> {
        self.queue.lock().push_back(batch);
        Ok(())
    }

    async fn front(&self) -> Result<Option<OutboundBatch>, OutboxError> {
        Ok(self.queue.lock().front().cloned())
    }

    async fn peek(&self, n: usize) -> Result<Vec<OutboundBatch>, OutboxError> {
        Ok(self.queue.lock().iter().take(n).cloned().collect())
    }

    async fn remove_front(&self, batch_id: &str) -> Result<(), OutboxError> {
        let mut q = self.queue.lock();
        if q.front().is_some_and(|b| b.id == batch_id) {
            q.pop_front();
        }
        Ok(())
    }

    async fn len(&self) -> Result<usize, OutboxError> {
        Ok(self.queue.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laravel::payload::Endpoint;

    #[actix_rt::test]
    async fn keeps_order_and_removes_only_the_named_head() {
        let outbox = MemoryOutbox::default();
        let a = OutboundBatch::new::<u8>(Endpoint::StatusBatch, "statuses", &[], 1);
        let b = OutboundBatch::new::<u8>(Endpoint::StatusBatch, "statuses", &[], 2);
        outbox.push(a.clone()).await.unwrap();
        outbox.push(b.clone()).await.unwrap();
        assert_eq!(outbox.peek(5).await.unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(outbox.peek(1).await.unwrap(), vec![a.clone()]);
        outbox.remove_front(&b.id).await.unwrap();
        assert_eq!(outbox.len().await.unwrap(), 2, "b is not the head");
        assert_eq!(outbox.front().await.unwrap(), Some(a.clone()));
        outbox.remove_front(&a.id).await.unwrap();
        assert_eq!(outbox.front().await.unwrap(), Some(b));
    }
}
