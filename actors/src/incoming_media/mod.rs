//! Incoming media: the bytes of an image, voice note, document… someone
//! sent to a linked account, kept for `MEDIA_TTL` and offered to Laravel by
//! a signed, expiring gateway URL (`GET /media/{id}?token=`), because
//! WhatsApp's own links expire and need the account's keys. Connectors call
//! [`IncomingMedia::keep`] at receive time, *before* the message is
//! journaled (so no item ever names media that a restart loses); the HTTP
//! handler calls [`IncomingMedia::open`]. Backends: [`memory`] (nothing
//! survives a restart) and [`redis`] (one hash per media with a TTL).

pub mod memory;
pub mod redis;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::SessionId;
use crate::messages::content::ContentKind;

pub use self::token::TokenError;

/// How incoming media is kept and offered (`[media]` settings).
#[derive(Debug, Clone)]
pub struct IncomingMediaConfig {
    /// How long the bytes (and the URL's token) live (`MEDIA_TTL`).
    pub ttl: Duration,
    /// Base of the URLs Laravel gets, without a trailing `/` (`PUBLIC_URL`).
    pub public_url: String,
    /// Key of the URL tokens (`MEDIA_URL_SECRET`, else the Laravel signing
    /// secret); every node of a deployment must share it.
    pub secret: SecretString,
    /// Media up to this size also travels inline as base64
    /// (`MEDIA_INLINE_MAX`; 0 = never).
    pub inline_max: usize,
}

impl IncomingMediaConfig {
    /// A key for a gateway configured with no secret at all.
    pub fn random_secret() -> SecretString {
        let key: [u8; 32] = rand::random();
        SecretString::from(hex::encode(key))
    }
}

/// Media as a connector received it, before it is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMedia {
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    pub kind: ContentKind,
    pub mime_type: String,
    pub file_name: Option<String>,
    pub bytes: Bytes,
}

/// What Laravel gets as an item's `media`: where and what the kept bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRef {
    pub id: String,
    pub mime_type: String,
    pub size: u64,
    pub file_name: Option<String>,
    /// Hex SHA-256 of the bytes, so Laravel can check what it downloaded.
    pub sha256: String,
    /// `GET` it without the API key until `expiresAt`.
    pub url: String,
    /// Unix ms after which the URL answers 403 and the bytes are gone.
    pub expires_at: u64,
    /// The bytes themselves when they are at most `MEDIA_INLINE_MAX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

/// The description kept beside the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaMeta {
    pub mime_type: String,
    pub file_name: Option<String>,
    pub sha256: String,
    pub expires_at: u64,
}

/// Kept media: its description and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMedia {
    pub meta: MediaMeta,
    pub bytes: Bytes,
}

/// A media store call failed; the cause is kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaStoreError {
    #[error("the media store is unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    #[error("the media store holds a corrupt record for {id}")]
    Corrupt {
        id: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
}

/// Why `GET /media/{id}` serves nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Expired (or never kept): the token was good, the bytes are gone.
    #[error("the media has expired or does not exist")]
    Gone,
    #[error(transparent)]
    Store(#[from] MediaStoreError),
}

/// Where the bytes live. Every call takes `now_ms`, so expiry is testable.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    /// Keeps `media` under `id` until `media.meta.expires_at` (an earlier
    /// copy under the same id is replaced: a redelivered message).
    async fn put(&self, id: &str, media: &StoredMedia, now_ms: u64) -> Result<(), MediaStoreError>;
    /// The media, unless it expired.
    async fn get(&self, id: &str, now_ms: u64) -> Result<Option<StoredMedia>, MediaStoreError>;
    /// Media kept right now (tests and diagnostics: nothing leaks).
    async fn count(&self, now_ms: u64) -> Result<u64, MediaStoreError>;
}

/// The keeper shared by the connectors and the HTTP handler. Cheap to clone.
#[derive(Clone)]
pub struct IncomingMedia {
    store: Arc<dyn MediaStore>,
    config: Arc<IncomingMediaConfig>,
}

impl std::fmt::Debug for IncomingMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingMedia")
            .field("store", &self.store.kind())
            .field("config", &self.config)
            .finish()
    }
}

/// The media id of message `message_id` of `session`: stable, so a message
/// WhatsApp redelivers overwrites its earlier copy instead of adding one.
pub fn media_id(session: &SessionId, message_id: &str) -> String {
    let digest = Sha256::digest(format!("{session}/{message_id}").as_bytes());
    hex::encode(&digest[..16])
}

impl IncomingMedia {
    pub fn new(store: Arc<dyn MediaStore>, config: IncomingMediaConfig) -> Self {
        Self {
            store,
            config: Arc::new(config),
        }
    }

