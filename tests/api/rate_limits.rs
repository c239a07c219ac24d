//! Rate limits: per client IP and per API key, 429 `rate_limited` with
//! `Retry-After` and `RateLimit-*` headers, health and metrics never
//! limited, `X-Forwarded-For` believed only from trusted proxies.

use serde_json::Value;

use crate::helpers::{metric_sample, spawn, test_config};

const K1: &str = "key-one-0123456789";
const K2: &str = "key-two-0123456789";

/// GET `path` with `headers`: status, headers, JSON body.
async fn get(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut req = awc::Client::new().get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.expect("answered");
    let body = res.body().await.unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (res.status().as_u16(), res.headers().clone(), json)
}

fn header<'a>(h: &'a awc::http::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[actix_rt::test]
async fn each_key_has_its_budget_and_refusals_say_when_to_come_back() {
    let mut config = test_config();
    config.server.api_keys = format!("{K1},{K2}").into();
    config.server.rate_limit_per_key = 2;
    config.server.rate_limit_per_ip = 5;
    let gw = spawn(config).await;
    let base = gw.base_url().to_owned();
    let k1 = [("X-Api-Key", K1)];
    let (status, h, _) = get(&base, "/sessions", &k1).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            header(&h, "ratelimit-limit"),
            header(&h, "ratelimit-remaining")
        ),
        ("2", "1")
    );
    assert_eq!(get(&base, "/sessions", &k1).await.0, 200);
    let (status, h, body) = get(&base, "/sessions", &k1).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("RATE_LIMIT_PER_KEY"));
    let retry: u64 = header(&h, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(header(&h, "ratelimit-remaining"), "0");
    assert_eq!(header(&h, "ratelimit-reset"), retry.to_string());
    // The other key has its own budget (the IP still has room: 5).
    assert_eq!(
        get(
            &base,
            "/sessions",
            &[("Authorization", &format!("Bearer {K2}"))]
        )
        .await
        .0,
        200
    );
    // A wrong key is refused by the key check and spends the IP's budget.
    assert_eq!(
        get(&base, "/sessions", &[("X-Api-Key", "not-a-key-at-all-000")])
            .await
            .0,
        401
    );
    let (status, _, body) = get(&base, "/sessions", &[("X-Api-Key", K2)]).await;
    assert_eq!(status, 429, "the IP's fifth and sixth: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("RATE_LIMIT_PER_IP"));
    // Health and metrics are never limited.
    for _ in 0..10 {
        assert_eq!(get(&base, "/health/live", &[]).await.0, 200);
    }
    let metrics = gw.get_text("/metrics").await;
    assert_eq!(
        metric_sample(&metrics, r#"wagate_http_rate_limited_total{scope="key"}"#),
        1.0
    );
    assert_eq!(
        metric_sample(&metrics, r#"wagate_http_rate_limited_total{scope="ip"}"#),
        1.0
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    for (trusted, separate) in [("127.0.0.1", true), ("", false), ("10.0.0.0/8", false)] {
        let mut config = test_config();
        config.server.rate_limit_per_ip = 2;
        config.server.trusted_proxies = trusted.into();
        let gw = spawn(config).await;
        let base = gw.base_url().to_owned();
        let a = [("X-Forwarded-For", "198.51.100.7, 203.0.113.1")];
        let b = [("X-Forwarded-For", "203.0.113.2")];
        assert_eq!(get(&base, "/sessions", &a).await.0, 200);
        assert_eq!(get(&base, "/sessions", &a).await.0, 200);
        assert_eq!(
            get(&base, "/sessions", &a).await.0,
            429,
            "trusted: {trusted:?}"
        );
        // Another client behind the same proxy, or the same peer when the
        // proxy is not trusted (the header is anyone's to write).
        let other = get(&base, "/sessions", &b).await.0;
        assert_eq!(other == 200, separate, "trusted: {trusted:?}: {other}");
        gw.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_bad_trusted_proxy_is_refused_at_start_by_name() {
    let mut config = test_config();
    config.server.trusted_proxies = "10.0.0.0/8, nginx.local".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("TRUSTED_PROXIES") && err.contains("nginx.local"),
        "{err}"
    );
}
