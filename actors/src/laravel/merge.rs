//! Outbox replay in full batches: consecutive held batches of one endpoint
//! are merged into one request of at most `BATCH_SIZE` items, so a backlog
//! drains at `BATCH_SIZE` items per request, not one batch per request.
//! Pure; `LaravelClient` plans each replay with [`plan`] from the outbox head.
//!
//! Order: only a contiguous run at the head is merged, items kept in outbox
//! order, so each session's items stay in the order they happened. Identity:
//! the merged request's `Idempotency-Key` is a UUIDv8 derived from the ids
//! it replaces (the same set gives the same key on a retry), and its body
//! lists them in `replaces`, so Laravel can recognise batches it already
//! applied (docs/laravel.md, "Merged replays").

use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::payload::{Endpoint, OutboundBatch};

/// The body field listing the original batch ids a merged request replaces.
pub const REPLACES_FIELD: &str = "replaces";

/// What one replay step does with the head of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPlan {
    /// Ids of the outbox prefix this step consumes, in order: every one is
    /// removed once the step is done (sent, or dropped as stale).
    pub consumed: Vec<String>,
    /// Stale QR batches among them, dropped unsent.
    pub dropped: Vec<OutboundBatch>,
    /// The request to send, if any batch of the prefix is still worth sending.
    pub send: Option<OutboundBatch>,
}

/// Plans the next replay from `heads` (the outbox's first batches, oldest
/// first). `stale` says whether a batch is too old to send.
pub fn plan(
    heads: &[OutboundBatch],
    max_items: usize,
    stale: impl Fn(&OutboundBatch) -> bool,
) -> ReplayPlan {
    let mut consumed = Vec::new();
    let mut dropped = Vec::new();
    let mut run: Vec<&OutboundBatch> = Vec::new();
    let mut items = 0;
    for batch in heads {
        if stale(batch) {
            consumed.push(batch.id.clone());
            dropped.push(batch.clone());
            continue;
        }
        let joins = match run.first() {
            None => true,
            Some(first) => {
                mergeable(first.endpoint)
                    && batch.endpoint == first.endpoint
                    && items + batch.items <= max_items
                    // A body without exactly one item array (a record
                    // read back damaged) goes alone, as it is.
                    && array_key(batch).is_some_and(|k| Some(k) == array_key(first))
            }
        };
        if !joins {
            break;
        }
        items += batch.items;
        consumed.push(batch.id.clone());
        run.push(batch);
    }
    let send = match run.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => Some(merge(many)),
    };
    ReplayPlan {
        consumed,
        dropped,
        send,
    }
}

/// Batch endpoints carry `{ "<key>": [items] }`; legacy bodies are single
/// objects and cannot be merged.
fn mergeable(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::QrBatch | Endpoint::StatusBatch | Endpoint::MessagesBatch
    )
}

/// The name of the item array of a batch body, if it has exactly one.
fn array_key(batch: &OutboundBatch) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&batch.body) else {
        return None;
    };
    let mut arrays = map.iter().filter(|(_, v)| v.is_array()).map(|(k, _)| k);
    match (arrays.next(), arrays.next()) {
        (Some(key), None) => Some(key.clone()),
        _ => None,
    }
}

/// One request carrying every item of `run` (≥ 2 batches with the same
/// array key, checked by [`plan`]), in order.
fn merge(run: &[&OutboundBatch]) -> OutboundBatch {
    let key = array_key(run[0]).expect("plan merges only batches with one item array");
    let mut body = Map::new();
    let mut items = Vec::new();
    for (i, batch) in run.iter().enumerate() {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&batch.body) else {
            unreachable!("plan checked every body is a JSON object");
        };
        for (k, v) in map {
            if k == key {
                if let Value::Array(a) = v {
                    items.extend(a);
                }
            } else if i == 0 && k != REPLACES_FIELD {
                // Envelope fields other than the items come from the first batch.
                body.insert(k, v);
            }
        }
    }
    let ids: Vec<&str> = run.iter().map(|b| b.id.as_str()).collect();
    body.insert(key, Value::Array(items));
    body.insert(
        REPLACES_FIELD.to_owned(),
        Value::Array(
            ids.iter()
                .map(|id| Value::String((*id).to_owned()))
                .collect(),
        ),
    );
    OutboundBatch {
        id: merged_id(&ids),
        endpoint: run[0].endpoint,
        body: Bytes::from(
            serde_json::to_vec(&Value::Object(body)).expect("a JSON value serializes"),
        ),
        items: run.iter().map(|b| b.items).sum(),
        created_ms: run.iter().map(|b| b.created_ms).min().unwrap_or_default(),
    }
}

