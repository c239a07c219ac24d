//! `ApiError`: the one error type of the HTTP API. Every error leaves as
//! `{"error":{"code","message"}}` with a stable machine-readable `code` and
//! a message a person can act on. Also the JSON/path/query extractor error
//! handlers, so malformed input never yields a bare-text 400 or a 500.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use wagate_actors::ids::{InvalidSessionId, SessionId};
use wagate_actors::registry::RegistryError;

use super::views::{ErrorBody, ErrorDetail};

/// What a JSON route reads (its 415 says so).
pub const JSON_BODY: &str = "JSON with 'Content-Type: application/json'";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("invalid session id: {0}")]
    InvalidSessionId(#[from] InvalidSessionId),
    #[error("{0}")]
    InvalidQuery(String),
    #[error(
        "missing or wrong API key: send it as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'"
    )]
    Unauthorized,
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}; it takes {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        /// The methods the path takes, as the `Allow` header lists them.
        allow: String,
    },
    /// A scoped key asked for what its scope does not grant.
    #[error("{0}")]
    KeyOutOfScope(String),
    #[error("API key {0} not found")]
    KeyNotFound(String),
    #[error("webhook {0} not found")]
    WebhookNotFound(String),
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    #[error("session {id} has no QR code to scan (state: {state})")]
    QrNotAvailable { id: SessionId, state: &'static str },
    #[error(
        "the simulator is not the configured connector (CONNECTOR); simulate endpoints are off"
    )]
    SimulatorDisabled,
    #[error("session {0} already exists")]
    SessionExists(SessionId),
    #[error("session {0} is not running; restart it first")]
    SessionNotRunning(SessionId),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request headers are {size} bytes; the limit is {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    /// The body's type is not one the route reads; says which it reads.
    #[error("send the body as {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the gateway holds its maximum of {0} active sessions (MAX_ACTIVE_SESSIONS); delete or stop one first")]
    SessionLimit(usize),
    #[error("the gateway holds its maximum of {0} sessions in any state (MAX_STORED_SESSIONS); delete one first")]
    SessionStoreFull(usize),
    #[error("the gateway is shutting down or an internal service is unavailable; retry shortly")]
    Unavailable,
    #[error("{0}; nothing was changed, retry shortly")]
    StoreUnavailable(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("message {message_id} of session {session} not found")]
    MessageNotFound {
        session: SessionId,
        message_id: String,
    },
    #[error("the outbound queue holds its maximum of {limit} messages (MESSAGE_QUEUE_LIMIT); retry in {retry_after_secs} s")]
    QueueFull { limit: u64, retry_after_secs: u64 },
    #[error("this session holds its maximum of {limit} unfinished messages (MESSAGE_QUEUE_LIMIT_PER_SESSION); retry in {retry_after_secs} s")]
    SessionQueueFull { limit: u64, retry_after_secs: u64 },
    #[error(
        "too many requests: at most {limit} a minute ({setting}); retry in {retry_after_secs} s"
    )]
    RateLimited {
        setting: &'static str,
        limit: u32,
        retry_after_secs: u64,
    },
    #[error("the request body did not arrive within {0} ms (CLIENT_REQUEST_TIMEOUT)")]
    RequestTimeout(u64),
    #[error("internal error: {0}")]
    Internal(String),
    /// A message body refused for what it says (type, fields, media).
    #[error(transparent)]
    Send(#[from] super::media::SendRefusal),
    /// `GET /media/{id}` with a missing, tampered or expired token.
    #[error(
        "{0}; ask Laravel's copy of the message for a fresh URL or fetch it sooner (MEDIA_TTL)"
    )]
    MediaForbidden(String),
    #[error("media {0} has expired (MEDIA_TTL) or no longer exists")]
    MediaGone(String),
    #[error("the range asked for lies outside the media's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidSessionId(_) => "invalid_session_id",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Unauthorized => "unauthorized",
            ApiError::RouteNotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::KeyOutOfScope(_) => "key_out_of_scope",
            ApiError::KeyNotFound(_) => "key_not_found",
            ApiError::WebhookNotFound(_) => "webhook_not_found",
            ApiError::SessionNotFound(_) => "session_not_found",
            ApiError::QrNotAvailable { .. } => "qr_not_available",
            ApiError::SimulatorDisabled => "simulator_disabled",
            ApiError::SessionExists(_) => "session_exists",
            ApiError::SessionNotRunning(_) => "session_not_running",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::SessionLimit(_) => "session_limit_reached",
            ApiError::SessionStoreFull(_) => "session_store_full",
            ApiError::Unavailable => "unavailable",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::MessageNotFound { .. } => "message_not_found",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::SessionQueueFull { .. } => "session_queue_full",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Internal(_) => "internal",
            ApiError::Send(e) => e.code(),
            ApiError::MediaForbidden(_) => "media_forbidden",
            ApiError::MediaGone(_) => "media_gone",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidSessionId(_)
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RouteNotFound { .. }
            | ApiError::SessionNotFound(_)
            | ApiError::QrNotAvailable { .. }
            | ApiError::MessageNotFound { .. }
            | ApiError::KeyNotFound(_)
            | ApiError::WebhookNotFound(_)
            | ApiError::SimulatorDisabled => StatusCode::NOT_FOUND,
            ApiError::KeyOutOfScope(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::SessionExists(_) | ApiError::SessionNotRunning(_) | ApiError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::SessionLimit(_)
            | ApiError::SessionStoreFull(_)
            | ApiError::QueueFull { .. }
            | ApiError::RateLimited { .. }
            | ApiError::SessionQueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Send(e) => e.status(),
            ApiError::MediaForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MediaGone(_) => StatusCode::GONE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                resp.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                resp.insert_header(("Allow", allow.as_str()));
            }
            ApiError::QueueFull {
                retry_after_secs, ..
            }
            | ApiError::SessionQueueFull {
                retry_after_secs, ..
            } => {
                resp.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::StoreUnavailable(_) => {
                resp.insert_header(("Retry-After", "5"));
            }
            ApiError::RateLimited {
                limit,
                retry_after_secs,
                ..
            } => {
                resp.insert_header(("Retry-After", retry_after_secs.to_string()));
                resp.insert_header(("RateLimit-Limit", limit.to_string()));
                resp.insert_header(("RateLimit-Remaining", "0"));
                resp.insert_header(("RateLimit-Reset", retry_after_secs.to_string()));
            }
            ApiError::RangeNotSatisfiable { size } => {
                resp.insert_header(("Content-Range", format!("bytes */{size}")));
            }
            _ => {}
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Exists(id) => ApiError::SessionExists(id),
            RegistryError::NotFound(id) => ApiError::SessionNotFound(id),
            RegistryError::LimitReached(n) => ApiError::SessionLimit(n),
            RegistryError::StoredLimitReached(n) => ApiError::SessionStoreFull(n),
            RegistryError::NotRunning(id) => ApiError::SessionNotRunning(id),
            RegistryError::Connector(e) => ApiError::Conflict(e.to_string()),
            RegistryError::Unavailable => ApiError::Unavailable,
            RegistryError::Store(e) => ApiError::StoreUnavailable(e.to_string()),
        }
    }
}

