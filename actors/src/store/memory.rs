//! The in-process store: the zero-setup default. Sessions and credentials
//! live in maps and are lost with the process; the cache is the
//! `SessionIndex` itself, so cache writes are no-ops here.

use async_trait::async_trait;
use dashmap::DashMap;

use super::{CacheCounts, CacheWrite, RecordSet, SessionRecord, Store, StoreError};
use crate::connector::Credentials;
use crate::ids::SessionId;

#[derive(Default)]
pub struct MemoryStore {
    credentials: DashMap<SessionId, Credentials>,
    sessions: DashMap<SessionId, SessionRecord>,
    records: DashMap<(RecordSet, String), String>,
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    /// The snapshot index is the cache: nothing to write or renew.
    fn caches(&self) -> bool {
        false
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

    async fn save_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn delete_session(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions.remove(id);
        self.credentials.remove(id);
        Ok(())
    }

    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self.sessions.iter().map(|r| r.value().clone()).collect())
    }

    async fn session_exists(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.sessions.contains_key(id))
    }

    async fn cache(&self, _: &SessionId, _: CacheWrite) -> Result<(), StoreError> {
        Ok(())
    }

    async fn refresh_cache(&self, _: &[SessionId]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn cached_status(&self, _: &SessionId) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn cache_counts(&self) -> Result<Option<CacheCounts>, StoreError> {
        Ok(None)
    }

    async fn save_record(&self, set: RecordSet, id: &str, json: &str) -> Result<(), StoreError> {
        self.records.insert((set, id.to_owned()), json.to_owned());
        Ok(())
    }

    async fn delete_record(&self, set: RecordSet, id: &str) -> Result<bool, StoreError> {
        Ok(self.records.remove(&(set, id.to_owned())).is_some())
    }

    async fn load_records(&self, set: RecordSet) -> Result<Vec<String>, StoreError> {
        Ok(self
            .records
            .iter()
            .filter(|r| r.key().0 == set)
            .map(|r| r.value().clone())
            .collect())
    }
}
