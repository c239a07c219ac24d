//! Linked devices' keys: one SQLite file per device
//! (`DATA_DIR/devices/{id}.db`, the crate's store), keyed by a random device
//! id. The session's [`Credentials`] are just that id, stored by the gateway
//! `Store`, so a restart finds the device again. One file per device means
//! one writer per file (the storage crate warns against two pools on one
//! file) and a wipe is deleting the file. Devices linked by an older version
//! live in the shared `DATA_DIR/whatsapp.db` and stay there (read and wiped
//! row by row, in `BEGIN IMMEDIATE` transactions). Used by the driver: lock,
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

/// The devices' SQLite files.
pub struct DeviceDb {
    /// `DATA_DIR/devices`: one `{id}.db` per device.
    dir: PathBuf,
    /// `DATA_DIR/whatsapp.db`: every device of versions before one file per device.
    legacy: PathBuf,
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

/// An open device: its store and where it lives.
pub struct Device {
    pub store: SqliteStore,
    /// Its own file, or `None` for a device in the shared legacy file.
    file: Option<PathBuf>,
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
    #[error("cannot delete the device file {0}: {1}")]
    Remove(PathBuf, #[source] std::io::Error),
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
    /// Creates `data_dir/devices` if needed, readable by this user only (it
    /// holds every linked device's keys); a device's file is created on first open.
    pub fn new(data_dir: &Path) -> Result<Arc<Self>, DeviceError> {
        let dir = data_dir.join("devices");
        create_private_dir(&dir).map_err(|e| DeviceError::DataDir(dir.clone(), e))?;
        Ok(Arc::new(Self {
            dir,
            legacy: data_dir.join("whatsapp.db"),
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

    fn file(&self, id: i32) -> PathBuf {
        self.dir.join(format!("{id}.db"))
    }

    /// Whether the shared file of older versions holds device `id`.
    async fn in_legacy(&self, id: i32) -> Result<bool, DeviceError> {
        if !self.legacy.exists() {
            return Ok(false);
        }
        let legacy = SqliteStore::new_for_device(&path_url(&self.legacy), id).await?;
        Ok(legacy.device_exists(id).await?)
    }

    /// Opens the store of an existing (or remembered) device.
    pub async fn open(&self, id: i32) -> Result<Device, DeviceError> {
        self.claimed.lock().insert(id);
        let file = self.file(id);
        if !file.exists() && self.in_legacy(id).await? {
            tracing::info!(
                device = id,
                "device linked by an older version: its keys stay in the shared whatsapp.db"
            );
            let store = SqliteStore::new_for_device(&path_url(&self.legacy), id).await?;
            return Ok(Device { store, file: None });
        }
        let store = SqliteStore::new_for_device(&path_url(&file), id).await?;
        Ok(Device {
            store,
            file: Some(file),
        })
    }

    /// Draws an unused device id and opens its own, new file (the client
    /// creates the device row with fresh keys on start).
    pub async fn allocate(&self) -> Result<(i32, Device, DeviceLock), DeviceError> {
        loop {
            let id = rand::rng().random_range(1..i32::MAX);
            if !self.claimed.lock().insert(id) {
                continue;
            }
            let lock = self.lock(id).await;
            let file = self.file(id);
            if file.exists() || self.in_legacy(id).await? {
                continue;
            }
            let store = SqliteStore::new_for_device(&path_url(&file), id).await?;
            return Ok((
                id,
                Device {
                    store,
                    file: Some(file),
                },
                lock,
            ));
        }
    }

    /// Deletes device `id`'s keys, sessions and caches: its file, or its
    /// rows in the legacy file. Call only after the client using it has stopped.
    pub async fn wipe(&self, device: Device, id: i32) -> Result<(), DeviceError> {
        let Device { store, file } = device;
        match file {
            Some(file) => {
                drop(store);
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut path = file.clone().into_os_string();
                    path.push(suffix);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(DeviceError::Remove(PathBuf::from(path), e)),
                    }
                }
            }
            None => store.shared().run(move |conn| wipe_rows(conn, id)).await?,
        }
        self.claimed.lock().remove(&id);
        // The wiping driver still holds the lock; the entry goes with it.
        self.locks.lock().remove(&id);
        Ok(())
    }
}

fn path_url(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Every table with a `device_id` column, then the device row itself: found
/// from the schema, so tables added by a newer client are wiped too. In one
/// `BEGIN IMMEDIATE` transaction: it reads the schema and then writes, and a
/// deferred transaction doing that can deadlock against another writer of
/// the shared file on the lock upgrade (`busy_timeout` cannot break it).
fn wipe_rows(conn: &mut diesel::SqliteConnection, id: i32) -> Result<(), StoreError> {
    use diesel::sql_types::{Integer, Text};
    use diesel::{sql_query, QueryableByName, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let db = |e: diesel::result::Error| StoreError::Database(Box::new(e));
    conn.immediate_transaction(|conn| {
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

    /// Descriptors this process holds on files under `dir`.
    #[cfg(target_os = "linux")]
    fn fds_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    #[tokio::test]
    #[cfg(target_os = "linux")]
    async fn each_device_has_its_own_file_and_a_wipe_deletes_it() {
        const N: usize = 20;
        let dir = std::env::temp_dir().join(format!("wagate-devfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = DeviceDb::new(&dir).expect("data dir");
        let mut open = Vec::new();
        for _ in 0..N {
            open.push(db.allocate().await.expect("device"));
        }
        let fds = fds_under(&dir);
        // The figure docs/whatsapp.md quotes (`--nocapture` shows it).
        eprintln!(
            "SQLite descriptors: {fds} for {N} devices, {:.1} per device",
            fds as f64 / N as f64
        );
        assert!(fds >= N, "each device holds its file open: {fds}");
        assert!(fds <= 3 * N, "{fds} descriptors for {N} devices");

        let (id, device, _lock) = open.pop().expect("one");
        let file = dir.join("devices").join(format!("{id}.db"));
        assert!(file.exists(), "{}", file.display());
        db.wipe(device, id).await.expect("wipe");
        for suffix in ["", "-wal", "-shm"] {
            let mut path = file.clone().into_os_string();
            path.push(suffix);
            assert!(!Path::new(&path).exists(), "{path:?} is gone");
        }
        drop(open);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_device_of_an_older_version_stays_in_the_shared_file() {
        let dir = std::env::temp_dir().join(format!("wagate-legacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = DeviceDb::new(&dir).expect("data dir");
        let legacy_url = path_url(&dir.join("whatsapp.db"));
        // Two devices of an older version in the shared file.
        let (id, other) = (7, 8);
        let legacy = SqliteStore::new_for_device(&legacy_url, id)
            .await
            .expect("legacy file");
        legacy.create_new_device().await.expect("legacy device");
        let second = SqliteStore::new_for_device(&legacy_url, other)
            .await
            .expect("legacy file");
        second.create_new_device().await.expect("second device");
        drop(second);

        let device = db.open(id).await.expect("open");
        assert!(device.file.is_none(), "found in whatsapp.db");
        assert!(!dir.join("devices").join(format!("{id}.db")).exists());
        db.wipe(device, id).await.expect("wipe");
        assert!(
            !legacy.device_exists(id).await.unwrap(),
            "its rows are gone"
        );
        assert!(legacy.device_exists(other).await.unwrap(), "others stay");

        let fresh = db.open(id).await.expect("reopen");
        assert!(fresh.file.is_some(), "a wiped id starts in its own file");
        drop((fresh, legacy));
        let _ = std::fs::remove_dir_all(dir);
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
