//! `/health` and `/metrics` tell the truth about delivery to Laravel: with
//! Laravel unreachable for longer than `LARAVEL_DEGRADED_AFTER` the status
//! is `DEGRADED` and names the cause even though the breaker is still
//! closed; a 401 is named as a wrong token or signing secret; recovery
//! clears it.

use serde_json::Value;
use wagate_testkit::{free_port, FakeLaravel};

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[actix_rt::test]
async fn unreachable_laravel_degrades_health_and_names_the_cause() {
    // A port nothing listens on: every connection is refused.
    let port = free_port();
    let mut config = test_config();
    config.laravel.api = format!("http://127.0.0.1:{port}/api");
    config.laravel.max_retries = 0;
    config.laravel.degraded_after_secs = 1;
    // The breaker stays closed: DEGRADED must not depend on it.
    config.breaker.threshold = 1_000_000;
    config.batch.interval_ms = 50;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;
    gw.create("d1").await;

    let held = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["laravel"]["heldBatches"].as_u64() > Some(0)
    })
    .await;
    assert!(held, "undeliverable batches are held");
    let early = gw.get("/health").await.json();
    if early["laravel"]["oldestHeldAgeSeconds"].as_u64() < Some(1) {
        assert_eq!(
            early["status"], "OK",
            "not degraded before the threshold: {early}"
        );
    }

    let degraded = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["status"] == "DEGRADED"
    })
    .await;
    let health = gw.get("/health").await.json();
    assert!(degraded, "{health}");
    let laravel = &health["laravel"];
    assert_eq!(health["circuitBreaker"]["state"], "CLOSED", "{health}");
    assert_eq!(laravel["lastError"]["kind"], "refused", "{health}");
    assert!(laravel["lastError"]["at"].is_string(), "{health}");
    assert_eq!(laravel["lastSuccessAt"], Value::Null);
    assert!(
        laravel["oldestHeldAgeSeconds"].as_u64() >= Some(1),
        "{health}"
    );
    let reason = laravel["degradedReason"].as_str().unwrap();
    assert!(
        reason.contains("refused") && reason.contains("nothing delivered"),
        "{reason}"
    );

    let aged = eventually(PATIENCE, || async {
        let text = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
        sample(&text, r#"wagate_laravel_failures_total{kind="refused"}"#) >= Some(1.0)
            && sample(&text, "wagate_outbox_oldest_age_seconds") >= Some(1.0)
    })
    .await;
    assert!(
        aged,
        "{}",
        String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap()
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_401_is_named_as_a_wrong_token_or_signing_secret_and_recovery_clears_it() {
    let laravel = FakeLaravel::start();
    laravel.set_status(401);
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.max_retries = 0;
    config.laravel.degraded_after_secs = 1;
    // Recovery is observed within the test's patience, not after 120 s.
    config.breaker.reset_ms = 500;
    config.batch.interval_ms = 50;
    config.simulator.qr_rotate_ms = 60_000;
    let gw = spawn(config).await;
    gw.create("w1").await;

    let named = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["laravel"]["lastError"]["kind"] == "http_401"
    })
    .await;
    let health = gw.get("/health").await.json();
    assert!(named, "{health}");
    let message = health["laravel"]["lastError"]["message"].as_str().unwrap();
    assert!(
        message.contains("LARAVEL_SIGNING_SECRET") && message.contains("LARAVEL_TOKEN"),
        "{message}"
    );
    let degraded = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        h["status"] == "DEGRADED"
            && h["laravel"]["degradedReason"]
                .as_str()
                .is_some_and(|r| r.contains("http_401"))
    })
    .await;
    assert!(degraded, "{}", gw.get("/health").await.json());

    // The operator fixes the secret: everything held arrives, health is OK.
    laravel.set_status(200);
    let recovered = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        h["status"] == "OK"
            && h["laravel"]["heldBatches"] == 0
            && h["laravel"]["lastSuccessAt"].is_string()
            && h["laravel"]["oldestHeldAgeSeconds"].is_null()
    })
    .await;
    assert!(recovered, "{}", gw.get("/health").await.json());
    let statuses = laravel.requests_to("/whatsapp/status/batch");
    assert!(
        statuses.iter().any(|r| r.status == 200),
        "the held status batch arrived"
    );
    gw.shutdown().await;
}
