//! Body-read deadline (`CLIENT_REQUEST_TIMEOUT`): actix-web bounds the wait
//! for a request's head, not for its body, so a client announcing 1,000
//! bytes and sending one a second held a worker's connection for as long as
//! it liked. This middleware wraps every request's payload in a stream that
//! fails once the deadline passes; the request then ends with
//! `408 request_timeout` and the connection is closed. Mounted on the `App`
//! by `Application::build`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use super::AppState;

pub async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let timeout = req
        .app_data::<Data<AppState>>()
        .expect("AppState is registered by configure()")
        .body_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let payload = req.take_payload();
    let flag = Arc::clone(&expired);
    // State: the inner payload, or None once it failed or timed out.
    let timed = futures_util::stream::unfold(Some(payload), move |inner| {
        let flag = Arc::clone(&flag);
        async move {
            let mut inner = inner?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(inner))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    let err = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body not received in time",
                    );
                    Some((Err(PayloadError::Io(err)), None))
                }
            }
        }
    });
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(timed);
    req.set_payload(Payload::from(boxed));
    let res = next.call(req).await;
    if !expired.load(Ordering::Relaxed) {
        return res.map(ServiceResponse::map_into_boxed_body);
    }
    // Whatever the handler made of the failed read, the client was too slow.
    let (req, _) = match res {
        Ok(res) => res.into_parts(),
        Err(e) => return Err(e),
    };
    let mut resp = ApiError::RequestTimeout(timeout.as_millis() as u64).error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    Ok(ServiceResponse::new(req, resp))
}
