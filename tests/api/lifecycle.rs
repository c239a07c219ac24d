//! A session's life as a user sees it: create, QR (JSON, PNG, SVG), scan,
//! connected, incoming message, disconnect and reconnect, logout, delete —
//! and what Laravel receives meanwhile, signed and batched.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, session_ids, spawn, status_items, test_config, PATIENCE};

/// Statuses Laravel received for one session, in arrival order.
pub fn statuses_for(laravel: &FakeLaravel, id: &str) -> Vec<(String, String, u64)> {
    laravel
        .requests_to("/whatsapp/status/batch")
        .iter()
        .filter_map(|r| r.json.clone())
        .flat_map(|j| j["statuses"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["sessionId"] == id)
        .map(|s| {
            (
                s["status"].as_str().unwrap_or_default().to_owned(),
                s["priority"].as_str().unwrap_or_default().to_owned(),
                s["seq"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn has_status(laravel: &FakeLaravel, id: &str, status: &str) -> bool {
    statuses_for(laravel, id)
        .iter()
        .any(|(s, _, _)| s == status)
}

#[actix_rt::test]
async fn newcomer_flow_reaches_laravel_signed() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.token = "secret-token".into();
    config.simulator.qr_rotate_ms = 60_000; // one code stays on screen
    config.batch.interval_ms = 200;
    let gw = spawn(config).await;

    gw.create("shop-1").await;
    gw.wait_state("shop-1", "qr").await;

    let qr = gw.get("/sessions/shop-1/qr").await;
    assert_eq!(qr.status, 200);
    let qr = qr.json();
    let code = qr["qr"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = code.split(',').collect();
    assert_eq!(parts.len(), 4, "WhatsApp's ref,key,key,key shape: {code}");
    assert!(qr["dataUrl"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert!(qr["expiresAt"].as_str().unwrap().ends_with('Z'));

    let png = gw.get("/sessions/shop-1/qr?format=png").await;
    assert_eq!(png.status, 200);
    assert_eq!(png.headers.get("content-type").unwrap(), "image/png");
    assert_eq!(&png.body[..8], b"\x89PNG\r\n\x1a\n");
    let svg = gw.get("/sessions/shop-1/qr?format=svg").await;
    assert_eq!(svg.headers.get("content-type").unwrap(), "image/svg+xml");
    assert!(String::from_utf8_lossy(&svg.body).contains("</svg>"));

    // Laravel gets the QR (as a PNG data URL) in a batch, signed.
    assert!(
        laravel
            .wait_for(PATIENCE, |reqs| reqs
                .iter()
                .any(|r| r.path.ends_with("/qr/batch")))
            .await
    );
    let batch = laravel.requests_to("/qr/batch").remove(0);
    let item = &batch.json.as_ref().unwrap()["qrs"][0];
    assert_eq!(item["sessionId"], "shop-1");
    assert_eq!(item["status"], "qr");
    assert!(item["qr"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(batch.headers["authorization"], "Bearer secret-token");
    assert!(!batch.headers["idempotency-key"].is_empty());
    // Signature v2 (the default): timestamp, Idempotency-Key and body.
    let ts = &batch.headers["x-wagate-timestamp"];
    let key = &batch.headers["idempotency-key"];
    let mut mac = Hmac::<Sha256>::new_from_slice(b"secret-token").unwrap();
    mac.update(format!("{ts}.{key}.").as_bytes());
    mac.update(&batch.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(batch.headers["x-wagate-signature"], expected);
    assert_eq!(batch.headers["x-wagate-signature-version"], "2");

    // Scan → connected → `active` with high priority.
    let scan = gw.post("/sessions/shop-1/simulate/scan", json!({})).await;
    assert_eq!(scan.status, 200);
    gw.wait_state("shop-1", "connected").await;
    assert!(
        laravel
            .wait_for(PATIENCE, |_| has_status(&laravel, "shop-1", "active"))
            .await
    );
    let active = statuses_for(&laravel, "shop-1")
        .into_iter()
        .find(|s| s.0 == "active")
        .unwrap();
    assert_eq!(active.1, "high");
    let no_qr = gw.get("/sessions/shop-1/qr").await;
    assert_eq!(no_qr.status, 404);
    assert_eq!(no_qr.error_code(), "qr_not_available");

    // Incoming message → /whatsapp/messages/batch.
    let r = gw
        .post(
            "/sessions/shop-1/simulate/incoming",
            json!({ "from": "5215550001@s.whatsapp.net", "text": "hola" }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        laravel
            .wait_for(PATIENCE, |reqs| reqs.iter().any(|r| r
                .path
                .ends_with("/whatsapp/messages/batch")
                && r.json.as_ref().is_some_and(|j| {
                    let m = &j["messages"][0];
                    // A direct chat: answer the sender; a text.
                    m["text"] == "hola"
                        && m["chat"] == "5215550001@s.whatsapp.net"
                        && m["isGroup"] == false
                        && m["kind"] == "text"
                        && m.get("originalType").is_none()
                })))
            .await
    );

    // Transient drop: inactive, then active again by itself.
    let r = gw
        .post(
            "/sessions/shop-1/simulate/disconnect",
            json!({ "reason": "wifi" }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        laravel
            .wait_for(PATIENCE, |_| statuses_for(&laravel, "shop-1")
                .iter()
                .filter(|s| s.0 == "active")
                .count()
                == 2)
            .await,
        "reconnects: {:?}",
        statuses_for(&laravel, "shop-1")
    );

    // Logout from the phone: logged_out, terminal; a restart shows a QR again.
    assert_eq!(
        gw.post("/sessions/shop-1/simulate/logout", json!({}))
            .await
            .status,
        200
    );
    gw.wait_state("shop-1", "logged_out").await;
    assert!(
        laravel
            .wait_for(PATIENCE, |_| has_status(&laravel, "shop-1", "logged_out"))
            .await
    );
    assert_eq!(
        gw.post("/sessions/shop-1/restart", json!({})).await.status,
        202
    );
    gw.wait_state("shop-1", "qr").await;

    // Delete: gone, and Laravel hears `stopped`.
    let del = gw.request("DELETE", "/sessions/shop-1", None).await;
    assert_eq!(del.status, 200);
    assert_eq!(gw.get("/sessions/shop-1").await.status, 404);
    assert!(
        laravel
            .wait_for(PATIENCE, |_| has_status(&laravel, "shop-1", "stopped"))
            .await
    );

    // Every session's statuses arrived in seq order.
    let seqs: Vec<u64> = statuses_for(&laravel, "shop-1")
        .iter()
        .map(|s| s.2)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn gateway_logout_and_stop_and_listing() {
    let gw = spawn(test_config()).await;
    for id in ["c", "a", "b"] {
        gw.create(id).await;
    }
    gw.wait_state("a", "qr").await;
    assert_eq!(
        gw.post("/sessions/a/simulate/scan", json!({})).await.status,
        200
    );
    gw.wait_state("a", "connected").await;

    let page: Value = gw.get("/sessions?limit=2").await.json();
    assert_eq!(session_ids(&page), ["a", "b"]);
    assert_eq!(page["total"], 3);
    assert_eq!(page["next"], "b");
    let rest: Value = gw.get("/sessions?limit=2&after=b").await.json();
    assert_eq!(rest["sessions"][0]["id"], "c");
    assert!(rest["next"].is_null());
    let connected: Value = gw.get("/sessions?state=connected").await.json();
    assert_eq!(connected["sessions"].as_array().unwrap().len(), 1);

    assert_eq!(gw.post("/sessions/a/logout", json!({})).await.status, 202);
    gw.wait_state("a", "logged_out").await;
    // Logging out twice: the session is no longer running.
    let again = gw.post("/sessions/a/logout", json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "session_not_running");

    assert_eq!(gw.post("/sessions/b/stop", json!({})).await.status, 200);
    gw.wait_state("b", "stopped").await;
    let scan = gw.post("/sessions/b/simulate/scan", json!({})).await;
    assert_eq!(scan.status, 409, "a stopped session cannot be scanned");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn sigterm_drain_flushes_pending_batches() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 600_000; // nothing would flush on its own
    config.simulator.qr_first_ms = 600_000;
    let gw = spawn(config).await;
    for i in 0..5 {
        gw.create(&format!("s{i}")).await;
    }
    let pending = eventually(PATIENCE, || async {
        gw.get("/metrics/batch").await.json()["metrics"]["statusBatchSize"] == 5
    })
    .await;
    assert!(pending, "5 `starting` statuses wait in the normal lane");
    assert!(laravel.requests_to("/whatsapp/status/batch").is_empty());
    gw.shutdown().await;
    // The drain sent them before the gateway returned.
    let sent = status_items(&laravel.requests_to("/whatsapp/status/batch"));
    assert_eq!(sent, 5);
    let _ = Duration::ZERO;
}

#[actix_rt::test]
async fn legacy_mode_sends_one_request_per_event() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.legacy = true;
    config.laravel.qr_format = wagate::config::QrFormatSetting::Raw;
    config.simulator.qr_count = 3;
    let gw = spawn(config).await;
    gw.create("old").await;
    gw.wait_state("old", "stopped").await; // 3 codes, then exhausted
    assert!(
        laravel
            .wait_for(PATIENCE, |reqs| reqs
                .iter()
                .filter(|r| r.path.ends_with("/qr"))
                .count()
                == 3)
            .await
    );
    assert!(laravel.requests_to("/qr/batch").is_empty());
    assert!(laravel.requests_to("/whatsapp/status/batch").is_empty());
    // Per QR: POST /qr + POST /whatsapp/status; plus starting and stopped.
    assert!(
        laravel
            .wait_for(PATIENCE, |reqs| reqs
                .iter()
                .filter(|r| r.path.ends_with("/whatsapp/status"))
                .count()
                == 5)
            .await,
        "got {:?}",
        laravel
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    gw.shutdown().await;
}

/// Linking by phone number: a pairing code instead of a QR; entering it on
/// the phone (the simulator's `scan`) links the session. Bad phones and
/// linked sessions are refused.
#[actix_rt::test]
async fn pairing_code_links_without_a_qr_scan() {
    let mut config = test_config();
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;
    gw.create("pc1").await;
    gw.wait_state("pc1", "qr").await;

    let bad = gw
        .post("/sessions/pc1/pairing-code", json!({ "phone": "12ab" }))
        .await;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_body")
    );
    let r = gw
        .post(
            "/sessions/pc1/pairing-code",
            json!({ "phone": "+5215512345678" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let code = r.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(&code[4..5], "-");
    let shown = eventually(PATIENCE, || async {
        gw.get("/sessions/pc1").await.json()["pairCode"] == code.as_str()
    })
    .await;
    assert!(shown, "the code is part of the session");

    let typed = gw.post("/sessions/pc1/simulate/scan", json!({})).await;
    assert_eq!(typed.status, 200);
    gw.wait_state("pc1", "connected").await;
    assert_eq!(
        gw.get("/sessions/pc1").await.json()["pairCode"],
        Value::Null
    );
    let again = gw
        .post(
            "/sessions/pc1/pairing-code",
            json!({ "phone": "5215512345678" }),
        )
        .await;
    assert_eq!(
        again.status,
        409,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let missing = gw
        .post(
            "/sessions/nobody/pairing-code",
            json!({ "phone": "5215512345678" }),
        )
        .await;
    assert_eq!(missing.status, 404);
    gw.shutdown().await;
}
