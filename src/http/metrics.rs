//! `/metrics` (Prometheus text), `/metrics/batch` and `/metrics/cache` in
//! the old gateway's JSON shapes, and `/metrics/actors`: per-actor-type
//! mailbox figures and the deepest session mailboxes. No API key needed
//! unless `METRICS_KEY` is set; nothing here is a secret (no QR, no text,
//! no session id unless the routes are behind `METRICS_KEY`).

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use prometheus::proto::MetricFamily;
use wagate_actors::clock::unix_ms;
use wagate_actors::gateway::PendingBatches;
use wagate_actors::session::machine::SessionState;

use super::error::ApiError;
use super::metrics_views::{
    ActorFigures, ActorMetrics, BatchFigures, BatchMetrics, CacheMetrics, KeyCounts, QrImages,
    SessionMailbox, SessionReads, Timing,
};
use super::routes::Routes;
use super::views::ErrorBody;
use super::AppState;

type State = web::Data<AppState>;

pub fn routes() -> Routes {
    Routes::new("/metrics")
        .at("", Method::GET, prometheus_text)
        .at("/batch", Method::GET, batch)
        .at("/cache", Method::GET, cache)
        .at("/actors", Method::GET, actors)
}

/// Prometheus metrics (text format): sessions, batches, Laravel delivery,
/// the message queue, HTTP routes and every actor's mailbox.
#[utoipa::path(get, path = "/metrics", tag = "metrics", security((), ("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 401, description = "`unauthorized`: `METRICS_KEY` is set", body = ErrorBody),
    ))]
pub(crate) async fn prometheus_text(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.gateway.encode_metrics())
}

/// Counts and ages only: a pending QR is a live pairing secret and a
/// status carries session ids, so no content is served here (issue 17).
#[utoipa::path(get, path = "/metrics/batch", tag = "metrics", security((), ("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The old gateway's shape: `{success, metrics: {qr, status, laravel}}`, counts and ages only", body = BatchMetrics),
        (status = 401, description = "`unauthorized`: `METRICS_KEY` is set", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn batch(state: State) -> Result<HttpResponse, ApiError> {
    let g = &state.gateway;
    let PendingBatches { qr, status } = g
        .batchers()
        .pending()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let now = unix_ms();
    let since = |t: Option<u64>| t.map(|t| now.saturating_sub(t));
    Ok(HttpResponse::Ok().json(BatchMetrics {
        success: true,
        metrics: BatchFigures {
            qr_batch_size: qr.pending,
            status_batch_size: status.high + status.normal,
            status_high_priority: status.high,
            last_flush_qr: qr.last_flush_ms,
            time_since_last_flush_qr: since(qr.last_flush_ms),
            last_flush_status: status.last_flush_ms,
            time_since_last_flush_status: since(status.last_flush_ms),
            oldest_qr_wait_ms: qr.oldest_wait_ms,
            oldest_status_high_wait_ms: status.oldest_high_wait_ms,
            oldest_status_normal_wait_ms: status.oldest_normal_wait_ms,
            outbox_held: g.delivery().read().held(),
        },
    }))
}

/// With the memory store the "keys" are the snapshot index's entries,
/// counted the way the Redis layout would hold them (O(1) gauges). With
/// Redis, the last count of the background task (`wagate_actors::store::counts::KeyCounts`).
/// Session-state reads and the Redis state cache's key counts.
#[utoipa::path(get, path = "/metrics/cache", tag = "metrics", security((), ("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The old gateway's shape: `{success, metrics}`", body = CacheMetrics),
        (status = 401, description = "`unauthorized`: `METRICS_KEY` is set", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: the last background count failed", body = ErrorBody),
    ))]
