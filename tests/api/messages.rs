//! Outbound messages: accepted with 202 once stored, sent in order per
//! session with the configured gap, retried, dead-lettered, deduplicated by
//! idempotency key, held while the session is not connected, and reported
//! to Laravel as `send_result` items. Bad input gets a 4xx and changes
//! nothing.

use serde_json::json;
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::helpers::{message_items, redis_config, spawn, test_config, PATIENCE};

const TO: &str = "5215512345678";

#[actix_rt::test]
async fn messages_go_out_in_order_with_the_gap_and_reach_laravel() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    config.messages.min_gap_ms = 150;
    let gw = spawn(config).await;
    gw.link("m1").await;

    let mut ids = Vec::new();
    for i in 0..5 {
        let r = gw.send_text("m1", TO, &format!("hello {i}")).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let body = r.json();
        assert_eq!(body["status"], "queued");
        assert_eq!(body["sessionConnected"], true);
        ids.push(body["messageId"].as_str().unwrap().to_owned());
    }
    let mut sent_at = Vec::new();
    for id in &ids {
        let record = gw.wait_message("m1", id, "sent").await;
        assert_eq!(record["attempts"], 1);
        assert_eq!(record["to"], TO);
        sent_at.push(record["updatedAt"].as_str().unwrap().to_owned());
    }
    // Each send starts at least MESSAGE_MIN_GAP after the previous one ended.
    let times: Vec<std::time::SystemTime> = sent_at
        .iter()
        .map(|t| humantime::parse_rfc3339(t).unwrap())
        .collect();
    for w in times.windows(2) {
        let gap = w[1].duration_since(w[0]).expect("in order");
        assert!(gap.as_millis() >= 145, "gap {gap:?} below 150 ms");
    }
    let sim = gw.gateway.simulator().cloned().unwrap();
    for id in &ids {
        assert_eq!(sim.deliveries(id), 1, "{id} delivered once");
    }
    let arrived = laravel
        .wait_for(PATIENCE, |_| {
            message_items(&laravel, "send_result").len() >= ids.len()
        })
        .await;
    assert!(
        arrived,
        "Laravel got {:?}",
        message_items(&laravel, "send_result")
    );
    let reported: Vec<String> = message_items(&laravel, "send_result")
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, ids, "results reach Laravel in send order");
    assert!(message_items(&laravel, "send_result")
        .iter()
        .all(|m| m["status"] == "sent"));
    gw.shutdown().await;
}

#[actix_rt::test]
async fn retries_then_dead_letter_and_idempotency_in_redis() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    config.simulator.send_fail_first = 2;
    config.messages.max_retries = 3;
    let gw = spawn(config).await;
    gw.link("r1").await;

    // Two failures, then success on the third attempt.
    let r = gw.send_text("r1", TO, "third time lucky").await;
    assert_eq!(r.status, 202);
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    let record = gw.wait_message("r1", &mid, "sent").await;
    assert_eq!(record["attempts"], 3);
    assert!(record["lastError"]
        .as_str()
        .unwrap()
        .contains("simulated send failure"));

    // Same idempotency key: same id, one send.
    let body = json!({ "to": TO, "text": "once", "idempotencyKey": "order-77" });
    let first = gw.post("/sessions/r1/messages", body.clone()).await;
    assert_eq!(first.status, 202);
    let again = gw.post("/sessions/r1/messages", body).await;
    assert_eq!(again.status, 200);
    let (a, b) = (first.json(), again.json());
    assert_eq!(a["messageId"], b["messageId"]);
    assert_eq!(b["duplicate"], true);
    let once = a["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("r1", &once, "sent").await;
    let sim = gw.gateway.simulator().cloned().unwrap();
    assert_eq!(sim.deliveries(&once), 1);
    gw.shutdown().await;

    // A message that always fails ends `failed` in the dead-letter stream.
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    config.simulator.send_fail_first = 100;
    config.messages.max_retries = 2;
    let gw = spawn(config).await;
    gw.wait_state("r1", "connected").await; // restored, linked
    let r = gw.send_text("r1", TO, "doomed").await;
    assert_eq!(r.status, 202);
    let doomed = r.json()["messageId"].as_str().unwrap().to_owned();
    let record = gw.wait_message("r1", &doomed, "failed").await;
    assert_eq!(record["attempts"], 3, "1 attempt + 2 retries");
    let dead = redis.command(&["XLEN", "wagate:messages:dead"]);
    assert_eq!(dead.as_int(), Some(1), "dead letter holds it: {dead:?}");
    let reported = laravel
        .wait_for(PATIENCE, |_| {
            message_items(&laravel, "send_result")
                .iter()
                .any(|m| m["messageId"] == doomed.as_str() && m["status"] == "failed")
        })
        .await;
    assert!(reported, "Laravel hears about the failure");
    gw.shutdown().await;
}

