//! With Redis: sessions come back after a restart as they were (linked ones
//! reconnect without a QR, unlinked ones show a QR, deleted and logged-out
//! ones stay gone, stopped ones stay stopped), the cache keys exist, and a
//! Redis outage is reported, refused with 503 and recovered from without a
//! restart, losing nothing accepted before it.

use serde_json::json;
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::helpers::{eventually, redis_config, spawn, PATIENCE};

const TO: &str = "5215512345678";

#[actix_rt::test]
async fn sessions_survive_a_restart_as_they_were() {
    let redis = RedisServer::start();
    let gw = spawn(redis_config(&redis)).await;
    gw.link("linked").await;
    gw.create("unlinked").await;
    gw.wait_state("unlinked", "qr").await;
    gw.create("deleted").await;
    assert_eq!(
        gw.request("DELETE", "/sessions/deleted", None).await.status,
        200
    );
    gw.link("gone").await;
    let r = gw.post("/sessions/gone/simulate/logout", json!({})).await;
    assert_eq!(r.status, 200);
    gw.wait_state("gone", "logged_out").await;
    gw.link("paused").await;
    assert_eq!(
        gw.post("/sessions/paused/stop", json!({})).await.status,
        200
    );
    gw.wait_state("paused", "stopped").await;
    // The cache layer holds the seed's keys while sessions live.
    let status = redis.command(&["GET", "session:{linked}:status"]);
    assert!(
        status.as_text().unwrap_or_default().contains("\"active\""),
        "{status:?}"
    );
    let cache = gw.get("/metrics/cache").await.json();
    assert!(
        cache["metrics"]["sessionKeys"].as_u64().unwrap() >= 3,
        "{cache}"
    );
    gw.shutdown().await;

    let laravel = FakeLaravel::start();
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 50;
    let gw = spawn(config).await;
    gw.wait_state("linked", "connected").await;
    gw.wait_state("unlinked", "qr").await;
    gw.wait_state("paused", "stopped").await;
    for id in ["deleted", "gone"] {
        assert_eq!(gw.get(&format!("/sessions/{id}")).await.status, 404, "{id}");
    }
    let health = gw.get("/health").await.json();
    assert_eq!(health["restore"]["found"], 3, "{health}");
    // The linked session reconnected from its stored credentials: no QR.
    laravel
        .wait_for(PATIENCE, |_| !laravel.requests_to("/qr/batch").is_empty())
        .await;
    let qr_sessions: Vec<String> = laravel
        .requests_to("/qr/batch")
        .into_iter()
        .filter_map(|r| r.json)
        .flat_map(|j| j["qrs"].as_array().cloned().unwrap_or_default())
        .map(|q| q["sessionId"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        qr_sessions.iter().all(|s| s == "unlinked"),
        "{qr_sessions:?}"
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_redis_outage_is_survived_without_a_restart() {
    let mut redis = RedisServer::start();
    let gw = spawn(redis_config(&redis)).await;
    gw.link("o1").await;
    let before = gw.send_text("o1", TO, "before the outage").await;
    assert_eq!(before.status, 202);
    let before = before.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("o1", &before, "sent").await;

    redis.stop();
    let noticed = eventually(PATIENCE, || async {
        gw.get("/health/ready").await.status == 503
    })
    .await;
    assert!(noticed, "ready fails while Redis is down");
    let health = gw.get("/health").await.json();
    assert_eq!(health["redis"]["connected"], false, "{health}");
    let refused = gw.send_text("o1", TO, "during the outage").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error_code(), "store_unavailable");
    assert!(refused.headers.get("retry-after").is_some());
    // The gateway itself keeps serving.
    assert_eq!(gw.state_of("o1").await, "connected");

    redis.start_again();
    let back = eventually(PATIENCE, || async {
        gw.get("/health/ready").await.status == 200
    })
    .await;
    assert!(back, "ready again once Redis is back");
    let after = gw.send_text("o1", TO, "after the outage").await;
    assert_eq!(
        after.status,
        202,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    let after = after.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("o1", &after, "sent").await;
    // Accepted before the outage: still there.
    gw.wait_message("o1", &before, "sent").await;
    gw.shutdown().await;
}
