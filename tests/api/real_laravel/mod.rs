//! The gateway against a real Laravel application built from
//! `docs/laravel.md`'s code (`wagate_testkit::LaravelApp`: Debian's Laravel
//! 8, SQLite, `php -S`). After each phase the test compares Laravel's
//! database with the gateway's own view: link, status changes, incoming
//! messages, sends, replays and reordered receipts, forged and downgraded
//! signatures, a wrong signing secret fixed by a restart (nothing lost),
//! an old gateway on signature v1, and a burst under Laravel's default
//! `throttle:api` limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use wagate_actors::clock::unix_ms;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_testkit::{LaravelApp, RedisServer};

use crate::helpers::{eventually, redis_config, spawn, test_config, PATIENCE};

mod kinds;
mod probe;

use self::probe::*;

#[actix_rt::test]
async fn the_docs_laravel_app_agrees_with_the_gateway_through_an_outage() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let app = Arc::new(LaravelApp::start(&laravel_env()));
    let sessions = ["rl-1", "rl-2", "rl-3", "rl-4", "rl-qr"];

    // Link, QR, status changes.
    let gw = spawn(forward_to(redis_config(&redis), &app, SECRET)).await;
    for id in &sessions[..4] {
        gw.link(id).await;
    }
    // The application stores a session before creating it (docs, 7.7).
    let created = php_eval(
        &app,
        "return \\App\\Support\\WagateRecords::sessionCreated('rl-qr')->status;".into(),
    )
    .await;
    assert_eq!(created, "starting");
    gw.create("rl-qr").await;
    gw.wait_state("rl-qr", "qr").await;
    gw.simulate("rl-2", "disconnect").await; // inactive, then active again
    gw.simulate("rl-3", "logout").await;
    gw.wait_state("rl-3", "logged_out").await;
    statuses_agree(&gw, &app, &sessions, PATIENCE).await;
    let qr = query(
        &app,
        "SELECT qr FROM whatsapp_sessions WHERE session_id = 'rl-qr'",
    )
    .await;
    assert!(
        qr[0]["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"),
        "{qr:?}"
    );

    // Incoming messages arrive byte for byte (no TrimStrings, no
    // ConvertEmptyStringsToNull), each stored once.
    let texts = ["  padded text  \n", "", "hola"];
    for text in texts {
        incoming(&gw, "rl-1", text).await;
    }
    let stored = within(PATIENCE, || async {
        incoming_texts(&app, "rl-1").await.len() >= 3
    })
    .await;
    assert!(
        stored,
        "{:?}\n{}",
        incoming_texts(&app, "rl-1").await,
        tail(&app.log())
    );
    assert_eq!(incoming_texts(&app, "rl-1").await, texts);

    // Sends. The send_result creates the row when the application has not
    // stored it yet, so nothing is lost with a 200; the application's own
    // write (the docs' helper) then adds its fields and keeps the status,
    // in whichever order the two come.
    let mut sent = Vec::new();
    for n in 0..3 {
        let text = format!("out {n}");
        if n == 2 {
            let r = gw.send_text("rl-1", TO, &text).await;
            assert_eq!(r.status, 202);
            let mid = r.json()["messageId"].as_str().unwrap().to_owned();
            message_posted(&app, "rl-1", &mid, &text).await;
            gw.wait_message("rl-1", &mid, "sent").await;
            sent.push(mid);
            continue;
        }
        let mid = send(&gw, "rl-1", &text).await;
        let arrived = within(PATIENCE, || async {
            outgoing(&app, "rl-1", &mid).await.is_some()
        })
        .await;
        assert!(arrived, "the send_result of {mid} never created its row");
        assert_eq!(message_posted(&app, "rl-1", &mid, &text).await, "sent");
        sent.push(mid);
    }
    for (n, mid) in sent.iter().enumerate() {
        let row = within(PATIENCE, || async {
            outgoing(&app, "rl-1", mid)
                .await
                .is_some_and(|r| r["delivery_status"] == "sent")
        })
        .await;
        assert!(
            row,
            "send_result of {mid} never stored: {:?}",
            outgoing(&app, "rl-1", mid).await
        );
        let row = outgoing(&app, "rl-1", mid).await.unwrap();
        assert_eq!(row["direction"], "out");
        assert_eq!(row["to"], TO);
        assert_eq!(row["delivery_rank"], 1);
        assert_eq!(row["text"], format!("out {n}"));
        assert!(
            row["created_at"].is_string() && row["updated_at"].is_string(),
            "{row}"
        );
    }

    // Receipts only move forward: read, then an old `delivered` replayed
    // under a new key, then the `sent` result again: still read.
    let mid = &sent[0];
    for (key, status, rank) in [("r-read", "read", 3), ("r-old-delivered", "delivered", 2)] {
        let code = post_signed(
            &app,
            Signed {
                path: "/whatsapp/messages/batch",
                body: receipt("rl-1", mid, status, rank),
                key,
                sign_key: key,
                version: Some(SignatureVersion::V2),
            },
        )
        .await;
        assert_eq!(code, 200, "{}", tail(&app.log()));
    }
    let replayed_result = json!({"messages": [{"type": "send_result", "sessionId": "rl-1", "messageId": mid,
        "to": TO, "status": "sent", "rank": 1, "attempts": 1, "error": null, "timestamp": unix_ms()}]})
    .to_string();
    let code = post_signed(
        &app,
        Signed {
            path: "/whatsapp/messages/batch",
            body: replayed_result,
            key: "r-replayed-result",
            sign_key: "r-replayed-result",
            version: Some(SignatureVersion::V2),
        },
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        outgoing(&app, "rl-1", mid).await.unwrap()["delivery_status"],
        "read"
    );

    // v2 binds the Idempotency-Key: the same signature under a new key is
    // refused; so are a v1 signature and an unversioned (old gateway) one,
    // since this app did not opt in to v1.
    let body = receipt("rl-1", &sent[1], "delivered", 2);
    for (key, sign_key, version) in [
        ("forged-key", "captured-key", Some(SignatureVersion::V2)),
        ("v1-key", "v1-key", Some(SignatureVersion::V1)),
        ("old-key", "old-key", None),
    ] {
        let code = post_signed(
            &app,
            Signed {
                path: "/whatsapp/messages/batch",
                body: body.clone(),
                key,
                sign_key,
                version,
            },
        )
        .await;
        assert_eq!(code, 401, "{key} must be refused");
    }
    assert_eq!(
        outgoing(&app, "rl-1", &sent[1]).await.unwrap()["delivery_status"],
        "sent"
    );
    gw.shutdown().await;

    // A wrong signing secret: Laravel refuses everything, the gateway holds
    // it (durably, in Redis), nothing reaches the database.
    let refused_before = app.answered(401);
    let gw = spawn(forward_to(redis_config(&redis), &app, "a-wrong-secret")).await;
    gw.wait_state("rl-1", "connected").await;
    gw.wait_state("rl-4", "connected").await;
    gw.simulate("rl-4", "logout").await;
    gw.wait_state("rl-4", "logged_out").await;
    incoming(&gw, "rl-1", "during the outage").await;
    let during = send(&gw, "rl-1", "sent during the outage").await;
    let quiet = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        let q = &h["queues"];
        app.answered(401) > refused_before
            && h["queues"]["outbox"]["held"].as_u64() >= Some(1)
            && ["statusQueue", "inboundQueue", "qrQueue"]
                .iter()
                .all(|k| q[k]["waiting"] == 0 && q[k]["active"] == 0)
    })
    .await;
    assert!(
        quiet,
        "the outage never settled: {}",
        gw.get("/health").await.json()
    );
    assert_eq!(
        laravel_statuses(&app).await["rl-4"],
        "active",
        "a refused batch was applied"
    );
    assert!(!incoming_texts(&app, "rl-1")
        .await
        .contains(&"during the outage".to_owned()));
    assert!(outgoing(&app, "rl-1", &during).await.is_none());
    gw.shutdown().await;

    // The secret fixed: the held batches replay and Laravel catches up.
    let gw = spawn(forward_to(redis_config(&redis), &app, SECRET)).await;
    statuses_agree(&gw, &app, &sessions, PATIENCE).await;
    assert_eq!(laravel_statuses(&app).await["rl-4"], "logged_out");
    let caught_up = within(PATIENCE, || async {
        outgoing(&app, "rl-1", &during)
            .await
            .is_some_and(|r| r["delivery_status"] == "sent")
            && incoming_texts(&app, "rl-1").await.len() == 4
    })
    .await;
    assert!(
        caught_up,
        "{:?}\n{}",
        incoming_texts(&app, "rl-1").await,
        tail(&app.log())
    );
    assert_eq!(
        incoming_texts(&app, "rl-1").await,
        ["  padded text  \n", "", "hola", "during the outage"],
        "every incoming message exactly once"
    );
    // The rest of the replay (superseded QR and status batches) drains too.
    let drained = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["queues"]["outbox"]["held"] == 0
    })
    .await;
    assert!(drained, "{}", gw.get("/health").await.json());
    gw.shutdown().await;
    eprintln!("real Laravel contract test: {:?}", started.elapsed());
}

