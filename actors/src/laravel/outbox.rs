//! The outbox: batches Laravel has not acknowledged, held in order while the
//! breaker is open or after retries are spent, and replayed by
//! `LaravelClient` when Laravel answers again. A trait, so the Redis backend
//! keeps them across restarts; the memory backend is the default.
//!
//! Bounded ([`OutboxBounds`]): incoming WhatsApp traffic from anyone lands
//! here during a Laravel outage, so past `OUTBOX_MAX_BATCHES` or
//! `OUTBOX_MAX_BYTES` batches are shed by [`plan_shed`] — QR first,
//! incoming messages next, statuses last — each shed counted in
//! `wagate_bound_hits_total{bound="outbox"}` and logged at WARN.

use std::collections::VecDeque;
use std::sync::OnceLock;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::payload::{Endpoint, OutboundBatch};
use crate::bounds::{plan_shed, OutboxBounds};
use crate::metrics::BoundMetrics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    /// The cause is kept as the source (log it with `error_chain::Chain`).
    #[error("the outbox store is unavailable")]
    Unavailable(#[source] redis::RedisError),
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Appends at the tail, shedding for room past the bounds; returns how
    /// many batches it holds after.
    async fn push(&self, batch: OutboundBatch) -> Result<usize, OutboxError>;
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

    /// Hands the outbox its bound metrics (called once by `Gateway::start`).
    fn attach_metrics(&self, _metrics: &BoundMetrics) {}
}

/// Reports batches shed for room: a WARN and the bound metric.
pub(crate) fn report_shed(metrics: Option<&BoundMetrics>, shed: &[Endpoint], bounds: OutboxBounds) {
    if shed.is_empty() {
        return;
    }
    if let Some(m) = metrics {
        m.hits
            .with_label_values(&["outbox"])
            .inc_by(shed.len() as u64);
    }
    let kinds: Vec<&str> = shed.iter().map(|e| e.label()).collect();
    tracing::warn!(
        shed = shed.len(),
        kinds = kinds.join(","),
        max_batches = bounds.max_batches,
        max_bytes = bounds.max_bytes,
        "Laravel outbox full (OUTBOX_MAX_BATCHES / OUTBOX_MAX_BYTES): batches shed, QR first, statuses last"
    );
}

/// An in-process outbox: survives Laravel outages, not gateway restarts.
#[derive(Default)]
pub struct MemoryOutbox {
    queue: Mutex<VecDeque<OutboundBatch>>,
    bounds: OutboxBounds,
    /// Set by `Gateway::start`; absent in unit tests.
    metrics: OnceLock<BoundMetrics>,
}

impl MemoryOutbox {
    pub fn new(bounds: OutboxBounds) -> Self {
        Self {
            bounds,
            ..Self::default()
        }
    }

    fn publish_bytes(&self, q: &VecDeque<OutboundBatch>) {
        if let Some(m) = self.metrics.get() {
            m.outbox_bytes
                .set(q.iter().map(|b| b.body.len()).sum::<usize>() as i64);
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn push(&self, batch: OutboundBatch) -> Result<usize, OutboxError> {
        let (shed, held): (Vec<Endpoint>, usize) = {
            let mut q = self.queue.lock();
            q.push_back(batch);
            let held: Vec<(Endpoint, usize)> =
                q.iter().map(|b| (b.endpoint, b.body.len())).collect();
            let victims = plan_shed(&held, self.bounds);
            // Back to front, so earlier indices stay valid.
            let shed = victims
                .iter()
                .rev()
                .filter_map(|&i| q.remove(i).map(|b| b.endpoint))
                .collect();
            self.publish_bytes(&q);
            (shed, q.len())
        };
        report_shed(self.metrics.get(), &shed, self.bounds);
        Ok(held)
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
            self.publish_bytes(&q);
        }
        Ok(())
    }

    async fn len(&self) -> Result<usize, OutboxError> {
        Ok(self.queue.lock().len())
    }

    fn attach_metrics(&self, metrics: &BoundMetrics) {
        let _ = self.metrics.set(metrics.clone());
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

    #[actix_rt::test]
    async fn a_full_outbox_sheds_qr_first_and_keeps_statuses() {
        let outbox = MemoryOutbox::new(OutboxBounds {
            max_batches: 2,
            max_bytes: usize::MAX,
        });
        let status = OutboundBatch::new::<u8>(Endpoint::StatusBatch, "statuses", &[], 1);
        let qr = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[], 2);
        let later = OutboundBatch::new::<u8>(Endpoint::StatusBatch, "statuses", &[], 3);
        for b in [&status, &qr, &later] {
            outbox.push(b.clone()).await.unwrap();
        }
        assert_eq!(outbox.len().await.unwrap(), 2);
        assert_eq!(outbox.front().await.unwrap(), Some(status.clone()));
        outbox.remove_front(&status.id).await.unwrap();
        assert_eq!(outbox.front().await.unwrap(), Some(later), "the QR went");
    }
}
