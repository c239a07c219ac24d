//! Retention of ended sessions: a stopped, failed or logged-out session
//! that holds no credentials is forgotten `SESSION_RETENTION` after it
//! ended, so create-and-abandon churn cannot fill the registry, the index
//! and the store. A session with credentials (linked, merely stopped) is
//! never forgotten here: deleting it would unlink a phone. The rule is the
//! pure [`forgettable`]; [`SessionRegistry::forget_ended`] runs it on the
//! sweep timer, checks the store for credentials, then forgets atomically.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::SessionRegistry;
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::session::machine::SessionState;

/// Most candidates checked per sweep: each costs a store read.
const PER_SWEEP: usize = 1000;

/// True when a session in `state`, last changed at `updated_ms`, with no
/// actor running or scheduled, has been over for `retention`.
pub fn forgettable(
    state: SessionState,
    running: bool,
    updated_ms: u64,
    now_ms: u64,
    retention: Duration,
) -> bool {
    !running
        && matches!(
            state,
            SessionState::Stopped | SessionState::Failed | SessionState::LoggedOut
        )
        && now_ms.saturating_sub(updated_ms) >= retention.as_millis() as u64
}

impl SessionRegistry {
    /// Ended sessions past their retention, as `(id, updated_ms)`.
    fn retention_candidates(&self, now_ms: u64) -> Vec<(SessionId, u64)> {
        self.sessions
            .iter()
            .filter(|(_, e)| !e.active())
            .filter_map(|(id, _)| {
                let s = self.index.get(id)?;
                forgettable(
                    s.state,
                    false,
                    s.updated_at_ms,
                    now_ms,
                    self.config.retention,
                )
                .then(|| (id.clone(), s.updated_at_ms))
            })
            .take(PER_SWEEP)
            .collect()
    }

    /// Still the same ended session as when it was picked?
    fn unchanged(&self, id: &SessionId, updated_ms: u64) -> bool {
        self.sessions.get(id).is_some_and(|e| !e.active())
            && self
                .index
                .get(id)
                .is_some_and(|s| s.updated_at_ms == updated_ms)
    }

    /// Forgets ended, unlinked sessions past `SESSION_RETENTION`.
    pub(super) fn forget_ended(&mut self, ctx: &mut Context<Self>) {
        for (id, updated_ms) in self.retention_candidates(unix_ms()) {
            let store = Arc::clone(&self.deps().store);
            let check_id = id.clone();
            let linked = async move { store.load_credentials(&check_id).await };
            ctx.spawn(linked.into_actor(self).map(move |creds, act, ctx| {
                match creds {
                    Ok(None) => {}
                    // Linked (credentials kept) or unknown: keep it.
                    Ok(Some(_)) => return,
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "cannot check credentials; keeping the session for now");
                        return;
                    }
                }
                if !act.unchanged(&id, updated_ms) {
                    return;
                }
                // Atomic: no command on this session runs between the store
                // delete and the local removal.
                let store = Arc::clone(&act.deps().store);
                let del_id = id.clone();
                let delete = async move { store.delete_session(&del_id).await };
                ctx.wait(delete.into_actor(act).map(move |deleted, act, _| {
                    if let Err(e) = deleted {
                        tracing::warn!(session = %id, error = %e, "cannot forget an ended session; will retry");
                        return;
                    }
                    act.sessions.remove(&id);
                    act.index.remove(&id);
                    act.restore_queue.retain(|q| q != &id);
                    act.metrics.bounds.sessions_forgotten.inc();
                    tracing::info!(target: "audit", event = "forget", session = %id, "ended session forgotten after SESSION_RETENTION");
                }));
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_idle_sessions_past_retention_are_forgettable() {
        let r = Duration::from_secs(60);
        for state in [
            SessionState::Stopped,
            SessionState::Failed,
            SessionState::LoggedOut,
        ] {
            assert!(forgettable(state, false, 0, 60_000, r), "{state:?}");
            assert!(
                !forgettable(state, false, 1, 60_000, r),
                "{state:?} too recent"
            );
            assert!(!forgettable(state, true, 0, 60_000, r), "{state:?} running");
        }
        for state in [
            SessionState::Starting,
            SessionState::Qr,
            SessionState::Connected,
            SessionState::Disconnected,
        ] {
            assert!(!forgettable(state, false, 0, u64::MAX, r), "{state:?}");
        }
    }
}
