//! Live events: `GET /events` (Server-Sent Events) and `GET /events/ws`
//! (WebSocket), all sessions or `?session=`, all kinds or `?types=`. Each
//! connection is one [`feed`] of the gateway's `EventBus`; SSE resumes from
//! `Last-Event-ID` (or `?after=`), and both say so when what was missed is
//! no longer held. A subscriber that stops reading is dropped, never
//! buffered without bound (`wagate_events_dropped_subscribers_total`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use utoipa::IntoParams;
use wagate_actors::events::feed::{self, FeedItem};
use wagate_actors::events::filter::EventFilter;

use super::error::ApiError;
use super::routes::Routes;
use super::views::ErrorBody;
use super::AppState;

type State = web::Data<AppState>;

pub fn routes() -> Routes {
    Routes::new("/events")
        .at("", actix_web::http::Method::GET, sse)
        .at("/ws", actix_web::http::Method::GET, websocket)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this session's events.
    session: Option<String>,
    /// Only these kinds, comma-separated: `state`, `qr`, `message`,
    /// `receipt`, `send_result`.
    types: Option<String>,
    /// Resume after this event id (SSE: `Last-Event-ID` wins when both are given).
    after: Option<u64>,
}

/// Where a subscription starts: the filter and the id to resume after.
fn subscription(
    req: &HttpRequest,
    q: &EventsQuery,
) -> Result<(EventFilter, Option<u64>), ApiError> {
    let filter = EventFilter::parse(q.session.as_deref(), q.types.as_deref())
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let header = match req.headers().get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidQuery("Last-Event-ID: not an event id".to_owned())
                })?,
        ),
    };
    Ok((filter, header.or(q.after)))
}

/// One SSE frame.
fn sse_frame(item: &FeedItem) -> Option<Bytes> {
    let text = match item {
        FeedItem::Event(e) => format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            e.id,
            e.kind.as_str(),
            e.json
        ),
        // No `id:`: the client's Last-Event-ID stays that of its last event.
        FeedItem::Missed { next } => {
            format!("event: missed\ndata: {{\"type\":\"missed\",\"next\":{next}}}\n\n")
        }
        FeedItem::Idle => ": keep-alive\n\n".to_owned(),
        FeedItem::Dropped { reason } => {
            format!("event: dropped\ndata: {{\"type\":\"dropped\",\"reason\":\"{reason}\"}}\n\n")
        }
    };
    Some(Bytes::from(text))
}

/// Server-Sent Events: `id: <n>`, `event: <type>`, `data: <the event's
/// JSON>`. An `event: missed` frame says events before `next` are no longer
/// held; `event: dropped` ends a subscriber that fell behind. A comment
/// line every 15 s keeps proxies from closing a quiet stream.
#[utoipa::path(get, path = "/events", tag = "events",
    params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data` is `{id, type, sessionId, timestamp, data}`", body = String, content_type = "text/event-stream"),
        (status = 400, description = "`invalid_query`: an unknown type, a bad session id or event id", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn sse(
    state: State,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, after) = subscription(&req, &query)?;
    let rx = feed::start(state.gateway.events(), filter, after, feed::IDLE);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let frame = sse_frame(&item)?;
        Some((Ok::<_, std::convert::Infallible>(frame), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx: pass each event on at once instead of buffering the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        // Never compressed: a compressor would hold events back.
        .insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        ))
        .streaming(body))
}

/// A WebSocket of text messages, each an event's JSON
/// (`{id, type, sessionId, timestamp, data}`), or `{"type":"missed","next"}`
/// / `{"type":"dropped","reason"}` as over SSE. Resume with `?after=`. The
/// gateway pings a quiet socket every 15 s; what the client sends is
/// ignored but for close and ping.
#[utoipa::path(get, path = "/events/ws", tag = "events",
    params(EventsQuery),
    responses(
        (status = 101, description = "Switched to a WebSocket of JSON events"),
        (status = 400, description = "`invalid_query`, or not a WebSocket handshake", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn websocket(
    state: State,
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, after) = subscription(&req, &query)?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::InvalidQuery(format!("not a WebSocket handshake: {e}")))?;
    let rx = feed::start(state.gateway.events(), filter, after, feed::IDLE);
    actix_web::rt::spawn(pump(rx, session, messages));
    Ok(response)
}

/// Writes the feed to the socket until either side ends.
async fn pump(
    mut rx: feed::Feed,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
) {
    let close = loop {
        tokio::select! {
            item = rx.recv() => {
                let sent = match item {
                    None => break None,
                    Some(FeedItem::Event(e)) => session.text(e.json.to_string()).await,
                    Some(FeedItem::Missed { next }) => {
                        session.text(format!(r#"{{"type":"missed","next":{next}}}"#)).await
                    }
                    Some(FeedItem::Idle) => session.ping(b"").await,
                    Some(FeedItem::Dropped { reason }) => {
                        let _ = session
                            .text(format!(r#"{{"type":"dropped","reason":"{reason}"}}"#))
                            .await;
                        break Some(actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Again,
                            description: Some(format!("dropped: {reason}")),
                        });
                    }
                };
                if sent.is_err() {
                    return; // the client is gone
                }
            }
            msg = messages.recv() => match msg {
                Some(Ok(actix_ws::Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    let _ = session.close(close).await;
}
