//! Bad input gets a clear 4xx JSON error and changes nothing.

use serde_json::json;

use crate::helpers::{session_ids, spawn, test_config};

#[actix_rt::test]
async fn bad_requests_get_json_4xx_and_change_nothing() {
    let mut config = test_config();
    config.sessions.max_active = 2;
    config.server.body_limit_bytes = 1024;
    let gw = spawn(config).await;
    gw.create("a").await;

    let cases: Vec<(&str, &str, Option<serde_json::Value>, u16, &str)> = vec![
        (
            "POST",
            "/sessions",
            Some(json!({ "id": "a" })),
            409,
            "session_exists",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "id": "has space" })),
            400,
            "invalid_session_id",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "id": "x".repeat(65) })),
            400,
            "invalid_session_id",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "id": "" })),
            400,
            "invalid_session_id",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "id": 42 })),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "name": "b" })),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/sessions",
            Some(json!({ "id": "c".repeat(2000) })),
            413,
            "payload_too_large",
        ),
        ("GET", "/sessions/nobody", None, 404, "session_not_found"),
        ("DELETE", "/sessions/nobody", None, 404, "session_not_found"),
        (
            "POST",
            "/sessions/nobody/restart",
            None,
            404,
            "session_not_found",
        ),
        (
            "POST",
            "/sessions/nobody/logout",
            None,
            404,
            "session_not_found",
        ),
        ("GET", "/sessions/bad%20id", None, 400, "invalid_session_id"),
        ("GET", "/sessions?limit=0", None, 400, "invalid_query"),
        ("GET", "/sessions?limit=ten", None, 400, "invalid_query"),
        (
            "GET",
            "/sessions?state=sleeping",
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/sessions/a/qr?format=gif",
            None,
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/sessions/a/simulate/incoming",
            Some(json!({ "from": 1 })),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/sessions/a/simulate/teleport",
            None,
            404,
            "not_found",
        ),
        ("PUT", "/sessions", None, 405, "method_not_allowed"),
        ("GET", "/nowhere", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let r = gw.request(method, path, body).await;
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{method} {path}");
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.len() > 10,
            "{method} {path}: message {message:?} should help a person"
        );
    }

    // Malformed JSON and a wrong content type.
    let raw = gw
        .http()
        .post(format!("{}/sessions", gw.base_url()))
        .insert_header(("Content-Type", "application/json"))
        .send_body("{\"id\":")
        .await
        .unwrap()
        .status();
    assert_eq!(raw.as_u16(), 400);
    let mut text = gw
        .http()
        .post(format!("{}/sessions", gw.base_url()))
        .insert_header(("Content-Type", "text/plain"))
        .send_body("{\"id\":\"b\"}")
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let body: serde_json::Value = text.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // The send route also reads uploads, and says so.
    let mut form = gw
        .http()
        .post(format!("{}/sessions/a/messages", gw.base_url()))
        .insert_header(("Content-Type", "text/plain"))
        .send_body("hello")
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);
    let body: serde_json::Value = form.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("multipart/form-data"), "{body}");

    // An oversized body on a raw-bytes route gets the same JSON shape.
    let mut big = gw
        .http()
        .post(format!("{}/sessions/a/simulate/disconnect", gw.base_url()))
        .send_body("x".repeat(4096))
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    let body: serde_json::Value = big.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    // The session limit: one more fits, the next is refused.
    gw.create("b").await;
    let r = gw.post("/sessions", json!({ "id": "c" })).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "session_limit_reached");

    // Nothing changed: exactly the two sessions created above.
    let list = gw.get("/sessions").await.json();
    assert_eq!(list["total"], 2);
    assert_eq!(session_ids(&list), ["a", "b"]);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn api_keys_guard_everything_but_health_and_metrics() {
    let mut config = test_config();
    config.server.api_keys = "k-one, k-two".into();
    let gw = spawn(config).await;

    let r = gw.get("/sessions").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthorized");
    let wrong = gw
        .http()
        .get(format!("{}/sessions", gw.base_url()))
        .insert_header(("Authorization", "Bearer k-three"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let bearer = gw
        .http()
        .get(format!("{}/sessions", gw.base_url()))
        .insert_header(("Authorization", "Bearer k-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200);
    let header = gw
        .http()
        .get(format!("{}/sessions", gw.base_url()))
        .insert_header(("X-Api-Key", "k-two"))
        .send()
        .await
        .unwrap();
    assert_eq!(header.status().as_u16(), 200);
    for open in [
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/metrics/batch",
        "/metrics/cache",
        "/metrics/actors",
    ] {
        assert_eq!(gw.get(open).await.status, 200, "{open} needs no key");
    }
    gw.shutdown().await;
}
