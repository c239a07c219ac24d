//! Request limits (issue 16, beside `security.rs`): an oversized body is
//! refused on every route before it is read, oversized headers get a 431,
//! and neither many half-open (slow-loris) connections nor oversized heads
//! keep other clients from being served within a bound. Raw sockets: the
//! point is what a misbehaving client sends.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn, test_config, TestGateway, PATIENCE};

/// How long an ordinary request may take while the gateway is under the
/// abuse of a test (a debug build on a loaded 2-core machine).
const SERVED_WITHIN: Duration = Duration::from_secs(3);

fn addr(gw: &TestGateway) -> String {
    gw.base_url().trim_start_matches("http://").to_owned()
}

/// Reads until the server closes (or `PATIENCE`): the status and the body.
async fn answer(conn: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&raw)));
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["error"]["code"].as_str().unwrap_or("<none>").to_owned()
}

/// `GET /health`, timed.
async fn timed_health(gw: &TestGateway) -> Duration {
    let started = Instant::now();
    let r = tokio::time::timeout(PATIENCE, gw.get("/health"))
        .await
        .expect("answered");
    assert_eq!(r.status, 200);
    started.elapsed()
}

#[actix_rt::test]
async fn every_route_refuses_an_oversized_body_before_reading_it() {
    let mut config = test_config();
    config.server.body_limit_bytes = 1024;
    // A send's limit is the media's (as base64) plus 256 KiB of fields.
    config.messages.media_max_bytes = 1;
    let gw = spawn(config).await;
    gw.create("big").await;
    let routes = [
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/big"),
        ("DELETE", "/sessions/big"),
        ("GET", "/sessions/big/qr"),
        ("POST", "/sessions/big/pairing-code"),
        ("POST", "/sessions/big/restart"),
        ("POST", "/sessions/big/stop"),
        ("POST", "/sessions/big/logout"),
        ("POST", "/sessions/big/messages"),
        ("GET", "/sessions/big/messages/3EB0AAAAAAAAAAAAAAAA"),
        ("POST", "/sessions/big/simulate/incoming"),
        ("GET", "/nowhere"),
    ];
    for (method, path) in routes {
        // 1 GB announced, one byte sent: the answer must not wait for the rest.
        let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{{"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (status, body) = answer(&mut conn).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (413, "payload_too_large"),
            "{method} {path}"
        );
        assert!(
            started.elapsed() < SERVED_WITHIN,
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    // A chunked body has no declared length: it is counted as it arrives.
    for path in [
        "/sessions",
        "/sessions/big/simulate/incoming",
        "/sessions/big/messages",
    ] {
        let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        // 2 KiB over the 1 KiB limit; a send's limit (and a simulated
        // incoming message's, which may carry base64 media too) is
        // 256 KiB + 4 bytes.
        let chunks = if path.ends_with("/messages") || path.ends_with("/incoming") {
            520
        } else {
            4
        };
        for _ in 0..chunks {
            req.extend_from_slice(b"200\r\n");
            req.extend_from_slice(&[b' '; 0x200]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        conn.write_all(&req).await.unwrap();
        let (status, body) = answer(&mut conn).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (413, "payload_too_large"),
            "chunked {path}"
        );
    }
    // Nothing was created or sent by any of it.
    let list = gw.get("/sessions").await.json();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        gw.get("/sessions/big").await.status,
        200,
        "DELETE with a huge body changed nothing"
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn oversized_headers_get_431_and_others_are_still_served() {
    let gw = spawn(test_config()).await;
    // Over our limit (16 KiB): the API's JSON error.
    let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
    let head = format!(
        "GET /sessions HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = answer(&mut conn).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (431, "headers_too_large")
    );

    // Many clients each sending a head past actix-http's own buffer
    // (128 KiB) at once; meanwhile an ordinary client is served.
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr(&gw);
            actix_rt::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                let _ = conn
                    .write_all(b"GET /sessions HTTP/1.1\r\nHost: x\r\n")
                    .await;
                let line = format!("X-Padding: {}\r\n", "b".repeat(4000));
                for _ in 0..40 {
                    if conn.write_all(line.as_bytes()).await.is_err() {
                        break; // refused and closed mid-head
                    }
                }
                let mut raw = Vec::new();
                let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut raw)).await;
                raw
            })
        })
        .collect();
    for _ in 0..5 {
        let took = timed_health(&gw).await;
        assert!(
            took < SERVED_WITHIN,
            "/health took {took:?} during the flood"
        );
    }
    for handle in flood {
        let raw = handle.await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            raw.is_empty() || text.starts_with("HTTP/1.1 431"),
            "an oversized head got {text:?}"
        );
    }
    assert_eq!(gw.get("/sessions").await.status, 200);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn half_open_connections_do_not_stall_other_clients_and_are_closed() {
    let mut config = test_config();
    config.server.client_request_timeout_ms = 1500;
    let gw = spawn(config).await;
    // Slow-loris: 300 connections, each with a head begun and never ended.
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
        conn.write_all(format!("GET /sessions HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").as_bytes())
            .await
            .unwrap();
        slow.push(conn);
    }
    // While they hang, other clients are served promptly.
    for _ in 0..10 {
        let took = timed_health(&gw).await;
        assert!(
            took < SERVED_WITHIN,
            "/health took {took:?} beside 300 half-open connections"
        );
    }
    gw.create("served").await;
    // The server gives up on each of them after CLIENT_REQUEST_TIMEOUT.
    let mut closed = 0;
    for mut conn in slow {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut raw)).await;
        if read.is_ok() {
            let text = String::from_utf8_lossy(&raw);
            assert!(raw.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
            closed += 1;
        }
    }
    assert_eq!(closed, 300, "every half-open connection was closed");
    let took = timed_health(&gw).await;
    assert!(took < SERVED_WITHIN, "/health took {took:?} afterwards");
    gw.shutdown().await;
}
