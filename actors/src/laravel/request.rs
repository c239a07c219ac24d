//! One signed POST of a batch to Laravel: the headers (JSON, its
//! `Idempotency-Key`, the timestamp, the bearer token, the HMAC
//! [`signature`](super::signature)), the answer classified into an
//! [`Attempt`], and the request metrics. `LaravelClient` calls it for every
//! attempt and every replay; the returned future owns all it needs. The
//! same signed POST ([`signed_json_post`]) carries webhooks and the
//! fallback URL (`webhooks::sender`), so every receiver verifies one contract.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};

use super::attempt::{classify_error, classify_status, Attempt};
use super::client::LaravelConfig;
use super::payload::OutboundBatch;
use super::signature::SignatureVersion;
use crate::clock::unix_ms;
use crate::metrics::Metrics;

/// Laravel's answer body is read (so the connection goes back to the pool)
/// up to this much; the gateway only looks at the status.
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// How a request is authenticated: a bearer token and/or an HMAC secret.
#[derive(Clone, Copy)]
pub(crate) struct Signing<'a> {
    pub token: Option<&'a SecretString>,
    pub secret: Option<&'a SecretString>,
    pub version: SignatureVersion,
}

/// POSTs `body` (JSON) to `url` with the contract's headers (`Accept`,
/// `Idempotency-Key`, `X-Wagate-Timestamp`, bearer token, signature) plus
/// `extra`, and classifies the answer. The future owns all it needs.
pub(crate) fn signed_json_post(
    http: &awc::Client,
    url: &str,
    timeout: Duration,
    idempotency_key: &str,
    body: Bytes,
    signing: Signing<'_>,
    extra: &[(&'static str, String)],
) -> impl Future<Output = Attempt> + 'static {
    let ts = unix_ms();
    let mut req = http
        .post(url)
        .timeout(timeout)
        .insert_header(("Content-Type", "application/json"))
        // Laravel answers auth and validation errors as JSON (not a redirect
        // to a login page) when the client says it wants JSON.
        .insert_header(("Accept", "application/json"))
        .insert_header(("Idempotency-Key", idempotency_key))
        .insert_header(("X-Wagate-Timestamp", ts.to_string()));
    for (name, value) in extra {
        req = req.insert_header((*name, value.as_str()));
    }
    if let Some(token) = signing.token {
        let bearer = format!("Bearer {}", token.expose_secret());
        req = req.insert_header(("Authorization", bearer));
    }
    if let Some(secret) = signing.secret.or(signing.token) {
        let version = signing.version;
        let sig = version.sign(
            secret.expose_secret().as_bytes(),
            ts,
            idempotency_key,
            &body,
        );
        req = req
            .insert_header(("X-Wagate-Signature", sig))
            .insert_header(("X-Wagate-Signature-Version", version.as_header()));
    }
    async move {
        match req.send_body(body).await {
            Ok(mut resp) => {
                let _ = resp.body().limit(ANSWER_READ_LIMIT).await;
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok());
                classify_status(resp.status(), retry_after, SystemTime::now())
            }
            Err(e) => Attempt::Failed(classify_error(&e)),
        }
    }
}

pub(super) fn signed_post(
    http: &awc::Client,
    config: &LaravelConfig,
    batch: &OutboundBatch,
    metrics: &Arc<Metrics>,
) -> impl Future<Output = Attempt> + 'static {
    let base = config.base_url.as_deref().unwrap_or_default();
    let post = signed_json_post(
        http,
        &format!("{base}{}", batch.endpoint.path()),
        config.timeout,
        &batch.id,
        batch.body.clone(),
        Signing {
            token: config.token.as_ref(),
            secret: config.signing_secret.as_ref(),
            version: config.signature_version,
        },
        &[],
    );
    let label = batch.endpoint.label();
    let metrics = Arc::clone(metrics);
    async move {
        let started = Instant::now();
        let result = post.await;
        let outcome = match &result {
            Attempt::Ok => "ok",
            Attempt::Failed(_) => "failed",
            Attempt::Throttled { .. } => "throttled",
            Attempt::Refused(_) => "refused",
        };
        metrics
            .laravel_request_seconds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .laravel_requests
            .with_label_values(&[label, outcome])
            .inc();
        result
    }
}
