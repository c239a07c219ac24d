//! Sending and receiving text through the real WhatsApp Web client, offline:
//! `FakeWhatsApp` hosts a phone book of peers with real Signal keys (the
//! crate's own libsignal port). A text posted to the API must reach the
//! peer's phone encrypted for it, decrypt to exactly that text, once, under
//! the gateway's message id as its WhatsApp id — the first as a
//! `pkmsg`, the next over the established session as a `msg` — and Laravel
//! must hear `sent`. The other way, a peer's text encrypted to the linked
//! device from the prekeys the client uploaded must reach Laravel once with
//! the sender's phone JID.

use serde_json::Value;
use tempfile::TempDir;
use wagate::config::Config;
use wagate_testkit::{EncKind, FakeLaravel, FakeWhatsApp, PeerMessage};

use crate::contract::link;
use crate::helpers::{eventually, message_items, spawn, TestGateway, PATIENCE};
use crate::whatsapp_offline::whatsapp_config;

/// A phone on WhatsApp that the linked account writes to.
pub(crate) const PEER: &str = "15557770001";

pub(crate) struct Linked {
    pub laravel: FakeLaravel,
    pub server: FakeWhatsApp,
    pub gw: TestGateway,
    /// The linked account's phone number.
    pub user: String,
    _data: TempDir,
}

/// A gateway with one session linked against a fake WhatsApp whose phone
/// book holds `PEER`.
pub(crate) async fn linked(id: &str) -> Linked {
    linked_with(id, |_| {}).await
}

/// As [`linked`], with the gateway's settings changed by `tweak` first.
pub(crate) async fn linked_with(id: &str, tweak: impl FnOnce(&mut Config)) -> Linked {
    let laravel = FakeLaravel::start();
    let server = FakeWhatsApp::start();
    server.add_peer(PEER, None).expect("the peer's keys");
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = whatsapp_config(&data, Some(server.url()));
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 200;
    config.batch.messages_interval_ms = 50;
    tweak(&mut config);
    let gw = spawn(config).await;
    let user = link(&gw, &server, id).await;
    Linked {
        laravel,
        server,
        gw,
        user,
        _data: data,
    }
}

/// Posts `text` to the peer and waits until the gateway says `sent`;
/// returns the gateway's message id.
pub(crate) async fn send(gw: &TestGateway, id: &str, text: &str) -> String {
    let r = gw.send_text(id, PEER, text).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"]
        .as_str()
        .expect("a message id")
        .to_owned();
    gw.wait_message(id, &mid, "sent").await;
    mid
}

/// What the peer decrypted under the id `mid` (the gateway's message id is
/// the id on the wire, so receipts name it: docs/whatsapp.md).
pub(crate) fn at_peer(server: &FakeWhatsApp, mid: &str) -> Vec<PeerMessage> {
    server
        .peer_messages(PEER)
        .into_iter()
        .filter(|m| m.id == mid)
        .collect()
}

/// Laravel's incoming text items for session `id` with wire id `wire`.
fn texts(laravel: &FakeLaravel, id: &str, wire: &str) -> Vec<Value> {
    message_items(laravel, "message")
        .into_iter()
        .filter(|m| m["sessionId"] == id && m["id"] == wire)
        .collect()
}

/// Waits for the incoming message `wire` of session `id` at Laravel;
/// asserts it arrived exactly once with `text`, and returns the item.
pub(crate) async fn arrived_once(laravel: &FakeLaravel, id: &str, wire: &str, text: &str) -> Value {
    let arrived = laravel
        .wait_for(PATIENCE, |_| !texts(laravel, id, wire).is_empty())
        .await;
    assert!(
        arrived,
        "Laravel got {:?}",
        message_items(laravel, "message")
    );
    let mine = texts(laravel, id, wire);
    assert_eq!(mine.len(), 1, "once: {mine:?}");
    assert_eq!(mine[0]["text"], text);
    mine[0].clone()
}

