//! Delivery and read receipts through the real WhatsApp Web client, offline:
//! the fake peer's phone acknowledges messages the gateway sent it with
//! WhatsApp's `<receipt>` stanzas, and Laravel must get them as `receipt`
//! items that name the `messageId` the 202 gave (the id on the wire) with
//! the rank of docs/laravel.md (`sent` 1, `delivered` 2, `read` 3), so the
//! PHP there moves the message forward.

use serde_json::Value;
use wagate_testkit::{FakeLaravel, PeerReceipt};

use crate::helpers::{message_items, PATIENCE};
use crate::whatsapp_send::{linked, send, PEER};

/// Laravel's receipt items for `mid`, as `(status, rank)`, in arrival order.
fn receipts(laravel: &FakeLaravel, mid: &str) -> Vec<(String, u64)> {
    message_items(laravel, "receipt")
        .into_iter()
        .filter(|r| r["messageId"] == mid)
        .map(|r| {
            (
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["rank"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

async fn wait_receipts(laravel: &FakeLaravel, mid: &str, count: usize) {
    let arrived = laravel
        .wait_for(PATIENCE, |_| receipts(laravel, mid).len() >= count)
        .await;
    assert!(
        arrived,
        "{count} receipts for {mid}; Laravel got {:?}",
        message_items(laravel, "receipt")
    );
}

/// Two texts to the peer; the peer's phone says it has both (one receipt
/// naming both ids), then that it read the first. Laravel gets `delivered`
/// (rank 2) for both and `read` (rank 3) for the first, each under the
/// gateway's own message id, above the `sent` (rank 1) it heard first.
#[actix_rt::test]
async fn whatsapp_web_peer_receipts_reach_laravel_under_the_gateway_message_id_with_ranks() {
    let id = "receipts-1";
    let linked = linked(id).await;
    let (server, laravel, user) = (&linked.server, &linked.laravel, &linked.user);
    let first = send(&linked.gw, id, "first, to be read").await;
    let second = send(&linked.gw, id, "second, only delivered").await;
    let on_the_wire = server.stanzas_to(PEER);
    assert_eq!(
        on_the_wire,
        vec![first.clone(), second.clone()],
        "the 202's ids are the ids on the wire"
    );

    server
        .peer_receipt(
            PEER,
            user,
            &[first.clone(), second.clone()],
            PeerReceipt::Delivered,
        )
        .expect("the peer's delivery receipt");
    wait_receipts(laravel, &first, 1).await;
    wait_receipts(laravel, &second, 1).await;
    server
        .peer_receipt(PEER, user, std::slice::from_ref(&first), PeerReceipt::Read)
        .expect("the peer's read receipt");
    wait_receipts(laravel, &first, 2).await;

    assert_eq!(
        receipts(laravel, &first),
        vec![("delivered".to_owned(), 2), ("read".to_owned(), 3)]
    );
    assert_eq!(
        receipts(laravel, &second),
        vec![("delivered".to_owned(), 2)]
    );
    let all = message_items(laravel, "receipt");
    assert_eq!(all.len(), 3, "no other receipt: {all:?}");
    for r in &all {
        assert_eq!(r["sessionId"], id, "{r}");
        assert!(r["timestamp"].as_u64().unwrap_or_default() > 0, "{r}");
    }
    let results = message_items(laravel, "send_result");
    for mid in [&first, &second] {
        let mine: Vec<&Value> = results.iter().filter(|m| m["messageId"] == **mid).collect();
        assert_eq!(mine.len(), 1, "{results:?}");
        assert_eq!(
            (&mine[0]["status"], &mine[0]["rank"]),
            (&"sent".into(), &1.into())
        );
    }
    linked.gw.shutdown().await;
}
