//! `/metrics/cache` key counts, kept by one background task. Counting the
//! cache keys is a SCAN over every session's keys and costs Redis real CPU,
//! so it runs at most once per interval whatever the number of callers
//! (issue 17: twenty anonymous callers missing a per-request cache at once
//! ran 16,000 SCANs). Started by `Gateway::start`; HTTP only reads
//! [`KeyCounts::latest`].

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntCounter;

use super::{CacheCounts, Store};
use crate::clock::unix_ms;

/// One refresh's outcome.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The counts, or why the store could not give them.
    pub counts: Result<CacheCounts, String>,
    /// When the reading was taken (Unix ms).
    pub at_ms: u64,
}

/// The last reading, shared between the refresh task and HTTP handlers.
#[derive(Debug, Default)]
pub struct KeyCounts {
    /// `None` until the first refresh ends, and forever for a store without
    /// keys to count (memory).
    last: Mutex<Option<Reading>>,
}

impl KeyCounts {
    pub fn latest(&self) -> Option<Reading> {
        self.last.lock().clone()
    }

    /// Refreshes every `interval` until the store says it has nothing to
    /// count. Each refresh increments `refreshes`, so the rate is observable.
    /// The first count waits one interval too: at boot Redis is busy with
    /// the restore and the message queue, and a SCAN then is the one thing
    /// that can wait.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        refreshes: IntCounter,
    ) {
        if store.kind() == "memory" {
            return;
        }
        loop {
            tokio::time::sleep(interval).await;
            let counts = match store.cache_counts().await {
                Ok(None) => return,
                Ok(Some(c)) => Ok(c),
                Err(e) => Err(e.to_string()),
            };
            refreshes.inc();
            *self.last.lock() = Some(Reading {
                counts,
                at_ms: unix_ms(),
            });
        }
    }
}
