//! The memory journal: the records in this process's memory. It keeps the
//! same rules as the Redis one (a status record per session, released by a
//! delivered update of its session with a `seq` at least its own) but dies with the process, like the memory store: with the
//! memory backends a `kill -9` loses the sessions themselves, so nothing
//! is replayed and Laravel keeps the last status it received.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{HeldInbound, JournalBackend, JournalError};
use crate::ids::SessionId;
use crate::laravel::payload::StatusItem;

#[derive(Default)]
pub struct MemoryJournal {
    /// Each session's pending terminal status.
    statuses: Mutex<HashMap<SessionId, StatusItem>>,
    /// Incoming messages not yet accepted by Laravel, by journal key.
    inbound: Mutex<HashMap<String, HeldInbound>>,
}

#[async_trait]
impl JournalBackend for MemoryJournal {
    async fn hold_status(&self, item: &StatusItem) -> Result<(), JournalError> {
        self.statuses
            .lock()
            .insert(item.session_id.clone(), item.clone());
        Ok(())
    }

    async fn release_statuses(&self, items: &[StatusItem]) -> Result<(), JournalError> {
        let mut held = self.statuses.lock();
        for item in items {
            if held
                .get(&item.session_id)
                .is_some_and(|h| h.seq <= item.seq)
            {
                held.remove(&item.session_id);
            }
        }
        Ok(())
    }

    async fn held_statuses(&self) -> Result<Vec<StatusItem>, JournalError> {
        Ok(self.statuses.lock().values().cloned().collect())
    }

    async fn hold_inbound(&self, held: &HeldInbound) -> Result<(), JournalError> {
        self.inbound.lock().insert(held.key.clone(), held.clone());
        Ok(())
    }

    async fn release_inbound(&self, keys: &[String]) -> Result<(), JournalError> {
        let mut held = self.inbound.lock();
        for k in keys {
            held.remove(k);
        }
        Ok(())
    }

    async fn held_inbound(&self) -> Result<Vec<HeldInbound>, JournalError> {
        Ok(self.inbound.lock().values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laravel::payload::StatusWord;

    fn stopped(seq: u64) -> StatusItem {
        super::super::stopped_status("s", seq)
    }

    #[actix_rt::test]
    async fn releasing_an_older_status_keeps_the_newer_one() {
        let j = MemoryJournal::default();
        j.hold_status(&stopped(1)).await.unwrap();
        j.hold_status(&stopped(2)).await.unwrap();
        j.release_statuses(&[stopped(1)]).await.unwrap();
        assert_eq!(j.held_statuses().await.unwrap(), [stopped(2)]);
        j.release_statuses(&[stopped(2)]).await.unwrap();
        assert!(j.held_statuses().await.unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn a_newer_update_of_the_session_releases_the_held_status() {
        let j = MemoryJournal::default();
        j.hold_status(&stopped(5)).await.unwrap();
        let mut starting = stopped(6);
        starting.status = StatusWord::Starting;
        j.release_statuses(&[starting]).await.unwrap();
        assert!(j.held_statuses().await.unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn released_messages_leave_and_others_stay() {
        let j = MemoryJournal::default();
        for k in ["s/a", "s/b"] {
            let held = HeldInbound {
                key: k.into(),
                boot: "b".into(),
                n: 0,
                item: serde_json::json!({}),
            };
            j.hold_inbound(&held).await.unwrap();
        }
        j.release_inbound(&["s/a".into(), "s/zz".into()])
            .await
            .unwrap();
        let keys: Vec<String> = j
            .held_inbound()
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect();
        assert_eq!(keys, ["s/b"]);
    }
}
