//! Batchers: turn thousands of per-session events into a few requests to
//! Laravel. [`qr::QrBatcher`] (latest QR per session), [`status::StatusBatcher`]
//! (normal lane coalesced, high lane immediate) and [`inbound::InboundBatcher`]
//! (incoming messages and receipts, never coalesced). Sessions send to them;
//! they send [`DeliverBatch`] to the `LaravelClient`.

pub mod buffer;
pub mod inbound;
pub mod qr;
pub mod status;
pub mod status_order;

use std::time::Duration;

use actix::Message;
use tokio::sync::oneshot;

use crate::error_chain::Chain;
use crate::journal::{plan, Journal};
use crate::laravel::client::{DeliverBatch, Delivery, LaravelClient};
use crate::laravel::payload::{OutboundBatch, StatusItem};
use crate::mailbox::MeteredAddr;
use crate::stats::QueueStats;

/// Size/interval policy shared by the batchers.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Items per request (`BATCH_SIZE`).
    pub size: usize,
    /// Longest a normal-lane or QR item waits (`BATCH_INTERVAL`).
    pub interval: Duration,
    /// Longest a high-lane item waits while a request is in flight (`PRIORITY_INTERVAL`).
    pub priority_interval: Duration,
    /// Longest an incoming message waits (`MESSAGES_BATCH_INTERVAL`).
    pub inbound_interval: Duration,
    /// One request per event to the old endpoints (`LARAVEL_LEGACY`).
    pub legacy: bool,
}

/// Send everything buffered and resolve once nothing is buffered or in
/// flight (graceful stop).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub done: oneshot::Sender<()>,
}

/// Who waits for a batcher to become idle.
#[derive(Default)]
pub(crate) struct DrainWaiters {
    waiters: Vec<oneshot::Sender<()>>,
}

impl DrainWaiters {
    pub fn add(&mut self, done: oneshot::Sender<()>) {
        self.waiters.push(done);
    }

    pub fn draining(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Releases the waiters when the batcher is idle.
    pub fn settle(&mut self, idle: bool) {
        if idle {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

/// How often a batcher checks whether its oldest item has waited long
/// enough: a tenth of the interval, so a partial batch goes out at most 10 %
/// late.
pub(crate) fn linger_tick(interval: std::time::Duration) -> std::time::Duration {
    (interval / 10).max(std::time::Duration::from_millis(5))
}

/// Hands a batch to the client, keeping the lane's queue counters.
pub(crate) async fn deliver(
    client: MeteredAddr<LaravelClient>,
    batch: OutboundBatch,
    stats: &QueueStats,
) -> Delivery {
    send(
        client,
        DeliverBatch {
            batch,
            stored: None,
        },
        stats,
    )
    .await
}

/// The journal records a batch carries, released once it is safe.
pub(crate) enum Journaled {
    /// Status updates: each session's record they supersede goes.
    Statuses(Vec<StatusItem>),
    /// Incoming messages, by journal key.
    Messages(Vec<String>),
}

impl Journaled {
    /// A failure leaves the records for the sweep or the next start, which
    /// send them again (Laravel keeps the highest `seq` and dedupes
    /// messages on their id).
    async fn release(self, journal: Journal) {
        let released = match &self {
            Journaled::Statuses(items) if !items.is_empty() => {
                journal.backend().release_statuses(items).await
            }
            Journaled::Messages(keys) if !keys.is_empty() => {
                journal.backend().release_inbound(keys).await
            }
            _ => Ok(()),
        };
        if let Err(e) = released {
            tracing::debug!(error = %Chain(&e), "cannot release journal records; they are sent again later");
        }
    }
}

/// [`deliver`], then releases the journal records the batch carried once
/// that is safe ([`plan::releases`]): at once, or, for a batch the client
/// had to keep in memory (`Spilled`, Redis away), when it reaches the
/// outbox, in a task of its own so the batcher goes on. A kill before that
/// leaves the records for the next start.
pub(crate) async fn deliver_then_release(
    client: MeteredAddr<LaravelClient>,
    batch: OutboundBatch,
    stats: &QueueStats,
    journal: Journal,
    records: Journaled,
) -> Delivery {
    let (stored, on_stored) = oneshot::channel();
    let outcome = send(
        client,
        DeliverBatch {
            batch,
            stored: Some(stored),
        },
        stats,
    )
    .await;
    if plan::releases(&outcome) {
        records.release(journal).await;
    } else if outcome == Delivery::Spilled {
        actix_rt::spawn(async move {
            if on_stored.await.is_ok() {
                records.release(journal).await;
            }
        });
    }
    outcome
}

async fn send(
    client: MeteredAddr<LaravelClient>,
    message: DeliverBatch,
    stats: &QueueStats,
) -> Delivery {
    stats.started();
    let id = message.batch.id.clone();
    let result = client.send(message).await.unwrap_or_else(|e| {
        tracing::error!(batch_id = %id, error = %e, "the Laravel client is gone; batch lost");
        Delivery::Lost
    });
    stats.finished();
    result
}
