//! SIGKILL while a send is in flight, with the real WhatsApp Web client: the
//! gateway runs as its own process (the test build of the binary, Redis
//! store, the device's keys in a data directory that outlives it) against
//! `FakeWhatsApp`, which delivers the message to the peer's phone but holds
//! back WhatsApp's server ack, so the kill lands after the stanza left and
//! before the send counted. After the restart the message is sent again
//! under the same WhatsApp id (which WhatsApp dedupes on): the peer's phone
//! gets it at most twice, every copy with that id, and Laravel hears `sent`
//! once.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use wagate_testkit::{FakeLaravel, FakeWhatsApp, GatewayClient, GatewayProcess, RedisServer};

use crate::helpers::{eventually, message_items, PATIENCE};
use crate::whatsapp_send::PEER;

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");
/// Linking takes a 515 restart and a second login; a debug build on a
/// loaded machine is slow at it.
pub(crate) const LINKING: Duration = Duration::from_secs(60);
/// A restarted gateway logs in again, then the queue takes the message up.
pub(crate) const RECOVERY: Duration = Duration::from_secs(120);

async fn wait_state(remote: &GatewayClient, id: &str, state: &str, patience: Duration) {
    let ok = remote.reaches_state(id, state, patience).await;
    assert!(
        ok,
        "{id} never reached {state} (now {})",
        remote.state_of(id).await
    );
}

/// The message's status as `GET /sessions/{id}/messages/{mid}` says.
async fn status_of(remote: &GatewayClient, id: &str, mid: &str) -> Value {
    remote
        .get(&format!("/sessions/{id}/messages/{mid}"))
        .await
        .json_or_null()
}

/// The test build of the gateway as its own process on `redis`, its
/// session `id` linked against `server` (`extra` settings added to the
/// environment). Returns it, its client and the account's number.
pub(crate) async fn linked_process(
    redis: &RedisServer,
    laravel: &FakeLaravel,
    server: &FakeWhatsApp,
    data: &Path,
    id: &str,
    extra: &[(&str, &str)],
) -> (GatewayProcess, GatewayClient, String) {
    let env = [
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "wa-crash-node".to_owned()),
        ("CONNECTOR", "whatsapp-web".to_owned()),
        ("DATA_DIR", data.to_string_lossy().into_owned()),
        ("WA_URL", server.url()),
        ("WA_VERSION", "2.3000.1000000000".to_owned()),
        ("WA_THREADS", "2".to_owned()),
        ("LARAVEL_API", laravel.base_url()),
        ("MESSAGES_BATCH_INTERVAL", "50".to_owned()),
        ("MESSAGE_RETRY_DELAY", "200".to_owned()),
        ("MESSAGE_MIN_GAP", "10".to_owned()),
    ];
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.extend_from_slice(extra);
    let gateway = GatewayProcess::start(Path::new(BINARY), &pairs);
    let remote = GatewayClient::new(&gateway.base_url());
    let (status, body) = remote
        .post("/sessions", json!({ "id": id }))
        .await
        .status_and_json();
    assert_eq!(status, 201, "{body}");
    wait_state(&remote, id, "qr", PATIENCE).await;
    let qr = remote
        .get(&format!("/sessions/{id}/qr"))
        .await
        .json_or_null();
    let code = qr["qr"].as_str().unwrap_or_default();
    let jid = server.scan(code).expect("the fake phone pairs");
    wait_state(&remote, id, "connected", LINKING).await;
    let user = jid.split('@').next().unwrap_or_default().to_owned();
    (gateway, remote, user)
}

#[actix_rt::test]
async fn whatsapp_web_sigkill_mid_send_resends_under_the_same_id_and_reports_sent_once() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let server = FakeWhatsApp::start();
    server.add_peer(PEER, None).expect("the peer's keys");
    let data = tempfile::tempdir().expect("tempdir");
    let id = "wa-crash-1";
    let (mut gateway, remote, _) =
        linked_process(&redis, &laravel, &server, data.path(), id, &[]).await;

    // The peer's phone gets the message; WhatsApp's ack never comes.
    server.withhold_acks(true);
    let text = "in flight at the kill";
    let (status, body) = remote
        .post(
            &format!("/sessions/{id}/messages"),
            json!({ "to": PEER, "text": text }),
        )
        .await
        .status_and_json();
    assert_eq!(status, 202, "{body}");
    let mid = body["messageId"].as_str().expect("a message id").to_owned();
    let delivered = eventually(PATIENCE, || async {
        server.stanzas_to(PEER).contains(&mid)
    })
    .await;
    assert!(delivered, "the stanza reached the peer\n{}", gateway.log());
    let before = status_of(&remote, id, &mid).await;
    assert_eq!(before["status"], "sending", "in flight: {before}");
    gateway.kill();
    assert!(
        message_items(&laravel, "send_result").is_empty(),
        "nothing reported before the ack"
    );

    server.withhold_acks(false);
    gateway.restart();
    let remote = GatewayClient::new(&gateway.base_url());
    let sent = eventually(RECOVERY, || async {
        status_of(&remote, id, &mid).await["status"] == "sent"
    })
    .await;
    assert!(
        sent,
        "sent after the restart: {}\n{}",
        status_of(&remote, id, &mid).await,
        gateway.log()
    );
    let reported = laravel
        .wait_for(PATIENCE, |_| {
            !message_items(&laravel, "send_result").is_empty()
        })
        .await;
    assert!(reported, "Laravel hears the result");

    let copies = server.stanzas_to(PEER);
    let decrypted: Vec<_> = server
        .peer_messages(PEER)
        .into_iter()
        .filter(|m| m.id == mid)
        .collect();
    eprintln!(
        "wa sigkill: {} copies reached the peer, {} decrypted, undecryptable: {:?}",
        copies.len(),
        decrypted.len(),
        server.undecryptable()
    );
    assert!((1..=2).contains(&copies.len()), "at most twice: {copies:?}");
    assert!(copies.iter().all(|c| *c == mid), "one id: {copies:?}");
    assert!(
        !decrypted.is_empty(),
        "the peer read it: {:?}",
        server.undecryptable()
    );
    assert!(
        decrypted.iter().all(|m| m.text.as_deref() == Some(text)),
        "{decrypted:?}"
    );
    // SIGTERM flushes what the batcher still holds: a second result would show.
    gateway.terminate();
    let results = message_items(&laravel, "send_result");
    let mine: Vec<&Value> = results.iter().filter(|r| r["messageId"] == mid).collect();
    assert_eq!(mine.len(), 1, "`sent` once: {results:?}");
    assert_eq!(mine[0]["status"], "sent");
    assert_eq!(results.len(), 1, "{results:?}");
}
