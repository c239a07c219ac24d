//! `/health` in the old gateway's shape (`status`, `timestamp`,
//! `activeSessions`, `queues`, `circuitBreaker`), plus delivery to Laravel
//! (`laravel`: last success, last error, held batches; `DEGRADED` when
//! nothing was delivered for `LARAVEL_DEGRADED_AFTER`), `/health/live` and
//! `/health/ready`. Everything is read from atomics and the snapshot index,
//! in one place ([`HealthView::read`]), so health stays fast however busy
//! the actors are. No API key needed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use wagate_actors::clock::unix_ms;
use wagate_actors::gateway::LaneCounts;
use wagate_actors::laravel::breaker::BreakerState;
use wagate_actors::laravel::delivery::Verdict;
use wagate_actors::redis::health::RedisHealthView;
use wagate_actors::session::machine::SessionState;

use super::routes::Routes;
use super::views::Probe;
use super::{rfc3339, AppState};

pub fn routes() -> Routes {
    Routes::new("/health")
        .at("", Method::GET, health)
        .at("/live", Method::GET, live)
        .at("/ready", Method::GET, ready)
}

/// Everything `/health` says: the gateway's one reading
/// (`Gateway::health`) plus what only HTTP knows (uptime, environment,
/// forwarding). Each number has one source: held batches come from the
/// delivery view alone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub status: &'static str,
    pub timestamp: String,
    pub uptime_seconds: u64,
    pub environment: String,
    /// Connected sessions (the seed's name).
    pub active_sessions: u64,
    pub sessions: SessionsView,
    pub queues: QueuesView,
    pub circuit_breaker: BreakerView,
    pub connector: &'static str,
    pub store: &'static str,
    /// Redis, when configured: reachable, its mode, the last error.
    #[schema(value_type = Option<Object>)]
    pub redis: Option<RedisHealthView>,
    pub restore: RestoreView,
    pub laravel: LaravelView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsView {
    pub total: usize,
    pub by_state: BTreeMap<&'static str, u64>,
}

/// The seed's `{active, waiting, completed}` per queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub active: u64,
    pub waiting: u64,
    pub completed: u64,
}

impl From<LaneCounts> for QueueView {
    fn from(q: LaneCounts) -> Self {
        Self {
            active: q.active,
            waiting: q.waiting,
            completed: q.completed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuesView {
    pub qr_queue: QueueView,
    pub status_queue: QueueView,
    pub message_queue: MessageQueueView,
    pub inbound_queue: QueueView,
    pub outbox: OutboxView,
}

/// Outbound messages in the seed's shape, from the last read of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageQueueView {
    pub active: u64,
    pub waiting: u64,
    pub completed: u64,
    pub failed: u64,
    pub fresh: bool,
    pub backend: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxView {
    pub held: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerView {
    pub state: &'static str,
    pub failure_count: u64,
    pub success_count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreView {
    pub loaded: bool,
    pub found: u64,
    pub pending: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaravelView {
    pub forwarding: bool,
    pub last_success_at: Option<String>,
    pub last_error: Option<LastErrorView>,
    pub held_batches: usize,
    pub oldest_held_age_seconds: Option<u64>,
    pub degraded_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastErrorView {
    pub kind: String,
    pub message: String,
    pub at: String,
}

/// Why `/health` says DEGRADED, if it does: delivery's own verdict first,
/// else an open breaker.
fn degraded_reason(verdict: Verdict, breaker: BreakerState) -> Option<String> {
    match verdict {
        Verdict::Degraded(why) => Some(why),
        Verdict::Ok if breaker == BreakerState::Open => Some(
            "the circuit breaker is open: Laravel failed repeatedly; batches are held".to_owned(),
        ),
        Verdict::Ok => None,
    }
}

impl HealthView {
    /// Reads the gateway once, at `now_ms`.
    pub fn read(state: &AppState, now_ms: u64) -> Self {
        let g = state.gateway.health();
        let degraded_reason = degraded_reason(g.delivery.verdict(now_ms), g.breaker.state);
        let held = g.delivery.held();
        Self {
            status: if degraded_reason.is_some() {
                "DEGRADED"
            } else {
                "OK"
            },
            timestamp: rfc3339(now_ms),
            uptime_seconds: state.started.elapsed().as_secs(),
            environment: state.environment.clone(),
            active_sessions: g.count(SessionState::Connected),
            sessions: SessionsView {
                total: g.sessions_total,
                by_state: g
                    .sessions_by_state
                    .iter()
                    .map(|(s, n)| (s.as_str(), *n))
                    .collect(),
            },
            queues: QueuesView {
                qr_queue: g.qr_queue.into(),
                status_queue: g.status_queue.into(),
                message_queue: MessageQueueView {
                    active: g.messages.active,
                    waiting: g.messages.waiting,
                    completed: g.messages.completed,
                    failed: g.messages.failed,
                    fresh: g.messages_fresh,
                    backend: g.messages_backend,
                },
                inbound_queue: g.inbound_queue.into(),
                outbox: OutboxView { held },
            },
            circuit_breaker: BreakerView {
                state: g.breaker.state.as_str(),
                failure_count: g.breaker.failure_count,
                success_count: g.breaker.success_count,
            },
            connector: g.connector,
            store: g.store,
            restore: RestoreView {
                loaded: g.restore.loaded,
                found: g.restore.found,
                pending: g.restore.pending,
            },
            laravel: LaravelView {
                forwarding: state.forwarding,
                last_success_at: g.delivery.last_success_ms().map(rfc3339),
                last_error: g.delivery.last_error().map(|e| LastErrorView {
                    kind: e.kind.clone(),
                    message: e.message.clone(),
                    at: rfc3339(e.at_ms),
                }),
                held_batches: held,
                oldest_held_age_seconds: g.delivery.oldest_held_age(now_ms).map(|d| d.as_secs()),
                degraded_reason,
            },
            redis: g.redis,
        }
    }
}

/// The gateway's health: sessions by state, queues, the breaker, Redis,
/// restore and delivery to Laravel. `status` is `OK`, or `DEGRADED` with
/// `laravel.degradedReason`. No API key needed.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "Always 200; read `status`", body = HealthView)))]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(HealthView::read(&state, unix_ms()))
}

/// The process serves HTTP (a liveness probe).
#[utoipa::path(get, path = "/health/live", tag = "health", security(()),
    responses((status = 200, description = "Alive", body = Probe)))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Probe {
        status: "OK",
        reason: None,
    })
}

/// The gateway can take work: actors up, Redis (when configured)
/// reachable, not shutting down (a readiness probe).
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = Probe),
        (status = 503, description = "Not ready; `reason` says why", body = Probe),
    ))]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let reason = if state.shutting_down.load(Ordering::Relaxed) {
        Some("shutting down")
    } else {
        state.gateway.unready_reason()
    };
    match reason {
        Some(reason) => HttpResponse::ServiceUnavailable().json(Probe {
            status: "UNAVAILABLE",
            reason: Some(reason),
        }),
        None => HttpResponse::Ok().json(Probe {
            status: "OK",
            reason: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_when_delivery_says_so_or_the_breaker_is_open() {
        assert_eq!(degraded_reason(Verdict::Ok, BreakerState::Closed), None);
        assert_eq!(degraded_reason(Verdict::Ok, BreakerState::HalfOpen), None);
        let open = degraded_reason(Verdict::Ok, BreakerState::Open).unwrap();
        assert!(open.contains("circuit breaker is open"), "{open}");
        let why = degraded_reason(Verdict::Degraded("late".into()), BreakerState::Open);
        assert_eq!(why.as_deref(), Some("late"));
    }
}
