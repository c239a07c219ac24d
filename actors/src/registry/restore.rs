//! Start-up restore: the stored sessions are read once (retried while the
//! store is down), tracked by the [`SessionTable`](super::table::SessionTable),
//! and those that should run are started a small group per tick
//! ([`RestoreQueue`]) so a node with thousands of sessions does not open them
//! all at once. [`RestoreProgress`] shows how far it got on `/health`.
//! The same read takes the convergence journal's held statuses: the
//! [`RecoveryPlan`] decides which are sent again (sessions no longer
//! stored), which are moot, and which stored sessions (stopped ones, which
//! no actor will announce) have their status re-sent with a fresh `seq`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::SessionRegistry;
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::journal::plan::{self, RecoveryPlan};
use crate::journal::JournalError;
use crate::laravel::payload::StatusItem;
use crate::session::machine::SessionState;
use crate::session::publisher::Audience;
use crate::store::StoreError;

/// Restore pacing: sessions are started in small groups this often.
pub const RESTORE_TICK: Duration = Duration::from_millis(100);
/// Pause before reading the stored sessions again when the store is down.
const RESTORE_RETRY: Duration = Duration::from_secs(1);

/// Restored sessions waiting for their turn, oldest first, handed out
/// `RESTORE_RATE × RESTORE_TICK` at a time (at least one per tick).
#[derive(Debug)]
pub struct RestoreQueue {
    queue: VecDeque<SessionId>,
    per_tick: usize,
}

impl RestoreQueue {
    pub fn new(per_sec: u32) -> Self {
        let per_tick = u64::from(per_sec) * RESTORE_TICK.as_millis() as u64 / 1000;
        Self {
            queue: VecDeque::new(),
            per_tick: per_tick.max(1) as usize,
        }
    }

    pub fn push(&mut self, id: SessionId) {
        self.queue.push_back(id);
    }

    /// This tick's turn (a skipped session still uses its slot).
    pub fn next_group(&mut self) -> Vec<SessionId> {
        let n = self.per_tick.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    pub fn remove(&mut self, id: &SessionId) {
        self.queue.retain(|q| q != id);
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// How far the start-up restore got, for `/health` and tests.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// The stored sessions were read (or there is nothing to read).
    pub loaded: AtomicBool,
    /// Sessions found in the store at start.
    pub found: AtomicU64,
    /// Restored sessions still waiting to start.
    pub pending: AtomicU64,
}

/// Why the start-up read failed (it is retried).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read the stored sessions")]
    Store(#[source] StoreError),
    #[error("cannot read the journaled statuses")]
    Journal(#[source] JournalError),
}

impl SessionRegistry {
    /// Reads the stored sessions and queues them for a paced start; retries
    /// while the store is down.
    pub(super) fn load_stored(&mut self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.deps.store);
        let journal = self.deps.publisher.journal().clone();
        ctx.spawn(
            async move {
                let records = store.load_sessions().await.map_err(LoadError::Store)?;
                let held = journal
                    .backend()
                    .held_statuses()
                    .await
                    .map_err(LoadError::Journal)?;
                Ok::<_, LoadError>((records, held))
            }
            .into_actor(self)
            .map(|loaded, act, ctx| match loaded {
                    Ok((records, held)) => {
                        let found = records.len();
                        let plan = RecoveryPlan::new(&records, held);
                        // Before any restored session publishes: a replayed
                        // status is older than anything they will send.
                        act.replay_held(plan.replay, plan.release);
                        let effects = act.table.restore(records, unix_ms());
                        act.apply(effects, ctx);
                        act.resync(&plan.resync);
                        let pending = act.table.restore_pending();
                        act.restore.found.store(found as u64, Relaxed);
                        act.restore.pending.store(pending as u64, Relaxed);
                        act.restore.loaded.store(true, Relaxed);
                        if found > 0 {
                            tracing::info!(
                                sessions = found,
                                to_start = pending,
                                per_sec = act.config.restore_per_sec,
                                "restoring stored sessions"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "cannot read stored sessions or the journal; retrying");
                        ctx.run_later(RESTORE_RETRY, |act, ctx| act.load_stored(ctx));
                    }
                }),
        );
    }

    /// Sends the journaled statuses of sessions that are gone again (with
    /// a fresh `seq`, see [`plan::reissued`]; they stay journaled until
    /// delivered) and drops the moot ones.
    fn replay_held(&self, replay: Vec<StatusItem>, release: Vec<StatusItem>) {
        if !replay.is_empty() {
            tracing::info!(
                statuses = replay.len(),
                "re-sending statuses journaled before a crash"
            );
        }
        let now_ms = unix_ms();
        for item in replay {
            self.deps.publisher.replay(plan::reissued(item, now_ms));
        }
        if release.is_empty() {
            return;
        }
        let journal = self.deps.publisher.journal().clone();
        actix_rt::spawn(async move {
            if let Err(e) = journal.backend().release_statuses(&release).await {
                tracing::debug!(error = %Chain(&e), "cannot drop moot journaled statuses; the next start drops them");
            }
        });
    }

    /// Re-sends, with a fresh `seq`, the status of restored sessions that
    /// stay stopped: no actor will announce them, and the `stopped` sent
    /// before the crash may have died in a buffer. A session the API
    /// changed while the records were read is left to its own updates.
    fn resync(&self, ids: &[SessionId]) {
        let index = self.deps.publisher.index();
        for id in ids {
            let stopped = index
                .get(id)
                .is_some_and(|s| s.state == SessionState::Stopped);
            if let (true, Some(shared)) = (stopped, self.table.shared(id)) {
                self.deps.publisher.enter(
                    id,
                    &shared,
                    SessionState::Stopped,
                    Some("stopped".into()),
                    Audience::Laravel,
                );
            }
        }
    }

    /// Starts the next group of restored sessions (timer).
    pub(super) fn restore_tick(&mut self, ctx: &mut Context<Self>) {
        if self.table.restore_pending() == 0 {
            return;
        }
        let effects = self.table.restore_tick(unix_ms());
        self.apply(effects, ctx);
        let pending = self.table.restore_pending();
        self.restore.pending.store(pending as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(q: &mut RestoreQueue) -> Vec<String> {
        q.next_group()
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect()
    }

    #[test]
    fn paces_groups_by_rate_and_keeps_order() {
        let mut q = RestoreQueue::new(30); // 3 per 100 ms tick
        for i in 0..7 {
            q.push(SessionId::parse(&format!("s{i}")).unwrap());
        }
        assert_eq!(ids(&mut q), ["s0", "s1", "s2"]);
        q.remove(&SessionId::parse("s4").unwrap());
        assert_eq!(ids(&mut q), ["s3", "s5", "s6"]);
        assert!(q.is_empty());
        assert!(ids(&mut q).is_empty());
    }

    #[test]
    fn a_slow_rate_still_starts_one_per_tick() {
        let mut q = RestoreQueue::new(1);
        q.push(SessionId::parse("a").unwrap());
        q.push(SessionId::parse("b").unwrap());
        assert_eq!(ids(&mut q), ["a"]);
        assert_eq!(q.len(), 1);
    }
}
