//! An incoming message survives a SIGKILL between decrypt and ack, with the
//! real WhatsApp Web client: the gateway runs as its own process on Redis.
//! With Redis refusing writes (`CLIENT PAUSE … WRITE`) the crate's inbound
//! durability hook cannot journal the decrypted message, so the client
//! never acks it (no receipt reaches `FakeWhatsApp`); the gateway is then
//! killed. Like WhatsApp, the fake sends the un-acked message again at the
//! next login, and it reaches Laravel: not lost, under its one id.

use std::time::Duration;

use wagate_testkit::{eventually, FakeLaravel, FakeWhatsApp, RedisServer};

use crate::helpers::{message_items, PATIENCE};
use crate::whatsapp_crash::{linked_process, RECOVERY};
use crate::whatsapp_send::PEER;

#[actix_rt::test]
async fn whatsapp_web_sigkill_between_decrypt_and_ack_redelivers_and_nothing_is_lost() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let server = FakeWhatsApp::start();
    server.add_peer(PEER, None).expect("the peer's keys");
    let data = tempfile::tempdir().expect("tempdir");
    let id = "wa-redeliver-1";
    // A journal write waits at most this long for Redis.
    let extra = [("REDIS_RESPONSE_TIMEOUT", "1500")];
    let (mut gateway, _remote, user) =
        linked_process(&redis, &laravel, &server, data.path(), id, &extra).await;
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(&user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");

    redis.command(&["CLIENT", "PAUSE", "600000", "WRITE"]);
    let text = "decrypted, never acked";
    let (wire, _) = server
        .send_text(PEER, &user, text)
        .await
        .expect("the peer writes");
    // The hook gave up on the journal: the client decrypted the message and
    // holds it unacked.
    let refused = eventually(Duration::from_secs(30), || async {
        gateway.log().contains("cannot journal an incoming message")
    })
    .await;
    assert!(refused, "the journal write never failed\n{}", gateway.log());
    assert!(
        server.client_receipts(&wire).is_empty(),
        "acked before the kill: {:?}",
        server.client_receipts(&wire)
    );
    gateway.kill();
    assert!(
        message_items(&laravel, "message").is_empty(),
        "nothing reached Laravel before the kill"
    );

    redis.command(&["CLIENT", "UNPAUSE"]);
    gateway.restart();
    let arrived = laravel
        .wait_for(RECOVERY, |_| !message_items(&laravel, "message").is_empty())
        .await;
    assert!(arrived, "the message was lost\n{}", gateway.log());
    let acked = eventually(PATIENCE, || async {
        !server.client_receipts(&wire).is_empty()
    })
    .await;
    assert!(acked, "the redelivered message is acked");
    gateway.terminate();
    let redelivered = server
        .stats()
        .redeliveries
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(redelivered >= 1, "WhatsApp sent it again");
    let items = message_items(&laravel, "message");
    eprintln!(
        "wa redelivery: {redelivered} redelivered, {} item(s) at Laravel",
        items.len()
    );
    assert!(
        items
            .iter()
            .all(|m| m["id"] == wire.as_str() && m["text"] == text && m["from"] == PEER),
        "only that message, under its id: {items:?}"
    );
    assert!(items.len() <= 2, "at least once, not a storm: {items:?}");
}
