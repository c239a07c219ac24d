//! Scoped API keys: `POST/GET /keys`, `DELETE /keys/{id}` (admin keys
//! only), and [`ScopedKeys`], which `auth::require_api_key` asks about every
//! key that is not an admin key. A scoped key names its sessions and its
//! actions ([`super::access`]); the gateway keeps only its SHA-256 (the key
//! is shown once, when created), in the store (Redis when configured, so
//! every node knows it). Each node caches the keys and reloads them every
//! [`REFRESH`] (a revocation on another node holds within that) and on an
//! unknown key at most once per [`MISS_RELOAD`] (a key created on another
//! node works within that).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wagate_actors::clock::unix_ms;
use wagate_actors::ids::SessionId;
use wagate_actors::store::{RecordSet, Store, StoreError};

use super::access::{Action, Scope};
use super::error::ApiError;
use super::routes::Routes;
use super::views::ErrorBody;
use super::{rfc3339, AppState};

/// How old the cache may get before a request reloads it.
pub const REFRESH: Duration = Duration::from_secs(5);
/// At most one reload per this, for keys the cache does not know.
pub const MISS_RELOAD: Duration = Duration::from_secs(1);
/// Sessions one key may name.
pub const MAX_SESSIONS: usize = 1_000;
/// Scoped keys one gateway holds.
pub const MAX_KEYS: usize = 10_000;
/// The longest `expiresInSeconds`: ten years.
pub const MAX_EXPIRY_SECS: u64 = 10 * 365 * 24 * 3600;

/// A scoped key as stored: its digest, never the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub id: String,
    pub name: Option<String>,
    /// Hex SHA-256 of the key.
    pub digest: String,
    #[serde(flatten)]
    pub scope: Scope,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

impl KeyRecord {
    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// What a presented key turned out to be.
pub enum Lookup {
    Scoped(Arc<KeyRecord>),
    Expired,
    Unknown,
}

#[derive(Default)]
struct Cache {
    by_digest: HashMap<[u8; 32], Arc<KeyRecord>>,
    loaded_ms: Option<u64>,
    miss_reload_ms: u64,
}

/// This node's view of the scoped keys.
pub struct ScopedKeys {
    store: Arc<dyn Store>,
    cache: RwLock<Cache>,
    reloading: tokio::sync::Mutex<()>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ScopedKeys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: RwLock::default(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The scoped key `presented` is, if any.
    pub async fn lookup(&self, presented: &str, now_ms: u64) -> Lookup {
        let d = digest(presented);
        let (stale, miss_due) = {
            let c = self.cache.read();
            let stale = c
                .loaded_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= REFRESH.as_millis() as u64);
            let miss_due = !c.by_digest.contains_key(&d)
                && now_ms.saturating_sub(c.miss_reload_ms) >= MISS_RELOAD.as_millis() as u64;
            (stale, miss_due)
        };
        if stale || miss_due {
            if miss_due {
                self.cache.write().miss_reload_ms = now_ms;
            }
            self.reload(now_ms).await;
        }
        match self.cache.read().by_digest.get(&d) {
            Some(r) if r.expired(now_ms) => Lookup::Expired,
            Some(r) => Lookup::Scoped(Arc::clone(r)),
            None => Lookup::Unknown,
        }
    }

    /// Reloads from the store unless another request is already doing it;
    /// when the store is unreachable the cache stays as it was.
    async fn reload(&self, now_ms: u64) {
        let Ok(_guard) = self.reloading.try_lock() else {
            return;
        };
        match self.load().await {
            Ok(records) => {
                let mut c = self.cache.write();
                c.by_digest = records
                    .into_iter()
                    .filter_map(|r| {
                        let mut d = [0u8; 32];
                        hex::decode_to_slice(&r.digest, &mut d).ok()?;
                        Some((d, Arc::new(r)))
                    })
                    .collect();
                c.loaded_ms = Some(now_ms);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload scoped API keys; using the cached ones");
            }
        }
    }

    async fn load(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let raw = self.store.load_records(RecordSet::ApiKeys).await?;
        Ok(raw
            .iter()
            .filter_map(|r| match serde_json::from_str::<KeyRecord>(r) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable scoped API key record");
                    None
                }
            })
            .collect())
    }

    /// Stores a new key; returns its record and the key itself (shown once).
    async fn create(&self, spec: NewKey, now_ms: u64) -> Result<(KeyRecord, String), ApiError> {
        if self.load().await.map_err(store_error)?.len() >= MAX_KEYS {
            return Err(ApiError::Conflict(format!(
                "the gateway holds its maximum of {MAX_KEYS} scoped keys; delete one first"
            )));
        }
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let key = format!("wgk_{}", hex::encode(secret));
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        let record = KeyRecord {
            id: format!("key_{}", hex::encode(id)),
            name: spec.name,
            digest: hex::encode(digest(&key)),
            scope: Scope {
                sessions: spec.sessions,
                actions: spec.actions,
            },
            created_at_ms: now_ms,
            expires_at_ms: spec
                .expires_in_seconds
                .map(|s| now_ms.saturating_add(s.saturating_mul(1000))),
        };
        let json = serde_json::to_string(&record).expect("key records serialize");
        self.store
            .save_record(RecordSet::ApiKeys, &record.id, &json)
            .await
            .map_err(store_error)?;
        let record = Arc::new(record);
        self.cache
            .write()
            .by_digest
            .insert(digest(&key), Arc::clone(&record));
        Ok((Arc::unwrap_or_clone(record), key))
    }

    async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let removed = self
            .store
            .delete_record(RecordSet::ApiKeys, id)
            .await
            .map_err(store_error)?;
        self.cache.write().by_digest.retain(|_, r| r.id != id);
        Ok(removed)
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::StoreUnavailable(e.to_string())
}

