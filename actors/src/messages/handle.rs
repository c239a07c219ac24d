//! `MessagesHandle`: the one door to outbound messages, for the HTTP layer
//! and shutdown. It owns intake (Redis up, the session exists, limits,
//! idempotency, enqueue, wake the [`MessageQueue`]), status reads and the
//! `/health` figures; callers never see the log or the actor's address.
//! Built by `Gateway::start`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::content::OutboundContent;
use super::queue::{DrainSends, MessageQueue, Wake};
use super::upload::{DraftMedia, Upload};
use super::{
    Enqueued, MessageLog, MessageRecord, MessageStatus, OutboundMessage, QueueCounts, QueueError,
    QueueLimits,
};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::redis::health::RedisHealth;
use crate::session::index::SessionIndex;
use crate::session::machine::SessionState;
use crate::store::Store;

/// A message as a client asks for it (already validated by the caller).
#[derive(Debug)]
pub struct Draft {
    /// Digits or a JID.
    pub to: String,
    pub content: OutboundContent,
    pub quoted_message_id: Option<String>,
    pub mentions: Vec<String>,
    pub idempotency_key: Option<String>,
    /// The media bytes, for a kind that has them (`content.media()`
    /// describes them): in memory, or already uploaded to the blob store.
    pub media: Option<DraftMedia>,
    /// Type before sending; `None`: the gateway's default (`MESSAGE_HUMANE`).
    pub humane: Option<bool>,
}

/// What intake did with a [`Draft`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Durable in the log; it will be sent. `session_connected`: whether it
    /// can go out now or waits for the session to connect.
    Queued {
        message_id: String,
        session_connected: bool,
    },
    /// The idempotency key was used before: that message, as it stands now.
    Duplicate {
        message_id: String,
        status: MessageStatus,
    },
}

/// `/health`'s `messageQueue`, refreshed every second; lock-free reads.
#[derive(Debug, Default)]
pub struct QueueGauge {
    active: AtomicU64,
    waiting: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// The last read from the log succeeded.
    fresh: AtomicBool,
}

impl QueueGauge {
    pub fn read(&self) -> (QueueCounts, bool) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            QueueCounts {
                active: r(&self.active),
                waiting: r(&self.waiting),
                completed: r(&self.completed),
                failed: r(&self.failed),
            },
            self.fresh.load(Ordering::Relaxed),
        )
    }

    pub(super) fn store(&self, c: QueueCounts) {
        self.active.store(c.active, Ordering::Relaxed);
        self.waiting.store(c.waiting, Ordering::Relaxed);
        self.completed.store(c.completed, Ordering::Relaxed);
        self.failed.store(c.failed, Ordering::Relaxed);
        self.fresh.store(true, Ordering::Relaxed);
    }

    /// The last read from the log failed: `/health` shows the figures as stale.
    pub(super) fn mark_stale(&self) {
        self.fresh.store(false, Ordering::Relaxed);
    }
}

/// What the handle is built from (by `Gateway::start`).
pub struct MessagesParts {
    pub log: Arc<dyn MessageLog>,
    pub queue: MeteredAddr<MessageQueue>,
    pub gauge: Arc<QueueGauge>,
    pub limits: QueueLimits,
    pub index: SessionIndex,
    pub store: Arc<dyn Store>,
    /// Set when Redis is configured: intake refuses while it is down.
    pub redis_health: Option<Arc<RedisHealth>>,
    pub metrics: Arc<Metrics>,
    /// `MESSAGE_HUMANE`: what a message that does not say `humane` does.
    pub humane_default: bool,
}

pub struct MessagesHandle {
    parts: MessagesParts,
}

impl MessagesHandle {
    pub fn new(parts: MessagesParts) -> Self {
        Self { parts }
    }

