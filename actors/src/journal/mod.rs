//! The convergence journal: what must reach Laravel even if the process is
//! killed (`kill -9`, OOM, power loss) while it waits in a batcher's buffer.
//! Three kinds of record, all removed once Laravel accepted the batch that
//! carried them or the batch went to the outbox:
//! - **incoming messages**, written before WhatsApp (or the simulator's
//!   `simulate/incoming`) is told they arrived, replayed by the
//!   `InboundBatcher` at start (Laravel dedupes on the message id);
//! - **send results** (`send_result`), written by the message log in the
//!   same ordered write that records the outcome ([`Journal::held`]), so a
//!   message whose outcome is durable is always reported; replayed like
//!   incoming messages (Laravel upserts on the message id and `rank`);
//! - **terminal statuses** (`stopped`, `logged_out`, `failed`): the updates
//!   no restore re-publishes, because no actor runs in those states and a
//!   deleted or logged-out session is not restored at all. The registry's
//!   restore sends those of sessions no longer stored again, with a fresh
//!   `seq` ([`plan::RecoveryPlan`], [`plan::reissued`]).
//!
//! Written by the `StatePublisher`, the registry (a tombstone before a
//! delete) and the simulator; released by the batchers. [`memory`] holds
//! nothing across a restart (like every memory backend); [`redis`] is the
//! durable one.

pub mod memory;
pub mod plan;
pub mod redis;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::connector::IncomingMessage;
use crate::ids::SessionId;
use crate::laravel::payload::{InboundItem, StatusItem};

/// A journal call failed. The cause is kept as the source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("the journal store is unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    #[error("the journal holds a corrupt record under {field}")]
    Corrupt {
        field: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
}

/// One incoming item waiting for Laravel, as it will be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldInbound {
    /// [`inbound_key`] of the item: its field in the journal.
    pub key: String,
    /// The process that wrote it ([`Journal::boot`]); a start replays only
    /// records of earlier processes (its own are still in its buffers).
    pub boot: String,
    /// Order of writing within `boot`, so a replay keeps arrival order.
    pub n: u64,
    /// The item's JSON, exactly as Laravel receives it in `messages`.
    pub item: serde_json::Value,
}

/// Where the records live: Redis, or this process's memory.
#[async_trait]
pub trait JournalBackend: Send + Sync + 'static {
    /// Keeps `item` as its session's pending terminal status (a later one
    /// of the same session replaces it).
    async fn hold_status(&self, item: &StatusItem) -> Result<(), JournalError>;
    /// Removes each session's record whose `seq` is at most that of the
    /// session's item here: these updates reached Laravel (or the outbox)
    /// and supersede it, the held item itself or a newer update that took
    /// its place in a batcher's buffer. A newer record written meanwhile
    /// stays.
    async fn release_statuses(&self, items: &[StatusItem]) -> Result<(), JournalError>;
    async fn held_statuses(&self) -> Result<Vec<StatusItem>, JournalError>;
    async fn hold_inbound(&self, held: &HeldInbound) -> Result<(), JournalError>;
    async fn release_inbound(&self, keys: &[String]) -> Result<(), JournalError>;
    async fn held_inbound(&self) -> Result<Vec<HeldInbound>, JournalError>;
}

/// The journal of this process: a backend plus the process's boot id.
/// Cheap to clone; one copy shared by every writer.
#[derive(Clone)]
pub struct Journal {
    backend: Arc<dyn JournalBackend>,
    /// Tells this process's records from a dead predecessor's.
    boot: Arc<str>,
    /// Next [`HeldInbound::n`].
    next_n: Arc<AtomicU64>,
}

impl Journal {
    pub fn new(backend: Arc<dyn JournalBackend>) -> Self {
        Self {
            backend,
            boot: Arc::from(uuid::Uuid::now_v7().to_string()),
            next_n: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A journal in memory (nothing survives the process).
    pub fn memory() -> Self {
        Self::new(Arc::new(memory::MemoryJournal::default()))
    }

    pub fn boot(&self) -> &str {
        &self.boot
    }

    pub fn backend(&self) -> &Arc<dyn JournalBackend> {
        &self.backend
    }

    /// Records an incoming message before its arrival is acknowledged;
    /// returns the item Laravel will get (the same bytes the journal holds).
    pub async fn hold_message(
        &self,
        session: &SessionId,
        message: &IncomingMessage,
    ) -> Result<InboundItem, JournalError> {
        let item = InboundItem::incoming(session, message.clone());
        let held = self
            .held(&item)
            .expect("an incoming message has a journal key");
        self.backend.hold_inbound(&held).await?;
        Ok(item)
    }

    /// The journal record of `item`, numbered in this process's order, for
    /// a writer that stores it itself (the message log keeps a send result
    /// with the outcome it reports). `None` for receipts: not journaled.
    pub fn held(&self, item: &InboundItem) -> Option<HeldInbound> {
        Some(HeldInbound {
            key: journal_key(item)?,
            boot: self.boot.to_string(),
            n: self.next_n.fetch_add(1, Relaxed),
            item: serde_json::to_value(item).expect("payload items serialize to JSON"),
        })
    }
}

/// The journal field of an incoming message. Session ids never contain `/`.
pub fn inbound_key(session: &SessionId, message_id: &str) -> String {
    format!("{session}/{message_id}")
}

/// The journal field of the send result of outgoing message `message_id`
/// (its own namespace: an outgoing id may equal an incoming one).
pub fn result_key(session: &SessionId, message_id: &str) -> String {
    format!("{session}/sent/{message_id}")
}

/// The journal key of an item the `InboundBatcher` buffers: messages and
/// send results are journaled; receipts are not (a lost `delivered` is
/// implied by a later `read`; what a kill -9 can lose is listed in
/// docs/durability.md).
pub fn journal_key(item: &InboundItem) -> Option<String> {
    match item {
        InboundItem::Message { session_id, id, .. } => Some(inbound_key(session_id, id)),
        InboundItem::SendResult {
            session_id,
            message_id,
            ..
        } => Some(result_key(session_id, message_id)),
        InboundItem::Receipt { .. } => None,
    }
}

/// The registry reports a journal failure like any store failure: Redis
/// refused, nothing was changed.
impl From<JournalError> for crate::store::StoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Unavailable(r) => Self::Unavailable(r),
            JournalError::Corrupt { field, source } => Self::Corrupt { key: field, source },
        }
    }
}

/// A `stopped` update of `session` with `seq`: the journaled status the
/// journal's and the batchers' tests hold and release.
#[cfg(test)]
pub(crate) fn stopped_status(session: &str, seq: u64) -> StatusItem {
    use crate::laravel::payload::StatusWord;
    StatusItem {
        session_id: SessionId::parse(session).unwrap(),
        status: StatusWord::Stopped,
        priority: StatusWord::Stopped.priority(),
        reason: None,
        timestamp: 1,
        seq,
    }
}
