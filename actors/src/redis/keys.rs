//! Redis key names, in one place. Per-session keys keep the old gateway's
//! names; the braces are Cluster hash tags, so one session's keys share a
//! slot. Gateway-wide keys live under `wagate:`. Used by every Redis backend.

use crate::ids::SessionId;
use crate::store::RecordSet;

/// `session:{id}:<suffix>`: `qr`, `status`, `connection`, `info`, `creds`.
pub fn session(id: &SessionId, suffix: &str) -> String {
    format!("session:{{{id}}}:{suffix}")
}

/// The SCAN pattern matching one per-session key kind of every session.
pub fn session_pattern(suffix: &str) -> String {
    format!("session:*:{suffix}")
}

/// Set of the ids of every persisted session (restore reads it; no SCAN).
pub const SESSIONS: &str = "wagate:sessions";
/// Hash of scoped API keys: key id -> JSON record (a digest, never the key).
pub const API_KEYS: &str = "wagate:apikeys";
/// Hash of webhook subscriptions: webhook id -> JSON record.
pub const WEBHOOKS: &str = "wagate:webhooks";

/// The hash holding one [`RecordSet`].
pub fn records(set: RecordSet) -> &'static str {
    match set {
        RecordSet::ApiKeys => API_KEYS,
        RecordSet::Webhooks => WEBHOOKS,
    }
}
/// List of Laravel batches waiting for delivery, oldest first.
pub const OUTBOX: &str = "wagate:outbox";
/// Stream of accepted outbound messages (consumer group [`MESSAGES_GROUP`]).
pub const MESSAGES: &str = "wagate:messages";
/// Stream of messages that failed for good.
pub const MESSAGES_DEAD: &str = "wagate:messages:dead";
pub const MESSAGES_GROUP: &str = "senders";
/// Counters of the message queue (completed, failed).
pub const MESSAGES_STATS: &str = "wagate:messages:stats";

/// Hash of one outbound message's state.
pub fn message(message_id: &str) -> String {
    format!("wagate:message:{message_id}")
}

/// The media bytes of one unfinished outbound message.
pub fn blob(message_id: &str) -> String {
    format!("wagate:blob:{message_id}")
}

/// The SCAN pattern of every [`blob`].
pub const BLOB_PATTERN: &str = "wagate:blob:*";

/// The bytes and description of one incoming media (`incoming_media`).
pub fn incoming_media(id: &str) -> String {
    format!("wagate:inmedia:{id}")
}

/// The SCAN pattern of every [`incoming_media`].
pub const INCOMING_MEDIA_PATTERN: &str = "wagate:inmedia:*";

/// Unfinished outbound messages of one session (the per-session quota).
pub fn session_queued(session: &SessionId) -> String {
    format!("wagate:queued:{{{session}}}")
}

/// The message id an idempotency key of a session maps to.
pub fn idempotency(session: &SessionId, key: &str) -> String {
    format!("wagate:idem:{{{session}}}:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_use_hash_tags() {
        let id = SessionId::parse("abc").unwrap();
        assert_eq!(session(&id, "qr"), "session:{abc}:qr");
        assert_eq!(idempotency(&id, "k"), "wagate:idem:{abc}:k");
    }
}
