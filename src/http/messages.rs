//! Outbound messages over HTTP, thin: `POST /sessions/{id}/messages`
//! validates the body ([`super::message_body`]: every kind, media through
//! [`super::media`]) and hands it to `MessagesHandle::submit` (202 +
//! message id once durable, 200 for a repeated idempotency key);
//! `GET /sessions/{id}/messages/{messageId}` reads its status. A
//! `multipart/form-data` send goes through [`super::upload`] instead. Errors map to
//! `ApiError` here. Mounted under `/sessions` by [`super::sessions::routes`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::ToSchema;
use wagate_actors::error_chain::Chain;
use wagate_actors::messages::handle::Submitted;
use wagate_actors::messages::{MessageRecord, QueueError};

use super::error::ApiError;
use super::media;
use super::message_body::{validate, SendBody};
use super::views::{self, ErrorBody, MessageView};
use super::{rfc3339, session_id, AppState};

type State = web::Data<AppState>;

/// How long a client is told to wait when the queue is full.
const FULL_RETRY_AFTER_SECS: u64 = 10;

/// The digits of a phone number with country code (an optional leading
/// `+`, then 6 to 20 digits), as WhatsApp wants them.
pub(crate) fn phone_digits(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    ((6..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// A phone number ([`phone_digits`]) or a JID.
pub(crate) fn recipient(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    if let Some(digits) = phone_digits(raw) {
        return Ok(digits.to_owned());
    }
    if let Some((user, server)) = raw.split_once('@') {
        // Digits, optionally in groups joined by single hyphens (old group
        // ids: `creator-timestamp`); a user of hyphens alone is no account.
        let user_ok = user.len() <= 64
            && user
                .split('-')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if user_ok && matches!(server, "s.whatsapp.net" | "g.us" | "lid") {
            return Ok(raw.to_owned());
        }
    }
    Err(ApiError::InvalidBody(format!(
        "'to' must be a phone number with country code (6 to 20 digits, e.g. \"5215512345678\") \
         or a WhatsApp JID (e.g. \"5215512345678@s.whatsapp.net\"), got {raw:?}"
    )))
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::Full { limit } => ApiError::QueueFull {
            limit,
            retry_after_secs: FULL_RETRY_AFTER_SECS,
        },
        QueueError::SessionFull { limit } => ApiError::SessionQueueFull {
            limit,
            retry_after_secs: FULL_RETRY_AFTER_SECS,
        },
        QueueError::SessionNotFound(id) => ApiError::SessionNotFound(id),
        QueueError::RedisDown => {
            ApiError::StoreUnavailable("Redis is unreachable; the message was not accepted".into())
        }
        QueueError::Store(e) => ApiError::StoreUnavailable(Chain(&e).to_string()),
        QueueError::UploadLost => ApiError::StoreUnavailable(e.to_string()),
        QueueError::Unavailable(_) => {
            ApiError::StoreUnavailable(format!("{}; the message was not accepted", Chain(&e)))
        }
    }
}

/// The form of a `multipart/form-data` send: the JSON body's fields under
/// the same names (`mentions` once per JID) plus the media as `file`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only: upload.rs reads the parts as they stream
pub(crate) struct SendForm {
    to: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The media, streamed into the queue as it arrives.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    caption: Option<String>,
    file_name: Option<String>,
    mime_type: Option<String>,
    quoted_message_id: Option<String>,
    mentions: Option<Vec<String>>,
    idempotency_key: Option<String>,
}

/// `POST /sessions/{id}/messages`: the body is read here, not by the JSON
/// extractor, because its limit follows `MEDIA_MAX_BYTES` (base64 media)
/// instead of `BODY_LIMIT_BYTES`, and an oversized body is refused as soon
/// as it passes the limit.
///
/// Send a message of any kind. 202 once it is stored (it survives a
/// restart); the send follows in per-session order, and its outcome reaches
/// Laravel as a `send_result`.
#[utoipa::path(post, path = "/sessions/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    request_body(content(
        (SendBody = "application/json"),
        (SendForm = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "Stored; it will be sent", body = views::MessageAccepted),
        (status = 200, description = "A repeated `idempotencyKey`: the first message", body = views::MessageAccepted),
        (status = 400, description = "`invalid_json`, `invalid_body`, `unknown_message_type`, `missing_field`, `unexpected_field` or a media refusal", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (`MEDIA_MAX_BYTES`)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`queue_full` or `session_queue_full`, with `Retry-After`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: not accepted, with `Retry-After`", body = ErrorBody),
    ))]
