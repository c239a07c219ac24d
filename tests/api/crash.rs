//! Crashes and outages with real processes: the gateway binary killed with
//! SIGKILL while it sends 1,000 messages (and, separately, 120 images whose
//! bytes wait in Redis), and restarted while Laravel is down. Every
//! accepted message is sent and no media blob is left; every status change
//! and incoming message reaches Laravel once it is back, in order per
//! session, and no batch id is accepted twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use wagate_actors::connector::simulator::SEND_LEDGER_KEY;
use wagate_testkit::{FakeLaravel, GatewayClient, GatewayProcess, RedisServer};

use crate::helpers::{accepted_items, eventually, PATIENCE};

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");
const TO: &str = "5215512345678";

/// A simulator gateway process on `redis`, quick to show QR codes and to
/// reconnect; tests add their own settings (also used by `convergence`).
pub(crate) fn base_env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "crash-node".into()),
        ("MAX_ACTIVE_SESSIONS", "1000".into()),
        ("SESSION_ARBITERS", "2".into()),
        ("CLUSTER_WORKERS", "2".into()),
        ("SIM_QR_FIRST_MS", "100".into()),
        ("SIM_QR_ROTATE_MS", "60000".into()),
        ("SIM_RECONNECT_MS", "50".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
}

/// Starts the gateway binary this suite built, or `TEST_GATEWAY_BIN`
/// when set: the hour-long chaos run uses a copy, so that builds made
/// while it runs do not swap the binary under its restarts.
pub(crate) fn start(env: &[(&'static str, String)]) -> GatewayProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let binary = std::env::var_os("TEST_GATEWAY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(BINARY).to_owned());
    GatewayProcess::start(&binary, &pairs)
}

/// Successful sends per message id, as the simulated WhatsApp recorded them.
pub(crate) fn ledger(redis: &RedisServer) -> HashMap<String, u64> {
    let flat = redis.command(&["HGETALL", SEND_LEDGER_KEY]).as_strings();
    flat.chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].parse().unwrap()))
        .collect()
}

