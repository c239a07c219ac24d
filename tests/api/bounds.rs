//! Bounds on what outside input can grow (issue 17): stored sessions, the
//! per-session share of the message queue, the Laravel outbox and the dead
//! letters: each hit, with its documented answer and its metric.

use serde_json::json;
use wagate_testkit::{FakeLaravel, RedisServer, Resp};

use crate::helpers::metric_sample as sample;
use crate::helpers::{eventually, redis_config, spawn, test_config, TestGateway, PATIENCE};

#[actix_rt::test]
async fn stored_sessions_are_capped_and_ended_unlinked_ones_forgotten() {
    let mut config = test_config();
    config.sessions.max_stored = 3;
    config.sessions.retention_secs = 1;
    config.sessions.sweep_interval_secs = 1;
    let gw = spawn(config).await;
    gw.link("linked").await;
    gw.create("unlinked").await;
    gw.link("gone").await;
    let r = gw.post("/sessions", json!({ "id": "fourth" })).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "session_store_full")
    );
    let text = gw.get_text("/metrics").await;
    assert_eq!(
        sample(&text, r#"wagate_bound_hits_total{bound="stored_sessions"}"#),
        1.0
    );

    for id in ["linked", "unlinked"] {
        assert_eq!(
            gw.post(&format!("/sessions/{id}/stop"), json!({}))
                .await
                .status,
            200
        );
        gw.wait_state(id, "stopped").await;
    }
    gw.simulate("gone", "logout").await;
    gw.wait_state("gone", "logged_out").await;
    let forgotten = eventually(PATIENCE, || async {
        gw.get("/sessions/unlinked").await.status == 404
            && gw.get("/sessions/gone").await.status == 404
    })
    .await;
    assert!(
        forgotten,
        "ended, unlinked sessions are forgotten after SESSION_RETENTION"
    );
    assert_eq!(
        gw.state_of("linked").await,
        "stopped",
        "a linked session is never forgotten"
    );
    let text = gw.get_text("/metrics").await;
    assert_eq!(sample(&text, "wagate_sessions_forgotten_total"), 2.0);
    gw.create("fourth").await;
    gw.shutdown().await;
}

async fn per_session_quota(mut config: wagate::config::Config) {
    config.messages.queue_limit_per_session = 2;
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;
    gw.create("greedy").await;
    gw.create("polite").await;
    for _ in 0..2 {
        assert_eq!(
            gw.send_text("greedy", "5215512345678", "hi").await.status,
            202
        );
    }
    let r = gw.send_text("greedy", "5215512345678", "one more").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "session_queue_full")
    );
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(
        gw.send_text("polite", "5215512345678", "hi").await.status,
        202
    );
    let text = gw.get_text("/metrics").await;
    assert_eq!(
        sample(
            &text,
            r#"wagate_bound_hits_total{bound="queue_per_session"}"#
        ),
        1.0
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn one_session_cannot_fill_the_queue_for_the_others() {
    per_session_quota(test_config()).await;
}

#[actix_rt::test]
async fn one_session_cannot_fill_the_redis_queue_for_the_others() {
    let redis = RedisServer::start();
    per_session_quota(redis_config(&redis)).await;
    assert_eq!(
        redis.command(&["XLEN", "wagate:messages"]).as_int(),
        Some(3),
        "the refused message left nothing behind"
    );
}

async fn outbox_sheds(mut config: wagate::config::Config) -> TestGateway {
    let laravel = FakeLaravel::start();
    laravel.set_status(500);
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.breaker.threshold = 1;
    config.breaker.reset_ms = 600_000;
    config.batch.interval_ms = 20;
    config.batch.messages_interval_ms = 20;
    config.laravel.outbox_max_batches = 5;
    // One incoming message per batch, however fast the flood arrives.
    config.batch.size = 1;
    let gw = spawn(config).await;
    gw.link("s").await;
    for i in 0..40 {
        let r = gw
            .post(
                "/sessions/s/simulate/incoming",
                json!({ "from": "5215512345678", "text": format!("flood {i}") }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let shed = eventually(PATIENCE, || async {
        sample(
            &gw.get_text("/metrics").await,
            r#"wagate_bound_hits_total{bound="outbox"}"#,
        ) > 0.0
    })
    .await;
    assert!(shed, "{}", gw.get_text("/metrics").await);
    // Once the flood is in, what is held fits the bound.
    let fits = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["queues"]["outbox"]["held"]
            .as_u64()
            .is_some_and(|held| held <= 5)
    })
    .await;
    assert!(fits, "{}", gw.get("/health").await.json());
    gw
}

#[actix_rt::test]
async fn a_full_outbox_sheds_during_an_outage_and_says_so() {
    outbox_sheds(test_config()).await.shutdown().await;
}

#[actix_rt::test]
async fn a_full_redis_outbox_sheds_and_keeps_statuses() {
    let redis = RedisServer::start();
    let gw = outbox_sheds(redis_config(&redis)).await;
    // The list and its byte counter read in one script: the batcher may
    // still be pushing (and shedding) the flood's last batches.
    let read = redis.command(&[
        "EVAL",
        "return {redis.call('GET', KEYS[2]), redis.call('LRANGE', KEYS[1], 0, -1)}",
        "2",
        "wagate:outbox",
        "{wagate:outbox}:bytes",
    ]);
    let Resp::Array(parts) = read else {
        panic!("EVAL answered {read:?}")
    };
    let counted = parts[0]
        .as_text()
        .and_then(|b| b.parse::<usize>().ok())
        .unwrap();
    let held = parts[1].as_strings();
    assert!((1..=5).contains(&held.len()), "LLEN {}", held.len());
    assert!(
        held.iter().any(|b| b.contains("status_batch")),
        "statuses are shed last: {held:?}"
    );
    let bytes: usize = held.iter().map(String::len).sum();
    assert!(counted >= bytes, "byte counter {counted} vs {bytes}");
    gw.shutdown().await;
}

/// Every string inside a (nested) Redis reply.
fn texts(r: &Resp) -> Vec<String> {
    match r {
        Resp::Array(items) => items.iter().flat_map(texts).collect(),
        other => other.as_text().into_iter().collect(),
    }
}

#[actix_rt::test]
async fn redis_dead_letters_keep_a_cut_text_and_its_hash() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.simulator.send_fail_first = 1000;
    config.messages.max_retries = 0;
    config.messages.dead_text_max = 6;
    let gw = spawn(config).await;
    gw.link("dl").await;
    let text = "private words that must not stay whole";
    let r = gw.send_text("dl", "5215512345678", text).await;
    assert_eq!(r.status, 202);
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message("dl", &mid, "failed").await;
    let dead = redis.command(&["XRANGE", "wagate:messages:dead", "-", "+"]);
    let dump = texts(&dead).join(" ");
    assert!(dump.contains("privat…"), "{dump}");
    assert!(dump.contains("sha256"), "{dump}");
    assert!(!dump.contains("must not stay whole"), "{dump}");
    gw.shutdown().await;
}
