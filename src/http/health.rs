//! `/health` in the old gateway's shape (`status`, `timestamp`,
//! `activeSessions`, `queues`, `circuitBreaker`), plus delivery to Laravel
//! (`laravel`: last success, last error, held batches; `DEGRADED` when
//! nothing was delivered for `LARAVEL_DEGRADED_AFTER`), `/health/live` and
//! `/health/ready`. Everything is read from atomics and the snapshot index,
//! so health stays fast however busy the actors are. No API key needed.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse, Scope};
use serde_json::{json, Value};
use wagate_actors::clock::unix_ms;
use wagate_actors::laravel::breaker::BreakerState;
use wagate_actors::laravel::delivery::Verdict;
use wagate_actors::session::machine::SessionState;
use wagate_actors::stats::QueueStats;

use super::{resource, rfc3339, AppState};

pub fn routes() -> Scope {
    web::scope("/health")
        .service(resource("").route(web::get().to(health)))
        .service(resource("/live").route(web::get().to(live)))
        .service(resource("/ready").route(web::get().to(ready)))
}

fn queue(q: &QueueStats) -> Value {
    let (active, waiting, completed) = q.read();
    json!({ "active": active, "waiting": waiting, "completed": completed })
}

/// Outbound messages in the seed's shape, from the last read of the log.
fn message_queue(g: &wagate_actors::Gateway) -> Value {
    let (c, fresh) = g.messages.counts();
    json!({
        "active": c.active,
        "waiting": c.waiting,
        "completed": c.completed,
        "failed": c.failed,
        "fresh": fresh,
        "backend": g.messages.backend(),
    })
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let g = &state.gateway;
    let breaker = g.breaker.read();
    let by_state: serde_json::Map<String, Value> = SessionState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), json!(g.index.count(*s))))
        .collect();
    let now = unix_ms();
    let delivery = g.delivery.read();
    let degraded_reason = match delivery.verdict(now) {
        Verdict::Degraded(why) => Some(why),
        Verdict::Ok if breaker.state == BreakerState::Open => Some(
            "the circuit breaker is open: Laravel failed repeatedly; batches are held".to_owned(),
        ),
        Verdict::Ok => None,
    };
    let status = if degraded_reason.is_some() {
        "DEGRADED"
    } else {
        "OK"
    };
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "status": status,
            "timestamp": rfc3339(unix_ms()),
            "uptimeSeconds": state.started.elapsed().as_secs(),
            "environment": state.environment,
            "activeSessions": g.index.count(SessionState::Connected),
            "sessions": { "total": g.index.len(), "byState": by_state },
            "queues": {
                "qrQueue": queue(&g.stats.qr),
                "statusQueue": queue(&g.stats.status),
                "messageQueue": message_queue(g),
                "inboundQueue": queue(&g.stats.inbound),
                "outbox": { "held": g.stats.outbox_held.load(Ordering::Relaxed) },
            },
            "circuitBreaker": {
                "state": breaker.state.as_str(),
                "failureCount": breaker.failure_count,
                "successCount": breaker.success_count,
            },
            "connector": g.connector_kind,
            "store": g.store_kind,
            "redis": g.redis_health.as_ref().map(|h| h.view()),
            "restore": {
                "loaded": g.restore.loaded.load(Ordering::Relaxed),
                "found": g.restore.found.load(Ordering::Relaxed),
                "pending": g.restore.pending.load(Ordering::Relaxed),
            },
            "laravel": {
                "forwarding": state.forwarding,
                "lastSuccessAt": delivery.last_success_ms().map(rfc3339),
                "lastError": delivery.last_error().map(|e| json!({
                    "kind": e.kind,
                    "message": e.message,
                    "at": rfc3339(e.at_ms),
                })),
                "heldBatches": delivery.held(),
                "oldestHeldAgeSeconds": delivery.oldest_held_age(now).map(|d| d.as_secs()),
                "degradedReason": degraded_reason,
            },
        }))
}

/// The process serves HTTP.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "OK" }))
}

/// The gateway can take work: actors up, Redis (when configured)
/// reachable, not shutting down.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let g = &state.gateway;
    let reason = if state.shutting_down.load(Ordering::Relaxed) {
        Some("shutting down")
    } else if !g.registry.is_running() {
        Some("actor system stopped")
    } else if g.redis_health.as_ref().is_some_and(|h| !h.is_connected()) {
        Some("Redis is unreachable")
    } else {
        None
    };
    match reason {
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "UNAVAILABLE", "reason": reason })),
        None => HttpResponse::Ok().json(json!({ "status": "OK" })),
    }
}
