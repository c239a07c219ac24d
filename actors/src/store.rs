//! Durable state behind a trait: connector credentials per session, so a
//! linked account reconnects after a restart without a new QR. Called by
//! Session actors. The memory backend is the zero-setup default; the Redis
//! backend (production) implements the same trait.

use async_trait::async_trait;
use dashmap::DashMap;

use crate::connector::Credentials;
use crate::ids::SessionId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory` or `redis`, for logs and `/health`.
    fn kind(&self) -> &'static str;
    async fn load_credentials(&self, id: &SessionId) -> Result<Option<Credentials>, StoreError>;
    async fn save_credentials(&self, id: &SessionId, creds: &Credentials)
        -> Result<(), StoreError>;
    async fn delete_credentials(&self, id: &SessionId) -> Result<(), StoreError>;
}

/// Keeps everything in process memory: nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    credentials: DashMap<SessionId, Credentials>,
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn load_credentials(&self, id: &SessionId) -> Result<Option<Credentials>, StoreError> {
        Ok(self.credentials.get(id).map(|c| c.clone()))
    }

    async fn save_credentials(
        &self,
        id: &SessionId,
        creds: &Credentials,
    ) -> Result<(), StoreError> {
        self.credentials.insert(id.clone(), creds.clone());
        Ok(())
    }

    async fn delete_credentials(&self, id: &SessionId) -> Result<(), StoreError> {
        self.credentials.remove(id);
        Ok(())
    }
}
