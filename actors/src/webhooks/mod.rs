//! Webhooks besides Laravel, and Laravel's fallback URL.
//!
//! A webhook ([`WebhookSpec`]) subscribes a URL to the live events of the
//! [`EventBus`](crate::events::EventBus) (all sessions or some, all kinds or
//! some); the [`sender::WebhookSender`] actor, on its own thread, batches
//! each subscription's events, signs them like the Laravel contract and
//! POSTs them, each target with its own queue, retries, backoff and
//! circuit breaker ([`target`], pure), so one bad receiver never slows
//! another, the sessions or Laravel. `LARAVEL_FALLBACK_URL` is one more
//! target of the same sender: while Laravel's breaker is open, the
//! `LaravelClient` hands it a copy of every batch it holds.
//!
//! Subscriptions live in the store ([`RecordSet::Webhooks`], a Redis hash
//! when Redis is configured); the HTTP layer saves them through
//! [`WebhooksHandle`] and every node reloads them every [`RELOAD_EVERY`].
//! Delivery is at least once while the node runs (same `deliveryId` on a
//! retry) and best effort across a crash: events are live notifications,
//! Laravel's batches are the durable record.

pub mod sender;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};
use crate::ids::SessionId;
use crate::mailbox::MeteredAddr;
use crate::store::{RecordSet, Store, StoreError};

use self::sender::{FallbackBatch, Remove, Statuses, Upsert, WebhookSender, WebhookStatus};

/// Every node reloads the subscriptions this often (changes made on
/// another node apply within it).
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// Subscriptions one gateway holds.
pub const MAX_WEBHOOKS: usize = 100;

/// How webhook and fallback targets deliver (`[webhooks]` settings).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Whole-request timeout (`WEBHOOK_TIMEOUT`).
    pub timeout: Duration,
    /// Events per request.
    pub batch_items: usize,
    /// Events one target may have waiting before the oldest are dropped
    /// (`WEBHOOK_MAX_PENDING`).
    pub max_pending: usize,
    /// ...or bytes of them.
    pub max_pending_bytes: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A batch failing this long is dropped (`WEBHOOK_RETRY_FOR`).
    pub give_up_after: Duration,
    /// Consecutive failures that open a target's breaker, and how long it
    /// stays open before a probe (Laravel's `CIRCUIT_BREAKER_*`).
    pub breaker_threshold: u32,
    pub breaker_reset: Duration,
    /// `LARAVEL_FALLBACK_URL`: a base URL like `LARAVEL_API`'s.
    pub fallback_url: Option<String>,
    /// Laravel's bearer token and signing secret, which the fallback gets too.
    pub fallback_token: Option<SecretString>,
    pub fallback_signing_secret: Option<SecretString>,
    /// Laravel's `LARAVEL_SIGNATURE_VERSION`, for the fallback.
    pub fallback_signature: crate::laravel::signature::SignatureVersion,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            batch_items: 100,
            max_pending: 10_000,
            max_pending_bytes: 16 << 20,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            breaker_threshold: 5,
            breaker_reset: Duration::from_secs(60),
            fallback_url: None,
            fallback_token: None,
            fallback_signing_secret: None,
            fallback_signature: Default::default(),
        }
    }
}

/// One subscription, as stored (JSON in [`RecordSet::Webhooks`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// Where events are POSTed (`http` or `https`).
    pub url: String,
    /// The kinds it wants; `None`: every kind.
    pub events: Option<Vec<EventKind>>,
    /// The sessions it wants; `None`: every session.
    pub sessions: Option<Vec<SessionId>>,
    /// The HMAC key of `X-Wagate-Signature`.
    #[serde(with = "secret_text")]
    pub secret: SecretString,
    pub description: Option<String>,
    pub created_at_ms: u64,
}

impl WebhookSpec {
    pub fn wants(&self, event: &Event) -> bool {
        self.events.as_ref().is_none_or(|k| k.contains(&event.kind))
            && self
                .sessions
                .as_ref()
                .is_none_or(|s| s.contains(&event.session))
    }

    /// Whether a reload must replace the running spec (the target's queue
    /// is kept either way).
    fn differs(&self, other: &WebhookSpec) -> bool {
        self.url != other.url
            || self.events != other.events
            || self.sessions != other.sessions
            || self.secret.expose_secret() != other.secret.expose_secret()
            || self.description != other.description
    }
}

