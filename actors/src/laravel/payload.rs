//! The wire contract with Laravel: endpoints, item shapes and batch
//! envelopes (the signature is in `signature.rs`). Built by the batchers,
//! sent by `LaravelClient`, documented for Laravel developers in
//! `docs/laravel.md`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::connector::{IncomingMessage, MessageKind};
use crate::ids::SessionId;
use crate::incoming_media::MediaRef;

/// Where a batch goes, relative to `LARAVEL_API`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    QrBatch,
    StatusBatch,
    MessagesBatch,
    /// Legacy mode: one request per QR, as the old gateway did.
    LegacyQr,
    /// Legacy mode: one request per status change.
    LegacyStatus,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::QrBatch => "/qr/batch",
            Endpoint::StatusBatch => "/whatsapp/status/batch",
            Endpoint::MessagesBatch => "/whatsapp/messages/batch",
            Endpoint::LegacyQr => "/qr",
            Endpoint::LegacyStatus => "/whatsapp/status",
        }
    }

    /// The endpoint a [`Endpoint::label`] names (outbox records).
    pub fn from_label(label: &str) -> Option<Self> {
        [
            Endpoint::QrBatch,
            Endpoint::StatusBatch,
            Endpoint::MessagesBatch,
            Endpoint::LegacyQr,
            Endpoint::LegacyStatus,
        ]
        .into_iter()
        .find(|e| e.label() == label)
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::QrBatch => "qr_batch",
            Endpoint::StatusBatch => "status_batch",
            Endpoint::MessagesBatch => "messages_batch",
            Endpoint::LegacyQr => "legacy_qr",
            Endpoint::LegacyStatus => "legacy_status",
        }
    }

    /// QR batches go stale (a QR lives 20–60 s); everything else must arrive.
    pub fn may_go_stale(self) -> bool {
        matches!(self, Endpoint::QrBatch | Endpoint::LegacyQr)
    }
}

/// Status words Laravel knows (the old gateway's, plus the new states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusWord {
    Active,
    Inactive,
    LoggedOut,
    Failed,
    Qr,
    Starting,
    /// Linked at the phone, logging in and syncing: the QR is spent.
    Pairing,
    Stopped,
}

impl StatusWord {
    /// The word as Laravel receives it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusWord::Active => "active",
            StatusWord::Inactive => "inactive",
            StatusWord::LoggedOut => "logged_out",
            StatusWord::Failed => "failed",
            StatusWord::Qr => "qr",
            StatusWord::Starting => "starting",
            StatusWord::Pairing => "pairing",
            StatusWord::Stopped => "stopped",
        }
    }

    /// Connects, disconnects, logouts and failures jump the queue.
    pub fn priority(self) -> Priority {
        match self {
            StatusWord::Active
            | StatusWord::Inactive
            | StatusWord::LoggedOut
            | StatusWord::Failed => Priority::High,
            StatusWord::Qr | StatusWord::Starting | StatusWord::Pairing | StatusWord::Stopped => {
                Priority::Normal
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    Normal,
}

/// One status change of one session (read back from the convergence
/// journal too, hence `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusItem {
    pub session_id: SessionId,
    pub status: StatusWord,
    pub priority: Priority,
    pub reason: Option<String>,
    /// Unix ms when the gateway saw the change.
    pub timestamp: u64,
    /// Per-session sequence number, increasing across every update of the
    /// session (QR and status): Laravel applies an update only if its `seq`
    /// is above the last one it stored.
    pub seq: u64,
}

/// One QR code of one session, with the status it implies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QrItem {
    pub session_id: SessionId,
    /// A PNG data URL by default, the raw QR string with `QR_FORMAT=raw`.
    pub qr: String,
    pub status: StatusWord,
    pub timestamp: u64,
    /// Unix ms after which WhatsApp no longer accepts this code.
    pub expires_at: u64,
    pub seq: u64,
}

/// An incoming message or a receipt. `Message` is the large variant (its
/// kind's details); items are built once and serialized, never copied in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundItem {
    #[serde(rename_all = "camelCase")]
    Message {
        session_id: SessionId,
        id: String,
        from: String,
        /// Where to answer: the sender for a direct chat, the group's JID.
        chat: String,
        is_group: bool,
        /// `text`, `image`, `video`, `audio`, `voice`, `document`,
        /// `sticker`, `location`, `contact`, `reaction`, `edit`, `revoke`,
        /// or `unsupported` for a kind the gateway does not model.
        kind: &'static str,
        /// WhatsApp's own type of an `unsupported` message (`pollCreationMessage`…).
        #[serde(skip_serializing_if = "Option::is_none")]
        original_type: Option<String>,
        /// The text, a media's caption, an edit's new text.
        text: String,
        timestamp: u64,
        /// What the kind carries beyond the text (media, location, target…).
        #[serde(flatten)]
        details: MessageDetails,
    },
    #[serde(rename_all = "camelCase")]
    Receipt {
        session_id: SessionId,
        message_id: String,
        status: String,
        /// [`delivery_rank`] of `status`, so Laravel never moves a message
        /// back when an old batch is replayed.
        rank: u8,
        timestamp: u64,
    },
    /// How an outbound message ended: `sent`, or `failed` after its retries.
    #[serde(rename_all = "camelCase")]
    SendResult {
        session_id: SessionId,
        message_id: String,
        to: String,
        /// What was sent: `text`, `image`, … (the API's `type`).
        kind: &'static str,
        status: &'static str,
        /// [`delivery_rank`] of `status`.
        rank: u8,
        attempts: u32,
        error: Option<String>,
        timestamp: u64,
    },
}

