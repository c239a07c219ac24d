//! Linked devices' keys in one SQLite file (`DATA_DIR/whatsapp.db`), one
//! device row (and its Signal tables' rows) per session, keyed by a device
//! id. The session's [`Credentials`] are just that id, stored by the gateway
//! `Store`, so a restart finds the device again. Used by the driver: lock,
//! open or allocate a device, and wipe it when WhatsApp logged it out. The
//! per-device lock keeps one client per device: a restarted session's new
//! client waits until the old one has flushed and dropped its store.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::wacore::store::error::StoreError;

use crate::connector::Credentials;

const PREFIX: &str = "whatsapp-web/device:";

/// The SQLite file of all devices.
pub struct DeviceDb {
    url: String,
    /// Ids handed out by this process and not yet wiped, so two sessions
    /// opened at once never draw the same fresh id.
    claimed: Mutex<HashSet<i32>>,
    /// One lock per device, held by the driver whose client uses it.
    locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    /// Device locks held right now, and a wake-up when one is released:
    /// shutdown waits for zero.
    held: Arc<Held>,
}

#[derive(Default)]
struct Held {
    count: AtomicUsize,
    released: tokio::sync::Notify,
}

/// The right to run a client on one device; released on drop.
pub struct DeviceLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    held: Arc<Held>,
}

impl Drop for DeviceLock {
    fn drop(&mut self) {
        self.held.count.fetch_sub(1, Ordering::SeqCst);
        self.held.released.notify_waiters();
    }
}

/// Why a device could not be opened or wiped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot start the WhatsApp runtime: {0}")]
    Runtime(std::io::Error),
    #[error("device store: {0}")]
    Store(#[from] StoreError),
}

/// `mkdir -p` with mode 0700 for every directory it creates. An existing
/// directory is left as it is, with a warning when others can read it.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "DATA_DIR holds device keys but is open to other users; chmod 700 it"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

impl DeviceDb {
    /// Creates `data_dir` if needed, readable by this user only (it holds
    /// every linked device's keys); the database file is created on first open.
    pub fn new(data_dir: &Path) -> Result<Arc<Self>, DeviceError> {
        create_private_dir(data_dir).map_err(|e| DeviceError::DataDir(data_dir.to_owned(), e))?;
        Ok(Arc::new(Self {
            url: data_dir.join("whatsapp.db").to_string_lossy().into_owned(),
            claimed: Mutex::new(HashSet::new()),
            locks: Mutex::new(HashMap::new()),
            held: Arc::default(),
        }))
    }

    pub fn credentials(id: i32) -> Credentials {
        Credentials(format!("{PREFIX}{id}").into_bytes())
    }

    /// The device id in credentials written by [`credentials`](Self::credentials).
    pub fn parse(credentials: &Credentials) -> Option<i32> {
        std::str::from_utf8(&credentials.0)
            .ok()?
            .strip_prefix(PREFIX)?
            .parse()
            .ok()
            .filter(|id| *id > 0)
    }

    /// Waits until no other client uses device `id`, then holds it.
    pub async fn lock(&self, id: i32) -> DeviceLock {
        let lock = Arc::clone(self.locks.lock().entry(id).or_default());
        let guard = lock.lock_owned().await;
        self.held.count.fetch_add(1, Ordering::SeqCst);
        DeviceLock {
            _guard: guard,
            held: Arc::clone(&self.held),
        }
    }

    /// Waits (at most `within`) until every device lock is released, that
    /// is until every client has flushed and let go of its store.
    pub async fn all_released(&self, within: Duration) -> bool {
        let held = Arc::clone(&self.held);
        tokio::time::timeout(within, async move {
            loop {
                let released = held.released.notified();
                if held.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                released.await;
            }
        })
        .await
        .is_ok()
    }