/// Bad JSON bodies: wrong syntax, wrong types, too big, wrong content type.
pub fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(limit),
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(JSON_BODY),
        JsonPayloadError::Deserialize(e) => invalid_json(e),
        other => ApiError::InvalidJson(format!("cannot read the JSON body: {other}")),
    }
    .into()
}

/// The one wording of a body serde refused (extractor or [`from_json`]).
fn invalid_json(e: serde_json::Error) -> ApiError {
    ApiError::InvalidJson(format!("invalid JSON body: {e}"))
}

/// A body read as bytes (its shape depends on the route's action), parsed
/// with serde and refused exactly as the `Json` extractor refuses one.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(invalid_json)
}

pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::InvalidQuery(format!("invalid query string: {err}")).into()
}

pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::InvalidQuery(format!("invalid path: {err}")).into()
}

/// Safety net: any error response that is not JSON yet (an extractor's
/// plain-text 413, a 404 from a nested router) is rewritten into the one
/// error shape, keeping its status and text.
pub fn json_error_bodies<B: actix_web::body::MessageBody + 'static>(
) -> actix_web::middleware::ErrorHandlers<B> {
    use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
    ErrorHandlers::new().default_handler(|res: actix_web::dev::ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let (req, _) = res.into_parts();
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            s if s >= 500 => "internal",
            _ => "error",
        };
        let message = status.canonical_reason().unwrap_or("error");
        let body = HttpResponse::build(status).json(ErrorBody {
            error: ErrorDetail {
                code,
                message: message.to_owned(),
            },
        });
        Ok(ErrorHandlerResponse::Response(
            actix_web::dev::ServiceResponse::new(req, body).map_into_right_body(),
        ))
    })
}