/// The secret is stored as plain text (it signs, so it must be read back);
/// `SecretString` keeps it out of `Debug` and logs.
mod secret_text {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<SecretString, D::Error> {
        Ok(SecretString::from(String::deserialize(de)?))
    }
}

/// Why a subscription could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the gateway holds its maximum of {MAX_WEBHOOKS} webhooks; delete one first")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What HTTP calls: subscriptions saved to the store and applied to this
/// node's sender at once (other nodes within [`RELOAD_EVERY`]).
#[derive(Clone)]
pub struct WebhooksHandle {
    store: Arc<dyn Store>,
    sender: MeteredAddr<WebhookSender>,
    /// Whether `LARAVEL_FALLBACK_URL` is set.
    fallback: bool,
}

impl WebhooksHandle {
    pub fn new(store: Arc<dyn Store>, sender: MeteredAddr<WebhookSender>, fallback: bool) -> Self {
        Self {
            store,
            sender,
            fallback,
        }
    }

    /// Where the Laravel client sends copies while its breaker is open,
    /// when `LARAVEL_FALLBACK_URL` is set.
    pub fn fallback(&self) -> Option<crate::mailbox::MeteredRecipient<FallbackBatch>> {
        self.fallback.then(|| self.sender.recipient())
    }

    /// Every stored subscription; unreadable records are skipped (logged).
    pub async fn load(&self) -> Result<Vec<WebhookSpec>, StoreError> {
        load(&*self.store).await
    }

    pub async fn create(&self, spec: WebhookSpec) -> Result<(), WebhookError> {
        if self.load().await?.len() >= MAX_WEBHOOKS {
            return Err(WebhookError::TooMany);
        }
        let json = serde_json::to_string(&spec).expect("webhook records serialize");
        self.store
            .save_record(RecordSet::Webhooks, &spec.id, &json)
            .await?;
        self.sender.do_send(Upsert(spec));
        Ok(())
    }

    /// `false` when there was no such subscription.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete_record(RecordSet::Webhooks, id).await?;
        self.sender.do_send(Remove(id.to_owned()));
        Ok(removed)
    }

    /// How each of this node's targets is doing, by webhook id (the
    /// fallback's under `"fallback"`); empty if the sender is gone.
    pub async fn statuses(&self) -> Vec<(String, WebhookStatus)> {
        self.sender.send(Statuses).await.unwrap_or_default()
    }
}

pub(crate) async fn load(store: &dyn Store) -> Result<Vec<WebhookSpec>, StoreError> {
    let raw = store.load_records(RecordSet::Webhooks).await?;
    Ok(raw
        .iter()
        .filter_map(|r| match serde_json::from_str::<WebhookSpec>(r) {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable webhook record");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(events: Option<Vec<EventKind>>, sessions: Option<Vec<&str>>) -> WebhookSpec {
        WebhookSpec {
            id: "wh_1".into(),
            url: "http://x/".into(),
            events,
            sessions: sessions.map(|s| s.iter().map(|s| SessionId::parse(s).unwrap()).collect()),
            secret: SecretString::from("s".repeat(16)),
            description: None,
            created_at_ms: 1,
        }
    }

    fn event(session: &str, kind: EventKind) -> Event {
        Event {
            id: 1,
            kind,
            session: SessionId::parse(session).unwrap(),
            json: Arc::from("{}"),
        }
    }

    #[test]
    fn a_subscription_wants_its_kinds_of_its_sessions() {
        let all = spec(None, None);
        assert!(all.wants(&event("a", EventKind::Qr)));
        let some = spec(Some(vec![EventKind::State]), Some(vec!["a", "b"]));
        assert!(some.wants(&event("b", EventKind::State)));
        assert!(!some.wants(&event("b", EventKind::Qr)));
        assert!(!some.wants(&event("c", EventKind::State)));
    }

    #[test]
    fn the_stored_record_round_trips_with_its_secret_but_debug_hides_it() {
        let s = spec(Some(vec![EventKind::Message]), None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(&"s".repeat(16)), "{json}");
        let back: WebhookSpec = serde_json::from_str(&json).unwrap();
        assert!(!back.differs(&s));
        assert!(!format!("{back:?}").contains(&"s".repeat(16)));
    }
}