    /// Opens the store of an existing (or remembered) device.
    pub async fn open(&self, id: i32) -> Result<SqliteStore, DeviceError> {
        self.claimed.lock().insert(id);
        Ok(SqliteStore::new_for_device(&self.url, id).await?)
    }

    /// Draws an unused device id and opens its store (the client creates
    /// the row with fresh keys on start).
    pub async fn allocate(&self) -> Result<(i32, SqliteStore, DeviceLock), DeviceError> {
        loop {
            let id = rand::rng().random_range(1..i32::MAX);
            if !self.claimed.lock().insert(id) {
                continue;
            }
            let lock = self.lock(id).await;
            let store = SqliteStore::new_for_device(&self.url, id).await?;
            if !store.device_exists(id).await? {
                return Ok((id, store, lock));
            }
        }
    }

    /// Deletes every row of device `id`: its keys, sessions and caches.
    /// Call only after the client using it has stopped.
    pub async fn wipe(&self, store: &SqliteStore, id: i32) -> Result<(), DeviceError> {
        store.shared().run(move |conn| wipe_rows(conn, id)).await?;
        self.claimed.lock().remove(&id);
        // The wiping driver still holds the lock; the entry goes with it.
        self.locks.lock().remove(&id);
        Ok(())
    }
}

/// Every table with a `device_id` column, then the device row itself: found
/// from the schema, so tables added by a newer client are wiped too.
fn wipe_rows(conn: &mut diesel::SqliteConnection, id: i32) -> Result<(), StoreError> {
    use diesel::connection::Connection;
    use diesel::sql_types::{Integer, Text};
    use diesel::{sql_query, QueryableByName, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let db = |e: diesel::result::Error| StoreError::Database(Box::new(e));
    conn.transaction(|conn| {
        let tables: Vec<Table> = sql_query(
            "SELECT m.name AS name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'device_id'",
        )
        .load(conn)?;
        for t in tables {
            // Names come from sqlite_master, quoted as identifiers.
            let table = t.name.replace('"', "\"\"");
            sql_query(format!("DELETE FROM \"{table}\" WHERE device_id = ?"))
                .bind::<Integer, _>(id)
                .execute(conn)?;
        }
        sql_query("DELETE FROM device WHERE id = ?")
            .bind::<Integer, _>(id)
            .execute(conn)?;
        Ok(())
    })
    .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_device_has_one_holder_and_shutdown_waits_for_it() {
        let dir = std::env::temp_dir().join(format!("wagate-devices-{}", std::process::id()));
        let db = DeviceDb::new(&dir).expect("data dir");
        assert!(db.all_released(Duration::ZERO).await, "nothing held");
        let first = db.lock(7).await;
        let second = tokio::time::timeout(Duration::from_millis(20), db.lock(7)).await;
        assert!(second.is_err(), "a second client waits for the first");
        drop(db.lock(8).await);
        assert!(
            !db.all_released(Duration::from_millis(20)).await,
            "device 7 is still held"
        );
        let waiting = tokio::spawn({
            let db = Arc::clone(&db);
            async move { db.all_released(Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(
            waiting.await.expect("task"),
            "released once the holder let go"
        );
        let next = tokio::time::timeout(Duration::from_secs(1), db.lock(7)).await;
        assert!(next.is_ok(), "the device is free again");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    #[cfg(unix)]
    fn data_dir_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("wagate-datadir-{}", std::process::id()));
        let dir = root.join("nested").join("data");
        create_private_dir(&dir).unwrap();
        for d in [&root, &dir] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        }
        create_private_dir(&dir).expect("an existing directory is fine");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn credentials_round_trip_and_foreign_ones_are_ignored() {
        assert_eq!(DeviceDb::parse(&DeviceDb::credentials(42)), Some(42));
        assert_eq!(DeviceDb::parse(&Credentials(b"sim:abc".to_vec())), None);
        assert_eq!(
            DeviceDb::parse(&Credentials(format!("{PREFIX}-3").into_bytes())),
            None
        );
    }
}
