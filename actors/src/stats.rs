//! Queue counters published by the batchers for `/health` (the seed's
//! `queues` object). Atomics, so the health endpoint never waits on an
//! actor mailbox. Held outbox batches are the delivery view's alone.

use std::sync::atomic::{AtomicU64, Ordering};

/// One queue in the seed's `{active, waiting, completed}` shape.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Requests in flight to Laravel.
    pub active: AtomicU64,
    /// Items buffered, not yet in a request.
    pub waiting: AtomicU64,
    /// Requests answered by Laravel (or held in the outbox).
    pub completed: AtomicU64,
}

impl QueueStats {
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.active.load(Ordering::Relaxed),
            self.waiting.load(Ordering::Relaxed),
            self.completed.load(Ordering::Relaxed),
        )
    }

    pub fn set_waiting(&self, n: usize) {
        self.waiting.store(n as u64, Ordering::Relaxed);
    }

    pub fn started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// All queues of one gateway.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub qr: QueueStats,
    pub status: QueueStats,
    pub inbound: QueueStats,
}
