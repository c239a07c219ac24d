//! `POST /sessions/{id}/simulate/{scan|disconnect|logout|incoming|crash}`:
//! the phone's side of the simulator, for demos, tests and load tests. 404
//! (`simulator_disabled`) when another connector is configured. `crash`
//! makes the Session actor panic, to exercise supervision. A 200 from
//! `incoming` means the message is journaled: it reaches Laravel even if
//! the gateway is killed right after (`503 store_unavailable` if it could
//! not be journaled, and then it was not delivered). `incoming` takes any
//! kind (`type`, see `simulate_incoming.rs`), media as base64.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use wagate_actors::connector::simulator::{SimAction, SimError};

use super::error::{from_json, ApiError};
use super::views::{ErrorBody, Simulated};
use super::{session_id, AppState};

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectBody {
    /// Why the phone dropped the session (shown as the state's reason).
    reason: Option<String>,
}

/// The body of a simulate action, for the document: `disconnect` takes a
/// [`DisconnectBody`], `incoming` an [`IncomingBody`], the others none.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)]
pub(crate) enum SimulateBody {
    Disconnect(DisconnectBody),
    Incoming(super::simulate_incoming::IncomingBody),
}

/// Play the phone's side on the simulator (`CONNECTOR=simulator` only):
/// `scan` the QR, `disconnect` (`{"reason"}`), `logout`, send an
/// `incoming` message (see `simulate_incoming.rs` for its body), or
/// `crash` the session's actor.
#[utoipa::path(post, path = "/sessions/{id}/simulate/{action}", tag = "simulator",
    params(
        ("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$"),
        ("action" = String, Path, description = "`scan`, `disconnect`, `logout`, `incoming` or `crash`"),
    ),
    request_body(content = Option<SimulateBody>, description = "`disconnect`: `{\"reason\"?}`; `incoming`: `{\"from\", \"type\"?, \"text\"?, …}`; others: none", content_type = "application/json"),
    responses(
        (status = 200, description = "Played", body = Simulated),
        (status = 202, description = "`crash`: the actor panics; the supervisor restarts it", body = Simulated),
        (status = 404, description = "`simulator_disabled`, `session_not_found` or `not_found` (unknown action)", body = ErrorBody),
        (status = 409, description = "`session_not_running` or `conflict` (not applicable now)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: an incoming message could not be journaled", body = ErrorBody),
    ))]
pub async fn simulate(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, action) = path.into_inner();
    // `incoming` may carry media as base64, like a send.
    let limit = match action.as_str() {
        "incoming" => state.media.max_body_bytes().max(state.body_limit),
        _ => state.body_limit,
    };
    let body = super::media::read_body(req.headers(), payload, limit).await?;
    let id = session_id(&raw_id)?;
    let simulator = state
        .gateway
        .simulator()
        .ok_or(ApiError::SimulatorDisabled)?;
    if !state.gateway.index().contains(&id) {
        return Err(ApiError::SessionNotFound(id));
    }
    let action = match action.as_str() {
        "scan" => SimAction::Scan,
        "disconnect" => {
            let body: DisconnectBody = if body.is_empty() {
                DisconnectBody::default()
            } else {
                from_json(&body)?
            };
            SimAction::Disconnect {
                reason: body
                    .reason
                    .unwrap_or_else(|| "simulated network drop".into()),
            }
        }
        "logout" => SimAction::Logout,
        "incoming" => {
            let body: super::simulate_incoming::IncomingBody = from_json(&body)?;
            SimAction::Incoming(Box::new(body.into_sim()?))
        }
        "crash" => {
            state.gateway.registry().crash(id.clone()).await?;
            return Ok(HttpResponse::Accepted().json(Simulated {
                id,
                simulated: "crash",
            }));
        }
        other => {
            return Err(ApiError::RouteNotFound {
                method: "POST".into(),
                path: format!(
                "/sessions/{id}/simulate/{other} (use scan, disconnect, logout, incoming or crash)"
            ),
            })
        }
    };
    let name = match &action {
        SimAction::Scan => "scan",
        SimAction::Disconnect { .. } => "disconnect",
        SimAction::Logout => "logout",
        SimAction::Incoming(_) => "incoming",
    };
    simulator.act(&id, action).await.map_err(|e| match e {
        SimError::NoDevice => ApiError::SessionNotRunning(id.clone()),
        SimError::NotApplicable(why) => {
            ApiError::Conflict(format!("cannot simulate {name} on session {id}: {why}"))
        }
        // Not journaled, so not delivered: the caller may send it again.
        SimError::Journal(e) => {
            ApiError::StoreUnavailable(wagate_actors::error_chain::Chain(&e).to_string())
        }
        SimError::Media(e) => {
            ApiError::StoreUnavailable(wagate_actors::error_chain::Chain(&e).to_string())
        }
    })?;
    Ok(HttpResponse::Ok().json(Simulated {
        id,
        simulated: name,
    }))
}
