//! Supervision: a panicking Session is restarted with backoff; one that
//! keeps crashing ends `failed`, and Laravel hears it.

use serde_json::json;
use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, spawn, test_config, PATIENCE};
use crate::lifecycle::statuses_for;

#[actix_rt::test]
async fn a_crashed_session_is_restarted_and_a_flapping_one_fails() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.sessions.restart_max = 3;
    config.sessions.restart_window_secs = 600;
    config.sessions.restart_backoff_base_ms = 20;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;

    // A linked session crashes and comes back linked (credentials kept).
    gw.create("steady").await;
    gw.wait_state("steady", "qr").await;
    assert_eq!(
        gw.post("/sessions/steady/simulate/scan", json!({}))
            .await
            .status,
        200
    );
    gw.wait_state("steady", "connected").await;
    assert_eq!(
        gw.post("/sessions/steady/simulate/crash", json!({}))
            .await
            .status,
        202
    );
    let back = eventually(PATIENCE, || async {
        let s = gw.get("/sessions/steady").await.json();
        s["restarts"] == 1 && s["state"] == "connected"
    })
    .await;
    assert!(
        back,
        "restarted: {}",
        gw.get("/sessions/steady").await.json()
    );

    // A flapping session: every restart crashes again, until it is failed.
    gw.create("flappy").await;
    for round in 1..=4u64 {
        gw.wait_state("flappy", "qr").await;
        assert_eq!(
            gw.post("/sessions/flappy/simulate/crash", json!({}))
                .await
                .status,
            202
        );
        if round < 4 {
            let restarted = eventually(PATIENCE, || async {
                let s = gw.get("/sessions/flappy").await.json();
                s["restarts"] == round && s["state"] == "qr"
            })
            .await;
            assert!(
                restarted,
                "round {round}: {}",
                gw.get("/sessions/flappy").await.json()
            );
        }
    }
    gw.wait_state("flappy", "failed").await;
    let reason = gw.get("/sessions/flappy").await.json()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("too many restarts"), "{reason}");
    assert!(
        laravel
            .wait_for(PATIENCE, |_| statuses_for(&laravel, "flappy")
                .iter()
                .any(|(s, p, _)| s == "failed" && p == "high"))
            .await
    );
    // A failed session can be restarted by hand.
    assert_eq!(
        gw.post("/sessions/flappy/restart", json!({})).await.status,
        202
    );
    gw.wait_state("flappy", "qr").await;
    // The steady one was not disturbed.
    assert_eq!(gw.state_of("steady").await, "connected");
    gw.shutdown().await;
}

/// The idle sweep forgets only sessions that never linked: a linked account
/// with no traffic for longer than `SESSION_IDLE_TTL` stays connected, with
/// its record and credentials in Redis (the phone still lists the device).
#[actix_rt::test]
async fn idle_sweep_forgets_unlinked_sessions_and_keeps_quiet_linked_ones() {
    let redis = wagate_testkit::RedisServer::start();
    let mut config = crate::helpers::redis_config(&redis);
    config.sessions.idle_ttl_secs = 0; // every unlinked session is idle
    config.sessions.sweep_interval_secs = 3600; // swept when the test says
    config.simulator.qr_rotate_ms = 600_000;
    let gw = spawn(config).await;
    gw.link("quiet").await;
    gw.create("never").await;
    gw.wait_state("never", "qr").await;

    let swept = gw.gateway.registry().sweep().await.expect("registry");
    assert_eq!(swept, 1, "only the never-linked session is swept");
    assert_eq!(gw.get("/sessions/never").await.status, 404);
    assert_eq!(gw.state_of("quiet").await, "connected");
    let creds = redis.command(&["EXISTS", "session:{quiet}:creds"]).as_int();
    assert_eq!(creds, Some(1), "a linked device's credentials stay");
    gw.shutdown().await;
}

/// Nobody calls the sweep here: the registry's own `SESSION_SWEEP_INTERVAL`
/// timer forgets a never-linked session once it has been idle for
/// `SESSION_IDLE_TTL`, while a linked session, just as quiet, stays.
#[actix_rt::test]
async fn the_sweep_timer_forgets_idle_unlinked_sessions_only() {
    let mut config = test_config();
    config.sessions.idle_ttl_secs = 2;
    config.sessions.sweep_interval_secs = 1;
    config.simulator.qr_rotate_ms = 600_000; // no event keeps `never` busy
    let gw = spawn(config).await;
    gw.link("quiet").await;
    gw.create("never").await;
    gw.wait_state("never", "qr").await;

    let swept = eventually(PATIENCE, || async {
        gw.get("/sessions/never").await.status == 404
    })
    .await;
    assert!(swept, "the timer never swept the idle, unlinked session");
    // `quiet` was idle longer than `never` when that sweep ran.
    assert_eq!(gw.state_of("quiet").await, "connected");
    gw.shutdown().await;
}