pub(crate) async fn cache(state: State) -> HttpResponse {
    let g = &state.gateway;
    let sessions = g.index().len() as u64;
    let qr = g.index().count(SessionState::Qr);
    let connected = g.index().count(SessionState::Connected);
    let lookups = |level: &str| {
        g.metrics()
            .session_cache_lookups
            .with_label_values(&[level])
            .get()
    };
    let (local, redis, miss) = (lookups("local"), lookups("redis"), lookups("miss"));
    let reads = local + redis + miss;
    let session_reads = SessionReads {
        local,
        redis,
        miss,
        hit_rate: if reads == 0 {
            0.0
        } else {
            (local + redis) as f64 / reads as f64
        },
    };
    let view = |metrics: Option<KeyCounts>, counted_at: Option<u64>| CacheMetrics {
        success: true,
        store: g.store_kind(),
        metrics,
        counted_at,
        session_reads,
        qr_images: qr_images(g),
    };
    // With Redis: the last background count (never a SCAN per request).
    if let Some(reading) = g.key_counts().latest() {
        return match reading.counts {
            Ok(counts) => HttpResponse::Ok().json(view(Some(counts.into()), Some(reading.at_ms))),
            Err(message) => {
                actix_web::ResponseError::error_response(&ApiError::StoreUnavailable(message))
            }
        };
    }
    if g.store_kind() != "memory" {
        // The first count has not finished yet.
        return HttpResponse::Ok().json(view(None, None));
    }
    let counts = KeyCounts {
        total_keys: qr + sessions + connected + sessions,
        qr_keys: qr,
        status_keys: sessions,
        connection_keys: connected,
        session_keys: sessions,
    };
    HttpResponse::Ok().json(view(Some(counts), None))
}

fn qr_images(g: &wagate_actors::Gateway) -> QrImages {
    let family = g.metrics().qr_render_cache.clone();
    let hits = family.with_label_values(&["hit"]).get();
    let misses = family.with_label_values(&["miss"]).get();
    let lookups = hits + misses;
    QrImages {
        cached: g.renderer().cache_len(),
        hits,
        misses,
        hit_rate: if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        },
    }
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// Upper bound of the bucket holding quantile `q` (None when empty).
fn quantile(h: &prometheus::proto::Histogram, q: f64) -> Option<f64> {
    let total = h.get_sample_count();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    h.get_bucket()
        .iter()
        .find(|b| b.cumulative_count() >= rank)
        .map(|b| b.upper_bound())
        .or(Some(f64::INFINITY))
}

fn per_actor(
    families: &[MetricFamily],
    name: &str,
    actor: &str,
) -> Option<prometheus::proto::Metric> {
    families
        .iter()
        .find(|f| f.name() == name)?
        .get_metric()
        .iter()
        .find(|m| label(m, "actor") == Some(actor))
        .cloned()
}

/// Per-actor-type mailbox figures and the deepest session mailboxes
/// (session ids only behind `METRICS_KEY`).
#[utoipa::path(get, path = "/metrics/actors", tag = "metrics", security((), ("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Per actor type, and the deepest session mailboxes", body = ActorMetrics),
        (status = 401, description = "`unauthorized`: `METRICS_KEY` is set", body = ErrorBody),
    ))]
pub(crate) async fn actors(state: State) -> HttpResponse {
    let metrics = Arc::clone(state.gateway.metrics());
    let families = metrics.registry.gather();
    let mut names: Vec<String> = families
        .iter()
        .find(|f| f.name() == "wagate_actor_messages_handled_total")
        .map(|f| {
            f.get_metric()
                .iter()
                .filter_map(|m| label(m, "actor").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let actors: Vec<ActorFigures> = names
        .iter()
        .map(|actor| {
            let depth = per_actor(&families, "wagate_actor_mailbox_depth", actor)
                .map(|m| m.get_gauge().get_value());
            let handled = per_actor(&families, "wagate_actor_messages_handled_total", actor)
                .map(|m| m.get_counter().get_value());
            let hist = |name| per_actor(&families, name, actor).map(|m| m.get_histogram().clone());
            let timing = |h: Option<prometheus::proto::Histogram>| {
                h.map(|h| {
                    let n = h.get_sample_count();
                    Timing {
                        count: n,
                        avg_seconds: if n == 0 {
                            0.0
                        } else {
                            h.get_sample_sum() / n as f64
                        },
                        p99_seconds_at_most: quantile(&h, 0.99),
                    }
                })
            };
            ActorFigures {
                actor: actor.clone(),
                mailbox_depth: depth.unwrap_or(0.0),
                handled: handled.unwrap_or(0.0),
                wait: timing(hist("wagate_actor_mailbox_wait_seconds")),
                handle: timing(hist("wagate_actor_handle_seconds")),
            }
        })
        .collect();
    let deepest = state
        .gateway
        .index()
        .deepest_mailboxes(10)
        .into_iter()
        .map(|(id, depth)| SessionMailbox {
            // Session ids name tenants: shown only behind METRICS_KEY.
            session_id: (!state.metrics_key.is_empty()).then(|| id.to_string()),
            depth,
        })
        .collect();
    HttpResponse::Ok().json(ActorMetrics {
        actors,
        deepest_session_mailboxes: deepest,
    })
}
