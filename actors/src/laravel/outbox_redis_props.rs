//! Property tests of the outbox's Redis record format: whatever bytes sit
//! in the list (a record from an older version, a hand-edited one, random
//! bytes) decode to a batch or to `None`, never to a panic; every batch the
//! gateway writes reads back identical, whatever its body holds.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(vec![
        Endpoint::QrBatch,
        Endpoint::StatusBatch,
        Endpoint::MessagesBatch,
        Endpoint::LegacyQr,
        Endpoint::LegacyStatus,
    ])
}

/// Bytes shaped like a record (four header lines and a body), with any
/// field broken or not.
fn record_like() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "[a-z_]{0,16}",
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[0-9]{0,25}",
        any::<String>(),
    ];
    (
        prop::collection::vec(field, 0..6),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(fields, body)| {
            let mut raw = fields.join("\n").into_bytes();
            raw.push(b'\n');
            raw.extend(body);
            raw
        })
}

proptest! {
    #[test]
    fn any_bytes_decode_to_a_batch_or_none(raw in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), record_like()]) {
        if let Some(batch) = decode(&raw) {
            // What was read is a batch the client can send as it is.
            prop_assert!(!batch.id.contains('\n'));
            prop_assert_eq!(Endpoint::from_label(batch.endpoint.label()), Some(batch.endpoint));
            prop_assert_eq!(decode(&encode(&batch)), Some(batch));
        }
    }

    #[test]
    fn written_batches_read_back_identical(
        endpoint in endpoint(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        items in any::<usize>(),
        created_ms in any::<u64>(),
    ) {
        let batch = OutboundBatch {
            id: uuid::Uuid::now_v7().to_string(),
            endpoint,
            body: Bytes::from(body),
            items,
            created_ms,
        };
        prop_assert_eq!(decode(&encode(&batch)), Some(batch));
    }
}
