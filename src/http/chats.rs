//! Contacts and chat actions, thin: `POST /sessions/{id}/contacts/check`
//! (which phone numbers are on WhatsApp, with their JIDs),
//! `POST /sessions/{id}/chats/{to}/typing` (show `composing`, `recording`
//! or `paused`) and `POST /sessions/{id}/chats/{to}/read` (read receipts).
//! Bodies are checked here (400 naming what is wrong, nothing done); the
//! work goes through the `RegistryHandle` to the session's connection,
//! which must be connected (409 otherwise). Nothing here is queued: a late
//! "typing…" or an answer about a number means nothing. Mounted under
//! `/sessions` by [`super::sessions::routes`].

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use wagate_actors::connector::{ChatAction, ChatState};

use super::error::ApiError;
use super::messages::{phone_digits, recipient};
use super::views::{ErrorBody, MarkedRead, NumberCheck, NumberChecks, TypingShown};
use super::{session_id, AppState};

type State = web::Data<AppState>;

/// Most numbers one contacts check may ask about (WhatsApp is asked in
/// batches of 50; more per request would hold the session's connection
/// busy for long).
pub const MAX_CHECK_PHONES: usize = 500;
/// Most message ids one read request may mark (WhatsApp takes 256 per
/// receipt; the client splits them).
pub const MAX_READ_IDS: usize = 1000;
/// Bad phones named in one error message at most.
const NAMED_AT_MOST: usize = 10;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// Phone numbers with country code, 1 to 500.
    #[schema(example = json!(["5215512345678"]))]
    phones: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingBody {
    /// `composing`, `recording` or `paused`.
    state: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadBody {
    /// 1 to 1000 message ids of the chat.
    message_ids: Vec<String>,
    /// In a group: the author of the messages.
    sender: Option<String>,
}

/// `POST /sessions/{id}/contacts/check` `{"phones":[...]}`: for each phone,
/// in the order given, whether it is on WhatsApp (`null`: WhatsApp did not
/// say) and its JID.
///
/// Check which phone numbers are on WhatsApp.
#[utoipa::path(post, path = "/sessions/{id}/contacts/check", tag = "chats",
    params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    request_body = CheckBody,
    responses(
        (status = 200, description = "One result per phone, in order", body = NumberChecks),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`session_not_running` or `conflict` (not connected)", body = ErrorBody),
    ))]
pub async fn check(
    state: State,
    path: web::Path<String>,
    body: web::Json<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let phones = &body.phones;
    if phones.is_empty() {
        return Err(ApiError::InvalidBody("'phones' must not be empty".into()));
    }
    if phones.len() > MAX_CHECK_PHONES {
        return Err(ApiError::InvalidBody(format!(
            "at most {MAX_CHECK_PHONES} 'phones' per request, got {}",
            phones.len()
        )));
    }
    let bad: Vec<&String> = phones
        .iter()
        .filter(|p| phone_digits(p).is_none())
        .collect();
    if !bad.is_empty() {
        let named: Vec<&String> = bad.iter().copied().take(NAMED_AT_MOST).collect();
        let more = bad.len().saturating_sub(NAMED_AT_MOST);
        return Err(ApiError::InvalidBody(format!(
            "each of 'phones' must be a phone number with country code (6 to 20 digits, \
             e.g. \"5215512345678\"); not valid: {named:?}{}",
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    // Each number asked once, however often it is listed.
    let digits: Vec<String> = phones
        .iter()
        .filter_map(|p| phone_digits(p))
        .map(str::to_owned)
        .collect();
    let mut unique = digits.clone();
    unique.sort();
    unique.dedup();
    let answers: HashMap<String, _> = state
        .gateway
        .registry()
        .check_numbers(id.clone(), unique)
        .await?
        .into_iter()
        .map(|a| (a.phone.clone(), a))
        .collect();
    let results: Vec<_> = phones
        .iter()
        .zip(&digits)
        .map(|(asked, d)| {
            let a = answers.get(d);
            NumberCheck {
                phone: asked.clone(),
                on_whatsapp: a.and_then(|a| a.on_whatsapp),
                jid: a.and_then(|a| a.jid.clone()),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(NumberChecks {
        session_id: id,
        results,
    }))
}

/// `POST /sessions/{id}/chats/{to}/typing` `{"state":"composing"|"recording"|"paused"}`.
///
/// Show (or stop showing) "typing…" or "recording audio…" in a chat.
#[utoipa::path(post, path = "/sessions/{id}/chats/{to}/typing", tag = "chats",
    params(
        ("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$"),
        ("to" = String, Path, description = "A phone number or JID"),
    ),
    request_body = TypingBody,
    responses(
        (status = 200, description = "Shown", body = TypingShown),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`session_not_running` or `conflict`", body = ErrorBody),
    ))]
pub async fn typing(
    state: State,
    path: web::Path<(String, String)>,
    body: web::Json<TypingBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, raw_to) = path.into_inner();
    let id = session_id(&raw_id)?;
    let to = recipient(&raw_to)?;
    let chat_state = ChatState::parse(&body.state).ok_or_else(|| {
        ApiError::InvalidBody(format!(
            "'state' must be one of composing, recording, paused; got {:?}",
            body.state
        ))
    })?;
    let action = ChatAction::Typing {
        to: to.clone(),
        state: chat_state,
    };
    state
        .gateway
        .registry()
        .chat_action(id.clone(), action)
        .await?;
    Ok(HttpResponse::Ok().json(TypingShown {
        session_id: id,
        to,
        state: chat_state.as_str(),
    }))
}

/// `POST /sessions/{id}/chats/{to}/read` `{"messageIds":[...],"sender"?}`.
///
/// Mark incoming messages read (blue ticks for the sender).
#[utoipa::path(post, path = "/sessions/{id}/chats/{to}/read", tag = "chats",
    params(
        ("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$"),
        ("to" = String, Path, description = "The chat: a phone number or JID"),
    ),
    request_body = ReadBody,
    responses(
        (status = 200, description = "Marked", body = MarkedRead),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`session_not_running` or `conflict`", body = ErrorBody),
    ))]
pub async fn read(
    state: State,
    path: web::Path<(String, String)>,
    body: web::Json<ReadBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, raw_to) = path.into_inner();
    let id = session_id(&raw_id)?;
    let chat = recipient(&raw_to)?;
    let body = body.into_inner();
    let ids = body.message_ids;
    if ids.is_empty() || ids.len() > MAX_READ_IDS {
        return Err(ApiError::InvalidBody(format!(
            "'messageIds' must hold 1 to {MAX_READ_IDS} message ids, got {}",
            ids.len()
        )));
    }
    if let Some(bad) = ids.iter().find(|m| !is_message_id(m)) {
        return Err(ApiError::InvalidBody(format!(
            "each of 'messageIds' must be a message id (1 to 128 letters, digits, - or _), got {bad:?}"
        )));
    }
    let sender = body.sender.as_deref().map(recipient).transpose()?;
    let count = ids.len();
    let action = ChatAction::Read {
        chat: chat.clone(),
        sender,
        message_ids: ids,
    };
    state
        .gateway
        .registry()
        .chat_action(id.clone(), action)
        .await?;
    Ok(HttpResponse::Ok().json(MarkedRead {
        session_id: id,
        chat,
        read: count,
    }))
}

fn is_message_id(m: &str) -> bool {
    (1..=128).contains(&m.len())
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
