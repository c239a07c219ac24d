//! Request observability, the outermost middleware on the `App`: every
//! request gets an id (a sane incoming `X-Request-Id` is kept, else a
//! UUIDv7 is made) echoed in the response's `X-Request-Id`, runs inside a
//! `request` span carrying that id (so a handler's own log lines carry it
//! too), ends with one `request finished` log line (method, route pattern,
//! status, latency, id), and is counted in Prometheus by route *pattern*
//! (`/sessions/{id}`), never by raw path: session ids would make one label
//! value each. Unmatched paths share the label `unmatched`. Mounted by
//! `Application::build`; hand-written because `from_fn` plus `tracing` and
//! `prometheus` (already here) cover it in one short file.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::HttpMessage;
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

use super::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Longest incoming request id kept; longer ones are replaced.
const MAX_ID_LEN: usize = 128;

/// This request's id, in the request's extensions for handlers that want it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// `wagate_http_requests_total{route,method,status}` and
/// `wagate_http_request_duration_seconds{route,method}`.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    rate_limited: IntCounterVec,
}

impl HttpMetrics {
    /// Registers the HTTP families in the gateway's registry (one `/metrics`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        // 0.5 ms .. ~33 s.
        let buckets = exponential_buckets(0.000_5, 2.0, 17)?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern and method",
            )
            .buckets(buckets),
            &["route", "method"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "http_rate_limited_total",
                "Requests refused with 429 by a rate limit, by bucket (ip or key)",
            ),
            &["scope"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        // Known labels start at 0, so dashboards and rate() see them at once.
        for scope in ["ip", "key"] {
            rate_limited.with_label_values(&[scope]);
        }
        Ok(Self {
            requests,
            duration,
            rate_limited,
        })
    }

    /// A request refused by the `scope` bucket ([`super::rate_limit`]).
    pub fn rate_limited(&self, scope: super::rate_limit::Scope) {
        let label = match scope {
            super::rate_limit::Scope::Ip => "ip",
            super::rate_limit::Scope::Key => "key",
        };
        self.rate_limited.with_label_values(&[label]).inc();
    }

    fn observe(&self, route: &str, method: &str, status: StatusCode, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// Standard methods by name; anything else shares `OTHER` (a client could
/// otherwise invent a label value per request).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The incoming id when it is short and plain (it ends up in logs and
/// headers), else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| is_sane(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = method_label(req.method());
    let metrics = req
        .app_data::<Data<AppState>>()
        .expect("AppState is registered by configure()")
        .clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method);
    let mut res = match next.call(req).instrument(span.clone()).await {
        Ok(res) => res.map_into_boxed_body(),
        // Our middlewares answer refusals as responses; an error here has
        // lost its request (so its route): count it, log it, pass it on.
        Err(e) => {
            let status = e.as_response_error().status_code();
            let elapsed = started.elapsed();
            metrics
                .http
                .observe(UNMATCHED, method, status, elapsed.as_secs_f64());
            tracing::info!(
                target: "wagate::http",
                parent: &span,
                request_id = %id,
                method,
                route = UNMATCHED,
                status = status.as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request finished"
            );
            return Err(e);
        }
    };
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let status = res.status();
    let elapsed = started.elapsed();
    metrics
        .http
        .observe(&route, method, status, elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        target: "wagate::http",
        parent: &span,
        request_id = %id,
        method,
        route,
        status = status.as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request finished"
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_odd_ones_replaced() {
        assert!(is_sane("abc-123_x.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("quote\"d"));
        assert!(!is_sane(&"a".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn labels_stay_few() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
    }
}
