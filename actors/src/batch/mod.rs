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

use crate::backoff;
use crate::error_chain::Chain;
use crate::journal::{plan, Journal, JournalError};
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

/// First retry of a release that failed, doubling up to [`RELEASE_RETRY_MAX`].
const RELEASE_RETRY_BASE: Duration = Duration::from_millis(250);
const RELEASE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Retries of one release: with the delays above, about five minutes,
/// longer than any Redis restart; after that the records wait for the next
/// start (or, for messages, the `InboundBatcher`'s sweep).
const RELEASE_RETRIES: u32 = 64;

impl Journaled {
    /// Releases the records; a failure (Redis away) is retried in a task of
    /// its own with backoff, so the batcher goes on. Retrying is safe: a
    /// status release removes only records no newer than the delivered
    /// update, and a message's key is its own. Records never released are
    /// sent again by the next start (Laravel keeps the highest `seq` and
    /// dedupes messages on their id), so a failure costs a duplicate, never
    /// an update.
    async fn release(self, journal: Journal) {
        if self.try_release(&journal).await.is_ok() {
            return;
        }
        actix_rt::spawn(async move {
            for attempt in 0..RELEASE_RETRIES {
                let delay = backoff::capped(RELEASE_RETRY_BASE, RELEASE_RETRY_MAX, attempt);
                actix_rt::time::sleep(delay).await;
                match self.try_release(&journal).await {
                    Ok(()) => return,
                    Err(e) if attempt + 1 == RELEASE_RETRIES => tracing::warn!(
                        error = %Chain(&e),
                        "cannot release journal records; the next start sends them again"
                    ),
                    Err(_) => {}
                }
            }
        });
    }

    async fn try_release(&self, journal: &Journal) -> Result<(), JournalError> {
        let released = match self {
            Journaled::Statuses(items) if !items.is_empty() => {
                journal.backend().release_statuses(items).await
            }
            Journaled::Messages(keys) if !keys.is_empty() => {
                journal.backend().release_inbound(keys).await
            }
            _ => Ok(()),
        };
        if let Err(e) = &released {
            tracing::debug!(error = %Chain(e), "cannot release journal records; retrying");
        }
        released
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::journal::memory::MemoryJournal;
    use crate::journal::{stopped_status, HeldInbound, JournalBackend};

    /// A memory journal whose first `failures` releases fail like Redis
    /// restarting; `released` fires when one goes through.
    struct Flaky {
        inner: MemoryJournal,
        failures: AtomicU32,
        released: Notify,
    }

    fn down() -> JournalError {
        JournalError::Unavailable(::redis::RedisError::from((
            ::redis::ErrorKind::Io,
            "loading",
        )))
    }

    #[async_trait]
    impl JournalBackend for Flaky {
        async fn hold_status(&self, item: &StatusItem) -> Result<(), JournalError> {
            self.inner.hold_status(item).await
        }
        async fn release_statuses(&self, items: &[StatusItem]) -> Result<(), JournalError> {
            let left = self.failures.load(SeqCst);
            if left > 0 {
                self.failures.store(left - 1, SeqCst);
                return Err(down());
            }
            self.inner.release_statuses(items).await?;
            self.released.notify_one();
            Ok(())
        }
        async fn held_statuses(&self) -> Result<Vec<StatusItem>, JournalError> {
            self.inner.held_statuses().await
        }
        async fn hold_inbound(&self, held: &HeldInbound) -> Result<(), JournalError> {
            self.inner.hold_inbound(held).await
        }
        async fn release_inbound(&self, keys: &[String]) -> Result<(), JournalError> {
            self.inner.release_inbound(keys).await
        }
        async fn held_inbound(&self) -> Result<Vec<HeldInbound>, JournalError> {
            self.inner.held_inbound().await
        }
    }

    #[actix_rt::test]
    async fn a_release_that_fails_is_retried_until_redis_is_back() {
        let flaky = Arc::new(Flaky {
            inner: MemoryJournal::default(),
            failures: AtomicU32::new(2),
            released: Notify::new(),
        });
        let journal = Journal::new(flaky.clone());
        flaky.hold_status(&stopped_status("gone", 7)).await.unwrap();

        Journaled::Statuses(vec![stopped_status("gone", 7)])
            .release(journal)
            .await;
        assert_eq!(
            flaky.held_statuses().await.unwrap().len(),
            1,
            "first try failed"
        );

        tokio::time::timeout(Duration::from_secs(30), flaky.released.notified())
            .await
            .expect("the release is retried");
        assert_eq!(flaky.failures.load(SeqCst), 0);
        assert!(flaky.held_statuses().await.unwrap().is_empty());
    }
}