/// A key to create, validated.
struct NewKey {
    name: Option<String>,
    sessions: BTreeSet<String>,
    actions: BTreeSet<Action>,
    expires_in_seconds: Option<u64>,
}

/// `POST /keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyBody {
    /// For people: whose key it is (at most 100 characters).
    #[schema(example = "shop-1's Laravel app")]
    name: Option<String>,
    /// The sessions it may use (1 to 1,000 ids; they need not exist yet).
    #[schema(example = json!(["shop-1"]))]
    sessions: Vec<String>,
    /// What it may do with them.
    #[schema(example = json!(["read", "qr", "send"]))]
    actions: Vec<Action>,
    /// Refused from this many seconds on (kept and listed until deleted);
    /// 1 to 315,360,000 (ten years).
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_seconds: Option<u64>,
}

impl CreateKeyBody {
    fn validate(self) -> Result<NewKey, ApiError> {
        let bad = |m: String| Err(ApiError::InvalidBody(m));
        if let Some(name) = &self.name {
            if name.chars().count() > 100 {
                return bad("'name' is at most 100 characters".into());
            }
        }
        if self.sessions.is_empty() || self.sessions.len() > MAX_SESSIONS {
            return bad(format!("'sessions' lists 1 to {MAX_SESSIONS} session ids"));
        }
        for s in &self.sessions {
            SessionId::parse(s)
                .map_err(|e| ApiError::InvalidBody(format!("'sessions': {s:?}: {e}")))?;
        }
        if self.actions.is_empty() {
            return bad("'actions' names at least one of read, qr, send, manage".into());
        }
        if let Some(secs) = self.expires_in_seconds {
            if !(1..=MAX_EXPIRY_SECS).contains(&secs) {
                return bad(format!(
                    "'expiresInSeconds' is 1 to {MAX_EXPIRY_SECS} (ten years); leave it out for a key that does not expire"
                ));
            }
        }
        Ok(NewKey {
            name: self.name,
            sessions: self.sessions.into_iter().collect(),
            actions: self.actions.into_iter().collect(),
            expires_in_seconds: self.expires_in_seconds,
        })
    }
}

/// A scoped key as the API shows it (without the key, but on creation).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    #[schema(example = "key_3f2a9c0d1e4b5a69")]
    id: String,
    /// The key itself: only in the answer to `POST /keys`, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "wgk_4be0…")]
    key: Option<String>,
    name: Option<String>,
    sessions: Vec<String>,
    actions: Vec<Action>,
    created_at: String,
    expires_at: Option<String>,
    expired: bool,
}

impl KeyView {
    fn of(r: &KeyRecord, key: Option<String>, now_ms: u64) -> Self {
        Self {
            id: r.id.clone(),
            key,
            name: r.name.clone(),
            sessions: r.scope.sessions.iter().cloned().collect(),
            actions: r.scope.actions.iter().copied().collect(),
            created_at: rfc3339(r.created_at_ms),
            expires_at: r.expires_at_ms.map(rfc3339),
            expired: r.expired(now_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDeleted {
    id: String,
    deleted: bool,
}

pub fn routes() -> Routes {
    Routes::new("/keys")
        .at("", Method::POST, create)
        .at("", Method::GET, list)
        .at("/{id}", Method::DELETE, delete)
}

type State = web::Data<AppState>;

/// Create a scoped key: named sessions, chosen actions. Admin keys only;
/// the answer carries the key, which is never shown again.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = KeyView),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 409, description = "`conflict`: no `API_KEYS` set (the API is open), or the gateway holds 10,000 scoped keys", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was stored", body = ErrorBody),
    ))]
pub(crate) async fn create(
    state: State,
    body: web::Json<CreateKeyBody>,
) -> Result<HttpResponse, ApiError> {
    if state.api_keys.is_empty() {
        return Err(ApiError::Conflict(
            "scoped keys need admin keys: set API_KEYS (without it the API is open to all)".into(),
        ));
    }
    let spec = body.into_inner().validate()?;
    let now = unix_ms();
    let (record, key) = state.scoped_keys.create(spec, now).await?;
    tracing::info!(target: "audit", key_id = %record.id, sessions = record.scope.sessions.len(), "scoped API key created");
    Ok(HttpResponse::Created().json(KeyView::of(&record, Some(key), now)))
}

/// Every scoped key (without the keys themselves), oldest first.
#[utoipa::path(get, path = "/keys", tag = "keys",
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn list(state: State) -> Result<HttpResponse, ApiError> {
    let now = unix_ms();
    let mut records = state.scoped_keys.load().await.map_err(store_error)?;
    records.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(HttpResponse::Ok().json(KeyList {
        keys: records.iter().map(|r| KeyView::of(r, None, now)).collect(),
    }))
}

/// Revoke a scoped key (at once on this node, within 5 s on the others).
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`), not the key")),
    responses(
        (status = 200, description = "Revoked", body = KeyDeleted),
        (status = 403, description = "`key_out_of_scope`: not an admin key", body = ErrorBody),
        (status = 404, description = "`key_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was changed", body = ErrorBody),
    ))]
