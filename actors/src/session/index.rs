//! The snapshot index: one [`SessionSnapshot`] per session in a `DashMap`,
//! written by Session actors and the registry, read by HTTP handlers without
//! touching any mailbox. It also keeps the `sessions{state}` gauges exact.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::machine::SessionState;
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::metrics::Metrics;

/// Counters shared by a session's successive actors and the registry.
#[derive(Debug, Default)]
pub struct SessionShared {
    /// Messages waiting in this session's mailbox (for `/metrics/actors`).
    pub mailbox_depth: Arc<AtomicI64>,
    /// Last sequence number given to an update for Laravel; survives restarts
    /// of the actor so Laravel's "newer seq wins" rule keeps working.
    seq: AtomicU64,
    /// Unix ms of the last connector event or command (idle TTL).
    last_activity_ms: AtomicU64,
    /// The session has credentials (a linked device): the idle sweep never
    /// forgets it, however quiet the account is.
    linked: AtomicBool,
}

impl SessionShared {
    /// `seq` starts at `now_ms × 1000`, so it keeps growing across gateway
    /// restarts, restores and re-creates of the same id (a session would
    /// need a thousand updates per millisecond to catch up with the clock).
    pub fn new(now_ms: u64) -> Self {
        Self {
            last_activity_ms: AtomicU64::new(now_ms),
            seq: AtomicU64::new(now_ms.saturating_mul(1000)),
            ..Self::default()
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn touch(&self) {
        self.last_activity_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    pub fn set_linked(&self, linked: bool) {
        self.linked.store(linked, Ordering::Relaxed);
    }

    pub fn is_linked(&self) -> bool {
        self.linked.load(Ordering::Relaxed)
    }
}

/// The QR code on screen.
#[derive(Debug, Clone)]
pub struct QrSnapshot {
    pub code: Arc<str>,
    pub expires_at_ms: u64,
}

/// What HTTP readers see of a session.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    pub id: SessionId,
    pub state: SessionState,
    /// Why it entered that state, when there is a reason worth showing.
    pub reason: Option<String>,
    /// The linked phone's JID, once connected.
    pub jid: Option<String>,
    pub qr: Option<QrSnapshot>,
    pub pair_code: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub restarts: u32,
    pub shared: Arc<SessionShared>,
}

impl SessionSnapshot {
    /// The QR to show: only while in `qr` state and not expired.
    pub fn pending_qr(&self, now_ms: u64) -> Option<&QrSnapshot> {
        self.qr
            .as_ref()
            .filter(|q| self.state == SessionState::Qr && q.expires_at_ms > now_ms)
    }
}

#[derive(Clone)]
pub struct SessionIndex {
    map: Arc<DashMap<SessionId, SessionSnapshot>>,
    metrics: Arc<Metrics>,
}

impl SessionIndex {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            map: Arc::new(DashMap::new()),
            metrics,
        }
    }

    fn gauge(&self, state: SessionState) -> prometheus::IntGauge {
        self.metrics
            .sessions_by_state
            .with_label_values(&[state.as_str()])
    }

    /// Adds a new session in `starting`.
    pub fn insert(&self, id: SessionId, shared: Arc<SessionShared>) {
        let now = unix_ms();
        let snap = SessionSnapshot {
            id: id.clone(),
            state: SessionState::Starting,
            reason: None,
            jid: None,
            qr: None,
            pair_code: None,
            created_at_ms: now,
            updated_at_ms: now,
            restarts: 0,
            shared,
        };
        if let Some(old) = self.map.insert(id, snap) {
            self.gauge(old.state).dec();
        }
        self.gauge(SessionState::Starting).inc();
    }

    pub fn remove(&self, id: &SessionId) {
        if let Some((_, old)) = self.map.remove(id) {
            self.gauge(old.state).dec();
        }
    }

    /// Changes a session in place; a removed session stays removed.
    pub fn update(&self, id: &SessionId, f: impl FnOnce(&mut SessionSnapshot)) {
        if let Some(mut snap) = self.map.get_mut(id) {
            let before = snap.state;
            f(&mut snap);
            snap.updated_at_ms = unix_ms();
            if snap.state != before {
                self.gauge(before).dec();
                self.gauge(snap.state).inc();
            }
        }
    }

    pub fn set_state(&self, id: &SessionId, state: SessionState, reason: Option<String>) {
        self.update(id, |s| {
            s.state = state;
            s.reason = reason;
        });
    }

    pub fn get(&self, id: &SessionId) -> Option<SessionSnapshot> {
        self.map.get(id).map(|s| s.clone())
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.map.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sessions in a given state (from the gauges: O(1)).
    pub fn count(&self, state: SessionState) -> u64 {
        self.gauge(state).get().max(0) as u64
    }

    /// One page in id order: ids after `after`, at most `limit`, optionally
    /// in one state. O(n) selection, no full sort.
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        state: Option<SessionState>,
    ) -> Vec<SessionSnapshot> {
        let mut ids: Vec<SessionId> = self
            .map
            .iter()
            .filter(|e| after.is_none_or(|a| e.key().as_str() > a))
            .filter(|e| state.is_none_or(|st| e.state == st))
            .map(|e| e.key().clone())
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    /// The `n` deepest session mailboxes, deepest first.
    pub fn deepest_mailboxes(&self, n: usize) -> Vec<(SessionId, i64)> {
        let mut all: Vec<(SessionId, i64)> = self
            .map
            .iter()
            .map(|e| {
                (
                    e.key().clone(),
                    e.shared.mailbox_depth.load(Ordering::Relaxed),
                )
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(ids: &[&str]) -> SessionIndex {
        let idx = SessionIndex::new(Arc::new(Metrics::new()));
        for id in ids {
            idx.insert(
                SessionId::parse(id).unwrap(),
                Arc::new(SessionShared::new(0)),
            );
        }
        idx
    }

    #[test]
    fn pages_in_id_order_with_cursor_and_filter() {
        let idx = index_with(&["d", "a", "c", "b", "e"]);
        let ids =
            |v: Vec<SessionSnapshot>| v.into_iter().map(|s| s.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(idx.page(None, 2, None)), ["a", "b"]);
        assert_eq!(ids(idx.page(Some("b"), 2, None)), ["c", "d"]);
        assert_eq!(ids(idx.page(Some("d"), 2, None)), ["e"]);
        idx.set_state(
            &SessionId::parse("c").unwrap(),
            SessionState::Connected,
            None,
        );
        assert_eq!(
            ids(idx.page(None, 10, Some(SessionState::Connected))),
            ["c"]
        );
    }

    #[test]
    fn gauges_follow_states_and_removal() {
        let idx = index_with(&["a", "b"]);
        assert_eq!(idx.count(SessionState::Starting), 2);
        idx.set_state(&SessionId::parse("a").unwrap(), SessionState::Qr, None);
        assert_eq!(idx.count(SessionState::Starting), 1);
        assert_eq!(idx.count(SessionState::Qr), 1);
        idx.remove(&SessionId::parse("a").unwrap());
        assert_eq!(idx.count(SessionState::Qr), 0);
        idx.set_state(&SessionId::parse("a").unwrap(), SessionState::Qr, None);
        assert!(
            !idx.contains(&SessionId::parse("a").unwrap()),
            "updates never resurrect"
        );
    }
}
