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
    // Counted by a background task: wait for a count that sees them.
    let counted = eventually(PATIENCE, || async {
        let cache = gw.get("/metrics/cache").await.json();
        cache["metrics"]["sessionKeys"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert!(counted, "{}", gw.get("/metrics/cache").await.json());
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
    let metrics = || async { String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap() };
    assert!(metrics().await.contains("wagate_redis_up 0"));
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
    let up = eventually(PATIENCE, || async {
        metrics().await.contains("wagate_redis_up 1")
    })
    .await;
    assert!(up, "wagate_redis_up is 1 again");
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

/// Laravel and Redis down together: batches the Redis outbox cannot take
/// wait in memory, move to the outbox when Redis is back, and reach Laravel
/// in order when it is back too.
#[actix_rt::test]
async fn batches_survive_laravel_and_redis_down_together() {
    let mut redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    laravel.set_status(503);
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.breaker.threshold = 1;
    config.breaker.reset_ms = 200;
    config.batch.interval_ms = 50;
    let gw = spawn(config).await;
    gw.link("both").await;
    let held = eventually(PATIENCE, || async {
        redis
            .command(&["LLEN", "wagate:outbox"])
            .as_int()
            .unwrap_or(0)
            > 0
    })
    .await;
    assert!(held, "held in the Redis outbox while Laravel is down");

    let held_count = || async {
        gw.get("/health").await.json()["queues"]["outbox"]["held"]
            .as_u64()
            .unwrap()
    };
    let before = held_count().await;
    redis.stop();
    let r = gw
        .post("/sessions/both/simulate/disconnect", json!({}))
        .await;
    assert_eq!(r.status, 200);
    gw.wait_state("both", "connected").await; // reconnected: inactive, active
    let spilled = eventually(PATIENCE, || async { held_count().await > before }).await;
    assert!(spilled, "new batches are held while Redis is down");
    redis.start_again();
    laravel.set_status(200);
    let words = || {
        laravel
            .requests_to("/whatsapp/status/batch")
            .into_iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| r.json)
            .flat_map(|j| j["statuses"].as_array().cloned().unwrap_or_default())
            .map(|s| s["status"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all = laravel.wait_for(PATIENCE, |_| words().len() >= 4).await;
    assert!(all, "got {:?}", words());
    assert_eq!(words(), ["starting", "active", "inactive", "active"]);
    gw.shutdown().await;
}

/// The same gateway on a Redis Cluster (3 masters) and through a Sentinel:
/// sessions link, messages go out, key counts come from every master, and
/// sessions come back after a restart.
#[actix_rt::test]
async fn works_on_redis_cluster_and_sentinel() {
    let cluster = wagate_testkit::RedisCluster::start(3);
    let mut config = crate::helpers::test_config();
    config.store.kind = wagate::config::StoreKind::Redis;
    config.redis.cluster = true;
    config.redis.nodes = cluster.nodes_setting();
    let gw = spawn(config.clone()).await;
    for id in ["c0", "c1", "c2", "c3"] {
        gw.link(id).await;
        let r = gw.send_text(id, TO, "via the cluster").await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let mid = r.json()["messageId"].as_str().unwrap().to_owned();
        gw.wait_message(id, &mid, "sent").await;
    }
    let counted = eventually(PATIENCE, || async {
        let cache = gw.get("/metrics/cache").await.json();
        cache["metrics"]["sessionKeys"] == 4 && cache["metrics"]["statusKeys"] == 4
    })
    .await;
    assert!(counted, "{}", gw.get("/metrics/cache").await.json());
    gw.shutdown().await;
    let gw = spawn(config).await;
    for id in ["c0", "c1", "c2", "c3"] {
        gw.wait_state(id, "connected").await;
    }
    gw.shutdown().await;

    let master = RedisServer::start();
    let sentinel = wagate_testkit::start_sentinel(&master);
    let mut config = crate::helpers::test_config();
    config.store.kind = wagate::config::StoreKind::Redis;
    config.redis.sentinel = true;
    config.redis.sentinel_urls = format!("127.0.0.1:{}", sentinel.port());
    let gw = spawn(config).await;
    gw.link("s0").await;
    let r = gw.send_text("s0", TO, "via the sentinel's master").await;
    assert_eq!(r.status, 202);
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("s0", &mid, "sent").await;
    assert_eq!(
        master
            .command(&["SISMEMBER", "wagate:sessions", "s0"])
            .as_int(),
        Some(1),
        "the record is on the master"
    );
    gw.shutdown().await;
}

/// Restore is paced: with RESTORE_RATE=10 per second, 30 stored sessions
/// do not all start at once, and all are back in the end.
#[actix_rt::test]
async fn restore_runs_at_a_bounded_rate() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config.clone()).await;
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    for id in &ids {
        gw.create(id).await;
    }
    gw.shutdown().await;

    config.store.restore_rate = 10;
    let gw = spawn(config).await;
    let started_first = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["restore"]["loaded"] == true
    })
    .await;
    assert!(started_first);
    let health = gw.get("/health").await.json();
    assert_eq!(health["restore"]["found"], 30);
    assert!(
        health["restore"]["pending"].as_u64().unwrap() > 0,
        "30 sessions at 10/s are not all started at once: {health}"
    );
    let done = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["restore"]["pending"] == 0
    })
    .await;
    assert!(done, "restore finishes");
    for id in &ids {
        gw.wait_state(id, "qr").await;
    }
    gw.shutdown().await;
}