#[actix_rt::test]
async fn sigkill_mid_send_loses_no_accepted_message() {
    const SESSIONS: usize = 10;
    const MESSAGES: usize = 1000;
    const CONCURRENCY: usize = 20;
    let redis = RedisServer::start();
    let mut env = base_env(&redis);
    env.extend([
        ("SIM_SEND_LATENCY_MS", "20".to_owned()),
        ("MESSAGE_MIN_GAP", "10".to_owned()),
        ("MAX_CONCURRENT_MESSAGES", CONCURRENCY.to_string()),
    ]);
    let mut gateway = start(&env);
    let remote = GatewayClient::new(&gateway.base_url());
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("k{i}")).collect();
    for id in &sessions {
        remote.link(id).await;
    }

    // 1,000 messages from 20 concurrent clients; keep the ids accepted (202).
    let accepted: Vec<String> = stream::iter(0..MESSAGES)
        .map(|i| {
            let (remote, id) = (&remote, &sessions[i % SESSIONS]);
            async move {
                let body = json!({ "to": TO, "text": format!("message {i}") });
                match remote
                    .post(&format!("/sessions/{id}/messages"), &body)
                    .await
                    .status_and_json()
                {
                    (202, v) => v["messageId"].as_str().map(str::to_owned),
                    _ => None,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert_eq!(accepted.len(), MESSAGES, "all accepted while healthy");

    // Kill it while it is sending: some sent, most not yet.
    let midway = eventually(PATIENCE, || async { ledger(&redis).len() >= 100 }).await;
    assert!(midway, "sending started");
    gateway.kill();
    let at_kill = ledger(&redis).len();
    assert!(at_kill < MESSAGES, "killed mid-way ({at_kill} sent)");

    gateway.restart();
    let all_sent = eventually(std::time::Duration::from_secs(120), || async {
        ledger(&redis).len() >= accepted.len()
    })
    .await;
    let sends = ledger(&redis);
    assert!(
        all_sent,
        "{} of {} sent after the restart\n{}",
        sends.len(),
        accepted.len(),
        gateway.log()
    );
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    assert!(accepted.iter().all(|id| sends.contains_key(id)));
    assert!(
        sends.keys().all(|id| accepted_set.contains(id)),
        "nothing unknown was sent"
    );
    // At-least-once: only what was in flight at the kill may be sent again,
    // and it is resent under the same WhatsApp message id.
    let resent: Vec<_> = sends.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "sigkill: {} accepted, {at_kill} sent before the kill, {} sent twice",
        accepted.len(),
        resent.len()
    );
    assert!(
        resent.len() <= CONCURRENCY,
        "{} messages sent twice: more than were in flight",
        resent.len()
    );
    assert!(resent.iter().all(|(_, n)| **n == 2), "{resent:?}");
    let remote = GatewayClient::new(&gateway.base_url());
    let health = remote.get("/health").await.json_or_null();
    let q = &health["queues"]["messageQueue"];
    let drained = eventually(PATIENCE, || async {
        let h = remote.get("/health").await.json_or_null();
        h["queues"]["messageQueue"]["waiting"] == 0 && h["queues"]["messageQueue"]["active"] == 0
    })
    .await;
    assert!(drained, "queue empty at the end: {q}");
    gateway.terminate();
}

#[actix_rt::test]
async fn laravel_down_across_a_restart_receives_everything_once_back() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    laravel.set_status(503);
    let mut env = base_env(&redis);
    env.extend([
        ("LARAVEL_API", laravel.base_url()),
        ("LARAVEL_MAX_RETRIES", "0".to_owned()),
        ("CIRCUIT_BREAKER_THRESHOLD", "2".to_owned()),
        ("CIRCUIT_BREAKER_RESET", "500".to_owned()),
        ("BATCH_INTERVAL", "100".to_owned()),
        ("MESSAGES_BATCH_INTERVAL", "100".to_owned()),
    ]);
    let mut gateway = start(&env);
    let remote = GatewayClient::new(&gateway.base_url());
    let ids = ["d0", "d1", "d2"];
    for id in ids {
        remote.link(id).await;
        let r = remote
            .post(&format!("/sessions/{id}/simulate/disconnect"), &json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The 200 above means the phone dropped; the session may still
        // read `connected` until it hears so, and a 409 (not connected
        // while it reconnects) delivers nothing: post until it is taken.
        let incoming = json!({ "from": TO, "text": format!("before restart {id}") });
        let taken = eventually(PATIENCE, || async {
            let r = remote
                .post(&format!("/sessions/{id}/simulate/incoming"), &incoming)
                .await;
            assert!(matches!(r.status, 200 | 409), "{}", r.text());
            r.status == 200
        })
        .await;
        assert!(taken, "{id} takes an incoming message once reconnected");
    }
    // Restart in the middle of the outage (SIGTERM: batchers flush to the outbox).
    gateway.terminate();
    let held = redis
        .command(&["LLEN", "wagate:outbox"])
        .as_int()
        .unwrap_or(0);
    assert!(
        held > 0,
        "the outbox in Redis holds what Laravel did not take"
    );
    gateway.restart();
    let remote = GatewayClient::new(&gateway.base_url());
    for id in ids {
        remote.wait_state(id, "connected").await;
        let r = remote
            .post(
                &format!("/sessions/{id}/simulate/incoming"),
                &json!({ "from": TO, "text": format!("after restart {id}") }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    laravel.set_status(200);
    let complete = laravel
        .wait_for(std::time::Duration::from_secs(60), |_| {
            let texts = accepted_items(&laravel, "/whatsapp/messages/batch", "messages");
            texts.len() >= 2 * ids.len()
        })
        .await;
    assert!(
        complete,
        "messages arrive once Laravel is back\n{}",
        gateway.log()
    );
    let drained = eventually(PATIENCE, || async {
        redis.command(&["LLEN", "wagate:outbox"]).as_int() == Some(0)
    })
    .await;
    assert!(drained, "the outbox drains");
    let statuses = accepted_items(&laravel, "/whatsapp/status/batch", "statuses");
    for id in ids {
        let mine: Vec<(String, u64)> = statuses
            .iter()
            .filter(|s| s["sessionId"] == id)
            .map(|s| {
                (
                    s["status"].as_str().unwrap().to_owned(),
                    s["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let words: Vec<&str> = mine.iter().map(|(w, _)| w.as_str()).collect();
        // Before the restart: linked, dropped, back; after it: restored.
        assert!(
            words.starts_with(&["starting", "active", "inactive", "active"]),
            "{id}: {words:?}"
        );
        assert!(words.ends_with(&["starting", "active"]), "{id}: {words:?}");
        assert!(
            mine.windows(2).all(|w| w[0].1 < w[1].1),
            "{id} in seq order: {mine:?}"
        );
        let texts: Vec<String> = accepted_items(&laravel, "/whatsapp/messages/batch", "messages")
            .iter()
            .filter(|m| m["sessionId"] == id && m["type"] == "message")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            texts,
            vec![
                format!("before restart {id}"),
                format!("after restart {id}")
            ]
        );
    }
    let mut batch_ids: Vec<String> = laravel
        .requests()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    let n = batch_ids.len();
    batch_ids.sort();
    batch_ids.dedup();
    assert_eq!(batch_ids.len(), n, "no batch accepted twice");
    gateway.terminate();
}

/// Issue 13's crash case: image messages accepted (202: their bytes are in
/// Redis), the gateway SIGKILLed while it sends them. After a restart
/// every one is sent (at most the in-flight ones twice, under their id) and
/// no blob is left behind.
#[actix_rt::test]
async fn sigkill_between_202_and_send_loses_no_media_message_and_leaks_no_blob() {
    use base64::Engine;
    const SESSIONS: usize = 4;
    const MESSAGES: usize = 120;
    const IN_FLIGHT: usize = 8;
    let redis = RedisServer::start();
    let mut env = base_env(&redis);
    env.extend([
        ("SIM_SEND_LATENCY_MS", "40".to_owned()),
        ("MESSAGE_MIN_GAP", "10".to_owned()),
        ("MAX_CONCURRENT_MESSAGES", IN_FLIGHT.to_string()),
    ]);
    let mut gateway = start(&env);
    let remote = GatewayClient::new(&gateway.base_url());
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("m{i}")).collect();
    for id in &sessions {
        remote.link(id).await;
    }
    let blobs = || redis.command(&["KEYS", "wagate:blob:*"]).as_strings().len();

    let accepted: Vec<String> = stream::iter(0..MESSAGES)
        .map(|i| {
            let (remote, id) = (&remote, &sessions[i % SESSIONS]);
            async move {
                // A PNG signature, then 8 KiB that differ per message.
                let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
                png.extend((0..8192).map(|j| ((i * 31 + j) % 251) as u8));
                let body = json!({
                    "to": TO,
                    "type": "image",
                    "caption": format!("photo {i}"),
                    "base64": base64::engine::general_purpose::STANDARD.encode(&png),
                });
                match remote
                    .post(&format!("/sessions/{id}/messages"), &body)
                    .await
                    .status_and_json()
                {
                    (202, v) => v["messageId"].as_str().map(str::to_owned),
                    _ => None,
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert_eq!(accepted.len(), MESSAGES, "all accepted while healthy");

    let midway = eventually(PATIENCE, || async { ledger(&redis).len() >= 10 }).await;
    assert!(midway, "sending started");
    gateway.kill();
    let at_kill = ledger(&redis).len();
    assert!(at_kill < MESSAGES, "killed mid-way ({at_kill} sent)");
    assert!(blobs() > 0, "the unsent images' bytes wait in Redis");

    gateway.restart();
    let all_sent = eventually(std::time::Duration::from_secs(120), || async {
        ledger(&redis).len() >= accepted.len()
    })
    .await;
    let sends = ledger(&redis);
    assert!(
        all_sent,
        "{} of {} sent after the restart\n{}",
        sends.len(),
        accepted.len(),
        gateway.log()
    );
    assert!(accepted.iter().all(|id| sends.contains_key(id)));
    let resent = sends.values().filter(|n| **n > 1).count();
    assert!(
        resent <= IN_FLIGHT,
        "{resent} sent twice: more than were in flight"
    );
    let gone = eventually(PATIENCE, || async { blobs() == 0 }).await;
    assert!(gone, "{} blobs left after every send", blobs());
    eprintln!("sigkill media: {MESSAGES} accepted, {at_kill} sent before the kill, {resent} twice");
    gateway.terminate();
}
