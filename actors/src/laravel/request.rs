//! One signed POST of a batch to Laravel: the headers (JSON, its
//! `Idempotency-Key`, the timestamp, the bearer token, the HMAC
//! [`signature`](super::signature)), the answer classified into an
//! [`Attempt`], and the request metrics. `LaravelClient` calls it for every
//! attempt and every replay; the returned future owns all it needs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use secrecy::ExposeSecret;

use super::attempt::{classify_error, classify_status, Attempt};
use super::client::LaravelConfig;
use super::payload::OutboundBatch;
use crate::clock::unix_ms;
use crate::metrics::Metrics;

/// Laravel's answer body is read (so the connection goes back to the pool)
/// up to this much; the gateway only looks at the status.
const ANSWER_READ_LIMIT: usize = 64 * 1024;

pub(super) fn signed_post(
    http: &awc::Client,
    config: &LaravelConfig,
    batch: &OutboundBatch,
    metrics: &Arc<Metrics>,
) -> impl Future<Output = Attempt> + 'static {
    let base = config.base_url.as_deref().unwrap_or_default();
    let ts = unix_ms();
    let mut req = http
        .post(format!("{base}{}", batch.endpoint.path()))
        .timeout(config.timeout)
        .insert_header(("Content-Type", "application/json"))
        // Laravel answers auth and validation errors as JSON (not a redirect
        // to a login page) when the client says it wants JSON.
        .insert_header(("Accept", "application/json"))
        .insert_header(("Idempotency-Key", batch.id.as_str()))
        .insert_header(("X-Wagate-Timestamp", ts.to_string()));
    if let Some(token) = &config.token {
        let bearer = format!("Bearer {}", token.expose_secret());
        req = req.insert_header(("Authorization", bearer));
    }
    if let Some(secret) = config.signing_secret.as_ref().or(config.token.as_ref()) {
        let version = config.signature_version;
        let sig = version.sign(
            secret.expose_secret().as_bytes(),
            ts,
            &batch.id,
            &batch.body,
        );
        req = req
            .insert_header(("X-Wagate-Signature", sig))
            .insert_header(("X-Wagate-Signature-Version", version.as_header()));
    }
    let body = batch.body.clone();
    let label = batch.endpoint.label();
    let metrics = Arc::clone(metrics);
    async move {
        let started = Instant::now();
        let result = match req.send_body(body).await {
            Ok(mut resp) => {
                let _ = resp.body().limit(ANSWER_READ_LIMIT).await;
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok());
                classify_status(resp.status(), retry_after, SystemTime::now())
            }
            Err(e) => Attempt::Failed(classify_error(&e)),
        };
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
