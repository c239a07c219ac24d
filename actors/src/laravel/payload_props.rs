//! Property tests of the wire encoding: any status and inbound items (any
//! text, any unicode) encode to a JSON body Laravel can read back item for
//! item; the signature covers exactly what its version says.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::laravel::signature::SignatureVersion;

fn session() -> impl Strategy<Value = SessionId> {
    "[A-Za-z0-9_-]{1,64}".prop_map(|s| SessionId::parse(&s).expect("the pattern is a valid id"))
}

fn word() -> impl Strategy<Value = StatusWord> {
    prop::sample::select(vec![
        StatusWord::Active,
        StatusWord::Inactive,
        StatusWord::LoggedOut,
        StatusWord::Failed,
        StatusWord::Qr,
        StatusWord::Starting,
        StatusWord::Pairing,
        StatusWord::Stopped,
    ])
}

fn status_item() -> impl Strategy<Value = StatusItem> {
    (
        session(),
        word(),
        prop::option::of(any::<String>()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(session_id, status, reason, timestamp, seq)| StatusItem {
            session_id,
            status,
            priority: status.priority(),
            reason,
            timestamp,
            seq,
        })
}

fn inbound_item() -> impl Strategy<Value = InboundItem> {
    prop_oneof![
        (
            session(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<bool>(),
            prop::option::of(any::<String>()),
            any::<String>(),
            any::<u64>()
        )
            .prop_map(
                |(session_id, id, from, chat, is_group, original_type, text, timestamp)| {
                    InboundItem::Message {
                        session_id,
                        id,
                        from,
                        chat,
                        is_group,
                        kind: if original_type.is_some() {
                            "unsupported"
                        } else {
                            "text"
                        },
                        original_type,
                        text,
                        timestamp,
                        details: Default::default(),
                    }
                }
            ),
        (session(), any::<String>(), any::<String>(), any::<u64>()).prop_map(
            |(session_id, message_id, status, timestamp)| {
                let rank = delivery_rank(&status);
                InboundItem::Receipt {
                    session_id,
                    message_id,
                    status,
                    rank,
                    timestamp,
                }
            }
        ),
    ]
}

proptest! {
    #[test]
    fn status_batches_read_back_item_for_item(items in prop::collection::vec(status_item(), 0..20), now in any::<u64>()) {
        let batch = OutboundBatch::new(Endpoint::StatusBatch, "statuses", &items, now);
        prop_assert_eq!(batch.items, items.len());
        prop_assert_eq!(batch.created_ms, now);
        prop_assert!(uuid::Uuid::parse_str(&batch.id).is_ok(), "the id is a UUID: {}", batch.id);
        let body: Value = serde_json::from_slice(&batch.body).expect("the body is JSON");
        let read = body["statuses"].as_array().expect("an item array");
        prop_assert_eq!(read.len(), items.len());
        for (got, item) in read.iter().zip(&items) {
            prop_assert_eq!(got["sessionId"].as_str(), Some(item.session_id.as_str()));
            prop_assert_eq!(got["status"].as_str(), Some(item.status.as_str()));
            prop_assert_eq!(got["seq"].as_u64(), Some(item.seq));
            prop_assert_eq!(got["timestamp"].as_u64(), Some(item.timestamp));
            prop_assert_eq!(got["reason"].as_str(), item.reason.as_deref());
            let high = item.status.priority() == Priority::High;
            prop_assert_eq!(got["priority"].as_str(), Some(if high { "high" } else { "normal" }));
        }
    }

    #[test]
    fn inbound_batches_keep_every_text_exactly(items in prop::collection::vec(inbound_item(), 0..10)) {
        let batch = OutboundBatch::new(Endpoint::MessagesBatch, "messages", &items, 1);
        let body: Value = serde_json::from_slice(&batch.body).expect("the body is JSON");
        let read = body["messages"].as_array().expect("an item array");
        prop_assert_eq!(read.len(), items.len());
        for (got, item) in read.iter().zip(&items) {
            match item {
                InboundItem::Message { text, from, original_type, .. } => {
                    prop_assert_eq!(got["type"].as_str(), Some("message"));
                    prop_assert_eq!(got["text"].as_str(), Some(text.as_str()));
                    prop_assert_eq!(got["from"].as_str(), Some(from.as_str()));
                    prop_assert_eq!(got.get("originalType").and_then(Value::as_str), original_type.as_deref());
                }
                InboundItem::Receipt { status, rank, .. } => {
                    prop_assert_eq!(got["type"].as_str(), Some("receipt"));
                    prop_assert_eq!(got["status"].as_str(), Some(status.as_str()));
                    prop_assert_eq!(got["rank"].as_u64(), Some(u64::from(*rank)));
                    prop_assert!(*rank <= 4);
                }
                InboundItem::SendResult { .. } => unreachable!("not generated"),
            }
        }
    }

    #[test]
    fn signatures_cover_exactly_what_their_version_says(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        ts in any::<u64>(),
        key in "[0-9a-f-]{36}",
        other_key in "[0-9a-f-]{36}",
        body in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
    ) {
        for version in [SignatureVersion::V1, SignatureVersion::V2] {
            let sig = version.sign(&secret, ts, &key, &body);
            prop_assert!(sig.starts_with("sha256="));
            prop_assert_eq!(sig.len(), 7 + 64);
            prop_assert!(sig[7..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            prop_assert_eq!(&sig, &version.sign(&secret, ts, &key, &body), "deterministic");
            prop_assert_ne!(&sig, &version.sign(&secret, ts.wrapping_add(1), &key, &body), "the timestamp is covered");
            let mut changed = body.clone();
            if changed.is_empty() {
                changed.push(b' ');
            } else {
                let i = flip.index(changed.len());
                changed[i] ^= 0x01;
            }
            prop_assert_ne!(&sig, &version.sign(&secret, ts, &key, &changed), "the body is covered");
            let mut other_secret = secret.clone();
            other_secret.push(0x55);
            prop_assert_ne!(&sig, &version.sign(&other_secret, ts, &key, &body), "the secret matters");
            let with_other_key = version.sign(&secret, ts, &other_key, &body);
            match version {
                SignatureVersion::V1 => prop_assert_eq!(&sig, &with_other_key, "v1 ignores the key"),
                SignatureVersion::V2 => prop_assert_eq!(sig == with_other_key, key == other_key, "v2 covers the key"),
            }
        }
    }
}
