//! Security (issue 17): nothing secret on an anonymous route, metrics that
//! cannot be turned into load, the body-read deadline, and the bounds on
//! what outside input can grow — each hit, with its documented answer and
//! its metric.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::helpers::{eventually, redis_config, spawn, test_config, TestGateway, PATIENCE};

const KEY: &str = "test-api-key-0123456789";

use crate::helpers::metric_sample as sample;

/// A request with the API key; status and body text.
async fn keyed(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let req = gw
        .http()
        .request(method.parse().unwrap(), format!("{}{path}", gw.base_url()))
        .insert_header(("X-Api-Key", KEY));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request reaches the gateway");
    let body = resp.body().limit(10 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_rt::test]
async fn no_anonymous_route_shows_a_qr_pairing_code_message_text_or_key() {
    // Laravel slow to be asked: the QR sits pending in the batcher, where
    // /metrics/batch used to show it.
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.server.api_keys = KEY.into();
    config.laravel.api = laravel.base_url();
    config.batch.interval_ms = 60_000;
    config.batch.size = 1000;
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;
    assert_eq!(
        keyed(&gw, "POST", "/sessions", Some(json!({ "id": "victim" })))
            .await
            .0,
        201
    );
    let ok = eventually(PATIENCE, || async {
        keyed(&gw, "GET", "/sessions/victim/qr", None).await.0 == 200
    })
    .await;
    assert!(ok, "a QR is shown");
    let (_, qr) = keyed(&gw, "GET", "/sessions/victim/qr", None).await;
    let qr: Value = serde_json::from_str(&qr).unwrap();
    let code = qr["qr"].as_str().unwrap().to_owned();
    let (status, pairing) = keyed(
        &gw,
        "POST",
        "/sessions/victim/pairing-code",
        Some(json!({ "phone": "5215512345678" })),
    )
    .await;
    assert_eq!(status, 200, "{pairing}");
    let pairing: Value = serde_json::from_str(&pairing).unwrap();
    let pairing = pairing["code"].as_str().unwrap().to_owned();
    let text = "confidential-message-text-4242";
    let (status, sent) = keyed(
        &gw,
        "POST",
        "/sessions/victim/messages",
        Some(json!({ "to": "5215512345678", "text": text })),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let mid = serde_json::from_str::<Value>(&sent).unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = eventually(PATIENCE, || async {
        gw.get("/metrics/batch").await.json()["metrics"]["qrBatchSize"] == 1
    })
    .await;
    assert!(pending, "the QR is pending in the batcher");

    let routes = [
        ("GET", "/health".to_owned()),
        ("GET", "/health/live".to_owned()),
        ("GET", "/health/ready".to_owned()),
        ("GET", "/metrics".to_owned()),
        ("GET", "/metrics/batch".to_owned()),
        ("GET", "/metrics/cache".to_owned()),
        ("GET", "/metrics/actors".to_owned()),
        ("GET", "/sessions".to_owned()),
        ("POST", "/sessions".to_owned()),
        ("GET", "/sessions/victim".to_owned()),
        ("DELETE", "/sessions/victim".to_owned()),
        ("GET", "/sessions/victim/qr".to_owned()),
        ("GET", "/sessions/victim/qr?format=svg".to_owned()),
        ("GET", "/sessions/victim/qr?format=png".to_owned()),
        ("POST", "/sessions/victim/pairing-code".to_owned()),
        ("POST", "/sessions/victim/logout".to_owned()),
        ("POST", "/sessions/victim/restart".to_owned()),
        ("POST", "/sessions/victim/stop".to_owned()),
        ("POST", "/sessions/victim/messages".to_owned()),
        ("GET", format!("/sessions/victim/messages/{mid}")),
        ("POST", "/sessions/victim/simulate/scan".to_owned()),
        ("GET", "/nowhere".to_owned()),
        ("GET", "/".to_owned()),
    ];
    let secrets = [code.as_str(), pairing.as_str(), text, KEY, "victim"];
    for (method, path) in &routes {
        let r = gw.request(method, path, Some(json!({}))).await;
        let body = String::from_utf8_lossy(&r.body);
        for secret in secrets {
            // The session id is no secret on its own, but no anonymous
            // answer needs it either: it would map who uses the gateway.
            assert!(
                !body.contains(secret),
                "{method} {path} without a key ({}) shows {secret:?}: {body}",
                r.status
            );
        }
        for (name, value) in r.headers.iter() {
            let value = value.to_str().unwrap_or_default();
            assert!(
                secrets.iter().all(|s| !value.contains(s)),
                "{method} {path}: header {name} shows a secret"
            );
        }
    }
    // The keyed routes refused: the session is untouched.
    assert_eq!(keyed(&gw, "GET", "/sessions/victim", None).await.0, 200);
    let failures = sample(&gw.get_text("/metrics").await, "wagate_auth_failures_total");
    assert!(failures >= 14.0, "refusals counted: {failures}");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn metrics_key_guards_the_metrics_routes_only() {
    let mut config = test_config();
    config.server.metrics_key = "metrics-key-0123456789".into();
    let gw = spawn(config).await;
    for path in [
        "/metrics",
        "/metrics/batch",
        "/metrics/cache",
        "/metrics/actors",
    ] {
        let r = gw.get(path).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "unauthorized"),
            "{path}"
        );
        let ok = gw
            .http()
            .get(format!("{}{path}", gw.base_url()))
            .insert_header(("Authorization", "Bearer metrics-key-0123456789"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200, "{path} with the key");
    }
    assert_eq!(gw.get("/health").await.status, 200, "health stays open");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn cache_key_counts_run_once_per_interval_whatever_the_callers() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.store.key_counts_interval_secs = 2;
    let gw = spawn(config).await;
    let counted = eventually(PATIENCE, || async {
        gw.get("/metrics/cache").await.json()["countedAt"].is_u64()
    })
    .await;
    assert!(counted, "the first background count lands");
    let calls = (0..50).map(|_| gw.get("/metrics/cache"));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200);
    }
    let refreshes = sample(
        &gw.get_text("/metrics").await,
        "wagate_cache_key_count_refreshes_total",
    );
    // 51 calls within one interval: the first round, maybe the next one.
    assert!(refreshes <= 2.0, "51 calls, {refreshes} SCAN rounds");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_body_sent_too_slowly_gets_408_and_the_connection_closes() {
    let mut config = test_config();
    config.server.client_request_timeout_ms = 500;
    let gw = spawn(config).await;
    let addr = gw.base_url().trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    // The slow client: one byte every 100 ms, far slower than 1000 bytes in
    // 0.5 s. It stops writing at 300 ms and only reads: a byte arriving after
    // the server stopped reading would make its close a TCP reset, which can
    // discard the 408 before this side reads it (seen on a loaded machine).
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            n = conn.read(&mut buf) => {
                let n = n.unwrap_or(0);
                if n == 0 { break; }
                reply.extend_from_slice(&buf[..n]);
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if started.elapsed() < Duration::from_millis(300)
                    && conn.write_all(b" ").await.is_err()
                {
                    break;
                }
            }
        }
        assert!(started.elapsed() < PATIENCE, "no answer to a slow body");
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the deadline"
    );
    assert_eq!(
        gw.get("/sessions").await.json()["total"],
        0,
        "nothing created"
    );
    gw.shutdown().await;
}

#[test]
fn the_image_runs_as_a_user_on_a_read_only_root_with_only_data_dir_writable() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    // The runtime stage is the last FROM; its USER decides who runs.
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = runtime
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !["root", "0", "0:0"].contains(&user.trim()),
        "runs as {user}"
    );
    assert!(
        runtime.contains(&format!(
            "useradd --system --uid 10001 --home-dir /app --create-home {user}"
        )),
        "{user} is a system user created in the image"
    );
    assert!(
        runtime.contains(&format!("chown {user}:{user} /app/data")),
        "DATA_DIR belongs to {user}"
    );
    let compose: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let wagate = &compose["services"]["wagate"];
    assert_eq!(
        wagate["read_only"].as_bool(),
        Some(true),
        "read-only root filesystem"
    );
    let data_dir = wagate["environment"]["DATA_DIR"].as_str().unwrap();
    let writable: Vec<String> = wagate["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .map(|v| v.split(':').nth(1).unwrap_or_default().to_owned())
        .chain(
            wagate["tmpfs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(str::to_owned),
        )
        .collect();
    assert_eq!(
        writable,
        [data_dir, "/tmp"],
        "writable: DATA_DIR and a tmpfs /tmp only"
    );
}
