//! Webhooks and the fallback URL, against real HTTP receivers: a
//! subscription gets only its sessions' events of its types, signed with
//! its secret, in order, and a failed batch is retried whole under one
//! delivery id; a receiver that hangs opens its own breaker while another
//! receiver and Laravel get everything; `LARAVEL_FALLBACK_URL` gets the
//! batches Laravel misses while its breaker is open, and Laravel still gets
//! them after; subscriptions are checked, kept in Redis across a restart,
//! and deleted.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wagate_testkit::{FakeLaravel, Received, RedisServer};

use crate::helpers::{eventually, metric_sample, redis_config, spawn, test_config, PATIENCE};

/// The v2 signature the receiver checks: timestamp, delivery id, body.
fn signature_ok(r: &Received, secret: &str) -> bool {
    let (Some(ts), Some(key), Some(sig)) = (
        r.header("x-wagate-timestamp"),
        r.header("idempotency-key"),
        r.header("x-wagate-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{key}.").as_bytes());
    mac.update(&r.body);
    sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        && r.header("x-wagate-signature-version") == Some("2")
}

/// Events of the deliveries the receiver accepted, each delivery once.
fn accepted_events(receiver: &FakeLaravel) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    receiver
        .requests()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter(|r| seen.insert(r.header("idempotency-key").unwrap_or_default().to_owned()))
        .flat_map(|r| r.json.unwrap()["events"].as_array().cloned().unwrap())
        .collect()
}

fn has_state(events: &[Value], session: &str, state: &str) -> bool {
    events
        .iter()
        .any(|e| e["sessionId"] == session && e["type"] == "state" && e["data"]["state"] == state)
}

/// Links a session that was created earlier.
async fn scan(gw: &crate::helpers::TestGateway, id: &str) {
    gw.wait_state(id, "qr").await;
    gw.simulate(id, "scan").await;
    gw.wait_state(id, "connected").await;
}