pub(crate) async fn delete(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !state.scoped_keys.delete(&id).await? {
        return Err(ApiError::KeyNotFound(id));
    }
    tracing::info!(target: "audit", key_id = %id, "scoped API key revoked");
    Ok(HttpResponse::Ok().json(KeyDeleted { id, deleted: true }))
}

#[cfg(test)]
mod tests {
    use wagate_actors::store::memory::MemoryStore;

    use super::*;

    fn spec(sessions: &[&str]) -> NewKey {
        NewKey {
            name: None,
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            actions: [Action::Send].into(),
            expires_in_seconds: Some(60),
        }
    }

    #[actix_rt::test]
    async fn a_created_key_is_found_by_its_secret_until_it_expires_or_is_deleted() {
        let keys = ScopedKeys::new(Arc::new(MemoryStore::default()));
        let (record, key) = keys.create(spec(&["shop-1"]), 1_000).await.unwrap();
        assert!(key.starts_with("wgk_") && key.len() == 68);
        assert!(!serde_json::to_string(&record).unwrap().contains(&key));
        assert!(matches!(keys.lookup(&key, 2_000).await, Lookup::Scoped(r) if r.id == record.id));
        assert!(matches!(
            keys.lookup("wgk_other", 2_000).await,
            Lookup::Unknown
        ));
        assert!(matches!(keys.lookup(&key, 61_000).await, Lookup::Expired));
        assert!(keys.delete(&record.id).await.unwrap());
        assert!(matches!(keys.lookup(&key, 2_000).await, Lookup::Unknown));
        assert!(!keys.delete(&record.id).await.unwrap());
    }

    #[actix_rt::test]
    async fn a_key_stored_by_another_node_is_known_after_a_miss_reload() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let here = ScopedKeys::new(Arc::clone(&store));
        let there = ScopedKeys::new(Arc::clone(&store));
        assert!(matches!(here.lookup("wgk_x", 1_000).await, Lookup::Unknown));
        let (record, key) = there.create(spec(&["shop-1"]), 1_100).await.unwrap();
        // Within MISS_RELOAD of the last miss: not reloaded yet.
        assert!(matches!(here.lookup(&key, 1_500).await, Lookup::Unknown));
        assert!(matches!(here.lookup(&key, 2_100).await, Lookup::Scoped(_)));
        // Revoked there: here still knows it until REFRESH passes.
        there.delete(&record.id).await.unwrap();
        assert!(matches!(here.lookup(&key, 3_000).await, Lookup::Scoped(_)));
        assert!(matches!(here.lookup(&key, 7_200).await, Lookup::Unknown));
    }

    #[test]
    fn bodies_are_checked_before_anything_is_stored() {
        let body = |v: serde_json::Value| serde_json::from_value::<CreateKeyBody>(v);
        let refused = |v: serde_json::Value| body(v).unwrap().validate().is_err();
        assert!(refused(
            serde_json::json!({"sessions": [], "actions": ["send"]})
        ));
        assert!(refused(
            serde_json::json!({"sessions": ["bad id"], "actions": ["send"]})
        ));
        assert!(refused(
            serde_json::json!({"sessions": ["s1"], "actions": []})
        ));
        assert!(refused(
            serde_json::json!({"sessions": ["s1"], "actions": ["send"], "expiresInSeconds": 0})
        ));
        // Found by schemathesis: a far expiry could not be shown as a date.
        assert!(refused(
            serde_json::json!({"sessions": ["s1"], "actions": ["send"], "expiresInSeconds": 9_223_372_036_854_775_806u64})
        ));
        assert!(body(serde_json::json!({"sessions": ["s1"], "actions": ["fly"]})).is_err());
        assert!(
            body(serde_json::json!({"sessions": ["s1"], "actions": ["send"], "extra": 1})).is_err()
        );
        let ok = body(serde_json::json!({"sessions": ["s1", "s1"], "actions": ["send", "read"]}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(ok.sessions.len(), 1);
        assert_eq!(ok.actions.len(), 2);
    }
}
