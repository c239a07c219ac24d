//! The QR storm and the priority lane: batched requests stay within
//! ceil(events / BATCH_SIZE) + one per interval, Laravel ends with every
//! session's latest QR, and a connect jumps the 5 s batch window.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;
use wagate::config::QrFormatSetting;
use wagate_actors::ids::SessionId;
use wagate_testkit::FakeLaravel;

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

#[actix_rt::test]
async fn qr_storm_is_batched_and_laravel_ends_with_latest_codes() {
    const SESSIONS: usize = 500;
    const CODES: u32 = 12;
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.qr_format = QrFormatSetting::Raw;
    config.batch.size = 50;
    config.batch.interval_ms = 500;
    config.simulator.qr_first_ms = 50;
    config.simulator.qr_rotate_ms = 100;
    config.simulator.qr_count = CODES;
    let gw = spawn(config).await;
    let started = Instant::now();
    for i in 0..SESSIONS {
        gw.create(&format!("storm-{i}")).await;
    }
    let sim = gw
        .gateway
        .simulator()
        .cloned()
        .expect("simulator connector");
    let all_issued = eventually(PATIENCE * 3, || async {
        sim.qr_issued() == (SESSIONS as u64) * CODES as u64
    })
    .await;
    assert!(all_issued, "issued {} codes", sim.qr_issued());
    let index = gw.gateway.index().clone();
    let latest: HashMap<String, String> = (0..SESSIONS)
        .map(|i| {
            let id = format!("storm-{i}");
            let snap = index
                .get(&SessionId::parse(&id).unwrap())
                .expect("session exists");
            (id, snap.qr.expect("a QR was shown").code.to_string())
        })
        .collect();

    // Laravel ends with every session's latest QR (highest seq wins). As
    // long as issuing may take: on a starved machine (a suite run beside a
    // chaos run) a batch can time out and wait out its retries.
    let converged = laravel
        .wait_for(PATIENCE * 3, |reqs| {
            let mut last: HashMap<String, (u64, String)> = HashMap::new();
            for r in reqs.iter().filter(|r| r.path.ends_with("/qr/batch")) {
                for q in r.json.as_ref().unwrap()["qrs"].as_array().unwrap() {
                    let (id, seq) = (
                        q["sessionId"].as_str().unwrap().to_owned(),
                        q["seq"].as_u64().unwrap(),
                    );
                    let code = q["qr"].as_str().unwrap().to_owned();
                    if last.get(&id).is_none_or(|(s, _)| *s < seq) {
                        last.insert(id, (seq, code));
                    }
                }
            }
            latest
                .iter()
                .all(|(id, code)| last.get(id).is_some_and(|(_, c)| c == code))
        })
        .await;
    assert!(converged, "Laravel does not hold every session's latest QR");
    let elapsed = started.elapsed();

    let events = gw.gateway.metrics().qr_events.get();
    assert_eq!(
        events,
        (SESSIONS as u64) * CODES as u64,
        "every new code is an event, once"
    );
    let batches = laravel.requests_to("/qr/batch");
    let intervals = (elapsed.as_millis() / 500) as u64 + 1;
    let bound = events.div_ceil(50) + intervals;
    assert!(
        (batches.len() as u64) <= bound,
        "{} /qr/batch requests for {events} events over {intervals} intervals (bound {bound})",
        batches.len()
    );
    for b in &batches {
        let n = b.json.as_ref().unwrap()["qrs"].as_array().unwrap().len();
        assert!((1..=50).contains(&n), "batch of {n} items");
        assert!(b.json.as_ref().unwrap()["qrs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["status"] == "qr"));
    }
    assert!(
        laravel.requests_to("/qr").is_empty(),
        "no per-event requests"
    );
    assert!(laravel.requests_to("/whatsapp/status").is_empty());
    eprintln!(
        "qr storm: {events} QR events -> {} /qr/batch requests in {elapsed:?} (bound {bound})",
        batches.len()
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_scan_reaches_laravel_as_high_priority_without_waiting_for_the_batch_window() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 5000;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;
    for i in 0..20 {
        gw.create(&format!("p{i}")).await;
    }
    gw.wait_state("p7", "qr").await;
    let sent = Instant::now();
    assert_eq!(
        gw.post("/sessions/p7/simulate/scan", json!({}))
            .await
            .status,
        200
    );
    let arrived = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter().any(|r| {
                r.path.ends_with("/whatsapp/status/batch")
                    && r.json.as_ref().unwrap()["statuses"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|s| {
                            s["sessionId"] == "p7"
                                && s["status"] == "active"
                                && s["priority"] == "high"
                        })
            })
        })
        .await;
    assert!(arrived);
    let request = laravel
        .requests_to("/whatsapp/status/batch")
        .into_iter()
        .find(|r| {
            r.json.as_ref().unwrap()["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["status"] == "active")
        })
        .unwrap();
    let latency = request.at.duration_since(sent);
    assert!(latency.as_millis() < 500, "active took {latency:?}");
    // The normal lane still waits for its 5 s window: p7's `starting` was
    // promoted ahead of `active` (same request, in order); the others wait.
    let statuses = request.json.as_ref().unwrap()["statuses"]
        .as_array()
        .unwrap()
        .clone();
    let p7: Vec<&str> = statuses
        .iter()
        .filter(|s| s["sessionId"] == "p7")
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(p7, ["starting", "active"]);
    assert!(
        statuses.iter().all(|s| s["sessionId"] == "p7"),
        "other sessions' normal updates wait"
    );
    eprintln!("scan -> Laravel `active`: {latency:?} with BATCH_INTERVAL=5000");
    gw.shutdown().await;
}
