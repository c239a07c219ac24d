//! Property tests of replay planning over any outbox head: batches of any
//! endpoint, any item counts, bodies that are item arrays, other JSON or
//! not JSON at all (a record read back from Redis). Invariants: the plan
//! consumes a prefix of the outbox in order; stale batches are dropped,
//! never sent; a merged request holds at most `max_items`, carries every
//! item of the batches it replaces in outbox order and lists their ids; a
//! plan is the same on a retry (same `Idempotency-Key`).

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn body(key: &'static str, n: usize, tag: u32) -> Bytes {
    let items: Vec<Value> = (0..n).map(|i| json!({ "tag": tag, "i": i })).collect();
    Bytes::from(serde_json::to_vec(&json!({ key: items, "sentAt": tag })).expect("JSON"))
}

fn batch() -> impl Strategy<Value = (OutboundBatch, bool)> {
    let endpoint = prop::sample::select(vec![
        Endpoint::QrBatch,
        Endpoint::StatusBatch,
        Endpoint::MessagesBatch,
        Endpoint::LegacyStatus,
    ]);
    let shape = prop_oneof![
        6 => (prop::sample::select(vec!["statuses", "messages"]), 0usize..6).prop_map(|(k, n)| (Some((k, n)), Vec::new())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|raw| (None, raw)),
        1 => Just((None, b"{\"a\":[1],\"b\":[2]}".to_vec())),
        1 => Just((None, b"[1,2,3]".to_vec())),
    ];
    (endpoint, shape, any::<u32>(), any::<bool>()).prop_map(
        |(endpoint, (items, raw), tag, stale)| {
            let (body, count) = match items {
                Some((key, n)) => (body(key, n, tag), n),
                None => (Bytes::from(raw), 1),
            };
            let batch = OutboundBatch {
                id: format!("b{tag}"),
                endpoint,
                body,
                items: count,
                created_ms: u64::from(tag),
            };
            (batch, stale)
        },
    )
}

fn items_of(b: &OutboundBatch) -> Vec<Value> {
    match serde_json::from_slice::<Value>(&b.body) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(k, _)| k != REPLACES_FIELD)
            .find_map(|(_, v)| v.as_array().cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

proptest! {
    #[test]
    fn plans_consume_a_prefix_and_merge_without_losing_items(heads in prop::collection::vec(batch(), 0..8), max_items in 1usize..12) {
        let stale_ids: Vec<String> = heads.iter().filter(|(_, s)| *s).map(|(b, _)| b.id.clone()).collect();
        let heads: Vec<OutboundBatch> = heads.into_iter().map(|(b, _)| b).collect();
        let is_stale = |b: &OutboundBatch| stale_ids.contains(&b.id);
        let plan = plan(&heads, max_items, is_stale);
        prop_assert_eq!(&plan, &super::plan(&heads, max_items, is_stale), "the same plan on a retry");
        let prefix: Vec<String> = heads.iter().take(plan.consumed.len()).map(|b| b.id.clone()).collect();
        prop_assert_eq!(&plan.consumed, &prefix, "consumes a prefix, in order");
        prop_assert!(heads.is_empty() || !plan.consumed.is_empty() || heads.iter().all(&is_stale), "makes progress");
        for d in &plan.dropped {
            prop_assert!(is_stale(d), "dropped a batch that was not stale");
        }
        let sent: Vec<&OutboundBatch> = heads.iter().take(plan.consumed.len()).filter(|b| !is_stale(b)).collect();
        match (&plan.send, sent.as_slice()) {
            (None, []) => {}
            (Some(s), [one]) => prop_assert_eq!(s, *one, "a single batch goes as it is"),
            (Some(s), many) => {
                let total: usize = many.iter().map(|b| b.items).sum();
                prop_assert!(total <= max_items, "{} items merged, limit {}", total, max_items);
                prop_assert_eq!(s.items, total);
                prop_assert!(many.iter().all(|b| b.endpoint == many[0].endpoint));
                let expected: Vec<Value> = many.iter().flat_map(|b| items_of(b)).collect();
                prop_assert_eq!(items_of(s), expected, "every item, in outbox order");
                let ids: Vec<&str> = many.iter().map(|b| b.id.as_str()).collect();
                let body: Value = serde_json::from_slice(&s.body).expect("JSON");
                prop_assert_eq!(body[REPLACES_FIELD].clone(), json!(ids));
                prop_assert_eq!(&s.id, &merged_id(&ids));
            }
            (send, sent) => prop_assert!(false, "sent {:?} for {} live batches", send, sent.len()),
        }
    }
}

/// Found by the property above: two batches of one endpoint whose bodies
/// have no item array (an outbox record damaged in Redis) were planned as
/// one merge, and the merge panicked, on every replay.
#[test]
fn unreadable_bodies_are_sent_one_by_one() {
    let broken = |id: &str| OutboundBatch {
        id: id.into(),
        endpoint: Endpoint::QrBatch,
        body: Bytes::from_static(b""),
        items: 1,
        created_ms: 0,
    };
    let heads = [broken("a"), broken("b")];
    let plan = plan(&heads, 10, |_| false);
    assert_eq!(plan.consumed, ["a"]);
    assert_eq!(plan.send, Some(broken("a")));
}
