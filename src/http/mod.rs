//! The HTTP API. [`configure`] mounts every route on an actix-web `App`; it
//! is used by `Application::build` and by in-process tests alike. Handlers
//! read session state from the `SessionIndex` and send commands through the
//! `RegistryHandle`; none waits on a Session's mailbox for a read.

pub mod access;
pub mod auth;
pub mod body_timeout;
pub mod chats;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod fetch_guard;
pub mod health;
pub mod keys;
pub mod limits;
pub mod media;
pub mod media_download;
pub mod message_body;
pub mod messages;
pub mod metrics;
pub mod metrics_views;
pub mod observe;
pub mod openapi;
pub mod qr;
pub mod rate_limit;
pub mod routes;
pub mod sessions;
pub mod simulate;
pub mod simulate_incoming;
pub mod upload;
pub mod views;
pub mod webhooks;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::HttpServiceFactory;
use actix_web::middleware::from_fn;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, Resource};
use wagate_actors::ids::SessionId;
use wagate_actors::Gateway;

use self::auth::ApiKeys;
use self::error::ApiError;

/// Shared by every worker.
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub api_keys: ApiKeys,
    pub started: Instant,
    /// `NODE_ENV`, shown in `/health`.
    pub environment: String,
    /// Set when SIGTERM arrives: `/health/ready` answers 503 from then on.
    pub shutting_down: Arc<AtomicBool>,
    pub body_limit: usize,
    pub forwarding: bool,
    /// `METRICS_KEY`: wanted by `/metrics*` when set (empty = open).
    pub metrics_key: ApiKeys,
    /// Rate limit of the audit log's auth-failure lines.
    pub audit: crate::audit::AuditLimiter,
    /// `CLIENT_REQUEST_TIMEOUT`: longest a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Per-route request counts and latency, filled by [`observe`].
    pub http: observe::HttpMetrics,
    /// `MEDIA_MAX_BYTES` / `MEDIA_FETCH_TIMEOUT` for sends with media.
    pub media: media::MediaLimits,
    /// `RATE_LIMIT_PER_IP` / `RATE_LIMIT_PER_KEY` buckets.
    pub rate_limits: rate_limit::RateLimits,
    /// Scoped API keys (`POST /keys`), cached from the store.
    pub scoped_keys: keys::ScopedKeys,
}

/// Mounts all routes and the extractor error handlers.
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut ServiceConfig) {
    move |cfg: &mut ServiceConfig| {
        let limit = state.body_limit;
        cfg.app_data(state)
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(error::json_error),
            )
            .app_data(web::PayloadConfig::default().limit(limit))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .service(health::routes().scope())
            .service(openapi::routes().scope())
            // Before `/docs` itself: its scope would take `/docs/…` too.
            .service(openapi::swagger_ui())
            .service(openapi::docs_routes().scope())
            .service(
                metrics::routes()
                    .scope()
                    .wrap(from_fn(auth::require_metrics_key)),
            )
            // Signed URLs: the token is the credential, not the API key.
            .service(media_download::routes().scope())
            .service(protected(events::routes().scope()))
            .service(protected(sessions::routes().scope()))
            .service(protected(keys::routes().scope()))
            .service(protected(webhooks::routes().scope()))
            .service(dashboard::routes().scope())
            // Last: an empty prefix would take every path before it.
            .service(dashboard::root_routes().scope())
            .default_service(web::to(not_found));
    }
}

/// Every (method, path) the API serves, as [`configure`] mounts it (the
/// Swagger UI's own asset routes aside): what the OpenAPI document must
/// describe, no more and no less.
pub fn route_table() -> Vec<(actix_web::http::Method, String)> {
    [
        health::routes(),
        openapi::routes(),
        openapi::docs_routes(),
        metrics::routes(),
        media_download::routes(),
        events::routes(),
        sessions::routes(),
        keys::routes(),
        webhooks::routes(),
        dashboard::routes(),
        dashboard::root_routes(),
    ]
    .iter()
    .flat_map(routes::Routes::table)
    .collect()
}

/// The key check, and outside it the rate limits (a refused key spends
/// its IP's budget too).
fn protected(scope: actix_web::Scope) -> impl HttpServiceFactory {
    scope
        .wrap(from_fn(auth::require_api_key))
        .wrap(from_fn(rate_limit::limit))
}

/// A resource whose unmatched methods get a JSON 405 with an `Allow`
/// header naming `allow`.
pub(crate) fn resource(path: &str, allow: &[actix_web::http::Method]) -> Resource {
    let allow: String = allow
        .iter()
        .map(actix_web::http::Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    web::resource(path).default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path: req.path().to_owned(),
                allow,
            })
        }
    }))
}

#[cfg(test)]
#[test]
fn rfc3339_shows_any_timestamp() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// Parses `{id}` from the path.
pub(crate) fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    Ok(SessionId::parse(raw)?)
}

/// Milliseconds since the Unix epoch as RFC 3339 (for people reading JSON).
pub(crate) fn rfc3339(ms: u64) -> String {
    // humantime shows years up to 9999 only (it panics past them): a
    // stored timestamp from bad data must not take a request down.
    const LAST_MS: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(LAST_MS));
    humantime::format_rfc3339_millis(t).to_string()
}
