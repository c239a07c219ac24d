//! Request size limits on every route, before any handler, key check or
//! extractor runs: a head larger than [`HEADER_LIMIT_BYTES`] gets
//! `431 headers_too_large`; a body announced (`Content-Length`) or found
//! (chunked, counted as it streams) larger than `BODY_LIMIT_BYTES` gets
//! `413 payload_too_large`, without the rest being read, and the connection
//! is closed. The extractors' own limits stay as a second line. Mounted on
//! the `App` by `Application::build`; slow senders are `body_timeout`'s.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use super::AppState;

/// Largest request head (request line and headers) accepted. Real clients
/// send well under 2 KiB (a key, a content type, a tracing header);
/// nginx's default buffers hold 8 KiB per line. actix-http itself refuses
/// heads past 128 KiB (a bare 431) and more than 96 headers (a bare 400)
/// before any of our code runs; this keeps what a connection may pin in
/// memory lower and answers in the API's JSON shape.
pub const HEADER_LIMIT_BYTES: usize = 16 * 1024;

/// The head's size as received: request line plus `name: value\r\n` lines.
fn head_bytes(req: &ServiceRequest) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// The declared body length, if the header is there and readable (actix
/// refuses a malformed one before this runs).
fn declared_length(req: &ServiceRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The body limit of this request: `BODY_LIMIT_BYTES`, except a send
/// (`POST /sessions/{id}/messages`) or a simulated incoming message
/// (`…/simulate/incoming`), whose body may carry media as base64
/// up to `MEDIA_MAX_BYTES` (the router has not matched a pattern yet
/// here, so the path is read by its segments).
fn body_limit_for(req: &ServiceRequest, state: &AppState) -> usize {
    let mut segments = req.path().trim_matches('/').split('/');
    let is_post = req.method() == actix_web::http::Method::POST;
    let in_session =
        segments.next() == Some("sessions") && segments.next().is_some_and(|id| !id.is_empty());
    let rest: Vec<&str> = segments.collect();
    // A send, or a simulated incoming message (its media is base64 too).
    let carries_media = matches!(rest.as_slice(), ["messages"] | ["simulate", "incoming"]);
    if is_post && in_session && carries_media {
        state.media.max_body_bytes().max(state.body_limit)
    } else {
        state.body_limit
    }
}

/// Answers `error` now and closes the connection: whatever the client
/// still sends is never read.
fn refuse(req: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    let (req, _) = req.into_parts();
    let mut resp = error.error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    ServiceResponse::new(req, resp)
}

pub async fn limit_request(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<Data<AppState>>()
        .expect("AppState is registered by configure()");
    let limit = body_limit_for(&req, state);
    let head = head_bytes(&req);
    if head > HEADER_LIMIT_BYTES {
        return Ok(refuse(
            req,
            ApiError::HeadersTooLarge {
                size: head,
                limit: HEADER_LIMIT_BYTES,
            },
        ));
    }
    if declared_length(&req).is_some_and(|n| n > limit as u64) {
        return Ok(refuse(req, ApiError::PayloadTooLarge(limit)));
    }
    // A body without a declared length (chunked) is counted as it arrives.
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&overflowed);
    let mut seen = 0usize;
    let counted = req.take_payload().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(PayloadError::Overflow);
        }
        Ok(chunk)
    });
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(counted);
    req.set_payload(Payload::from(boxed));
    let res = next.call(req).await?;
    if !overflowed.load(Ordering::Relaxed) {
        return Ok(res.map_into_boxed_body());
    }
    // Whatever the handler made of the cut-off read, the body was too large.
    let (req, _) = res.into_parts();
    let mut resp = ApiError::PayloadTooLarge(limit).error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    Ok(ServiceResponse::new(req, resp))
}