/// An old Laravel that still verifies v1 keeps working with a gateway set
/// to `LARAVEL_SIGNATURE_VERSION=1`, once it opts in.
#[actix_rt::test]
async fn a_gateway_on_signature_v1_reaches_a_laravel_that_opted_in() {
    let mut env = laravel_env().to_vec();
    env.push(("WAGATE_ACCEPT_SIGNATURE_V1", "true"));
    let app = Arc::new(LaravelApp::start(&env));
    let mut config = forward_to(test_config(), &app, SECRET);
    config.laravel.signature_version = 1;
    let gw = spawn(config).await;
    gw.link("v1-session").await;
    statuses_agree(&gw, &app, &["v1-session"], PATIENCE).await;
    gw.shutdown().await;
}

/// Laravel's default `throttle:api` (60 requests a minute) put back on the
/// routes: a burst of disconnects and incoming messages from 30 sessions
/// that the docs' routes take without a 429 runs into 429s, and every
/// session's final status and every message still reach Laravel.
///
/// `BATCH_SIZE` is 1 here, one item per request, so that the burst is ~100
/// requests. With the default size the gateway's batching carries the same
/// burst (three rounds of it, links included) in ~25 requests, under the
/// limit, and nothing would be tested.
///
/// The bound is generous: the limiter's window is a minute, and without
/// `Retry-After` handling the 429s open the breaker, so the held batches
/// wait for probes (`CIRCUIT_BREAKER_RESET` is 5 s here) until the window
/// resets.
#[actix_rt::test]
async fn a_burst_under_laravels_default_rate_limit_reaches_every_final_status() {
    const SESSIONS: usize = 30;
    const BOUND: Duration = Duration::from_secs(180);
    let app = Arc::new(LaravelApp::start(&laravel_env()));
    let mut config = forward_to(test_config(), &app, SECRET);
    config.breaker.reset_ms = 5_000;
    config.batch.size = 1;
    let gw = spawn(config).await;
    let ids: Vec<String> = (0..SESSIONS).map(|n| format!("burst-{n}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    join_all(refs.iter().map(|id| gw.link(id))).await;
    // With BATCH_SIZE=1 every status is its own request to a single-threaded
    // `php -S` (~120 for the link, ~90 per burst); on a loaded 2-core box
    // each takes up to half a second, so these waits get BOUND, not PATIENCE.
    statuses_agree(&gw, &app, &refs, BOUND).await;

    // A burst: every session drops and reconnects at once and gets a
    // message. With the docs' routes (no throttle) it goes straight in.
    let burst = |text: &'static str| {
        let (gw, refs) = (&gw, &refs);
        async move {
            join_all(refs.iter().map(|id| gw.simulate(id, "disconnect"))).await;
            join_all(refs.iter().map(|id| gw.wait_state(id, "connected"))).await;
            join_all(refs.iter().map(|id| incoming(gw, id, text))).await;
        }
    };
    let messages_in = |n: usize| {
        let app = &app;
        async move {
            within(BOUND, || async {
                query(
                    app,
                    "SELECT COUNT(*) AS n FROM whatsapp_messages WHERE direction = 'in'",
                )
                .await[0]["n"]
                    == json!(n)
            })
            .await
        }
    };
    let before = app.answered(200);
    burst("unthrottled").await;
    statuses_agree(&gw, &app, &refs, BOUND).await;
    assert!(
        messages_in(SESSIONS).await,
        "the unthrottled burst's messages"
    );
    let unthrottled = app.answered(200) - before;
    assert!(
        unthrottled > 60,
        "the burst was {unthrottled} requests: under the limit anyway"
    );
    assert_eq!(
        app.answered(429),
        0,
        "the docs' routes are not rate limited"
    );

    // The same burst with the default limit put back, and every third
    // session logged out at the end.
    app.enable_default_rate_limit();
    let started = Instant::now();
    burst("throttled").await;
    join_all(refs.iter().step_by(3).map(|id| gw.simulate(id, "logout"))).await;
    statuses_agree(&gw, &app, &refs, BOUND).await;
    let all_in = messages_in(2 * SESSIONS).await;
    let throttled = app.answered(429);
    eprintln!(
        "burst under throttle:api: {SESSIONS} sessions and messages at Laravel after {:?}; Laravel answered {} × 200, {throttled} × 429",
        started.elapsed(),
        app.answered(200)
    );
    assert!(
        all_in,
        "incoming messages at Laravel: {:?}",
        query(&app, "SELECT session_id, text FROM whatsapp_messages").await
    );
    assert!(
        throttled > 0,
        "the burst never hit the rate limit, so it proves nothing"
    );
    gw.shutdown().await;
}
