//! Webhook subscriptions: `POST/GET /webhooks`, `GET/DELETE /webhooks/{id}`
//! (admin keys only). A subscription names a URL, the event types it wants
//! and optionally its sessions; the gateway POSTs batches of those live
//! events there, signed with the subscription's secret like the Laravel
//! contract (`wagate_actors::webhooks`). The answers show how delivery is
//! doing on this node, and `LARAVEL_FALLBACK_URL`'s too.

use std::collections::BTreeSet;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wagate_actors::clock::unix_ms;
use wagate_actors::events::EventKind;
use wagate_actors::ids::SessionId;
use wagate_actors::webhooks::sender::{WebhookStatus, FALLBACK};
use wagate_actors::webhooks::{WebhookError, WebhookSpec, MAX_WEBHOOKS};

use super::error::ApiError;
use super::routes::Routes;
use super::views::ErrorBody;
use super::{rfc3339, AppState};

/// Sessions one subscription may name.
pub const MAX_SESSIONS: usize = 1_000;
/// The longest URL taken.
pub const MAX_URL: usize = 2_048;

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// Where to POST (http or https; at most 2,048 characters).
    #[schema(example = "https://hooks.example.com/wagate")]
    url: String,
    /// Event types to send: `state`, `qr`, `message`, `receipt`,
    /// `send_result`. Left out: all of them.
    #[schema(example = json!(["state", "message"]))]
    events: Option<Vec<String>>,
    /// Only these sessions (1 to 1,000 ids; they need not exist yet). Left
    /// out: every session.
    #[schema(example = json!(["shop-1"]))]
    sessions: Option<Vec<String>>,
    /// The HMAC-SHA256 key of `X-Wagate-Signature` (16 to 256 characters).
    /// Left out: one is made and shown once, in the answer.
    secret: Option<String>,
    /// For people (at most 200 characters).
    #[schema(example = "CRM sync")]
    description: Option<String>,
}

impl CreateWebhookBody {
    fn validate(self, now_ms: u64) -> Result<WebhookSpec, ApiError> {
        let bad = |m: String| ApiError::InvalidBody(m);
        let url = self.url.trim().to_owned();
        let parsed: Option<awc::http::Uri> = url.parse().ok();
        let ok = url.len() <= MAX_URL
            && parsed.is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
        if !ok {
            return Err(bad(format!(
                "'url' must be an http or https URL of at most {MAX_URL} characters, got {:?}",
                self.url
            )));
        }
        let events = match self.events {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(bad(
                    "'events' names at least one type; leave it out for every type".into(),
                ))
            }
            Some(list) => {
                let mut kinds = BTreeSet::new();
                for name in &list {
                    let kind = EventKind::parse(name).ok_or_else(|| {
                        bad(format!(
                            "'events': unknown event type {name:?} (known: {})",
                            EventKind::ALL.map(EventKind::as_str).join(", ")
                        ))
                    })?;
                    kinds.insert(kind.as_str());
                }
                Some(
                    kinds
                        .into_iter()
                        .filter_map(EventKind::parse)
                        .collect::<Vec<_>>(),
                )
            }
        };
        let sessions = match self.sessions {
            None => None,
            Some(list) if list.is_empty() || list.len() > MAX_SESSIONS => {
                return Err(bad(format!(
                    "'sessions' lists 1 to {MAX_SESSIONS} session ids; leave it out for every session"
                )))
            }
            Some(list) => {
                let mut ids = BTreeSet::new();
                for s in &list {
                    ids.insert(
                        SessionId::parse(s)
                            .map_err(|e| bad(format!("'sessions': {s:?}: {e}")))?,
                    );
                }
                Some(ids.into_iter().collect())
            }
        };
        let secret = match self.secret {
            Some(s) if !(16..=256).contains(&s.chars().count()) => {
                return Err(bad("'secret' is 16 to 256 characters".into()))
            }
            Some(s) => s,
            None => {
                let mut raw = [0u8; 32];
                rand::fill(&mut raw);
                format!("whsec_{}", hex::encode(raw))
            }
        };
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 200)
        {
            return Err(bad("'description' is at most 200 characters".into()));
        }
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        Ok(WebhookSpec {
            id: format!("wh_{}", hex::encode(id)),
            url,
            events,
            sessions,
            secret: SecretString::from(secret),
            description: self.description,
            created_at_ms: now_ms,
        })
    }
}