/// The fields of an incoming message item that depend on its kind, plus
/// the reply and mentions any kind may carry. Absent fields are left out
/// of the JSON, so a text item reads as it always did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDetails {
    /// The message this one replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted_message_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// Media kinds: where to fetch the bytes (signed, expiring URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactItem>,
    /// Reactions, edits and revokes: the message they act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// Reactions: the emoji, empty when the sender removed the reaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationItem {
    pub lat: f64,
    pub lng: f64,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactItem {
    pub display_name: String,
    pub vcard: String,
}

impl InboundItem {
    /// An incoming WhatsApp message as Laravel receives it (the Session
    /// forwards it; the journal holds the same item across a crash).
    pub fn incoming(session: &SessionId, m: IncomingMessage) -> Self {
        let kind = m.kind.as_str();
        let mut details = MessageDetails {
            quoted_message_id: m.quoted_message_id,
            mentions: m.mentions,
            ..MessageDetails::default()
        };
        let mut original_type = None;
        match m.kind {
            MessageKind::Text => {}
            MessageKind::Media { media, .. } => details.media = Some(media),
            MessageKind::Location { lat, lng, name } => {
                details.location = Some(LocationItem { lat, lng, name })
            }
            MessageKind::Contact {
                display_name,
                vcard,
            } => {
                details.contact = Some(ContactItem {
                    display_name,
                    vcard,
                })
            }
            MessageKind::Reaction { target_id, emoji } => {
                details.target_id = Some(target_id);
                details.emoji = Some(emoji);
            }
            MessageKind::Edit { target_id } | MessageKind::Revoke { target_id } => {
                details.target_id = Some(target_id)
            }
            MessageKind::Unsupported { original } => original_type = Some(original),
        }
        InboundItem::Message {
            session_id: session.clone(),
            id: m.id,
            from: m.from,
            chat: m.chat,
            is_group: m.is_group,
            kind,
            original_type,
            text: m.text,
            timestamp: m.timestamp_ms,
            details,
        }
    }

    pub fn session_id(&self) -> &SessionId {
        match self {
            InboundItem::Message { session_id, .. }
            | InboundItem::Receipt { session_id, .. }
            | InboundItem::SendResult { session_id, .. } => session_id,
        }
    }
}

/// Where a delivery status stands in a message's life, sent as `rank` with
/// every receipt and send result: Laravel applies one only if its rank is
/// above the stored one, so a replayed or late item (a `sent` result that
/// arrives after the `delivered` receipt, an old batch replayed from the
/// outbox) never moves a message back. `failed` shares `sent`'s rank: both
/// end the send, and the first to arrive stays; a receipt still outranks a
/// `failed`, because WhatsApp saying "delivered" is the stronger fact.
/// `queued` (0) is what Laravel stores when it posts a message.
pub fn delivery_rank(status: &str) -> u8 {
    match status {
        "sent" | "failed" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        // "queued" and anything unknown: never above what is stored.
        _ => 0,
    }
}

/// A serialized request body with its identity, ready to send or to hold in
/// the outbox. The id travels as `Idempotency-Key` and survives replays.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundBatch {
    pub id: String,
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub items: usize,
    /// Unix ms when the batch was built (for staleness on replay).
    pub created_ms: u64,
}

impl OutboundBatch {
    /// Serializes `{ "<key>": items }` into a new batch with a fresh id.
    pub fn new<T: Serialize>(endpoint: Endpoint, key: &str, items: &[T], now_ms: u64) -> Self {
        let mut map = serde_json::Map::with_capacity(1);
        map.insert(
            key.to_owned(),
            serde_json::to_value(items).expect("payload items serialize to JSON"),
        );
        Self::from_json(
            endpoint,
            &serde_json::Value::Object(map),
            items.len(),
            now_ms,
        )
    }

    /// Serializes a single object (legacy mode bodies).
    pub fn single<T: Serialize>(endpoint: Endpoint, item: &T, now_ms: u64) -> Self {
        let value = serde_json::to_value(item).expect("payload items serialize to JSON");
        Self::from_json(endpoint, &value, 1, now_ms)
    }

    fn from_json(endpoint: Endpoint, value: &serde_json::Value, items: usize, now_ms: u64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            endpoint,
            body: Bytes::from(serde_json::to_vec(value).expect("a JSON value serializes")),
            items,
            created_ms: now_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_batch_has_the_documented_shape() {
        let item = StatusItem {
            session_id: SessionId::parse("s1").unwrap(),
            status: StatusWord::LoggedOut,
            priority: Priority::High,
            reason: Some("phone".into()),
            timestamp: 7,
            seq: 3,
        };
        let batch = OutboundBatch::new(Endpoint::StatusBatch, "statuses", &[item], 1);
        let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"statuses":[{"sessionId":"s1","status":"logged_out","priority":"high","reason":"phone","timestamp":7,"seq":3}]})
        );
        assert_eq!(batch.items, 1);
    }

    #[test]
    fn inbound_items_are_tagged() {
        let item = InboundItem::Receipt {
            session_id: SessionId::parse("s").unwrap(),
            message_id: "m".into(),
            status: "read".into(),
            rank: delivery_rank("read"),
            timestamp: 1,
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["type"], "receipt");
        assert_eq!(v["messageId"], "m");
        assert_eq!(v["rank"], 3);
    }

    #[test]
    fn delivery_ranks_only_move_forward_through_a_messages_life() {
        let life = ["queued", "sent", "delivered", "read", "played"];
        for pair in life.windows(2) {
            assert!(delivery_rank(pair[0]) < delivery_rank(pair[1]), "{pair:?}");
        }
        assert_eq!(delivery_rank("failed"), delivery_rank("sent"));
        assert!(delivery_rank("failed") < delivery_rank("delivered"));
        assert_eq!(delivery_rank("something new"), 0);
    }
}

#[cfg(test)]
#[path = "payload_props.rs"]
mod props;
