//! The memory media store: a map in this process, swept of expired media
//! on every write and count. Nothing survives a restart (like every memory
//! backend). Used when no Redis is configured.

use async_trait::async_trait;
use dashmap::DashMap;

use super::{MediaStore, MediaStoreError, StoredMedia};

#[derive(Default)]
pub struct MemoryMediaStore {
    /// Kept media by id; an entry past its `expires_at` is dead and swept.
    media: DashMap<String, StoredMedia>,
}

impl MemoryMediaStore {
    fn sweep(&self, now_ms: u64) {
        self.media.retain(|_, m| m.meta.expires_at > now_ms);
    }
}

#[async_trait]
impl MediaStore for MemoryMediaStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn put(&self, id: &str, media: &StoredMedia, now_ms: u64) -> Result<(), MediaStoreError> {
        self.sweep(now_ms);
        self.media.insert(id.to_owned(), media.clone());
        Ok(())
    }

    async fn get(&self, id: &str, now_ms: u64) -> Result<Option<StoredMedia>, MediaStoreError> {
        let found = self.media.get(id).map(|m| m.clone());
        Ok(found.filter(|m| m.meta.expires_at > now_ms))
    }

    async fn count(&self, now_ms: u64) -> Result<u64, MediaStoreError> {
        self.sweep(now_ms);
        Ok(self.media.len() as u64)
    }
}
