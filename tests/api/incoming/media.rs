//! Incoming media over real HTTP: the item's signed URL downloads the exact
//! bytes without the API key (sha256 matches), `Range` gives 206 and 416,
//! a tampered, missing or foreign token gets 403; small media travels
//! inline when asked; on Redis the bytes survive a gateway restart (the
//! URL still works on the new process) and expire at `MEDIA_TTL`: the
//! token then gets 403 and no key is left behind.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use wagate_testkit::{FakeLaravel, RedisServer};

use super::{forwarding, incoming, item_from, sha};
use crate::helpers::{eventually, redis_config, spawn};

/// A GET of `url` with an optional `Range`, without any API key:
/// (status, headers we check, body).
async fn fetch(url: &str, range: Option<&str>) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let client = awc::Client::new();
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.insert_header(("Range", r));
    }
    let mut resp = req.send().await.expect("the gateway answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (ctype, crange) = (header("content-type"), header("content-range"));
    let body = resp.body().limit(64 << 20).await.unwrap().to_vec();
    (resp.status().as_u16(), ctype, crange, body)
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("<none>").to_owned()
}

fn pdf(n: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.4\n".to_vec();
    b.extend((0..n).map(|i| (i % 251) as u8));
    b
}

#[actix_rt::test]
async fn the_signed_url_serves_the_exact_bytes_ranges_and_nothing_to_a_bad_token() {
    let laravel = FakeLaravel::start();
    let gw = spawn(forwarding(&laravel)).await;
    gw.link("media").await;
    let bytes = pdf(100_000);
    incoming(
        &gw,
        "media",
        json!({"from": "3001", "type": "document", "base64": B64.encode(&bytes),
               "mimeType": "application/pdf", "fileName": "invoice.pdf"}),
    )
    .await;
    let item = item_from(&laravel, "3001").await;
    let media = &item["media"];
    let url = media["url"].as_str().unwrap();
    assert!(media.get("base64").is_none(), "inline is off by default");

    let (status, ctype, _, body) = fetch(url, None).await;
    assert_eq!(status, 200);
    assert_eq!(ctype.as_deref(), Some("application/pdf"));
    assert_eq!(sha(&body), media["sha256"].as_str().unwrap());
    assert_eq!(body, bytes);

    let (status, _, crange, body) = fetch(url, Some("bytes=10-19")).await;
    assert_eq!(status, 206);
    assert_eq!(crange.as_deref(), Some("bytes 10-19/100009"));
    assert_eq!(body, &bytes[10..20]);
    let (status, _, _, body) = fetch(url, Some("bytes=-5")).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[bytes.len() - 5..]));
    let (status, _, crange, body) = fetch(url, Some("bytes=200000-")).await;
    assert_eq!(status, 416);
    assert_eq!(crange.as_deref(), Some("bytes */100009"));
    assert_eq!(error_code(&body), "range_not_satisfiable");

    // Tampered: one hex digit of the signature changed.
    let mut tampered = url.to_owned().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (status, _, _, body) = fetch(&tampered, None).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "media_forbidden")
    );
    // A later expiry with the old signature.
    let (base, token) = url.split_once("?token=").unwrap();
    let (_, signature) = token.split_once('.').unwrap();
    let stretched = format!("{base}?token=99999999999999.{signature}");
    assert_eq!(fetch(&stretched, None).await.0, 403);
    // No token, and this token on another id.
    assert_eq!(fetch(base, None).await.0, 403);
    let other = url.replacen("/media/", "/media/0", 1);
    assert_eq!(fetch(&other, None).await.0, 403);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn small_media_also_travels_inline_when_asked() {
    let laravel = FakeLaravel::start();
    let mut config = forwarding(&laravel);
    config.media.inline_max = 64;
    let gw = spawn(config).await;
    gw.link("inline").await;
    let small = b"tiny webp".to_vec();
    let large = pdf(100);
    incoming(
        &gw,
        "inline",
        json!({"from": "4001", "type": "sticker", "base64": B64.encode(&small)}),
    )
    .await;
    incoming(
        &gw,
        "inline",
        json!({"from": "4002", "type": "document", "base64": B64.encode(&large)}),
    )
    .await;
    let sticker = item_from(&laravel, "4001").await;
    assert_eq!(
        B64.decode(sticker["media"]["base64"].as_str().unwrap())
            .unwrap(),
        small
    );
    let document = item_from(&laravel, "4002").await;
    assert!(
        document["media"].get("base64").is_none(),
        "over MEDIA_INLINE_MAX"
    );
    assert!(document["media"]["url"].is_string(), "a URL either way");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn media_on_redis_survives_a_restart_and_is_served_without_the_api_key() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let config = || {
        let mut c = redis_config(&redis);
        c.laravel.api = laravel.base_url();
        c.media.url_secret = "shared-by-every-node".to_owned().into();
        c.batch.messages_interval_ms = 50;
        c
    };
    let gw = spawn(config()).await;
    gw.link("durable").await;
    let bytes = pdf(50_000);
    incoming(&gw, "durable", json!({"from": "5001", "type": "image", "base64": B64.encode(&bytes), "mimeType": "image/png"})).await;
    let item = item_from(&laravel, "5001").await;
    let url = item["media"]["url"].as_str().unwrap().to_owned();
    gw.shutdown().await;

    // A new process (another port, API keys on) serves the same URL.
    let mut again = config();
    again.server.api_keys = "k-0123456789abcdef0123456789abcdef".to_owned().into();
    let gw = spawn(again).await;
    assert_eq!(gw.get("/sessions").await.status, 401, "the API is keyed");
    let path = &url[url.find("/media/").unwrap()..];
    let (status, ctype, _, body) = fetch(&format!("{}{path}", gw.base_url()), None).await;
    assert_eq!(status, 200);
    assert_eq!(ctype.as_deref(), Some("image/png"));
    assert_eq!(sha(&body), sha(&bytes));
    gw.shutdown().await;
}

