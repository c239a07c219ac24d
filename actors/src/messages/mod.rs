//! Outbound messages: what `POST /sessions/{id}/messages` accepts and the
//! [`queue::MessageQueue`] actor sends. A message is accepted only once it
//! is in the [`MessageLog`] (a Redis Stream with a consumer group in
//! production, [`memory`] by default); it is sent at least once, in order
//! per session, paced, retried with backoff, and ends `sent` or `failed`
//! (dead letter). Its id doubles as the WhatsApp message id, so a resend
//! after a crash is recognised as the same message.

pub mod content;
pub mod handle;
pub mod humane;
mod lanes;
pub mod memory;
pub mod queue;
pub mod redis;
pub mod upload;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use self::content::{ContentKind, OutboundContent};
use crate::connector::{ConnectorError, OutgoingMessage};
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::journal::HeldInbound;

/// Longest accepted text, in bytes (WhatsApp's limit is about 65,536 chars).
pub const MAX_TEXT_BYTES: usize = 65_536;
/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// One accepted outbound message, as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "StoredMessage")]
pub struct OutboundMessage {
    /// Gateway message id (`3EB0` + 16 hex digits, WhatsApp's own shape);
    /// also the key of the message's media blob, if it has one.
    pub id: String,
    pub session: SessionId,
    pub to: String,
    pub content: OutboundContent,
    /// The message this one replies to (WhatsApp quotes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_message_id: Option<String>,
    /// JIDs mentioned (`@` in the text), already normalised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Types (`composing`/`recording`) before it is sent ([`humane`]);
    /// stored, so a restarted gateway still sends it humanely.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub humane: bool,
    pub created_ms: u64,
}

/// The stored shape of a message, old or new: entries written before rich
/// messages carry `text` and no `content`, and must still be sent after an
/// upgrade (they may sit in the Redis Stream across it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMessage {
    id: String,
    session: SessionId,
    to: String,
    #[serde(default)]
    content: Option<OutboundContent>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    quoted_message_id: Option<String>,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    humane: bool,
    created_ms: u64,
}

impl TryFrom<StoredMessage> for OutboundMessage {
    type Error = &'static str;

    fn try_from(s: StoredMessage) -> Result<Self, Self::Error> {
        let content = match (s.content, s.text) {
            (Some(content), _) => content,
            (None, Some(text)) => OutboundContent::Text { text },
            (None, None) => return Err("a stored message has neither content nor text"),
        };
        Ok(Self {
            id: s.id,
            session: s.session,
            to: s.to,
            content,
            quoted_message_id: s.quoted_message_id,
            mentions: s.mentions,
            idempotency_key: s.idempotency_key,
            humane: s.humane,
            created_ms: s.created_ms,
        })
    }
}

impl OutboundMessage {
    /// A fresh message id: unique, and a valid WhatsApp message id.
    pub fn new_id() -> String {
        let bytes: [u8; 8] = rand::random();
        format!("3EB0{}", hex::encode_upper(bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
        }
    }
}

/// What `GET /sessions/{id}/messages/{messageId}` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    pub message_id: String,
    pub session: SessionId,
    pub to: String,
    /// Records written before rich messages have none: they were texts.
    #[serde(default)]
    pub kind: ContentKind,
    pub status: MessageStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl MessageRecord {
    pub fn queued(m: &OutboundMessage) -> Self {
        Self {
            message_id: m.id.clone(),
            session: m.session.clone(),
            to: m.to.clone(),
            kind: m.content.kind(),
            status: MessageStatus::Queued,
            attempts: 0,
            last_error: None,
            created_ms: m.created_ms,
            updated_ms: m.created_ms,
        }
    }
}

/// A message read from the log, with the handle to acknowledge it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The log's entry id (a Stream id in Redis).
    pub entry: String,
    pub message: OutboundMessage,
    /// Read before (by this node before a restart, or by another node): the
    /// message may already have been sent, so its record is checked first.
    pub redelivered: bool,
}

