//! Backpressure from Laravel: a burst of connects meets Laravel's rate limit
//! (429 with `Retry-After`). The gateway waits as asked instead of hammering,
//! the breaker does not open, and once Laravel takes requests again the held
//! backlog drains in full batches (about items / BATCH_SIZE requests), with
//! every session's final status delivered.

use std::time::Instant;

use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, spawn, status_items, test_config, PATIENCE};

const SESSIONS: usize = 30;
const BATCH_SIZE: usize = 10;

/// The last status Laravel accepted for each session, by session id.
fn final_statuses(laravel: &FakeLaravel) -> std::collections::HashMap<String, String> {
    let mut last = std::collections::HashMap::new();
    for r in laravel.requests_to("/whatsapp/status/batch") {
        if r.status != 200 {
            continue;
        }
        for s in r.json.unwrap()["statuses"].as_array().unwrap() {
            last.insert(
                s["sessionId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            );
        }
    }
    last
}

#[actix_rt::test]
async fn retry_after_is_honoured_and_the_backlog_drains_in_full_batches() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 3;
    config.batch.size = BATCH_SIZE;
    // Two failures would open it, for a minute: a 429 must not count.
    config.breaker.threshold = 2;
    config.breaker.reset_ms = 60_000;
    // One QR per session, sent before the burst.
    config.simulator.qr_first_ms = 60_000;
    config.simulator.qr_rotate_ms = 60_000;
    config.batch.interval_ms = 100;
    let gw = spawn(config).await;
    let ids: Vec<String> = (0..SESSIONS).map(|i| format!("p{i}")).collect();
    for id in &ids {
        gw.create(id).await;
    }
    for id in &ids {
        gw.wait_state(id, "qr").await;
    }
    // The QR codes and `starting` statuses reach Laravel first, so what the
    // throttle meets is the burst of connects alone (held batches of
    // another endpoint in between would end a merge: only consecutive
    // batches of one endpoint are merged).
    let settled = laravel
        .wait_for(PATIENCE, |_| {
            let finals = final_statuses(&laravel);
            let qrs: usize = laravel
                .requests_to("/qr/batch")
                .iter()
                .filter(|r| r.status == 200)
                .map(|r| r.json.as_ref().unwrap()["qrs"].as_array().unwrap().len())
                .sum();
            qrs >= SESSIONS && ids.iter().all(|id| finals.contains_key(id))
        })
        .await;
    assert!(settled, "the sessions' QR codes and first statuses arrive");

    // Laravel's throttle kicks in; the burst of connects meets it.
    laravel.set_retry_after(Some("1"));
    laravel.set_status(429);
    let throttle_on = Instant::now();
    for id in &ids {
        gw.simulate(id, "scan").await;
    }
    let throttled = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter()
                .filter(|r| r.at > throttle_on && r.status == 429)
                .count()
                >= 3
        })
        .await;
    assert!(throttled, "Laravel throttled the burst");
    let health = gw.get("/health").await.json();
    assert_eq!(health["circuitBreaker"]["state"], "CLOSED", "{health}");
    assert_eq!(
        health["laravel"]["lastError"]["kind"], "http_429",
        "{health}"
    );
    assert!(
        health["laravel"]["heldBatches"].as_u64() > Some(0),
        "{health}"
    );

    laravel.set_status(200);
    laravel.set_retry_after(None);
    let recovered_at = Instant::now();
    let breaker_left_closed = std::cell::Cell::new(false);
    let all_active = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        if h["circuitBreaker"]["state"] != "CLOSED" {
            breaker_left_closed.set(true);
        }
        let finals = final_statuses(&laravel);
        ids.iter()
            .all(|id| finals.get(id).map(String::as_str) == Some("active"))
            && h["laravel"]["heldBatches"] == 0
    })
    .await;
    assert!(
        all_active,
        "every session's final status arrives: {:?}",
        final_statuses(&laravel)
    );
    assert!(!breaker_left_closed.get(), "the breaker never opened");
    let breaker = gw.get("/health").await.json()["circuitBreaker"].clone();
    assert_eq!(breaker["state"], "CLOSED");
    assert_eq!(breaker["failureCount"], 0, "429s are not breaker failures");

    // Retry-After honoured: about one request per second while throttled
    // (plus the few already in flight when the first 429 came back).
    let requests = laravel.requests();
    let throttled: Vec<_> = requests
        .iter()
        .filter(|r| r.at > throttle_on && r.status == 429)
        .collect();
    let window = recovered_at.duration_since(throttle_on).as_secs_f64();
    assert!(
        (throttled.len() as f64) <= window.ceil() + 3.0,
        "{} throttled requests in {window:.1} s with Retry-After: 1",
        throttled.len()
    );

    // After recovery the backlog goes out in full batches.
    let after: Vec<&wagate_testkit::Received> = requests
        .iter()
        .filter(|r| r.at >= recovered_at && r.path.ends_with("/whatsapp/status/batch"))
        .collect();
    let items = status_items(after.iter().copied());
    assert!(
        items >= SESSIONS / 2,
        "most connects waited out the throttle ({items})"
    );
    // Held batches are merged in order without splitting any, so two
    // consecutive requests always carry more than BATCH_SIZE items between
    // them (next-fit): at most twice the ideal count. Replaying the held
    // batches one by one, as before, would take one request per batch.
    let ideal = items.div_ceil(BATCH_SIZE);
    assert!(
        after.len() <= 2 * ideal,
        "{} requests for {items} items at BATCH_SIZE {BATCH_SIZE}",
        after.len()
    );
    assert!(
        after.iter().all(|r| r.json.as_ref().unwrap()["statuses"]
            .as_array()
            .unwrap()
            .len()
            <= BATCH_SIZE),
        "no request over BATCH_SIZE"
    );
    for r in &after {
        let Some(replaces) = r.json.as_ref().unwrap().get("replaces") else {
            continue;
        };
        let replaced: Vec<&str> = replaces
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(replaced.len() >= 2, "a merge replaces several batches");
        let key = r.header("idempotency-key").unwrap();
        assert!(
            !replaced.contains(&key),
            "the merged request has its own key"
        );
    }
    gw.shutdown().await;
}