#[actix_rt::test]
async fn expired_media_gets_403_and_leaves_no_key_behind() {
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let mut config = redis_config(&redis);
    config.laravel.api = laravel.base_url();
    config.media.url_secret = "expiry".to_owned().into();
    config.media.ttl_secs = 2;
    config.batch.messages_interval_ms = 50;
    let gw = spawn(config).await;
    gw.link("expiry").await;
    let bytes = pdf(1_000);
    incoming(
        &gw,
        "expiry",
        json!({"from": "6001", "type": "video", "base64": B64.encode(&bytes)}),
    )
    .await;
    let item = item_from(&laravel, "6001").await;
    let url = item["media"]["url"].as_str().unwrap().to_owned();
    let expires_at = item["media"]["expiresAt"].as_u64().unwrap();
    let keys = || {
        redis
            .command(&["KEYS", "wagate:inmedia:*"])
            .as_strings()
            .len()
    };
    let now = wagate_actors::clock::unix_ms();
    // On a slow machine the 2 s may be gone already; check 200 only if not.
    if now + 500 < expires_at {
        assert_eq!(fetch(&url, None).await.0, 200);
        assert_eq!(keys(), 1, "the media is one key");
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            fetch(&url, None).await.0 == 403
        })
        .await,
        "the URL still works after MEDIA_TTL"
    );
    assert!(
        wagate_actors::clock::unix_ms() >= expires_at,
        "refused only once expired"
    );
    assert!(
        eventually(Duration::from_secs(30), || async { keys() == 0 }).await,
        "the media's key outlived MEDIA_TTL"
    );
    assert_eq!(
        gw.gateway
            .incoming_media()
            .count(wagate_actors::clock::unix_ms())
            .await
            .unwrap(),
        0
    );
    gw.shutdown().await;
}