/// A UUIDv8 from SHA-256 of the ids: the same run always gets the same key.
pub fn merged_id(ids: &[&str]) -> String {
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_batch(items: &[(&str, u64)], created_ms: u64) -> OutboundBatch {
        let items: Vec<Value> = items
            .iter()
            .map(|(s, seq)| serde_json::json!({"sessionId": s, "seq": seq}))
            .collect();
        OutboundBatch::new(Endpoint::StatusBatch, "statuses", &items, created_ms)
    }

    fn body(b: &OutboundBatch) -> Value {
        serde_json::from_slice(&b.body).unwrap()
    }

    #[test]
    fn consecutive_batches_merge_in_order_up_to_the_size() {
        let a = status_batch(&[("s1", 1), ("s2", 1)], 10);
        let b = status_batch(&[("s1", 2)], 11);
        let c = status_batch(&[("s3", 1), ("s1", 3)], 12);
        let p = plan(&[a.clone(), b.clone(), c.clone()], 3, |_| false);
        assert_eq!(
            p.consumed,
            vec![a.id.clone(), b.id.clone()],
            "c would exceed 3 items"
        );
        let sent = p.send.unwrap();
        assert_eq!(sent.items, 3);
        assert_eq!(sent.created_ms, 10);
        assert_eq!(sent.endpoint, Endpoint::StatusBatch);
        assert_eq!(
            body(&sent),
            serde_json::json!({
                "statuses": [{"sessionId":"s1","seq":1},{"sessionId":"s2","seq":1},{"sessionId":"s1","seq":2}],
                "replaces": [a.id, b.id],
            })
        );
        assert_eq!(sent.id, merged_id(&[&a.id, &b.id]), "deterministic");
        assert_ne!(sent.id, a.id);
        assert_eq!(
            uuid::Uuid::parse_str(&sent.id).unwrap().get_version_num(),
            8
        );
    }

    #[test]
    fn a_single_batch_is_replayed_unchanged() {
        let a = status_batch(&[("s1", 1)], 10);
        let q = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[1], 11);
        let p = plan(&[a.clone(), q], 50, |_| false);
        assert_eq!(p.send, Some(a.clone()), "another endpoint ends the run");
        assert_eq!(p.consumed, vec![a.id]);
    }

    #[test]
    fn stale_batches_in_the_prefix_are_dropped() {
        let q1 = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[1], 1);
        let q2 = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[2], 2);
        let q3 = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[3], 100);
        let q4 = OutboundBatch::new::<u8>(Endpoint::QrBatch, "qrs", &[4], 101);
        let p = plan(&[q1.clone(), q2.clone(), q3.clone(), q4.clone()], 50, |b| {
            b.created_ms < 50
        });
        assert_eq!(p.dropped, vec![q1.clone(), q2.clone()]);
        assert_eq!(p.consumed, vec![q1.id, q2.id, q3.id.clone(), q4.id.clone()]);
        let sent = p.send.unwrap();
        assert_eq!(body(&sent)["qrs"], serde_json::json!([3, 4]));
        assert_eq!(body(&sent)["replaces"], serde_json::json!([q3.id, q4.id]));
        let all_stale = plan(std::slice::from_ref(&sent), 50, |_| true);
        assert_eq!(all_stale.send, None);
        assert_eq!(all_stale.consumed, vec![sent.id]);
    }

    #[test]
    fn legacy_and_oversized_batches_go_alone() {
        let l1 = OutboundBatch::single(Endpoint::LegacyStatus, &serde_json::json!({"a": 1}), 1);
        let l2 = OutboundBatch::single(Endpoint::LegacyStatus, &serde_json::json!({"a": 2}), 2);
        assert_eq!(plan(&[l1.clone(), l2], 50, |_| false).send, Some(l1));
        let big = status_batch(&[("s1", 1), ("s1", 2), ("s1", 3)], 1);
        let small = status_batch(&[("s2", 1)], 2);
        let p = plan(&[big.clone(), small], 2, |_| false);
        assert_eq!(
            p.send,
            Some(big),
            "a batch over the size is still sent, alone"
        );
    }
}

#[cfg(test)]
#[path = "merge_props.rs"]
mod props;
