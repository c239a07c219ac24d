//! HTTPS to Laravel with a private CA (`LARAVEL_CA_FILE`): batches arrive
//! over TLS; a certificate from an untrusted CA, for another host, or
//! expired is refused — nothing is delivered, the batch is held, and
//! `/health` names the TLS failure.

use serde_json::Value;
use wagate_testkit::{FakeLaravel, ServerCert, TestCa};

use crate::helpers::{eventually, spawn, test_config, TestGateway, PATIENCE};

/// A gateway forwarding to `laravel`, trusting the CA in `ca_file`.
async fn gateway_to(laravel: &FakeLaravel, ca_file: &std::path::Path) -> TestGateway {
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.laravel.ca_file = ca_file.display().to_string();
    config.laravel.max_retries = 0;
    config.batch.interval_ms = 50;
    config.simulator.qr_rotate_ms = 60_000;
    spawn(config).await
}

#[actix_rt::test]
async fn batches_arrive_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wagate test CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let laravel = FakeLaravel::start_tls(&ca.issue(&["127.0.0.1", "localhost"]));
    assert!(laravel.base_url().starts_with("https://"));
    let gw = gateway_to(&laravel, &ca_file).await;

    gw.create("t1").await;
    let arrived = laravel
        .wait_for(PATIENCE, |reqs| {
            reqs.iter().any(|r| {
                r.status == 200
                    && r.path.ends_with("/whatsapp/status/batch")
                    && r.json
                        .as_ref()
                        .is_some_and(|j| j["statuses"][0]["sessionId"] == "t1")
            })
        })
        .await;
    assert!(arrived, "the status batch arrives over HTTPS");
    // The fake records a request before answering it: wait for the answer.
    let noted = eventually(PATIENCE, || async {
        gw.get("/health").await.json()["laravel"]["lastSuccessAt"].is_string()
    })
    .await;
    let health = gw.get("/health").await.json();
    assert!(noted, "{health}");
    assert_eq!(health["laravel"]["lastError"], Value::Null, "{health}");

    // HTTP/1.1 keep-alive over TLS: later batches reuse the connection
    // instead of a handshake each.
    for id in ["t2", "t3", "t4", "t5"] {
        gw.create(id).await;
        let arrived = laravel
            .wait_for(PATIENCE, |reqs| {
                reqs.iter().any(|r| {
                    r.status == 200
                        && r.json
                            .as_ref()
                            .is_some_and(|j| j["statuses"][0]["sessionId"] == id)
                })
            })
            .await;
        assert!(arrived, "{id}'s status arrives");
    }
    let requests = laravel.count() as u64;
    eprintln!(
        "tls keep-alive: {} connections for {requests} requests",
        laravel.connections()
    );
    assert!(laravel.connections() >= 1, "the fake counts connections");
    assert!(
        laravel.connections() * 2 <= requests,
        "{} TLS connections for {requests} requests",
        laravel.connections()
    );
    gw.shutdown().await;
}

/// Serves `cert` and expects the gateway (trusting `trusted`) to refuse it:
/// no request reaches Laravel, the batch is held, and `/health` reports a
/// `tls` error whose message contains `expect` (case-insensitive).
async fn refused(trusted: &TestCa, cert: &ServerCert, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    trusted.write_pem(&ca_file);
    let laravel = FakeLaravel::start_tls(cert);
    let gw = gateway_to(&laravel, &ca_file).await;
    gw.create("t1").await;

    let reported = eventually(PATIENCE, || async {
        let h = gw.get("/health").await.json();
        h["laravel"]["lastError"]["kind"] == "tls" && h["laravel"]["heldBatches"].as_u64() > Some(0)
    })
    .await;
    let health = gw.get("/health").await.json();
    assert!(
        reported,
        "a TLS failure is reported and the batch held: {health}"
    );
    let message = health["laravel"]["lastError"]["message"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        expect.iter().any(|e| message.contains(&e.to_lowercase())),
        "{expect:?} in {message}"
    );
    assert!(
        message.contains("laravel_ca_file"),
        "the hint names the setting: {message}"
    );
    assert_eq!(health["laravel"]["lastSuccessAt"], Value::Null);
    assert_eq!(laravel.count(), 0, "no request got through the handshake");
    let metrics = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"wagate_laravel_failures_total{kind="tls"}"#),
        "failures by kind"
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = TestCa::new("trusted CA");
    let other = TestCa::new("someone else's CA");
    refused(
        &trusted,
        &other.issue(&["127.0.0.1"]),
        &["UnknownIssuer", "unknown issuer"],
    )
    .await;
}

#[actix_rt::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = TestCa::new("trusted CA");
    refused(
        &ca,
        &ca.issue(&["laravel.example.com"]),
        &["not valid for name", "NotValidForName"],
    )
    .await;
}

#[actix_rt::test]
async fn an_expired_certificate_is_refused() {
    let ca = TestCa::new("trusted CA");
    refused(&ca, &ca.issue_expired(&["127.0.0.1"]), &["expired"]).await;
}
