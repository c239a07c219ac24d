//! `StatePublisher`: the one path by which a session's state becomes
//! visible — the snapshot [`SessionIndex`] (HTTP reads), the Redis state
//! cache (other nodes' reads) and, for states Laravel knows, a
//! `RecordStatus` to the status batcher. The Session actor publishes through
//! it for its own transitions, and the registry for sessions that have no
//! actor (restoring, waiting for a restart, given up, stopped while down).
//! Statuses no restart would publish again (terminal ones) are also written
//! to the convergence [`Journal`] as they go to the batcher. Every state,
//! local ones included, is also a live `state` event ([`EventBus`]).

use std::sync::Arc;

use super::index::{SessionIndex, SessionShared};
use super::machine::SessionState;
use crate::batch::status::{RecordStatus, StatusBatcher};
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::events::{EventBus, EventKind};
use crate::ids::SessionId;
use crate::journal::{plan, Journal, JournalError};
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
    /// Where terminal statuses are kept until Laravel has them.
    journal: Journal,
    /// Live subscribers hear every state, Laravel's or local.
    events: EventBus,
}

impl StatePublisher {
    pub fn new(
        index: SessionIndex,
        status: MeteredAddr<StatusBatcher>,
        store: Arc<dyn Store>,
        journal: Journal,
        events: EventBus,
    ) -> Self {
        Self {
            index,
            status,
            store,
            journal,
            events,
        }
    }

    /// The live event bus (sessions publish QR codes and messages on it).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The convergence journal (the registry's restore reads it).
    pub fn journal(&self) -> &Journal {
        &self.journal
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
        self.events.publish(
            EventKind::State,
            id,
            &StateEvent {
                state: state.as_str(),
                status: state.status_word().map(|w| w.as_str()),
                reason: reason.as_deref(),
            },
        );
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
            let item = status_item(id, shared, state, reason)
                .expect("the state has a status word (checked above)");
            if plan::holds(status) {
                // Issued now, ahead of the record delete that may follow
                // (logout, idle expiry) on the same Redis connection. The
                // item goes to the batcher at once, not after the write, so
                // it never overtakes a later update of the session there.
                let (journal, item) = (self.journal.clone(), item.clone());
                actix_rt::spawn(async move {
                    if let Err(e) = journal.backend().hold_status(&item).await {
                        tracing::warn!(session = %item.session_id, error = %Chain(&e),
                            "cannot journal a terminal status; a kill -9 before it is sent would lose it");
                    }
                });
            }
            self.status.do_send(RecordStatus { item });
        }
    }

    /// Journals `state` for session `id` and waits for the write: the
    /// registry calls it before a change that removes the session's record
    /// (a delete), so a kill right after still lets the next start tell
    /// Laravel. Returns the update, for [`StatePublisher::replay`] once the
    /// change is made (a session without an actor announces nothing else;
    /// a running one follows with its own, higher `seq`).
    pub async fn tombstone(
        &self,
        id: &SessionId,
        shared: &SessionShared,
        state: SessionState,
        reason: &str,
    ) -> Result<Option<StatusItem>, JournalError> {
        let Some(item) = status_item(id, shared, state, Some(reason.to_owned())) else {
            return Ok(None);
        };
        self.journal.backend().hold_status(&item).await?;
        Ok(Some(item))
    }

    /// Sends a journaled status as it was (same `seq`): a tombstone, or a
    /// held status at start.
    pub fn replay(&self, item: StatusItem) {
        self.status.do_send(RecordStatus { item });
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

/// The `data` of a `state` event.
#[derive(serde::Serialize)]
struct StateEvent<'a> {
    /// The gateway's state (`qr`, `connected`, `restoring`, …).
    state: &'static str,
    /// The word Laravel gets for it (`active`, `inactive`, …), if any.
    status: Option<&'static str>,
    reason: Option<&'a str>,
}

/// The status update for entering `state`, numbered by `shared`; `None`
/// for a state Laravel hears of through the QR batch (`qr`).
fn status_item(
    id: &SessionId,
    shared: &SessionShared,
    state: SessionState,
    reason: Option<String>,
) -> Option<StatusItem> {
    let status = state.status_word()?;
    Some(StatusItem {
        session_id: id.clone(),
        status,
        priority: status.priority(),
        reason,
        timestamp: unix_ms(),
        seq: shared.next_seq(),
    })
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
