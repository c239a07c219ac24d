//! Connector contract: the same scenarios against the simulator and against
//! the real WhatsApp Web client talking to `FakeWhatsApp`, an in-process
//! server that speaks WhatsApp's handshake and nodes and plays the phone.
//! What the HTTP API and Laravel see must not depend on the connector.

use std::time::Duration;

use base64::Engine;
use tempfile::TempDir;
use wagate::config::Config;
use wagate_actors::ids::SessionId;
use wagate_testkit::{FakeLaravel, FakeWhatsApp};

use crate::helpers::{eventually, spawn, test_config, TestGateway};
use crate::lifecycle::statuses_for;
use crate::whatsapp_offline::whatsapp_config;

/// The real client's linking takes a restart (515) and a login sequence.
const LINKING: Duration = Duration::from_secs(60);

/// The phone's side of a scenario, for either connector.
enum Phone {
    Simulator,
    WhatsApp { server: FakeWhatsApp, data: TempDir },
}

impl Phone {
    fn simulator() -> Self {
        Phone::Simulator
    }

    fn whatsapp() -> Self {
        Phone::WhatsApp {
            server: FakeWhatsApp::start(),
            data: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self, laravel: &FakeLaravel) -> Config {
        let mut c = match self {
            Phone::Simulator => {
                let mut c = test_config();
                c.simulator.qr_rotate_ms = 60_000;
                c
            }
            Phone::WhatsApp { server, data } => whatsapp_config(data, Some(server.url())),
        };
        c.laravel.api = laravel.base_url();
        c.batch.interval_ms = 200;
        c
    }

    /// Scans the QR on screen; returns the linked account's phone number.
    async fn scan(&self, gw: &TestGateway, id: &str, qr: &str) -> String {
        match self {
            Phone::Simulator => {
                gw.simulate(id, "scan").await;
                gw.wait_state(id, "connected").await;
                jid_user(&gw.get(&format!("/sessions/{id}")).await.json()["jid"])
            }
            Phone::WhatsApp { server, .. } => {
                let jid = server.scan(qr).expect("the fake phone pairs");
                jid.split('@').next().unwrap_or_default().to_owned()
            }
        }
    }

    /// The user unlinks the device from the phone (WhatsApp answers 401).
    async fn unlink(&self, gw: &TestGateway, id: &str, user: &str) {
        match self {
            Phone::Simulator => gw.simulate(id, "logout").await,
            Phone::WhatsApp { server, .. } => server.log_out(user),
        }
    }
}

fn jid_user(jid: &serde_json::Value) -> String {
    jid.as_str()
        .unwrap_or_default()
        .split(['@', ':'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// WhatsApp's QR payload: `ref,noiseKey,identityKey,advSecret[,platform]`,
/// each key 32 bytes of base64.
fn assert_whatsapp_qr(code: &str) {
    let fields: Vec<&str> = code.split(',').collect();
    assert!(fields.len() >= 4, "ref and three keys: {code}");
    assert!(!fields[0].is_empty(), "a ref: {code}");
    for key in &fields[1..4] {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap_or_default();
        assert_eq!(bytes.len(), 32, "32-byte key {key:?} in {code}");
    }
}

async fn wait_state_within(gw: &TestGateway, id: &str, state: &str, within: Duration) {
    let ok = eventually(within, || async { gw.state_of(id).await == state }).await;
    assert!(
        ok,
        "{id} never reached {state}: {}",
        gw.get(&format!("/sessions/{id}")).await.json()
    );
}

/// Create → QR in `GET /qr` → scan → connected (the real client: `pairing`,
/// stream error 515, reconnect, login, presence `unavailable`) → the phone unlinks (401) →
/// `logged_out`, credentials gone, a high-priority `logged_out` at Laravel.
async fn link_and_unlink(phone: Phone) {
    let laravel = FakeLaravel::start();
    let mut config = phone.config(&laravel);
    // Every unlinked session counts as idle; the sweep runs when we say.
    config.sessions.idle_ttl_secs = 0;
    config.sessions.sweep_interval_secs = 3600;
    let gw = spawn(config).await;
    let id = "contract-1";

    gw.create(id).await;
    gw.wait_state(id, "qr").await;
    let qr = gw.get(&format!("/sessions/{id}/qr")).await;
    assert_eq!(qr.status, 200);
    let code = qr.json()["qr"].as_str().unwrap_or_default().to_owned();
    assert_whatsapp_qr(&code);
    let png = gw.get(&format!("/sessions/{id}/qr?format=png")).await;
    assert_eq!(png.status, 200);
    assert!(png.body.starts_with(b"\x89PNG"), "a PNG image");

    let user = phone.scan(&gw, id, &code).await;
    wait_state_within(&gw, id, "connected", LINKING).await;
    let session = gw.get(&format!("/sessions/{id}")).await.json();
    assert_eq!(jid_user(&session["jid"]), user, "{session}");
    let sid = SessionId::parse(id).expect("valid id");
    let stored = gw
        .gateway
        .store()
        .load_credentials(&sid)
        .await
        .expect("store");
    assert!(stored.is_some(), "linked credentials are stored");
    let linked = eventually(Duration::from_secs(20), || async {
        statuses_for(&laravel, id)
            .iter()
            .any(|(s, _, _)| s == "active")
    })
    .await;
    assert!(linked, "Laravel hears `active`");
    let heard = statuses_for(&laravel, id);
    let storm: Vec<&String> = heard
        .iter()
        .map(|(s, _, _)| s)
        .filter(|s| !["starting", "pairing", "active"].contains(&s.as_str()))
        .collect();
    assert!(
        storm.is_empty(),
        "linking (and the real client's 515 restart) is no news: {storm:?}"
    );
    if let Phone::WhatsApp { server, .. } = &phone {
        // PairSuccess → `pairing` (normal lane, QR gone) → login → `active`.
        let pairing = heard
            .iter()
            .position(|(s, p, _)| s == "pairing" && p == "normal");
        let active = heard.iter().position(|(s, _, _)| s == "active");
        assert!(
            pairing.is_some() && pairing < active,
            "the real client is heard pairing before active: {heard:?}"
        );
        // The crate announces `available`; the gateway then says
        // `unavailable` so the phone keeps its notifications.
        let quiet = eventually(Duration::from_secs(20), || async {
            server.presences(&user).last().map(String::as_str) == Some("unavailable")
        })
        .await;
        assert!(quiet, "presences announced: {:?}", server.presences(&user));
    }

    // A linked account, however quiet, is never forgotten by the idle sweep.
    let swept = gw.gateway.registry().sweep().await.expect("registry");
    assert_eq!(swept, 0, "a linked session is not idle-expired");
    assert_eq!(gw.state_of(id).await, "connected");
    let kept = gw
        .gateway
        .store()
        .load_credentials(&sid)
        .await
        .expect("store");
    assert!(
        kept.is_some(),
        "the sweep keeps a linked device's credentials"
    );

    phone.unlink(&gw, id, &user).await;
    wait_state_within(&gw, id, "logged_out", Duration::from_secs(20)).await;
    let heard = eventually(Duration::from_secs(20), || async {
        statuses_for(&laravel, id)
            .iter()
            .any(|(s, p, _)| s == "logged_out" && p == "high")
    })
    .await;
    assert!(
        heard,
        "high-priority logged_out at Laravel: {:?}",
        statuses_for(&laravel, id)
    );
    let deleted = eventually(Duration::from_secs(10), || async {
        gw.gateway
            .store()
            .load_credentials(&sid)
            .await
            .is_ok_and(|c| c.is_none())
    })
    .await;
    assert!(deleted, "a logged-out device's credentials are deleted");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn simulator_links_and_unlinks() {
    link_and_unlink(Phone::simulator()).await;
}

#[actix_rt::test]
async fn whatsapp_web_links_and_unlinks_against_the_fake_server() {
    let phone = Phone::whatsapp();
    link_and_unlink(phone).await;
}

/// A linked real-client session survives a gateway restart: the Redis store
/// keeps its credentials (the device id), `DATA_DIR` its keys, and the new
/// gateway logs in again without a QR (the client tries IK with the server
/// key it cached; the fake server answers with XXfallback).
#[actix_rt::test]
async fn whatsapp_web_resumes_a_linked_session_after_a_restart() {
    let redis = wagate_testkit::RedisServer::start();
    let server = FakeWhatsApp::start();
    let data = tempfile::tempdir().expect("tempdir");
    let config = || {
        let mut c = whatsapp_config(&data, Some(server.url()));
        let durable = crate::helpers::redis_config(&redis);
        c.store = durable.store;
        c.redis = durable.redis;
        c
    };
    let id = "resume-1";

    let gw = spawn(config()).await;
    link(&gw, &server, id).await;
    gw.shutdown().await;

    let logins = server
        .stats()
        .logins
        .load(std::sync::atomic::Ordering::SeqCst);
    let gw = spawn(config()).await;
    wait_state_within(&gw, id, "connected", LINKING).await;
    let session = gw.get(&format!("/sessions/{id}")).await.json();
    assert!(
        session["jid"]
            .as_str()
            .is_some_and(|j| j.ends_with("@s.whatsapp.net")),
        "the resumed session names its account: {session}"
    );
    let stats = server.stats();
    assert_eq!(
        stats
            .registrations
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no new pairing after the restart"
    );
    assert!(stats.logins.load(std::sync::atomic::Ordering::SeqCst) > logins);
    gw.shutdown().await;
}

/// WhatsApp refuses the connection for good (409, bad user agent): the
/// client's run loop ends, the session does not sit there silently — it
/// reports why, the registry's restart policy applies, and with no restarts
/// left it ends `failed` with the reason, which Laravel hears at once.
#[actix_rt::test]
async fn whatsapp_web_refused_connection_ends_failed_with_the_reason() {
    let laravel = FakeLaravel::start();
    let phone = Phone::whatsapp();
    let mut config = phone.config(&laravel);
    config.sessions.restart_max = 1;
    config.sessions.restart_backoff_base_ms = 100;
    let Phone::WhatsApp { server, .. } = &phone else {
        unreachable!("built as the real client")
    };
    server.refuse_connects("409");
    let gw = spawn(config).await;
    let id = "refused-1";
    gw.create(id).await;
    wait_state_within(&gw, id, "failed", LINKING).await;
    let session = gw.get(&format!("/sessions/{id}")).await.json();
    let reason = session["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("409"),
        "the reason names the failure: {session}"
    );
    let connections = server
        .stats()
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 2, "one connect, one restart, then no more");
    let failed_heard = || {
        laravel
            .requests_to("/whatsapp/status/batch")
            .iter()
            .filter_map(|r| r.json.clone())
            .flat_map(|j| j["statuses"].as_array().cloned().unwrap_or_default())
            .any(|s| {
                s["sessionId"] == id
                    && s["status"] == "failed"
                    && s["priority"] == "high"
                    && s["reason"].as_str().is_some_and(|r| r.contains("409"))
            })
    };
    let heard = eventually(Duration::from_secs(20), || async { failed_heard() }).await;
    assert!(
        heard,
        "Laravel hears `failed` with the reason: {:?}",
        statuses_for(&laravel, id)
    );
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains("wagate_connector_incoming_total{kind=\"status_dropped\"} 0"),
        "the incoming-traffic counters are exported"
    );
    gw.shutdown().await;
}

/// Links a real-client session against `server`; returns its phone number.
pub(crate) async fn link(gw: &TestGateway, server: &FakeWhatsApp, id: &str) -> String {
    gw.create(id).await;
    gw.wait_state(id, "qr").await;
    let code = gw.get(&format!("/sessions/{id}/qr")).await.json()["qr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let jid = server.scan(&code).expect("the fake phone pairs");
    wait_state_within(gw, id, "connected", LINKING).await;
    jid.split('@').next().unwrap_or_default().to_owned()
}

/// Restarting a linked session logs it in again each time and WhatsApp never
/// sees two connections of the account at once (with the fake the old client
/// lets go fast, so `whatsapp_device` pins the per-device lock itself). A
/// code-less stream error on the way is logged, not a disconnect.
#[actix_rt::test]
async fn whatsapp_web_restarts_relink_without_overlap_and_stream_errors_are_no_disconnect() {
    let laravel = FakeLaravel::start();
    let phone = Phone::whatsapp();
    let config = phone.config(&laravel);
    let Phone::WhatsApp { server, .. } = &phone else {
        unreachable!("built as the real client")
    };
    let gw = spawn(config).await;
    let id = "one-client-1";
    let user = link(&gw, server, id).await;
    let logins = || {
        server
            .stats()
            .logins
            .load(std::sync::atomic::Ordering::SeqCst)
    };

    for round in 1..=3 {
        let before = logins();
        let r = gw
            .request("POST", &format!("/sessions/{id}/restart"), None)
            .await;
        assert!(
            r.status < 300,
            "restart: {}",
            String::from_utf8_lossy(&r.body)
        );
        let again = eventually(LINKING, || async { logins() > before }).await;
        assert!(again, "round {round}: the new client logged in");
        wait_state_within(&gw, id, "connected", LINKING).await;
    }
    assert_eq!(
        server.peak_connections(&user),
        1,
        "two clients of one device were connected at once"
    );

    // A code-less stream error, then the phone unlinks on the same
    // connection: by the time `logged_out` is heard the first was handled,
    // and it was no `inactive`.
    let heard_before = statuses_for(&laravel, id).len();
    server.stream_error(&user, None);
    server.log_out(&user);
    wait_state_within(&gw, id, "logged_out", Duration::from_secs(20)).await;
    let after: Vec<String> = statuses_for(&laravel, id)
        .into_iter()
        .skip(heard_before)
        .map(|(s, _, _)| s)
        .collect();
    assert!(
        !after.iter().any(|s| s == "inactive"),
        "a code-less stream error is not a disconnect: {after:?}"
    );
    gw.shutdown().await;
}
