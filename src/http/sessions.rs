//! Session endpoints: create, list, get, delete, stop, restart, logout,
//! plus the QR and simulator sub-resources. Reads come from the snapshot
//! index; commands go through the registry.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use wagate_actors::clock::unix_ms;
use wagate_actors::ids::SessionId;
use wagate_actors::session::index::SessionSnapshot;
use wagate_actors::session::machine::SessionState;

use super::error::ApiError;
use super::routes::Routes;
use super::views::{
    Deleted, ErrorBody, LoggingOut, PairingCode, SessionPage, SessionView, StateChanged,
};
use super::{chats, messages, qr, rfc3339, session_id, simulate, AppState};
use crate::audit;

type State = web::Data<AppState>;

pub fn routes() -> Routes {
    Routes::new("/sessions")
        .at("", Method::POST, create)
        .at("", Method::GET, list)
        // The hottest route first: each resource is matched in turn.
        .at("/{id}/messages", Method::POST, messages::send)
        .at("/{id}", Method::GET, get)
        .at("/{id}", Method::DELETE, delete)
        .at("/{id}/logout", Method::POST, logout)
        .at("/{id}/pairing-code", Method::POST, pairing_code)
        .at("/{id}/restart", Method::POST, restart)
        .at("/{id}/stop", Method::POST, stop)
        .at("/{id}/qr", Method::GET, qr::get_qr)
        .at("/{id}/messages/{message_id}", Method::GET, messages::status)
        .at("/{id}/contacts/check", Method::POST, chats::check)
        .at("/{id}/chats/{to}/typing", Method::POST, chats::typing)
        .at("/{id}/chats/{to}/read", Method::POST, chats::read)
        .at("/{id}/simulate/{action}", Method::POST, simulate::simulate)
}

/// The client's address, for the audit log.
fn peer(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// The JSON shape of one session.
pub fn session_view(s: &SessionSnapshot) -> SessionView {
    let now = unix_ms();
    let qr = s.pending_qr(now);
    SessionView {
        id: s.id.clone(),
        state: s.state.as_str(),
        reason: s.reason.clone(),
        jid: s.jid.clone(),
        qr_available: qr.is_some(),
        qr_expires_at: qr.map(|q| rfc3339(q.expires_at_ms)),
        pair_code: s.pair_code.clone(),
        restarts: s.restarts,
        created_at: rfc3339(s.created_at_ms),
        updated_at: rfc3339(s.updated_at_ms),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; your own id for the account.
    #[schema(example = "shop-1")]
    id: String,
}

/// Create a session: it starts at once and shows a QR code to scan.
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = CreateBody,
    responses(
        (status = 201, description = "Created and starting; `Location` names it", body = SessionView),
        (status = 400, description = "`invalid_session_id` or `invalid_json`", body = ErrorBody),
        (status = 409, description = "`session_exists`", body = ErrorBody),
        (status = 429, description = "`session_limit_reached` or `session_store_full`", body = ErrorBody),
        (status = 503, description = "`store_unavailable` or `unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn create(
    req: HttpRequest,
    state: State,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&body.id)?;
    if let Some(key) = super::auth::scoped_key(&req) {
        if !key.scope.owns(id.as_str()) {
            return Err(ApiError::KeyOutOfScope(format!(
                "this key may not create session {:?}: it is not one of its sessions",
                id.as_str()
            )));
        }
    }
    state.gateway.registry().create(id.clone()).await?;
    let snap = state
        .gateway
        .index()
        .get(&id)
        .ok_or(ApiError::SessionNotFound(id.clone()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/sessions/{id}")))
        .json(session_view(&snap)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Cursor: the `next` of the previous page.
    after: Option<String>,
    /// Only sessions in this state.
    state: Option<String>,
}

/// List sessions, a page at a time, ordered by id.
#[utoipa::path(get, path = "/sessions", tag = "sessions", params(ListQuery),
    responses(
        (status = 200, description = "A page", body = SessionPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub(crate) async fn list(
    req: HttpRequest,
    state: State,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = match &query.state {
        None => None,
        Some(s) => Some(SessionState::parse(s).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "unknown state {s:?}; use one of starting, qr, pairing, connected, disconnected, logged_out, stopped, failed"
            ))
        })?),
    };
    let index = &state.gateway.index();
    // A scoped key sees its own sessions only, paged the same way.
    let (page, total) = match super::auth::scoped_key(&req) {
        None => (
            index.page(query.after.as_deref(), limit, filter),
            index.len(),
        ),
        Some(key) => {
            let own: Vec<_> = key
                .scope
                .sessions
                .iter()
                .filter_map(|s| SessionId::parse(s).ok().and_then(|id| index.get(&id)))
                .collect();
            let total = own.len();
            let after = query.after.as_deref();
            let page = own
                .into_iter()
                .filter(|s| after.is_none_or(|a| s.id.as_str() > a))
                .filter(|s| filter.is_none_or(|f| s.state == f))
                .take(limit)
                .collect();
            (page, total)
        }
    };
    let next = (page.len() == limit)
        .then(|| page.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(SessionPage {
        sessions: page.iter().map(session_view).collect(),
        total,
        next,
    }))
}

/// One session.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "`invalid_session_id`", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
    ))]
