//! API-key check for everything but `/health*` and `/metrics*`: the key comes
//! as `Authorization: Bearer <key>` or `X-Api-Key: <key>` and is compared in
//! constant time (SHA-256 digests, so lengths leak nothing either). Admin
//! keys (`API_KEYS`) may do everything; scoped keys (`super::keys`) only
//! what their grant covers (`super::access`), else 403 `key_out_of_scope`.
//! The metrics routes take `METRICS_KEY` the same way when it is set. Every
//! refusal is counted and written to the `audit` log (rate-limited).

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wagate_actors::clock::unix_ms;

use super::access;
use super::error::ApiError;
use super::keys::{KeyRecord, Lookup};
use super::AppState;

/// Configured keys, kept as digests.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|k| Sha256::digest(k.expose_secret().as_bytes()).into())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// True if `presented` is one of the keys. Checks every key, always.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest))
            .into()
    }
}

/// The key a request presents, if any (checked or not).
pub(crate) fn presented_key(req: &ServiceRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Who is calling, once the key is checked: an admin key (or an open
/// gateway), or a scoped key (`POST /keys`) with its grant. Put in the
/// request's extensions for handlers that look at it ([`scoped_key`]).
#[derive(Clone)]
pub enum Principal {
    Admin,
    Scoped(Arc<KeyRecord>),
}

/// The scoped key of a request, if it came with one.
pub fn scoped_key(req: &HttpRequest) -> Option<Arc<KeyRecord>> {
    match req.extensions().get::<Principal>() {
        Some(Principal::Scoped(k)) => Some(Arc::clone(k)),
        _ => None,
    }
}

/// Counts and audits a refused key.
fn refuse(req: &ServiceRequest, state: &AppState, reason: &str) -> ApiError {
    state.gateway.metrics().bounds.auth_failures.inc();
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    state
        .audit
        .auth_failure(unix_ms(), &peer, req.method().as_str(), req.path(), reason);
    ApiError::Unauthorized
}

/// Checks `keys` (empty = open); a refusal is counted and audited.
fn check(req: &ServiceRequest, state: &AppState, keys: &ApiKeys) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    match presented_key(req) {
        Some(k) if keys.accepts(k) => Ok(()),
        Some(_) => Err(refuse(req, state, "wrong key")),
        None => Err(refuse(req, state, "no key")),
    }
}

/// An admin key (`API_KEYS`), or a scoped key whose grant covers the
/// route ([`access::need`]); 401 for anything else, 403 out of scope.
async fn principal(req: &ServiceRequest, state: &AppState) -> Result<Principal, ApiError> {
    if state.api_keys.is_empty() {
        return Ok(Principal::Admin);
    }
    let Some(presented) = presented_key(req) else {
        return Err(refuse(req, state, "no key"));
    };
    if state.api_keys.accepts(presented) {
        return Ok(Principal::Admin);
    }
    let key = match state.scoped_keys.lookup(presented, unix_ms()).await {
        Lookup::Scoped(key) => key,
        Lookup::Expired => return Err(refuse(req, state, "expired scoped key")),
        Lookup::Unknown => return Err(refuse(req, state, "wrong key")),
    };
    let need = access::need(req.method(), req.path(), req.query_string());
    key.scope.grants(&need).map_err(ApiError::KeyOutOfScope)?;
    Ok(Principal::Scoped(key))
}

fn app_state(req: &ServiceRequest) -> Data<AppState> {
    req.app_data::<Data<AppState>>()
        .expect("AppState is registered by configure()")
        .clone()
}

pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = app_state(&req);
    // A response, not an `Err`: the request log and metrics see it whole.
    match principal(&req, &state).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
        }
        Err(e) => return Ok(req.error_response(e)),
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// `/metrics*`: open unless `METRICS_KEY` is set.
pub async fn require_metrics_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = app_state(&req);
    if let Err(e) = check(&req, &state, &state.metrics_key) {
        return Ok(req.error_response(e));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(&["alpha".into(), "beta".into()]);
        assert!(keys.accepts("alpha"));
        assert!(keys.accepts("beta"));
        assert!(!keys.accepts("alph"));
        assert!(!keys.accepts(""));
        assert!(ApiKeys::new(&[]).is_empty());
    }
}