/// A message that ended (sent, or failed for good), as the queue hands it
/// to [`MessageLog::finish`].
#[derive(Debug, Clone)]
pub struct Finished {
    /// The log's entry id.
    pub entry: String,
    pub record: MessageRecord,
    /// The message, when it failed for good (to the dead-letter log).
    /// Boxed: a message (with its content) is far larger than a record.
    pub dead: Option<Box<OutboundMessage>>,
    /// Its `send_result`, as the journal holds it until Laravel has it.
    pub report: HeldInbound,
}

/// The outcome of [`MessageLog::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; it will be sent.
    New,
    /// The idempotency key was seen before: this is that message's id, and
    /// nothing new was stored.
    Duplicate(String),
}

/// Queue figures for `/health` (`messageQueue`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Read by a sender and not yet finished (the consumer group's pending).
    pub active: u64,
    /// Accepted and not yet read by any sender.
    pub waiting: u64,
    pub completed: u64,
    pub failed: u64,
}

/// How many unfinished messages intake accepts: in all, and per session
/// (so one tenant cannot fill the queue and starve the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// `MESSAGE_QUEUE_LIMIT`.
    pub total: u64,
    /// `MESSAGE_QUEUE_LIMIT_PER_SESSION`.
    pub per_session: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the message queue is full ({limit} messages)")]
    Full { limit: u64 },
    #[error("this session's share of the message queue is full ({limit} messages)")]
    SessionFull { limit: u64 },
    #[error("the message store is unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    /// Intake only: Redis is configured and down, so nothing would be durable.
    #[error("Redis is unreachable")]
    RedisDown,
    /// Intake only: no node knows this session.
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    /// Intake only: an uploaded blob was gone before its message was
    /// stored (it expired between two chunks).
    #[error("the uploaded media is no longer stored; send it again")]
    UploadLost,
    /// Intake only: whether the session exists could not be read.
    #[error("cannot look the session up")]
    Store(#[source] crate::store::StoreError),
}

