//! [`Backends`]: where state lives (memory, or Redis over one shared
//! connection). Built by the `wagate` crate from its configuration and
//! handed to [`super::Gateway::start`].

use std::sync::Arc;

use crate::bounds::{LogBounds, OutboxBounds};
use crate::incoming_media::memory::MemoryMediaStore;
use crate::incoming_media::redis::RedisMediaStore;
use crate::incoming_media::MediaStore;
use crate::journal::redis::RedisJournal;
use crate::journal::Journal;
use crate::laravel::outbox::{MemoryOutbox, Outbox};
use crate::laravel::outbox_redis::RedisOutbox;
use crate::messages::memory::MemoryMessageLog;
use crate::messages::redis::RedisMessageLog;
use crate::messages::MessageLog;
use crate::redis::health::RedisHealth;
use crate::redis::RedisConn;
use crate::store::{MemoryStore, RedisStore, Store};

/// Where state lives: the memory default, or Redis with its connection.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub outbox: Arc<dyn Outbox>,
    pub messages: Arc<dyn MessageLog>,
    /// What must reach Laravel across a `kill -9` (terminal statuses,
    /// incoming messages) while it waits in a batcher.
    pub journal: Journal,
    /// Where incoming media waits for Laravel to fetch it (`MEDIA_TTL`).
    pub incoming_media: Arc<dyn MediaStore>,
    /// Set when Redis is configured: pinged for `/health`.
    pub redis: Option<(RedisConn, Arc<RedisHealth>)>,
}

impl Backends {
    /// Nothing survives a restart: the zero-setup default.
    pub fn memory(log: LogBounds, outbox: OutboxBounds) -> Self {
        Self {
            store: Arc::new(MemoryStore::default()),
            outbox: Arc::new(MemoryOutbox::new(outbox)),
            messages: Arc::new(MemoryMessageLog::new(log)),
            journal: Journal::memory(),
            incoming_media: Arc::new(MemoryMediaStore::default()),
            redis: None,
        }
    }

    /// Store, cache, outbox and message queue in Redis, over one shared
    /// connection. Message records are kept `record_ttl` after their last change.
    pub fn redis(
        conn: RedisConn,
        cache_ttl: std::time::Duration,
        log: LogBounds,
        outbox: OutboxBounds,
    ) -> Self {
        // One health record for every Redis-backed part: a failure seen by
        // any of them marks Redis down for all (and for `/health`).
        let health = Arc::new(RedisHealth::default());
        Self {
            store: Arc::new(RedisStore::new(
                conn.clone(),
                Arc::clone(&health),
                cache_ttl,
            )),
            outbox: Arc::new(RedisOutbox::new(conn.clone(), Arc::clone(&health), outbox)),
            messages: Arc::new(RedisMessageLog::new(conn.clone(), Arc::clone(&health), log)),
            journal: Journal::new(Arc::new(RedisJournal::new(
                conn.clone(),
                Arc::clone(&health),
            ))),
            incoming_media: Arc::new(RedisMediaStore::new(conn.clone(), Arc::clone(&health))),
            redis: Some((conn, health)),
        }
    }
}
