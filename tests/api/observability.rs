//! Request observability and secrets: per-route HTTP metrics labelled by
//! route pattern (never a session id), `X-Request-Id` kept or made, one
//! log line per request carrying it, and secrets set in the environment
//! that never reach the gateway's own log, even at debug level.

use std::path::Path;

use serde_json::{json, Value};
use wagate_testkit::{GatewayClient, GatewayProcess, RedisServer};

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");

/// The `wagate_http_requests_total` lines whose labels include all of `labels`.
fn request_counts<'a>(text: &'a str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with("wagate_http_requests_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .collect()
}

#[actix_rt::test]
async fn http_metrics_are_labelled_by_route_pattern() {
    let gw = spawn(test_config()).await;
    for id in ["obs-a", "obs-b", "obs-c"] {
        gw.create(id).await;
        assert_eq!(gw.get(&format!("/sessions/{id}")).await.status, 200);
    }
    assert_eq!(gw.get("/no/such/route/obs-z").await.status, 404);
    let text = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();

    let by_id = request_counts(
        &text,
        &[
            r#"route="/sessions/{id}""#,
            r#"method="GET""#,
            r#"status="200""#,
        ],
    );
    assert_eq!(by_id.len(), 1, "{text}");
    assert!(by_id[0].ends_with(" 3"), "three GETs, one series: {text}");
    let created = request_counts(
        &text,
        &[
            r#"route="/sessions""#,
            r#"method="POST""#,
            r#"status="201""#,
        ],
    );
    assert_eq!(created.len(), 1, "{text}");
    let unmatched = request_counts(&text, &[r#"route="unmatched""#, r#"status="404""#]);
    assert_eq!(unmatched.len(), 1, "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("wagate_http_"))
            .all(|l| !l.contains("obs-")),
        "no raw path or session id in a label: {text}"
    );
    assert!(
        text.contains(
            r#"wagate_http_request_duration_seconds_count{method="GET",route="/sessions/{id}"} 3"#
        ),
        "{text}"
    );
    gw.shutdown().await;
}

fn request_id(headers: &awc::http::header::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .expect("every response has an X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

#[actix_rt::test]
async fn request_ids_are_echoed_or_made() {
    let gw = spawn(test_config()).await;
    let url = format!("{}/health", gw.base_url());
    let echoed = gw
        .http()
        .get(&url)
        .insert_header(("X-Request-Id", "caller-id-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(echoed.headers()), "caller-id-42");

    let made = gw.get("/health").await;
    let id = request_id(&made.headers);
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let other = gw.get("/no/such/route").await;
    assert_ne!(request_id(&other.headers), id, "one per request");

    let odd = gw
        .http()
        .get(&url)
        .insert_header(("X-Request-Id", "has spaces and \"quotes\""))
        .send()
        .await
        .unwrap();
    let replaced = request_id(odd.headers());
    assert_eq!(replaced.len(), 36, "an odd id is replaced: {replaced}");
    gw.shutdown().await;
}

/// JSON log records of a gateway process.
fn records(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[actix_rt::test]
async fn one_log_line_per_request_carries_its_id() {
    let env = [("LOG_LEVEL", "info"), ("LOG_FORMAT", "json")];
    let mut gateway = GatewayProcess::start(Path::new(BINARY), &env);
    let http = awc::Client::default();
    let url = format!("{}/sessions", gateway.base_url());
    let resp = http
        .post(&url)
        .insert_header(("X-Request-Id", "log-line-7"))
        .send_json(&json!({ "id": "logged" }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let lines_for = |log: &str| -> Vec<Value> {
        records(log)
            .into_iter()
            .filter(|r| r["message"] == "request finished" && r["request_id"] == "log-line-7")
            .collect()
    };
    let logged = eventually(PATIENCE, || async { !lines_for(&gateway.log()).is_empty() }).await;
    let log = gateway.log();
    assert!(logged, "{log}");
    let lines = lines_for(&log);
    assert_eq!(lines.len(), 1, "{log}");
    let line = &lines[0];
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/sessions");
    assert_eq!(line["status"], 201);
    assert!(line["latency_ms"].is_number(), "{line}");
    gateway.terminate();
}

#[actix_rt::test]
async fn secrets_never_reach_the_log() {
    let redis_password = "redis-pw-4c1f9e7a2b";
    let redis = RedisServer::start();
    // Set once it is up: the testkit's readiness probe does not log in.
    redis.command(&["CONFIG", "SET", "requirepass", redis_password]);
    let redis_url = format!("redis://:{redis_password}@127.0.0.1:{}/0", redis.port());
    let laravel = wagate_testkit::FakeLaravel::start();
    let api = laravel.base_url();
    let api_key = "api-key-8d3b6f1e9c5a";
    let metrics_key = "metrics-key-2e7c4a9f0d";
    let env = [
        ("LOG_LEVEL", "debug"),
        ("LOG_FORMAT", "json"),
        ("REDIS_URL", redis_url.as_str()),
        ("LARAVEL_API", api.as_str()),
        ("LARAVEL_TOKEN", "laravel-token-5a8e2c6b1f"),
        ("LARAVEL_SIGNING_SECRET", "signing-secret-9b4d7f3e0a"),
        ("API_KEYS", api_key),
        ("METRICS_KEY", metrics_key),
        ("BATCH_INTERVAL", "50"),
    ];
    let mut gateway = GatewayProcess::start(Path::new(BINARY), &env);
    let http = awc::Client::default();
    let base = gateway.base_url();
    let created = http
        .post(format!("{base}/sessions"))
        .bearer_auth(api_key)
        .send_json(&json!({ "id": "secretive" }))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = http
        .get(format!("{base}/sessions"))
        .bearer_auth("a-wrong-key-that-is-long")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = http
        .get(format!("{base}/metrics"))
        .insert_header(("X-Api-Key", metrics_key))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // Something reached Laravel, so the token and signature were used.
    let delivered = eventually(PATIENCE, || async { !laravel.requests().is_empty() }).await;
    assert!(delivered, "{}", gateway.log());
    let remote = GatewayClient::new(&base);
    let _ = remote.get("/health").await;
    gateway.terminate();
    let log = gateway.log();
    assert!(
        log.lines().count() > 20,
        "debug logging was on and wrote: {log}"
    );
    // The actors' configuration, secrets included, is printed with Debug at
    // start: every secret must show as [REDACTED] there too.
    let config_line = log
        .lines()
        .find(|l| l.contains("actor system configuration"))
        .unwrap_or_else(|| panic!("no configuration line in: {log}"));
    assert!(config_line.contains("REDACTED"), "{config_line}");
    for (name, secret) in env
        .iter()
        .filter(|(k, _)| !["LOG_LEVEL", "LOG_FORMAT", "LARAVEL_API", "BATCH_INTERVAL"].contains(k))
    {
        let needle = if *name == "REDIS_URL" {
            redis_password
        } else {
            secret
        };
        assert!(!log.contains(needle), "{name} leaked into the log:\n{log}");
    }
}
