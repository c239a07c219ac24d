//! Laravel failing: the breaker opens after the threshold, /health says
//! DEGRADED, Laravel sees at most one probe per reset interval, and after
//! recovery every status arrives, in order, none lost.

use std::time::{Duration, Instant};

use serde_json::json;
use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

/// Statuses of one session Laravel accepted (2xx), in arrival order.
fn accepted_statuses(laravel: &FakeLaravel, id: &str) -> Vec<(String, u64)> {
    laravel
        .requests_to("/whatsapp/status/batch")
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .flat_map(|r| {
            r.json.unwrap()["statuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|s| s["sessionId"] == id)
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_owned(),
                s["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn breaker_opens_probes_sparingly_and_nothing_is_lost() {
    const RESET: Duration = Duration::from_millis(1000);
    let laravel = FakeLaravel::start();
    laravel.set_status(500);
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.breaker.threshold = 3;
    config.breaker.reset_ms = RESET.as_millis() as u64;
    config.batch.interval_ms = 100;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;

    let ids: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    for id in &ids {
        gw.create(id).await;
    }
    let opened = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["circuitBreaker"]["state"] == "OPEN"
    })
    .await;
    assert!(opened, "the breaker opens after 3 failures");
    let health = gw.get("/health").await.json();
    assert_eq!(health["status"], "DEGRADED");
    assert!(health["circuitBreaker"]["failureCount"].as_u64().unwrap() >= 3);
    let open_seen = Instant::now();

    // While Laravel is down, sessions link, drop and come back.
    for id in &ids {
        gw.wait_state(id, "qr").await;
        assert_eq!(
            gw.post(&format!("/sessions/{id}/simulate/scan"), json!({}))
                .await
                .status,
            200
        );
    }
    for id in &ids {
        gw.wait_state(id, "connected").await;
        let r = gw
            .post(&format!("/sessions/{id}/simulate/disconnect"), json!({}))
            .await;
        assert_eq!(r.status, 200);
    }
    for id in &ids {
        gw.wait_state(id, "connected").await;
    }
    let held = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["queues"]["outbox"]["held"]
            .as_u64()
            .unwrap()
            > 0
    })
    .await;
    assert!(held, "undeliverable batches wait in the outbox");
    // Let at least two reset intervals pass with the breaker open, observed
    // through the probes Laravel receives (an event, not a sleep).
    let probes_seen = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter()
                .filter(|r| r.at > open_seen + Duration::from_millis(100))
                .count()
                >= 2
        })
        .await;
    assert!(probes_seen, "the breaker keeps probing");
    let recovered_at = Instant::now();
    let during: Vec<Instant> = laravel
        .requests()
        .iter()
        .map(|r| r.at)
        .filter(|t| *t > open_seen + Duration::from_millis(100) && *t < recovered_at)
        .collect();
    for pair in during.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= RESET - Duration::from_millis(50),
            "probes {gap:?} apart; reset is {RESET:?}"
        );
    }

    // Laravel recovers: everything held arrives, in order, once.
    laravel.set_status(200);
    let expected = ["starting", "active", "inactive", "active"];
    let complete = laravel
        .wait_for(PATIENCE, |_| {
            ids.iter()
                .all(|id| accepted_statuses(&laravel, id).len() >= expected.len())
        })
        .await;
    assert!(complete, "b0 got {:?}", accepted_statuses(&laravel, "b0"));
    let closed = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        h["circuitBreaker"]["state"] == "CLOSED" && h["queues"]["outbox"]["held"] == 0
    })
    .await;
    assert!(closed, "the breaker closes and the outbox drains");
    for id in &ids {
        let got = accepted_statuses(&laravel, id);
        let words: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(words, expected, "session {id}");
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1),
            "seq order for {id}: {got:?}"
        );
    }
    // Replays keep their batch ids: no id was accepted twice.
    let mut accepted_ids: Vec<String> = laravel
        .requests()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    let n = accepted_ids.len();
    accepted_ids.sort();
    accepted_ids.dedup();
    assert_eq!(accepted_ids.len(), n, "a batch was delivered twice");
    gw.shutdown().await;
}

/// A redirect (a wrong URL, a login page) is never "delivered": the batch is
/// held and arrives, with its batch id, once Laravel answers 2xx.
#[actix_rt::test]
async fn redirects_are_failures_and_the_batch_is_kept() {
    let laravel = FakeLaravel::start();
    laravel.set_status(302);
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.breaker.threshold = 100;
    config.batch.interval_ms = 50;
    let gw = spawn(config).await;
    gw.create("r1").await;

    let redirected = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter()
                .any(|r| r.status == 302 && r.path.ends_with("/whatsapp/status/batch"))
        })
        .await;
    assert!(redirected, "the first status batch met the redirect");
    let first = laravel.requests_to("/whatsapp/status/batch")[0].clone();
    assert_eq!(first.header("accept"), Some("application/json"));
    let key = first.header("idempotency-key").unwrap().to_owned();

    laravel.set_status(200);
    // Replayed alone it keeps its id; merged with the batches held after it,
    // the merged request lists it in `replaces`.
    let delivered = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter().any(|r| {
                r.status == 200
                    && (r.header("idempotency-key") == Some(key.as_str())
                        || r.json.as_ref().is_some_and(|j| {
                            j["replaces"]
                                .as_array()
                                .is_some_and(|ids| ids.iter().any(|id| id == key.as_str()))
                        }))
            })
        })
        .await;
    assert!(delivered, "the redirected batch is replayed under its id");
    assert_eq!(accepted_statuses(&laravel, "r1")[0].0, "starting");
    gw.shutdown().await;
}
