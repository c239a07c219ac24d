//! [`HealthReading`]: every figure `/health` shows about the actor system,
//! read in one place ([`super::Gateway::health`]) from atomics and the
//! snapshot index, never from an actor mailbox, so health stays fast however
//! busy the actors are. Each number has one source. The `wagate` crate adds
//! what only it knows (uptime, environment, forwarding) and the JSON shape.

use std::sync::atomic::Ordering;

use crate::laravel::breaker::BreakerSnapshot;
use crate::laravel::delivery::DeliveryHealth;
use crate::messages::QueueCounts;
use crate::redis::health::RedisHealthView;
use crate::session::machine::SessionState;
use crate::stats::QueueStats;

use super::Gateway;

/// One batcher lane in the seed's `{active, waiting, completed}` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneCounts {
    /// Requests in flight to Laravel.
    pub active: u64,
    /// Items buffered, not yet in a request.
    pub waiting: u64,
    /// Requests answered by Laravel (or held in the outbox).
    pub completed: u64,
}

impl From<&QueueStats> for LaneCounts {
    fn from(q: &QueueStats) -> Self {
        let (active, waiting, completed) = q.read();
        Self {
            active,
            waiting,
            completed,
        }
    }
}

/// Progress of the start-up restore of stored sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReading {
    /// The stored sessions were read (or there was nothing to read).
    pub loaded: bool,
    pub found: u64,
    /// Restored sessions still waiting to start.
    pub pending: u64,
}

/// The actor system's side of `/health`, read at one moment.
#[derive(Debug, Clone)]
pub struct HealthReading {
    /// Every state, in [`SessionState::ALL`] order, with its count.
    pub sessions_by_state: Vec<(SessionState, u64)>,
    pub sessions_total: usize,
    pub qr_queue: LaneCounts,
    pub status_queue: LaneCounts,
    pub inbound_queue: LaneCounts,
    /// Outbound messages, from the last read of the log.
    pub messages: QueueCounts,
    /// That last read of the message log succeeded.
    pub messages_fresh: bool,
    /// `memory` or `redis`.
    pub messages_backend: &'static str,
    pub breaker: BreakerSnapshot,
    /// Delivery to Laravel: last success, last error, held batches (the
    /// only source of the held count).
    pub delivery: DeliveryHealth,
    pub connector: &'static str,
    pub store: &'static str,
    /// Set when Redis is configured.
    pub redis: Option<RedisHealthView>,
    pub restore: RestoreReading,
}

impl HealthReading {
    /// Sessions in `state`.
    pub fn count(&self, state: SessionState) -> u64 {
        self.sessions_by_state
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }
}

impl Gateway {
    /// Reads every source `/health` shows once.
    pub fn health(&self) -> HealthReading {
        let (messages, messages_fresh) = self.messages.counts();
        let restore = &self.restore;
        HealthReading {
            sessions_by_state: SessionState::ALL
                .iter()
                .map(|s| (*s, self.index.count(*s)))
                .collect(),
            sessions_total: self.index.len(),
            qr_queue: (&self.stats.qr).into(),
            status_queue: (&self.stats.status).into(),
            inbound_queue: (&self.stats.inbound).into(),
            messages,
            messages_fresh,
            messages_backend: self.messages.backend(),
            breaker: self.breaker.read(),
            delivery: self.delivery.read(),
            connector: self.connector_kind,
            store: self.store_kind,
            redis: self.redis_health.as_ref().map(|h| h.view()),
            restore: RestoreReading {
                loaded: restore.loaded.load(Ordering::Relaxed),
                found: restore.found.load(Ordering::Relaxed),
                pending: restore.pending.load(Ordering::Relaxed),
            },
        }
    }

    /// Why the gateway cannot take work now, if it cannot (`/health/ready`):
    /// the actor system stopped, or Redis (when configured) is unreachable.
    pub fn unready_reason(&self) -> Option<&'static str> {
        if !self.registry.is_running() {
            Some("actor system stopped")
        } else if self
            .redis_health
            .as_ref()
            .is_some_and(|h| !h.is_connected())
        {
            Some("Redis is unreachable")
        } else {
            None
        }
    }
}