/// Where accepted messages live until they are sent or dead-lettered.
/// At-least-once: an entry read and not acknowledged is delivered again
/// (to this consumer after a restart, to another one after `claim_idle`).
#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    /// Stores a message and its `queued` record; refuses beyond `limits`
    /// outstanding messages. Returns only once the message is durable.
    async fn enqueue(
        &self,
        message: &OutboundMessage,
        limits: QueueLimits,
    ) -> Result<Enqueued, QueueError>;
    /// Up to `max` entries for `consumer`: first the ones it read before and
    /// did not acknowledge (after a restart), then new ones.
    async fn read(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>, QueueError>;
    /// Takes over entries other consumers left unacknowledged for `min_idle_ms`.
    async fn claim_idle(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError>;
    /// Marks entries as still being worked on, so no one claims them.
    async fn keep_alive(&self, consumer: &str, entries: &[String]) -> Result<(), QueueError>;
    /// Records progress (`sending`, a retry's error).
    async fn update(&self, record: &MessageRecord) -> Result<(), QueueError>;
    /// Stores the media bytes of message `message_id` (before it is
    /// enqueued). The blob is deleted with the message's end (`complete`,
    /// `dead_letter`), by [`MessageLog::drop_blob`] when intake refuses the
    /// message, and in Redis at the latest when the message's record
    /// expires (`MESSAGE_RECORD_TTL`).
    async fn store_blob(&self, message_id: &str, bytes: bytes::Bytes) -> Result<(), QueueError>;
    /// Appends `chunk` to the blob of `message_id` while it is uploaded
    /// ([`upload::Upload`]): the blob lives [`upload::UPLOAD_TTL`] after
    /// its last chunk until [`MessageLog::seal_blob`] or
    /// [`MessageLog::drop_blob`].
    async fn append_blob(&self, message_id: &str, chunk: bytes::Bytes) -> Result<(), QueueError>;
    /// The upload of `message_id`'s blob is complete: it now lives as a
    /// stored blob does (see [`MessageLog::store_blob`]). Fails when the
    /// blob is gone.
    async fn seal_blob(&self, message_id: &str) -> Result<(), QueueError>;
    /// The media bytes of a message, if still stored.
    async fn blob(&self, message_id: &str) -> Result<Option<bytes::Bytes>, QueueError>;
    async fn drop_blob(&self, message_id: &str) -> Result<(), QueueError>;
    /// Blobs stored now (tests and `/health`: nothing may leak).
    async fn blob_count(&self) -> Result<u64, QueueError>;
    /// Ends messages, in the order given: for each, records its outcome,
    /// holds its `report` (its `send_result`) in the convergence journal,
    /// copies a failed one to the dead-letter log (without its media), then
    /// acknowledges and drops the entry and its blob. An outcome that is
    /// durable is always reported, and a write cut short anywhere leaves a
    /// prefix: a re-read entry whose record says `sent` is not sent again.
    /// Redis does all of it in one round trip.
    async fn finish(&self, done: &[Finished]) -> Result<(), QueueError>;
    /// The record of a message, whichever session it belongs to.
    async fn record(&self, message_id: &str) -> Result<Option<MessageRecord>, QueueError>;
    /// The record of a message, if it exists and belongs to `session`
    /// (message ids are not secret: one tenant must not read another's).
    async fn get(
        &self,
        session: &SessionId,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, QueueError> {
        Ok(self
            .record(message_id)
            .await?
            .filter(|r| &r.session == session))
    }
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
    /// Hands the log its bound metrics (called once by `Gateway::start`).
    fn attach_metrics(&self, _metrics: &crate::metrics::BoundMetrics) {}
}

/// What the connector gets for `m`: its content and, for media, the bytes
/// read back from the blob store and checked against the stored hash. A
/// blob that is gone (expired) or changed fails the message for good; one
/// the store cannot read now is retried.
pub(crate) async fn outgoing(
    log: &dyn MessageLog,
    m: OutboundMessage,
) -> Result<OutgoingMessage, ConnectorError> {
    let media = match m.content.media() {
        None => None,
        Some(info) => {
            let bytes = log
                .blob(&m.id)
                .await
                .map_err(|e| {
                    ConnectorError::Failed(format!("cannot read the media: {}", Chain(&e)))
                })?
                .ok_or_else(|| {
                    ConnectorError::Rejected(
                        "the media of this message is no longer stored (expired)".into(),
                    )
                })?;
            if hex::encode(Sha256::digest(&bytes)) != info.sha256 {
                return Err(ConnectorError::Rejected(
                    "the stored media does not match its checksum".into(),
                ));
            }
            Some(bytes)
        }
    };
    Ok(OutgoingMessage {
        to: m.to,
        message_id: m.id,
        content: m.content,
        quoted_message_id: m.quoted_message_id,
        mentions: m.mentions,
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stored_before_rich_content_are_still_read_as_text() {
        let old =
            r#"{"id":"3EB0AB","session":"s1","to":"5215512345678","text":"hi","createdMs":5}"#;
        let m: OutboundMessage = serde_json::from_str(old).unwrap();
        assert_eq!(m.content, OutboundContent::Text { text: "hi".into() });
        assert!(m.mentions.is_empty() && m.quoted_message_id.is_none());
        let again: OutboundMessage =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
        let neither = r#"{"id":"3EB0AB","session":"s1","to":"5215512345678","createdMs":5}"#;
        assert!(serde_json::from_str::<OutboundMessage>(neither).is_err());
        let record = r#"{"messageId":"3EB0AB","session":"s1","to":"1","status":"sent","attempts":1,"lastError":null,"createdMs":1,"updatedMs":2}"#;
        let r: MessageRecord = serde_json::from_str(record).unwrap();
        assert_eq!(r.kind, ContentKind::Text);
    }
}
