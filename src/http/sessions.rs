//! Session endpoints: create, list, get, delete, stop, restart, logout,
//! plus the QR and simulator sub-resources. Reads come from the snapshot
//! index; commands go through the registry.

use actix_web::{web, HttpRequest, HttpResponse, Scope};
use serde::Deserialize;
use serde_json::{json, Value};
use wagate_actors::clock::unix_ms;
use wagate_actors::session::index::SessionSnapshot;
use wagate_actors::session::machine::SessionState;

use super::error::ApiError;
use super::{chats, messages, qr, resource, rfc3339, session_id, simulate, AppState};
use crate::audit;

type State = web::Data<AppState>;

pub fn routes() -> Scope {
    web::scope("/sessions")
        .service(
            resource("")
                .route(web::post().to(create))
                .route(web::get().to(list)),
        )
        // The hottest route first: each resource is matched in turn.
        .service(resource("/{id}/messages").route(web::post().to(messages::send)))
        .service(
            resource("/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(resource("/{id}/logout").route(web::post().to(logout)))
        .service(resource("/{id}/pairing-code").route(web::post().to(pairing_code)))
        .service(resource("/{id}/restart").route(web::post().to(restart)))
        .service(resource("/{id}/stop").route(web::post().to(stop)))
        .service(resource("/{id}/qr").route(web::get().to(qr::get_qr)))
        .service(resource("/{id}/messages/{message_id}").route(web::get().to(messages::status)))
        .service(resource("/{id}/contacts/check").route(web::post().to(chats::check)))
        .service(resource("/{id}/chats/{to}/typing").route(web::post().to(chats::typing)))
        .service(resource("/{id}/chats/{to}/read").route(web::post().to(chats::read)))
        .service(resource("/{id}/simulate/{action}").route(web::post().to(simulate::simulate)))
}

/// The client's address, for the audit log.
fn peer(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// The JSON shape of one session.
pub fn session_json(s: &SessionSnapshot) -> Value {
    let now = unix_ms();
    let qr = s.pending_qr(now);
    json!({
        "id": s.id,
        "state": s.state.as_str(),
        "reason": s.reason,
        "jid": s.jid,
        "qrAvailable": qr.is_some(),
        "qrExpiresAt": qr.map(|q| rfc3339(q.expires_at_ms)),
        "pairCode": s.pair_code,
        "restarts": s.restarts,
        "createdAt": rfc3339(s.created_at_ms),
        "updatedAt": rfc3339(s.updated_at_ms),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: String,
}

async fn create(state: State, body: web::Json<CreateBody>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&body.id)?;
    state.gateway.registry().create(id.clone()).await?;
    let snap = state
        .gateway
        .index()
        .get(&id)
        .ok_or(ApiError::SessionNotFound(id.clone()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/sessions/{id}")))
        .json(session_json(&snap)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size, 1..=1000 (default 100).
    limit: Option<usize>,
    /// Cursor: the last id of the previous page.
    after: Option<String>,
    state: Option<String>,
}

async fn list(state: State, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
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
    let page = index.page(query.after.as_deref(), limit, filter);
    let next = (page.len() == limit)
        .then(|| page.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "sessions": page.iter().map(session_json).collect::<Vec<_>>(),
        "total": index.len(),
        "next": next,
    })))
}

async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let snap = state
        .gateway
        .index()
        .get(&id)
        .ok_or(ApiError::SessionNotFound(id))?;
    Ok(HttpResponse::Ok().json(session_json(&snap)))
}

async fn delete(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().delete(id.clone()).await?;
    audit::session_action("delete", id.as_str(), &peer(&req));
    Ok(HttpResponse::Ok().json(json!({ "id": id, "deleted": true })))
}

async fn stop(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().stop(id.clone()).await?;
    audit::session_action("stop", id.as_str(), &peer(&req));
    Ok(HttpResponse::Ok().json(json!({ "id": id, "state": "stopped" })))
}

async fn restart(state: State, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().restart(id.clone()).await?;
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "state": "starting" })))
}

async fn logout(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.registry().logout(id.clone()).await?;
    audit::session_action("logout", id.as_str(), &peer(&req));
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "loggingOut": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairingBody {
    phone: String,
}

/// Link by phone number: WhatsApp gives a code to type on the phone
/// (Linked devices → Link with phone number) instead of scanning the QR.
async fn pairing_code(
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
    Ok(HttpResponse::Ok().json(json!({ "sessionId": id, "code": code })))
}
