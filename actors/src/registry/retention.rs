//! Retention of ended sessions: a stopped, failed or logged-out session
//! that holds no credentials is forgotten `SESSION_RETENTION` after it
//! ended, so create-and-abandon churn cannot fill the registry, the index
//! and the store. A session with credentials (linked, merely stopped) is
//! never forgotten here: deleting it would unlink a phone. The rule is the
//! pure [`forgettable`], applied by the `SessionTable`; the registry runs it
//! on the sweep timer, checks the store for credentials, then forgets atomically.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::SessionRegistry;
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::session::machine::SessionState;

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
    /// Forgets ended, unlinked sessions past `SESSION_RETENTION` (the
    /// table picks them; each is checked for credentials in the store).
    pub(super) fn forget_ended(&mut self, ctx: &mut Context<Self>) {
        let index = self.deps.publisher.index().clone();
        let candidates = self.table.retention_candidates(unix_ms(), |id| {
            index.get(id).map(|s| (s.state, s.updated_at_ms))
        });
        for (id, updated_ms) in candidates {
            let store = Arc::clone(&self.deps.store);
            let check_id = id.clone();
            let linked = async move { store.load_credentials(&check_id).await };
            ctx.spawn(linked.into_actor(self).map(move |creds, act, ctx| {
                match creds {
                    Ok(None) => {}
                    // Linked (credentials kept) or unknown: keep it.
                    Ok(Some(_)) => return,
                    Err(e) => {
                        tracing::warn!(session = %id, error = %Chain(&e), "cannot check credentials; keeping the session for now");
                        return;
                    }
                }
                let now_updated = act.deps.publisher.index().get(&id).map(|s| s.updated_at_ms);
                if !act.table.still_ended(&id, now_updated, updated_ms) {
                    return;
                }
                // Atomic: no command on this session runs between the store
                // delete and the local removal.
                let store = Arc::clone(&act.deps.store);
                let del_id = id.clone();
                let delete = async move { store.delete_session(&del_id).await };
                ctx.wait(delete.into_actor(act).map(move |deleted, act, ctx| {
                    if let Err(e) = deleted {
                        tracing::warn!(session = %id, error = %Chain(&e), "cannot forget an ended session; will retry");
                        return;
                    }
                    let effects = act.table.forget(&id);
                    act.apply(effects, ctx);
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
