//! Soak (ignored by default; `cargo test -p wagate --test api soak --
//! --ignored --nocapture`): session churn and a Laravel outage with an
//! incoming flood, printing this process's RSS as each phase goes on. Once
//! the bounds are reached, memory must stay flat.

use serde_json::json;
use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

/// Resident memory of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[actix_rt::test]
#[ignore = "soak: minutes of load, run by hand"]
async fn memory_stays_flat_under_churn_and_an_outage_flood() {
    let laravel = FakeLaravel::start();
    laravel.set_status(500);
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.breaker.threshold = 1;
    config.breaker.reset_ms = 3_600_000;
    config.batch.interval_ms = 20;
    config.batch.messages_interval_ms = 20;
    config.laravel.outbox_max_batches = 500;
    config.laravel.outbox_max_bytes = 8 << 20;
    config.sessions.max_stored = 200;
    config.sessions.retention_secs = 1;
    config.sessions.sweep_interval_secs = 1;
    config.messages.queue_limit_per_session = 500;
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;

    // Churn: create, stop (forgotten by retention) or delete, over and over.
    let mut churn = Vec::new();
    for round in 0..6 {
        for i in 0..150 {
            let id = format!("c{round}-{i}");
            let r = gw.post("/sessions", json!({ "id": id })).await;
            if r.status == 201 {
                let path = if i % 2 == 0 {
                    format!("/sessions/{id}/stop")
                } else {
                    format!("/sessions/{id}")
                };
                let method = if i % 2 == 0 { "POST" } else { "DELETE" };
                gw.request(method, &path, Some(json!({}))).await;
            }
        }
        let drained = eventually(PATIENCE, || async {
            gw.get("/sessions").await.json()["total"]
                .as_u64()
                .unwrap_or(u64::MAX)
                == 0
        })
        .await;
        assert!(drained, "stopped sessions are forgotten");
        churn.push(rss_mib());
    }
    println!("churn RSS MiB after each round of 150 create+stop/delete: {churn:.1?}");
    // Unbounded, each round would keep 75 stopped sessions for good.
    assert!(churn[5] - churn[1] < 4.0, "churn grows memory: {churn:?}");

    // Outage: incoming floods of 30 KB messages while Laravel is down.
    gw.link("flooded").await;
    // Never scanned: its messages wait for it (up to MESSAGE_MAX_WAIT).
    gw.create("unscanned").await;
    let text = "x".repeat(30_000);
    let mut flood = Vec::new();
    for round in 0..10 {
        for _ in 0..500 {
            let r = gw
                .post(
                    "/sessions/flooded/simulate/incoming",
                    json!({ "from": "5215512345678", "text": text }),
                )
                .await;
            assert_eq!(r.status, 200);
        }
        // And outbound messages for a session that cannot send, beyond its quota.
        let mut refused = 0;
        for _ in 0..600 {
            if gw
                .send_text("unscanned", "5215512345678", &text)
                .await
                .status
                == 429
            {
                refused += 1;
            }
        }
        let held = gw.get("/health").await.json()["queues"]["outbox"]["held"].clone();
        flood.push((rss_mib(), held, refused));
        let _ = round;
    }
    println!("flood RSS MiB, outbox held, 429s after each round of 500 incoming x 30 KB + 600 sends: {flood:.1?}");
    // Past round 2 the bounds hold (outbox ≤ 8 MiB, 500 queued sends);
    // unbounded, every round would add ~15 MB of incoming and ~18 MB of sends.
    let (settled, last) = (flood[1].0, flood[9].0);
    assert!(
        last - settled < 16.0,
        "memory grows past the bounds: {flood:?}"
    );
    let metrics = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    for l in metrics.lines().filter(|l| {
        l.starts_with("wagate_bound_hits_total")
            || l.starts_with("wagate_outbox_bytes")
            || l.starts_with("wagate_sessions_forgotten_total")
    }) {
        println!("{l}");
    }
    gw.shutdown().await;
}