/// Phone `PEER` writes `text` to the linked account; asserts it went as
/// `kind` and reached Laravel exactly once, from the peer's number.
async fn peer_writes(linked: &Linked, id: &str, text: &str, kind: EncKind) {
    let Linked {
        laravel,
        server,
        user,
        ..
    } = linked;
    let (wire, sent_as) = server
        .send_text(PEER, user, text)
        .await
        .expect("the peer writes");
    assert_eq!(sent_as, kind, "{text:?} went as {sent_as:?}");
    // The client acknowledges what it decrypted with a receipt.
    let receipted = eventually(PATIENCE, || async {
        !server.client_receipts(&wire).is_empty()
    })
    .await;
    assert!(receipted, "no receipt for {wire}");
    let item = arrived_once(laravel, id, &wire, text).await;
    assert_eq!(item["kind"], "text");
    assert_eq!(item["from"], PEER, "the sender's number: {item:?}");
    assert_eq!(item["isGroup"], false);
}

/// Sends `text` and returns what the peer decrypted under its wire id.
async fn send_and_read(linked: &Linked, id: &str, text: &str) -> (String, PeerMessage) {
    let mid = send(&linked.gw, id, text).await;
    // `sent` means WhatsApp acked it, and the fake acks after routing.
    let got = at_peer(&linked.server, &mid);
    assert_eq!(
        got.len(),
        1,
        "the peer decrypts {text:?} once: {:?}; undecryptable: {:?}",
        linked.server.peer_messages(PEER),
        linked.server.undecryptable()
    );
    assert_eq!(got[0].text.as_deref(), Some(text));
    assert_eq!(got[0].from, linked.user, "from the linked account");
    assert!(!got[0].own_copy);
    (mid, got[0].clone())
}

/// The gateway writes first: `pkmsg` from the peer's prekey bundle, again
/// `pkmsg` while the peer has not answered (Signal keeps offering the
/// prekey until the session is confirmed), the peer's answer over that
/// session (`msg`) reaches Laravel, and from then on the gateway sends `msg`.
#[actix_rt::test]
async fn whatsapp_web_text_reaches_the_peer_decrypted_once_then_over_the_session() {
    let id = "send-1";
    let linked = linked(id).await;

    let (first, got) = send_and_read(&linked, id, "hello over signal").await;
    assert_eq!(
        got.enc,
        EncKind::PreKey,
        "the first message opens the session"
    );
    let (second, got) = send_and_read(&linked, id, "and again").await;
    assert_eq!(
        got.enc,
        EncKind::PreKey,
        "unconfirmed: the prekey is offered again"
    );

    peer_writes(&linked, id, "got both", EncKind::Whisper).await;
    let (third, got) = send_and_read(&linked, id, "now confirmed").await;
    assert_eq!(got.enc, EncKind::Whisper, "the established session is used");

    let server = &linked.server;
    assert_eq!(
        server.peer_messages(PEER).len(),
        3,
        "nothing else reached the peer"
    );
    assert!(
        server.undecryptable().is_empty(),
        "every copy decrypts: {:?}",
        server.undecryptable()
    );
    let laravel = &linked.laravel;
    let reported = laravel
        .wait_for(PATIENCE, |_| {
            message_items(laravel, "send_result").len() >= 3
        })
        .await;
    let results = message_items(laravel, "send_result");
    assert!(reported, "Laravel got {results:?}");
    for mid in [&first, &second, &third] {
        let mine: Vec<&Value> = results.iter().filter(|m| m["messageId"] == **mid).collect();
        assert_eq!(mine.len(), 1, "one result for {mid}: {results:?}");
        assert_eq!(mine[0]["status"], "sent");
        assert_eq!(mine[0]["to"], PEER);
    }
    linked.gw.shutdown().await;
}

/// The peer writes first: its `pkmsg` is built from the prekeys the client
/// uploaded and reaches Laravel once, with the sender's number; the
/// gateway's answer then goes over the session the peer opened (`msg`).
#[actix_rt::test]
async fn whatsapp_web_text_from_a_peer_reaches_laravel_once_with_the_sender() {
    let id = "receive-1";
    let linked = linked(id).await;
    let (server, user) = (&linked.server, &linked.user);
    // The client uploads its prekeys after logging in.
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");
    let before = server.uploaded_prekeys(user);

    peer_writes(&linked, id, "hi gateway", EncKind::PreKey).await;
    assert_eq!(
        server.uploaded_prekeys(user),
        before - 1,
        "the peer used one of the uploaded prekeys"
    );
    let (_, got) = send_and_read(&linked, id, "hello back").await;
    assert_eq!(
        got.enc,
        EncKind::Whisper,
        "the answer uses the peer's session"
    );
    assert_eq!(
        message_items(&linked.laravel, "message").len(),
        1,
        "{:?}",
        message_items(&linked.laravel, "message")
    );
    linked.gw.shutdown().await;
}

