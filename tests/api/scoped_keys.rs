//! Scoped API keys over real HTTP: an admin key makes a key for one
//! session and some actions; that key may do exactly those (403
//! `key_out_of_scope` for the rest, its list shows only its sessions), is
//! never shown again, is revoked at once, and survives a restart on Redis.

use serde_json::{json, Value};
use wagate_testkit::RedisServer;

use crate::helpers::{redis_config, spawn, test_config, TestGateway};

const ADMIN: &str = "admin-0123456789abcdef";

/// `method path` with `key`, an optional JSON body: (status, JSON body).
async fn call(
    gw: &TestGateway,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = gw
        .http()
        .request(method.parse().unwrap(), format!("{}{path}", gw.base_url()))
        .insert_header(("X-Api-Key", key));
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("the gateway answers");
    let status = res.status().as_u16();
    let bytes = res.body().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn make_key(gw: &TestGateway, sessions: &[&str], actions: &[&str]) -> (String, String) {
    let (status, body) = call(
        gw,
        ADMIN,
        "POST",
        "/keys",
        Some(json!({ "name": "shop app", "sessions": sessions, "actions": actions })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

#[actix_rt::test]
async fn a_scoped_key_does_what_its_grant_says_and_nothing_else() {
    let mut config = test_config();
    config.server.api_keys = ADMIN.into();
    let gw = spawn(config).await;
    for id in ["shop-1", "shop-2"] {
        assert_eq!(
            call(&gw, ADMIN, "POST", "/sessions", Some(json!({ "id": id })))
                .await
                .0,
            201
        );
    }
    let (key_id, key) = make_key(&gw, &["shop-1", "shop-9"], &["read", "send", "qr"]).await;
    let out_of_scope = |(status, body): (u16, Value)| {
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "key_out_of_scope", "{body}");
        body["error"]["message"].as_str().unwrap().to_owned()
    };

    // Granted: its session's reads, sends and QR.
    assert_eq!(
        call(&gw, &key, "GET", "/sessions/shop-1", None).await.0,
        200
    );
    let (status, sent) = call(
        &gw,
        &key,
        "POST",
        "/sessions/shop-1/messages",
        Some(json!({ "to": "5215512345678", "text": "hola" })),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let mid = sent["messageId"].as_str().unwrap();
    assert_eq!(
        call(
            &gw,
            &key,
            "GET",
            &format!("/sessions/shop-1/messages/{mid}"),
            None
        )
        .await
        .0,
        200
    );
    // Its list is its own sessions that exist.
    let (status, page) = call(&gw, &key, "GET", "/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["sessions"][0]["id"], "shop-1");

    // Refused: another session, an action it lacks, admin routes.
    let msg = out_of_scope(call(&gw, &key, "GET", "/sessions/shop-2", None).await);
    assert!(msg.contains("shop-2"), "{msg}");
    out_of_scope(
        call(
            &gw,
            &key,
            "POST",
            "/sessions/shop-2/messages",
            Some(json!({ "to": "521", "text": "x" })),
        )
        .await,
    );
    let msg = out_of_scope(call(&gw, &key, "POST", "/sessions/shop-1/logout", None).await);
    assert!(msg.contains("manage"), "{msg}");
    out_of_scope(call(&gw, &key, "DELETE", "/sessions/shop-1", None).await);
    out_of_scope(
        call(
            &gw,
            &key,
            "POST",
            "/sessions",
            Some(json!({ "id": "shop-9" })),
        )
        .await,
    );
    out_of_scope(call(&gw, &key, "GET", "/keys", None).await);
    out_of_scope(
        call(
            &gw,
            &key,
            "POST",
            "/keys",
            Some(json!({ "sessions": ["shop-2"], "actions": ["manage"] })),
        )
        .await,
    );
    out_of_scope(call(&gw, &key, "GET", "/events", None).await);
    out_of_scope(call(&gw, &key, "GET", "/events?session=shop-2", None).await);
    // Nothing refused changed anything.
    let (_, shop1) = call(&gw, ADMIN, "GET", "/sessions/shop-1", None).await;
    assert_ne!(shop1["state"], "logged_out", "{shop1}");
    assert_eq!(
        call(&gw, ADMIN, "GET", "/sessions", None).await.1["total"],
        2
    );

    // A key with `manage` creates its own ids only.
    let (_, manager) = make_key(&gw, &["shop-9"], &["manage"]).await;
    assert_eq!(
        call(
            &gw,
            &manager,
            "POST",
            "/sessions",
            Some(json!({ "id": "shop-9" }))
        )
        .await
        .0,
        201
    );
    out_of_scope(
        call(
            &gw,
            &manager,
            "POST",
            "/sessions",
            Some(json!({ "id": "shop-3" })),
        )
        .await,
    );
    assert_eq!(
        call(&gw, ADMIN, "GET", "/sessions/shop-3", None).await.0,
        404
    );

    // The admin's list never shows a key again; revoking is immediate.
    let (_, list) = call(&gw, ADMIN, "GET", "/keys", None).await;
    let listed = list["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.get("key").is_none()));
    assert!(!list.to_string().contains(&key));
    assert_eq!(listed[0]["actions"], json!(["read", "qr", "send"]));
    assert_eq!(
        call(&gw, ADMIN, "DELETE", &format!("/keys/{key_id}"), None)
            .await
            .0,
        200
    );
    let (status, body) = call(&gw, &key, "GET", "/sessions/shop-1", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = call(&gw, ADMIN, "DELETE", &format!("/keys/{key_id}"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );

    // Bad bodies change nothing.
    for bad in [
        json!({ "sessions": [], "actions": ["send"] }),
        json!({ "sessions": ["a b"], "actions": ["send"] }),
        json!({ "sessions": ["s1"], "actions": ["fly"] }),
        json!({ "sessions": ["s1"], "actions": ["send"], "admin": true }),
    ] {
        let (status, body) = call(&gw, ADMIN, "POST", "/keys", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
    assert_eq!(
        call(&gw, ADMIN, "GET", "/keys", None).await.1["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn without_admin_keys_there_are_no_scoped_keys() {
    let gw = spawn(test_config()).await;
    let (status, body) = call(
        &gw,
        "anything",
        "POST",
        "/keys",
        Some(json!({ "sessions": ["s1"], "actions": ["send"] })),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("API_KEYS"));
    gw.shutdown().await;
}

#[actix_rt::test]
async fn scoped_keys_live_in_redis_and_survive_a_restart() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.server.api_keys = ADMIN.into();
    let gw = spawn(config.clone()).await;
    assert_eq!(
        call(
            &gw,
            ADMIN,
            "POST",
            "/sessions",
            Some(json!({ "id": "shop-1" }))
        )
        .await
        .0,
        201
    );
    let (key_id, key) = make_key(&gw, &["shop-1"], &["read"]).await;
    let stored = redis
        .command(&["HGET", "wagate:apikeys", &key_id])
        .as_text()
        .expect("the record is in Redis");
    assert!(stored.contains("\"digest\""), "{stored}");
    assert!(!stored.contains(&key), "the key itself is never stored");
    gw.shutdown().await;

    let gw = spawn(config).await;
    assert_eq!(
        call(&gw, &key, "GET", "/sessions/shop-1", None).await.0,
        200
    );
    assert_eq!(
        call(&gw, &key, "GET", "/sessions/shop-1/qr", None).await.0,
        403
    );
    gw.shutdown().await;
}