/// How delivery to one receiver is going on the node that answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    /// The receiver's own circuit breaker: `CLOSED`, `OPEN`, `HALF_OPEN`.
    #[schema(example = "CLOSED")]
    state: &'static str,
    /// Items waiting, the batch being delivered included.
    pending: usize,
    /// Items delivered since this node started (events; batches for the fallback).
    delivered: u64,
    /// Items given up on (overflow, refused, failing past `WEBHOOK_RETRY_FOR`).
    dropped: u64,
    last_success_at: Option<String>,
    last_error: Option<DeliveryError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryError {
    /// `tls`, `dns`, `refused`, `timeout`, `connect`, `protocol` or `http_<status>`.
    #[schema(example = "http_500")]
    kind: String,
    message: String,
    at: String,
}

impl DeliveryStatus {
    fn of(s: &WebhookStatus) -> Self {
        Self {
            state: s.breaker.as_str(),
            pending: s.pending,
            delivered: s.delivered,
            dropped: s.dropped,
            last_success_at: s.last_success_ms.map(rfc3339),
            last_error: s.last_error.as_ref().map(|(f, at)| DeliveryError {
                kind: f.kind.label().into_owned(),
                message: f.message.clone(),
                at: rfc3339(*at),
            }),
        }
    }
}

/// A subscription as the API shows it (its secret only when created).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    #[schema(example = "wh_3f2a9c0d1e4b5a69")]
    id: String,
    url: String,
    /// The event types sent; `null`: all.
    events: Option<Vec<String>>,
    /// The sessions whose events are sent; `null`: all.
    sessions: Option<Vec<String>>,
    /// Only in the answer to `POST /webhooks`, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_4be0…")]
    secret: Option<String>,
    description: Option<String>,
    created_at: String,
    /// Delivery on the node that answered; `null` until it loaded the
    /// subscription (at most 5 s after a create on another node).
    delivery: Option<DeliveryStatus>,
}

impl WebhookView {
    fn of(spec: &WebhookSpec, secret: Option<String>, status: Option<&WebhookStatus>) -> Self {
        Self {
            id: spec.id.clone(),
            url: spec.url.clone(),
            events: spec
                .events
                .as_ref()
                .map(|k| k.iter().map(|k| k.as_str().to_owned()).collect()),
            sessions: spec
                .sessions
                .as_ref()
                .map(|s| s.iter().map(ToString::to_string).collect()),
            secret,
            description: spec.description.clone(),
            created_at: rfc3339(spec.created_at_ms),
            delivery: status.map(DeliveryStatus::of),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
    /// `LARAVEL_FALLBACK_URL`'s delivery; `null` when it is not set.
    fallback: Option<DeliveryStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeleted {
    id: String,
    deleted: bool,
}

pub fn routes() -> Routes {
    Routes::new("/webhooks")
        .at("", Method::POST, create)
        .at("", Method::GET, list)
        .at("/{id}", Method::GET, get)
        .at("/{id}", Method::DELETE, delete)
}

type State = web::Data<AppState>;

fn store_error(e: wagate_actors::store::StoreError) -> ApiError {
    ApiError::StoreUnavailable(e.to_string())
}

/// Subscribe a URL to live events. Admin keys only; the answer carries
/// the signing secret, which is never shown again.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "Subscribed; `secret` is shown this once", body = WebhookView),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 409, description = "`conflict`: the gateway holds 100 webhooks", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was stored", body = ErrorBody),
    ))]
pub(crate) async fn create(
    state: State,
    body: web::Json<CreateWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner().validate(unix_ms())?;
    let secret = secrecy::ExposeSecret::expose_secret(&spec.secret).to_owned();
    let view = WebhookView::of(&spec, Some(secret), Some(&WebhookStatus::default()));
    match state.gateway.webhooks().create(spec).await {
        Ok(()) => {}
        Err(WebhookError::TooMany) => {
            return Err(ApiError::Conflict(format!(
                "the gateway holds its maximum of {MAX_WEBHOOKS} webhooks; delete one first"
            )))
        }
        Err(WebhookError::Store(e)) => return Err(store_error(e)),
    }
    tracing::info!(target: "audit", webhook_id = %view.id, url = %view.url, "webhook created");
    Ok(HttpResponse::Created().json(view))
}