pub async fn send(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    if super::upload::is_multipart(req.headers()) {
        let draft = super::upload::read(
            req.headers(),
            payload,
            &state.media,
            state.gateway.messages(),
        )
        .await?;
        return submit(&state, id, draft).await;
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "JSON with 'Content-Type: application/json', or 'multipart/form-data' with the \
             media as a 'file' part",
        ));
    }
    let limit = state.media.max_body_bytes().max(state.body_limit);
    let raw = media::read_body(req.headers(), payload, limit).await?;
    let body: SendBody = super::error::from_json(&raw)?;
    let draft = validate(body, &state.media).await?;
    submit(&state, id, draft).await
}

/// Hands a validated message to intake and words the answer.
async fn submit(
    state: &State,
    id: wagate_actors::ids::SessionId,
    draft: wagate_actors::messages::handle::Draft,
) -> Result<HttpResponse, ApiError> {
    let submitted = state
        .gateway
        .messages()
        .submit(id.clone(), draft)
        .await
        .map_err(queue_error)?;
    Ok(match submitted {
        Submitted::Queued {
            message_id,
            session_connected,
        } => HttpResponse::Accepted().json(views::MessageAccepted {
            message_id,
            session_id: id,
            status: "queued",
            session_connected: Some(session_connected),
            duplicate: None,
        }),
        Submitted::Duplicate { message_id, status } => {
            HttpResponse::Ok().json(views::MessageAccepted {
                message_id,
                session_id: id,
                status: status.as_str(),
                session_connected: None,
                duplicate: Some(true),
            })
        }
    })
}

fn record_view(r: MessageRecord) -> MessageView {
    MessageView {
        kind: r.kind.as_str(),
        status: r.status.as_str(),
        created_at: rfc3339(r.created_ms),
        updated_at: rfc3339(r.updated_ms),
        message_id: r.message_id,
        session_id: r.session,
        to: r.to,
        attempts: r.attempts,
        last_error: r.last_error,
    }
}

/// A message's status: `queued`, `sending`, `sent` or `failed`, with its
/// attempts and last error.
#[utoipa::path(get, path = "/sessions/{id}/messages/{message_id}", tag = "messages",
    params(
        ("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$"),
        ("message_id" = String, Path, description = "The `messageId` the 202 gave"),
    ),
    responses(
        (status = 200, description = "The record (kept `MESSAGE_RECORD_TTL`)", body = MessageView),
        (status = 404, description = "`message_not_found` or `session_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub async fn status(
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, message_id) = path.into_inner();
    let id = session_id(&raw_id)?;
    let not_found = || ApiError::MessageNotFound {
        session: id.clone(),
        message_id: message_id.clone(),
    };
    if message_id.len() > 64 || !message_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    let record = state
        .gateway
        .messages()
        .status(&id, &message_id)
        .await
        .map_err(queue_error)?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(record_view(record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_phone_numbers_or_jids() {
        assert_eq!(recipient("+52 1").ok(), None);
        assert_eq!(recipient("+5215512345678").unwrap(), "5215512345678");
        assert!(recipient("5215512345678@s.whatsapp.net").is_ok());
        assert!(recipient("120363-1234@g.us").is_ok());
        assert!(recipient("bob@example.com").is_err());
        assert!(recipient("12345").is_err());
        for hyphens in [
            "-@s.whatsapp.net",
            "---@g.us",
            "-1@g.us",
            "1-@g.us",
            "1--2@g.us",
            "@lid",
        ] {
            assert!(recipient(hyphens).is_err(), "{hyphens} accepted");
        }
        assert!(recipient("12345678901234@lid").is_ok());
    }
}