    /// A memory keeper with a fixed key (unit tests, tools).
    pub fn memory(config: IncomingMediaConfig) -> Self {
        Self::new(Arc::new(memory::MemoryMediaStore::default()), config)
    }

    pub fn config(&self) -> &IncomingMediaConfig {
        &self.config
    }

    /// Stores the bytes of message `message_id` and returns what Laravel
    /// gets. Resolves only once the store holds them: the caller journals
    /// the message afterwards, never before.
    pub async fn keep(
        &self,
        session: &SessionId,
        message_id: &str,
        media: NewMedia,
        now_ms: u64,
    ) -> Result<MediaRef, MediaStoreError> {
        let id = media_id(session, message_id);
        let expires_at = now_ms.saturating_add(self.config.ttl.as_millis() as u64);
        let sha256 = hex::encode(Sha256::digest(&media.bytes));
        let stored = StoredMedia {
            meta: MediaMeta {
                mime_type: media.mime_type,
                file_name: media.file_name,
                sha256,
                expires_at,
            },
            bytes: media.bytes,
        };
        self.store.put(&id, &stored, now_ms).await?;
        let token = token::sign(self.secret(), &id, expires_at);
        let inline = self.config.inline_max > 0 && stored.bytes.len() <= self.config.inline_max;
        Ok(MediaRef {
            url: format!("{}/media/{id}?token={token}", self.config.public_url),
            size: stored.bytes.len() as u64,
            base64: inline.then(|| base64::engine::general_purpose::STANDARD.encode(&stored.bytes)),
            id,
            mime_type: stored.meta.mime_type,
            file_name: stored.meta.file_name,
            sha256: stored.meta.sha256,
            expires_at,
        })
    }

    /// The media `id`, if `token` opens it at `now_ms` and it is still kept.
    pub async fn open(&self, id: &str, token: &str, now_ms: u64) -> Result<StoredMedia, OpenError> {
        token::verify(self.secret(), id, token, now_ms)?;
        self.store.get(id, now_ms).await?.ok_or(OpenError::Gone)
    }

    /// Media kept right now.
    pub async fn count(&self, now_ms: u64) -> Result<u64, MediaStoreError> {
        self.store.count(now_ms).await
    }

    fn secret(&self) -> &[u8] {
        self.config.secret.expose_secret().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper(inline_max: usize) -> IncomingMedia {
        IncomingMedia::memory(IncomingMediaConfig {
            ttl: Duration::from_secs(60),
            public_url: "http://gw".into(),
            secret: SecretString::from("k"),
            inline_max,
        })
    }

    fn photo(bytes: &'static [u8]) -> NewMedia {
        NewMedia {
            kind: ContentKind::Image,
            mime_type: "image/jpeg".into(),
            file_name: None,
            bytes: Bytes::from_static(bytes),
        }
    }

    #[actix_rt::test]
    async fn kept_media_opens_with_its_urls_token_until_it_expires() {
        let k = keeper(0);
        let s = SessionId::parse("s").unwrap();
        let r = k.keep(&s, "M1", photo(b"jpeg"), 1_000).await.unwrap();
        assert_eq!(r.size, 4);
        assert_eq!(r.expires_at, 61_000);
        assert!(r.base64.is_none());
        let token = r.url.split_once("?token=").unwrap().1;
        assert!(r.url.starts_with(&format!("http://gw/media/{}?", r.id)));
        let got = k.open(&r.id, token, 2_000).await.unwrap();
        assert_eq!(&got.bytes[..], b"jpeg");
        assert_eq!(got.meta.sha256, r.sha256);
        assert!(matches!(
            k.open(&r.id, token, 61_000).await,
            Err(OpenError::Token(TokenError::Expired))
        ));
        assert!(matches!(
            k.open("0000", token, 2_000).await,
            Err(OpenError::Token(TokenError::BadSignature))
        ));
        assert_eq!(k.count(2_000).await.unwrap(), 1);
        assert_eq!(
            k.count(61_000).await.unwrap(),
            0,
            "expired media is dropped"
        );
    }

    #[actix_rt::test]
    async fn small_media_travels_inline_when_asked() {
        let r = keeper(4)
            .keep(&SessionId::parse("s").unwrap(), "M", photo(b"jpeg"), 0)
            .await
            .unwrap();
        assert_eq!(r.base64.as_deref(), Some("anBlZw=="));
        let r = keeper(3)
            .keep(&SessionId::parse("s").unwrap(), "M", photo(b"jpeg"), 0)
            .await
            .unwrap();
        assert!(r.base64.is_none());
    }

    #[test]
    fn media_ids_are_stable_per_message() {
        let s = SessionId::parse("s").unwrap();
        assert_eq!(media_id(&s, "a"), media_id(&s, "a"));
        assert_ne!(media_id(&s, "a"), media_id(&s, "b"));
        assert_eq!(media_id(&s, "a").len(), 32);
    }
}