/// A number that is not on WhatsApp (not in the fake's phone book): the
/// number check (a usync contact query) says so before anything is sent,
/// the message ends `failed` after one attempt with a `lastError` that says
/// so, Laravel hears `failed`, and nothing reaches any phone.
#[actix_rt::test]
async fn whatsapp_web_text_to_a_number_not_on_whatsapp_fails_with_the_reason() {
    let id = "nobody-1";
    let linked = linked(id).await;
    let nobody = "15550009999";
    let r = linked.gw.send_text(id, nobody, "anyone there?").await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"]
        .as_str()
        .expect("a message id")
        .to_owned();
    let record = linked.gw.wait_message(id, &mid, "failed").await;
    let reason = record["lastError"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not on WhatsApp"),
        "a reason a person can act on: {record}"
    );
    assert_eq!(record["attempts"], 1, "a refusal is not retried: {record}");
    let laravel = &linked.laravel;
    let heard = laravel
        .wait_for(PATIENCE, |_| {
            message_items(laravel, "send_result")
                .iter()
                .any(|m| m["messageId"] == mid.as_str() && m["status"] == "failed")
        })
        .await;
    assert!(
        heard,
        "Laravel got {:?}",
        message_items(laravel, "send_result")
    );
    assert!(linked.server.peer_messages(PEER).is_empty());
    assert!(linked.server.peer_messages(nobody).is_empty());
    linked.gw.shutdown().await;
}

/// A gateway restart (Redis store, the same `DATA_DIR`) between two sends:
/// the client logs in again from its stored device and the Signal session
/// it had with the peer survives, so the next text goes as `msg` and still
/// decrypts at the peer.
#[actix_rt::test]
async fn whatsapp_web_signal_session_survives_a_gateway_restart() {
    let redis = wagate_testkit::RedisServer::start();
    let laravel = FakeLaravel::start();
    let server = FakeWhatsApp::start();
    server.add_peer(PEER, None).expect("the peer's keys");
    let data = tempfile::tempdir().expect("tempdir");
    let (url, api) = (server.url(), laravel.base_url());
    let config = || {
        let mut c = whatsapp_config(&data, Some(url.clone()));
        let durable = crate::helpers::redis_config(&redis);
        c.store = durable.store;
        c.redis = durable.redis;
        c.laravel.api = api.clone();
        c.batch.messages_interval_ms = 50;
        c
    };
    let id = "restart-1";
    let gw = spawn(config()).await;
    let user = link(&gw, &server, id).await;
    let mut linked = Linked {
        laravel,
        server,
        gw,
        user,
        _data: tempfile::tempdir().expect("tempdir"),
    };
    let (_, got) = send_and_read(&linked, id, "before the restart").await;
    assert_eq!(got.enc, EncKind::PreKey);
    peer_writes(&linked, id, "confirmed", EncKind::Whisper).await;
    linked.gw.shutdown().await;

    let logins = linked
        .server
        .stats()
        .logins
        .load(std::sync::atomic::Ordering::SeqCst);
    linked.gw = spawn(config()).await;
    let relogged = eventually(std::time::Duration::from_secs(60), || async {
        linked
            .server
            .stats()
            .logins
            .load(std::sync::atomic::Ordering::SeqCst)
            > logins
            && linked.gw.state_of(id).await == "connected"
    })
    .await;
    assert!(relogged, "the session logged in again after the restart");
    let (_, got) = send_and_read(&linked, id, "after the restart").await;
    assert_eq!(got.enc, EncKind::Whisper, "the stored session was used");
    assert!(linked.server.undecryptable().is_empty());
    linked.gw.shutdown().await;
}