/// Every subscription (without secrets), oldest first, with this node's
/// delivery figures, and the fallback URL's.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "The subscriptions", body = WebhookList),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn list(state: State) -> Result<HttpResponse, ApiError> {
    let hooks = state.gateway.webhooks();
    let mut specs = hooks.load().await.map_err(store_error)?;
    specs.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let statuses = hooks.statuses().await;
    let status_of = |id: &str| statuses.iter().find(|(k, _)| k == id).map(|(_, s)| s);
    Ok(HttpResponse::Ok().json(WebhookList {
        webhooks: specs
            .iter()
            .map(|s| WebhookView::of(s, None, status_of(&s.id)))
            .collect(),
        fallback: status_of(FALLBACK).map(DeliveryStatus::of),
    }))
}

/// One subscription (without its secret) and its delivery on this node.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`)")),
    responses(
        (status = 200, description = "The subscription", body = WebhookView),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn get(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let hooks = state.gateway.webhooks();
    let specs = hooks.load().await.map_err(store_error)?;
    let spec = specs
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::WebhookNotFound(id.clone()))?;
    let statuses = hooks.statuses().await;
    let status = statuses.iter().find(|(k, _)| *k == id).map(|(_, s)| s);
    Ok(HttpResponse::Ok().json(WebhookView::of(spec, None, status)))
}

/// Unsubscribe (at once on this node, within 5 s on the others); what
/// waited for it is dropped.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`)")),
    responses(
        (status = 200, description = "Deleted", body = WebhookDeleted),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was changed", body = ErrorBody),
    ))]
pub(crate) async fn delete(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !state
        .gateway
        .webhooks()
        .delete(&id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::WebhookNotFound(id));
    }
    tracing::info!(target: "audit", webhook_id = %id, "webhook deleted");
    Ok(HttpResponse::Ok().json(WebhookDeleted { id, deleted: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<WebhookSpec, String> {
        serde_json::from_value::<CreateWebhookBody>(json)
            .map_err(|e| e.to_string())?
            .validate(1)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_body_becomes_a_subscription_with_sorted_unique_filters() {
        let spec = body(serde_json::json!({
            "url": " https://h.example/x ",
            "events": ["state", "message", "state"],
            "sessions": ["b", "a"],
        }))
        .unwrap();
        assert_eq!(spec.url, "https://h.example/x");
        assert_eq!(
            spec.events,
            Some(vec![EventKind::Message, EventKind::State])
        );
        let sessions: Vec<String> = spec
            .sessions
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(sessions, ["a", "b"]);
        assert!(spec.id.starts_with("wh_") && spec.id.len() == 19);
        let secret = secrecy::ExposeSecret::expose_secret(&spec.secret).to_owned();
        assert!(secret.starts_with("whsec_") && secret.len() == 70);
    }

    #[test]
    fn bad_bodies_are_refused_by_field() {
        for (json, field) in [
            (serde_json::json!({"url": "ftp://h/x"}), "'url'"),
            (serde_json::json!({"url": "not a url"}), "'url'"),
            (serde_json::json!({"url": "/relative"}), "'url'"),
            (
                serde_json::json!({"url": "http://h/", "events": []}),
                "'events'",
            ),
            (
                serde_json::json!({"url": "http://h/", "events": ["typing"]}),
                "typing",
            ),
            (
                serde_json::json!({"url": "http://h/", "sessions": []}),
                "'sessions'",
            ),
            (
                serde_json::json!({"url": "http://h/", "sessions": ["a b"]}),
                "'sessions'",
            ),
            (
                serde_json::json!({"url": "http://h/", "secret": "short"}),
                "'secret'",
            ),
            (
                serde_json::json!({"url": "http://h/", "description": "d".repeat(201)}),
                "'description'",
            ),
            (
                serde_json::json!({"url": "http://h/", "colour": "red"}),
                "colour",
            ),
        ] {
            let err = body(json.clone()).unwrap_err();
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