async fn subscribe(gw: &crate::helpers::TestGateway, body: Value) -> (String, String) {
    let r = gw.post("/webhooks", body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

#[actix_rt::test]
async fn a_webhook_gets_its_sessions_events_signed_in_order_and_a_failed_batch_again_under_its_id()
{
    let receiver = FakeLaravel::start();
    receiver.set_status(500);
    let mut config = test_config();
    config.webhooks.retry_base_ms = 50;
    config.webhooks.retry_max_ms = 200;
    // Retries, not the breaker, are under test: with the default threshold
    // (5 failures) a slow test thread lets the breaker open before it turns
    // the receiver back on, and its 60 s open time outlasts PATIENCE.
    config.webhooks.breaker_threshold = 1_000;
    let gw = spawn(config).await;
    let (id, secret) = subscribe(
        &gw,
        json!({
            "url": format!("{}/hook", receiver.base_url()),
            "events": ["state"],
            "sessions": ["w1"],
            "secret": "a-shared-secret-of-the-crm",
        }),
    )
    .await;
    assert_eq!(secret, "a-shared-secret-of-the-crm");

    gw.create("w2").await;
    gw.create("w1").await;
    // Two failed attempts, then the receiver comes back.
    assert!(receiver.wait_for(PATIENCE, |r| r.len() >= 2).await);
    receiver.set_status(200);
    scan(&gw, "w1").await;
    assert!(
        receiver
            .wait_for(PATIENCE, |_| has_state(
                &accepted_events(&receiver),
                "w1",
                "connected"
            ))
            .await,
        "the receiver gets w1's connected state"
    );

    let requests = receiver.requests();
    // The first batch was retried whole, under one delivery id.
    assert_eq!(requests[0].status, 500);
    let first_id = requests[0].header("idempotency-key").unwrap();
    let retried: Vec<&Received> = requests
        .iter()
        .filter(|r| r.header("idempotency-key") == Some(first_id))
        .collect();
    assert!(retried.len() >= 2 && retried.last().unwrap().status == 200);
    assert!(retried.iter().all(|r| r.body == retried[0].body));
    for r in &requests {
        assert_eq!(r.path, "/api/hook");
        assert!(signature_ok(r, &secret), "every request is signed");
        assert_eq!(r.header("x-wagate-webhook-id"), Some(id.as_str()));
        let body = r.json.as_ref().unwrap();
        assert_eq!(body["webhookId"], id.as_str());
        assert_eq!(body["deliveryId"], r.header("idempotency-key").unwrap());
    }
    // Only w1's states, each event once, in publication order.
    let events = accepted_events(&receiver);
    assert!(events
        .iter()
        .all(|e| e["sessionId"] == "w1" && e["type"] == "state"));
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"starting"), "{states:?}");
    assert_eq!(states.last(), Some(&"connected"), "{states:?}");

    // The API shows the subscription without its secret, and how it went
    // (once the sender has read the last answer: the receiver records a
    // request before that).
    let delivered = |v: &Value| v["delivery"]["delivered"].as_u64().unwrap_or(0);
    let counted = eventually(PATIENCE, || async {
        delivered(&gw.get(&format!("/webhooks/{id}")).await.json()) >= states.len() as u64
    })
    .await;
    let view = gw.get(&format!("/webhooks/{id}")).await.json();
    assert!(counted, "{view}");
    assert!(view.get("secret").is_none(), "{view}");
    assert_eq!(view["events"], json!(["state"]));
    assert_eq!(view["delivery"]["state"], "CLOSED");
    assert_eq!(view["delivery"]["lastError"], Value::Null);
    assert!(view["delivery"]["lastSuccessAt"].is_string());
    let metrics = gw.get_text("/metrics").await;
    let failed = format!("wagate_webhook_requests_total{{outcome=\"failed\",webhook=\"{id}\"}}");
    assert!(metric_sample(&metrics, &failed) >= 1.0, "{failed}");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_receiver_that_hangs_opens_its_own_breaker_while_another_and_laravel_get_everything() {
    let laravel = FakeLaravel::start();
    let good = FakeLaravel::start();
    let stuck = FakeLaravel::start();
    stuck.set_delay(Duration::from_secs(60));
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 100;
    config.webhooks.timeout_ms = 500;
    config.webhooks.retry_base_ms = 50;
    config.webhooks.retry_max_ms = 100;
    config.webhooks.breaker_threshold = 2;
    config.webhooks.breaker_reset_ms = 600_000;
    let gw = spawn(config).await;
    let (stuck_id, _) = subscribe(&gw, json!({ "url": stuck.base_url() })).await;
    let (good_id, _) = subscribe(&gw, json!({ "url": good.base_url(), "events": ["state"] })).await;

    let ids: Vec<String> = (0..5).map(|i| format!("h{i}")).collect();
    for id in &ids {
        gw.link(id).await;
    }
    assert!(
        good.wait_for(PATIENCE, |_| {
            let events = accepted_events(&good);
            ids.iter().all(|id| has_state(&events, id, "connected"))
        })
        .await,
        "the good receiver gets every session's connected state"
    );
    assert!(
        laravel
            .wait_for(PATIENCE, |_| {
                crate::helpers::status_items(
                    laravel
                        .requests_to("/whatsapp/status/batch")
                        .iter()
                        .filter(|r| r.status == 200),
                ) >= ids.len() * 2
            })
            .await,
        "Laravel gets the statuses"
    );
    let opened = crate::helpers::eventually(PATIENCE, || async {
        let list = gw.get("/webhooks").await.json();
        list["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == stuck_id.as_str() && w["delivery"]["state"] == "OPEN")
    })
    .await;
    assert!(opened, "the hanging receiver's breaker opens");
    // Two timed-out attempts opened it; nothing more is sent until its reset.
    assert_eq!(stuck.requests().len(), 2);
    let list = gw.get("/webhooks").await.json();
    let stuck_view = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == stuck_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(stuck_view["delivery"]["lastError"]["kind"], "timeout");
    assert!(stuck_view["delivery"]["pending"].as_u64().unwrap() > 0);
    let good_view = gw.get(&format!("/webhooks/{good_id}")).await.json();
    assert_eq!(good_view["delivery"]["state"], "CLOSED");
    assert_eq!(list["fallback"], Value::Null);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn the_fallback_gets_what_laravel_misses_while_its_breaker_is_open_and_laravel_gets_it_after()
{
    let laravel = FakeLaravel::start();
    let fallback = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.fallback_url = format!("{}/standby/", fallback.base_url());
    config.laravel.token = secrecy::SecretString::from("laravel-token-1234");
    config.laravel.max_retries = 0;
    config.breaker.threshold = 1;
    config.breaker.reset_ms = 1_000;
    config.batch.interval_ms = 100;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;

    // Laravel up: the fallback hears nothing.
    gw.link("f0").await;
    assert!(
        laravel
            .wait_for(PATIENCE, |_| crate::helpers::status_items(
                laravel.requests_to("/whatsapp/status/batch").iter()
            ) >= 2)
            .await
    );
    assert_eq!(fallback.count(), 0, "no fallback while Laravel answers");

    laravel.set_status(500);
    gw.link("f1").await;
    let in_fallback = |fallback: &FakeLaravel| {
        fallback
            .requests_to("/standby/whatsapp/status/batch")
            .iter()
            .flat_map(|r| {
                r.json.clone().unwrap()["statuses"]
                    .as_array()
                    .cloned()
                    .unwrap()
            })
            .any(|s| s["sessionId"] == "f1" && s["status"] == "active")
    };
    assert!(
        fallback
            .wait_for(PATIENCE, |_| in_fallback(&fallback))
            .await,
        "the fallback gets f1's active while Laravel fails"
    );
    for r in fallback.requests() {
        assert!(r.path.starts_with("/api/standby/whatsapp/"), "{}", r.path);
        assert_eq!(r.header("x-wagate-fallback"), Some("1"));
        assert_eq!(r.header("authorization"), Some("Bearer laravel-token-1234"));
        assert!(
            signature_ok(&r, "laravel-token-1234"),
            "signed as for Laravel"
        );
    }
    // The receiver records a request before the sender reads its answer.
    let counted = eventually(PATIENCE, || async {
        let list = gw.get("/webhooks").await.json();
        list["fallback"]["delivered"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(counted, "{}", gw.get("/webhooks").await.json());

    // Laravel back: the outbox replays the same update to Laravel too.
    laravel.set_status(200);
    let replayed = laravel
        .wait_for(PATIENCE * 2, |_| {
            laravel
                .requests_to("/whatsapp/status/batch")
                .iter()
                .filter(|r| r.status == 200)
                .flat_map(|r| {
                    r.json.clone().unwrap()["statuses"]
                        .as_array()
                        .cloned()
                        .unwrap()
                })
                .any(|s| s["sessionId"] == "f1" && s["status"] == "active")
        })
        .await;
    assert!(replayed, "Laravel still gets what the fallback got");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn subscriptions_are_checked_kept_in_redis_across_a_restart_and_deleted() {
    let redis = RedisServer::start();
    let receiver = FakeLaravel::start();
    let gw = spawn(redis_config(&redis)).await;
    for (body, code) in [
        (json!({ "url": "ftp://x/y" }), "invalid_body"),
        (
            json!({ "url": receiver.base_url(), "events": ["typing"] }),
            "invalid_body",
        ),
        (
            json!({ "url": receiver.base_url(), "secret": "short" }),
            "invalid_body",
        ),
        (json!({ "link": receiver.base_url() }), "invalid_json"),
    ] {
        let r = gw.post("/webhooks", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.error_code(), code, "{body}");
    }
    let list = gw.get("/webhooks").await.json();
    assert_eq!(list["webhooks"], json!([]), "nothing stored by a refusal");
    let (id, secret) = subscribe(
        &gw,
        json!({ "url": receiver.base_url(), "events": ["state"], "description": "CRM" }),
    )
    .await;
    let missing = gw
        .request("DELETE", "/webhooks/wh_0000000000000000", None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "webhook_not_found");
    gw.shutdown().await;

    // A new process on the same Redis delivers to it at once.
    let gw = spawn(redis_config(&redis)).await;
    let view = gw.get(&format!("/webhooks/{id}")).await.json();
    assert_eq!(view["description"], "CRM");
    gw.create("r1").await;
    assert!(
        receiver
            .wait_for(PATIENCE, |_| has_state(
                &accepted_events(&receiver),
                "r1",
                "qr"
            ))
            .await,
        "the restored subscription delivers"
    );
    assert!(receiver.requests().iter().all(|r| signature_ok(r, &secret)));
    let deleted = gw.request("DELETE", &format!("/webhooks/{id}"), None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(gw.get(&format!("/webhooks/{id}")).await.status, 404);
    let raw = redis.command(&["HKEYS", "wagate:webhooks"]).as_strings();
    assert!(raw.is_empty(), "{raw:?}");
    gw.shutdown().await;
}