/// Outcomes that end together are written to Redis together (one ordered
/// write for many): a burst of dead letters beside sends still leaves every
/// record, counter, quota and journal record as one write each would.
#[actix_rt::test]
async fn outcomes_ending_together_are_all_recorded_in_redis() {
    const EACH: usize = 150;
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    config.messages.min_gap_ms = 0;
    config.messages.max_wait_secs = 1;
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;
    gw.link("ok").await;
    gw.create("gone").await;
    assert_eq!(gw.post("/sessions/gone/stop", json!({})).await.status, 200);
    gw.wait_state("gone", "stopped").await;

    let mut posted: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for i in 0..EACH {
        for session in ["gone", "ok"] {
            let r = gw.send_text(session, TO, &format!("{session} {i}")).await;
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            let id = r.json()["messageId"].as_str().unwrap().to_owned();
            posted.entry(session).or_default().push(id);
        }
    }
    let all = laravel
        .wait_for(PATIENCE * 2, |_| {
            message_items(&laravel, "send_result").len() >= 2 * EACH
        })
        .await;
    assert!(
        all,
        "{} results",
        message_items(&laravel, "send_result").len()
    );
    for (session, status) in [("ok", "sent"), ("gone", "failed")] {
        let results: Vec<_> = message_items(&laravel, "send_result")
            .into_iter()
            .filter(|m| m["sessionId"] == session)
            .collect();
        let ids: Vec<&str> = results
            .iter()
            .map(|m| m["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, posted[session], "{session}: one result each, in order");
        assert!(results.iter().all(|m| m["status"] == status), "{session}");
        let queued = redis.command(&["GET", &format!("wagate:queued:{{{session}}}")]);
        assert_eq!(
            queued.as_text().as_deref(),
            Some("0"),
            "{session} quota freed"
        );
    }
    let stat = |field: &str| {
        redis
            .command(&["HGET", "wagate:messages:stats", field])
            .as_text()
    };
    assert_eq!(stat("completed"), Some(EACH.to_string()));
    assert_eq!(stat("failed"), Some(EACH.to_string()));
    assert_eq!(
        redis.command(&["XLEN", "wagate:messages"]).as_int(),
        Some(0)
    );
    let dead = redis.command(&["XLEN", "wagate:messages:dead"]).as_int();
    assert_eq!(dead, Some(EACH as i64));
    let record = gw
        .wait_message("gone", &posted["gone"][EACH - 1], "failed")
        .await;
    assert!(record["lastError"]
        .as_str()
        .unwrap()
        .contains("not connected"));
    // Laravel has every result, so the journal lets go of them all.
    let released = laravel
        .wait_for(PATIENCE, |_| {
            redis.command(&["HLEN", "wagate:journal:inbound"]).as_int() == Some(0)
        })
        .await;
    assert!(released, "journaled results left after delivery");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_message_waits_for_its_session_then_expires() {
    let mut config = test_config();
    config.simulator.qr_rotate_ms = 60_000;
    config.simulator.qr_first_ms = 60_000;
    config.messages.max_wait_secs = 1;
    let gw = spawn(config).await;
    gw.create("w1").await;
    gw.wait_state("w1", "qr").await;

    let r = gw.send_text("w1", TO, "before linking").await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["sessionConnected"], false);
    let waiting = r.json()["messageId"].as_str().unwrap().to_owned();
    // Link within the wait: it goes out.
    let scan = gw.post("/sessions/w1/simulate/scan", json!({})).await;
    assert_eq!(scan.status, 200);
    gw.wait_message("w1", &waiting, "sent").await;

    // Not connected for longer than MESSAGE_MAX_WAIT: failed, with the reason.
    assert_eq!(gw.post("/sessions/w1/stop", json!({})).await.status, 200);
    gw.wait_state("w1", "stopped").await;
    let r = gw.send_text("w1", TO, "too late").await;
    let late = r.json()["messageId"].as_str().unwrap().to_owned();
    let record = gw.wait_message("w1", &late, "failed").await;
    assert!(
        record["lastError"]
            .as_str()
            .unwrap()
            .contains("not connected"),
        "{record}"
    );
    assert_eq!(record["attempts"], 0);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let mut config = test_config();
    config.messages.queue_limit = 2;
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;
    gw.create("v1").await;

    let cases = [
        (json!({ "to": "abc", "text": "x" }), 400, "invalid_body"),
        (json!({ "to": TO, "text": "  " }), 400, "invalid_body"),
        (json!({ "to": TO }), 400, "invalid_json"),
        (json!({ "to": TO, "text": 5 }), 400, "invalid_json"),
        (
            json!({ "to": TO, "text": "x", "extra": 1 }),
            400,
            "invalid_json",
        ),
        (
            json!({ "to": TO, "text": "x", "idempotencyKey": "" }),
            400,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let r = gw.post("/sessions/v1/messages", body.clone()).await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{body}");
    }
    let r = gw.send_text("nobody", TO, "x").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "session_not_found")
    );
    let r = gw.get("/sessions/v1/messages/3EB0DEADBEEF").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "message_not_found")
    );
    let counts = gw.get("/health").await.json()["queues"]["messageQueue"].clone();
    assert_eq!(
        counts["waiting"].as_u64().unwrap() + counts["active"].as_u64().unwrap(),
        0
    );

    // The session is not connected, so two messages wait; the third is over the limit.
    for _ in 0..2 {
        assert_eq!(gw.send_text("v1", TO, "wait").await.status, 202);
    }
    let r = gw.send_text("v1", TO, "one too many").await;
    assert_eq!((r.status, r.error_code().as_str()), (429, "queue_full"));
    assert!(r.headers.get("retry-after").is_some());
    gw.shutdown().await;
}
