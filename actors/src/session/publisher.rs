//! `StatePublisher`: the one path by which a session's state becomes
//! visible — the snapshot [`SessionIndex`] (HTTP reads), the Redis state
//! cache (other nodes' reads) and, for states Laravel knows, a
//! `RecordStatus` to the status batcher. The Session actor publishes through
//! it for its own transitions, and the registry for sessions that have no
//! actor (restoring, waiting for a restart, given up, stopped while down).

use std::sync::Arc;

use super::index::{SessionIndex, SessionShared};
use super::machine::SessionState;
use crate::batch::status::{RecordStatus, StatusBatcher};
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::laravel::payload::StatusItem;
use crate::mailbox::MeteredAddr;
use crate::store::{CacheWrite, Store};

/// Who hears about a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Laravel too (when the state has a status word).
    Laravel,
    /// Only this gateway's readers (index and cache): a transient mark such
    /// as "restoring" or "restarting in …" that Laravel never heard of.
    Local,
}

/// Publishes session states; one shared copy for the registry and all sessions.
#[derive(Clone)]
pub struct StatePublisher {
    index: SessionIndex,
    status: MeteredAddr<StatusBatcher>,
    store: Arc<dyn Store>,
}

impl StatePublisher {
    pub fn new(
        index: SessionIndex,
        status: MeteredAddr<StatusBatcher>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            index,
            status,
            store,
        }
    }

    /// The snapshot index the states land in.
    pub fn index(&self) -> &SessionIndex {
        &self.index
    }

    /// Session `id` is now in `state`: the index, the state cache and (for
    /// `Audience::Laravel`) the status batcher hear it. `shared` numbers the
    /// update so Laravel's "newer seq wins" holds across actors.
    pub fn enter(
        &self,
        id: &SessionId,
        shared: &SessionShared,
        state: SessionState,
        reason: Option<String>,
        audience: Audience,
    ) {
        self.index.set_state(id, state, reason.clone());
        self.cache(
            id,
            CacheWrite::State {
                status: state.status_word().map_or("qr", |w| w.as_str()),
                connection: connection_word(state),
                timestamp: unix_ms(),
            },
        );
        let Some(status) = state.status_word() else {
            return;
        };
        if audience == Audience::Laravel {
            self.status.do_send(RecordStatus {
                item: StatusItem {
                    session_id: id.clone(),
                    status,
                    priority: status.priority(),
                    reason,
                    timestamp: unix_ms(),
                    seq: shared.next_seq(),
                },
            });
        }
    }

    /// Writes to the state cache in the background (Redis store only).
    pub fn cache(&self, id: &SessionId, write: CacheWrite) {
        if !self.store.caches() {
            return;
        }
        let (store, id) = (Arc::clone(&self.store), id.clone());
        actix_rt::spawn(async move {
            if let Err(e) = store.cache(&id, write).await {
                tracing::debug!(session = %id, error = %Chain(&e), "cannot write the session cache");
            }
        });
    }
}

/// The connection word cached in `session:{id}:connection`, in Baileys'
/// terms as the old gateway stored it.
fn connection_word(state: SessionState) -> &'static str {
    use SessionState::*;
    match state {
        Starting | Qr | Pairing => "connecting",
        Connected => "open",
        Disconnected | LoggedOut | Stopped | Failed => "close",
    }
}
