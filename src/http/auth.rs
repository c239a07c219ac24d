//! API-key check for everything but `/health*` and `/metrics*`: the key comes
//! as `Authorization: Bearer <key>` or `X-Api-Key: <key>` and is compared in
//! constant time (SHA-256 digests, so lengths leak nothing either). The
//! metrics routes take `METRICS_KEY` the same way when it is set. Every
//! refusal is counted and written to the `audit` log (rate-limited).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wagate_actors::clock::unix_ms;

use super::error::ApiError;
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

/// Checks `keys` (empty = open); a refusal is counted and audited.
fn check(req: &ServiceRequest, state: &AppState, keys: &ApiKeys) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    let reason = match presented_key(req) {
        Some(k) if keys.accepts(k) => return Ok(()),
        Some(_) => "wrong key",
        None => "no key",
    };
    state.gateway.metrics().bounds.auth_failures.inc();
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    state
        .audit
        .auth_failure(unix_ms(), &peer, req.method().as_str(), req.path(), reason);
    Err(ApiError::Unauthorized)
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
    if let Err(e) = check(&req, &state, &state.api_keys) {
        return Ok(req.error_response(e));
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