pub(crate) async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let snap = state
        .gateway
        .index()
        .get(&id)
        .ok_or(ApiError::SessionNotFound(id))?;
    Ok(HttpResponse::Ok().json(session_view(&snap)))
}

/// Delete a session: it stops, its credentials and record are removed and
/// Laravel hears `stopped` (reason `deleted`).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was changed", body = ErrorBody),
    ))]
pub(crate) async fn delete(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().delete(id.clone()).await?;
    audit::session_action("delete", id.as_str(), &peer(&req));
    Ok(HttpResponse::Ok().json(Deleted { id, deleted: true }))
}

/// Stop a session, keeping its credentials (`restart` resumes it).
#[utoipa::path(post, path = "/sessions/{id}/stop", tag = "sessions", params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Stopped", body = StateChanged),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
    ))]
pub(crate) async fn stop(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().stop(id.clone()).await?;
    audit::session_action("stop", id.as_str(), &peer(&req));
    Ok(HttpResponse::Ok().json(StateChanged {
        id,
        state: "stopped",
    }))
}

/// Restart a session (a linked one reconnects without a new QR).
#[utoipa::path(post, path = "/sessions/{id}/restart", tag = "sessions", params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 202, description = "Starting", body = StateChanged),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 429, description = "`session_limit_reached`", body = ErrorBody),
    ))]
pub(crate) async fn restart(
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().restart(id.clone()).await?;
    Ok(HttpResponse::Accepted().json(StateChanged {
        id,
        state: "starting",
    }))
}

/// Log out: unlink the device at WhatsApp and forget its credentials.
#[utoipa::path(post, path = "/sessions/{id}/logout", tag = "sessions", params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 202, description = "Logging out", body = LoggingOut),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
    ))]
pub(crate) async fn logout(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().logout(id.clone()).await?;
    audit::session_action("logout", id.as_str(), &peer(&req));
    Ok(HttpResponse::Accepted().json(LoggingOut {
        id,
        logging_out: true,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PairingBody {
    /// The account's phone number with country code.
    #[schema(example = "5215512345678")]
    phone: String,
}

/// Link by phone number: WhatsApp gives a code to type on the phone
/// (Linked devices → Link with phone number) instead of scanning the QR.
#[utoipa::path(post, path = "/sessions/{id}/pairing-code", tag = "sessions",
    params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$")), request_body = PairingBody,
    responses(
        (status = 200, description = "The code", body = PairingCode),
        (status = 400, description = "`invalid_body`: not a phone number", body = ErrorBody),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`session_not_running` or `conflict` (already linked)", body = ErrorBody),
    ))]
pub(crate) async fn pairing_code(
    state: State,
    path: web::Path<String>,
    body: web::Json<PairingBody>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let Some(phone) = messages::phone_digits(&body.phone) else {
        return Err(ApiError::InvalidBody(format!(
            "'phone' must be the phone number with country code, 6 to 20 digits \
             (e.g. \"5215512345678\"), got {:?}",
            body.phone
        )));
    };
    let code = state
        .gateway
        .registry()
        .pairing_code(id.clone(), phone.to_owned())
        .await?;
    Ok(HttpResponse::Ok().json(PairingCode {
        session_id: id,
        code,
    }))
}