    /// Accepts a message for `session` once it (and its media) is durable
    /// in the log, and wakes the queue. Refuses while Redis is down (nothing
    /// would be durable), for a session no node knows, and beyond the queue
    /// limits; a refused message leaves no blob behind.
    pub async fn submit(&self, session: SessionId, draft: Draft) -> Result<Submitted, QueueError> {
        let p = &self.parts;
        if p.redis_health.as_ref().is_some_and(|h| !h.is_connected()) {
            return Err(QueueError::RedisDown);
        }
        self.ensure_session(&session).await?;
        // An uploaded blob already sits under the id its message must take.
        let id = match &draft.media {
            Some(DraftMedia::Uploaded(upload)) => upload.message_id().to_owned(),
            _ => OutboundMessage::new_id(),
        };
        let message = OutboundMessage {
            id,
            session: session.clone(),
            to: draft.to,
            content: draft.content,
            quoted_message_id: draft.quoted_message_id,
            mentions: draft.mentions,
            idempotency_key: draft.idempotency_key,
            humane: draft.humane.unwrap_or(p.humane_default),
            created_ms: unix_ms(),
        };
        // The bytes first: once the entry is in the log a sender may read it.
        let (has_blob, upload) = match draft.media {
            Some(DraftMedia::Inline(bytes)) => {
                p.log.store_blob(&message.id, bytes).await?;
                (true, None)
            }
            Some(DraftMedia::Uploaded(upload)) => {
                // Dropped on an error here, the upload deletes its blob.
                upload.seal().await?;
                (true, Some(upload))
            }
            None => (false, None),
        };
        let enqueued = p.log.enqueue(&message, p.limits).await;
        if let (Some(upload), Ok(Enqueued::New)) = (upload, &enqueued) {
            upload.keep();
        } else if has_blob && !matches!(enqueued, Ok(Enqueued::New)) {
            if let Err(e) = p.log.drop_blob(&message.id).await {
                // Redis is down: the blob's TTL removes it.
                tracing::warn!(message_id = %message.id, error = %crate::error_chain::Chain(&e), "cannot drop the blob of a refused message");
            }
        }
        match enqueued? {
            Enqueued::New => {
                p.queue.do_send(Wake);
                let session_connected = self.session_active(&session).await.unwrap_or(false);
                Ok(Submitted::Queued {
                    message_id: message.id,
                    session_connected,
                })
            }
            Enqueued::Duplicate(existing) => {
                // The record may be gone (expired) while the key lives on.
                let status = p
                    .log
                    .get(&session, &existing)
                    .await?
                    .map_or(MessageStatus::Queued, |r| r.status);
                Ok(Submitted::Duplicate {
                    message_id: existing,
                    status,
                })
            }
        }
    }

    /// Starts writing the media of a message to come, chunk by chunk
    /// (multipart sends); hand it to [`MessagesHandle::submit`] in a
    /// [`DraftMedia::Uploaded`], or drop it to delete what it wrote.
    pub fn begin_upload(&self) -> Upload {
        Upload::new(self.parts.log.clone())
    }

    /// A message's record, if it exists and belongs to `session`.
    pub async fn status(
        &self,
        session: &SessionId,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, QueueError> {
        self.parts.log.get(session, message_id).await
    }

    /// `/health`'s figures from the last read of the log, and whether that
    /// read succeeded.
    pub fn counts(&self) -> (QueueCounts, bool) {
        self.parts.gauge.read()
    }

    /// Media blobs stored now (one per unfinished media message).
    pub async fn blob_count(&self) -> Result<u64, QueueError> {
        self.parts.log.blob_count().await
    }

    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        self.parts.log.kind()
    }

    /// Stops starting sends and waits up to `grace` for those in flight to
    /// end and be recorded; `false` when some were still running.
    pub async fn drain(&self, grace: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        self.parts.queue.do_send(DrainSends { done: tx });
        matches!(tokio::time::timeout(grace, rx).await, Ok(Ok(())))
    }

    /// The session exists here or, with Redis, anywhere in the cluster.
    async fn ensure_session(&self, id: &SessionId) -> Result<(), QueueError> {
        if self.parts.index.contains(id) {
            return Ok(());
        }
        match self.parts.store.session_exists(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueError::SessionNotFound(id.clone())),
            Err(e) => Err(QueueError::Store(e)),
        }
    }

    /// Is this session connected? The local snapshot index first, then (for
    /// sessions another node runs) the Redis cache. `None` when neither
    /// knows it or the cache cannot be read: the answer is advisory.
    async fn session_active(&self, id: &SessionId) -> Option<bool> {
        let lookups = &self.parts.metrics.session_cache_lookups;
        if let Some(s) = self.parts.index.get(id) {
            lookups.with_label_values(&["local"]).inc();
            return Some(s.state == SessionState::Connected);
        }
        match self.parts.store.cached_status(id).await.ok()? {
            Some(status) => {
                lookups.with_label_values(&["redis"]).inc();
                Some(status == "active")
            }
            None => {
                lookups.with_label_values(&["miss"]).inc();
                None
            }
        }
    }
}
