//! `QrBatcher`: new QR codes to `POST /qr/batch`, the latest code per
//! session, at `BATCH_SIZE` items or every `BATCH_INTERVAL`. Each item carries
//! the QR (a PNG data URL rendered by the `QrRenderer` pool, or raw) and the
//! status `qr`, so one request replaces the old gateway's two. While Laravel
//! is slow, codes keep coalescing instead of piling up requests. Sessions
//! send [`PublishQr`] and [`ClearQr`].

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;

use super::buffer::Coalescing;
use super::{deliver, BatchConfig, Drain, DrainWaiters};
use crate::clock::unix_ms;
use crate::ids::SessionId;
use crate::laravel::client::LaravelClient;
use crate::laravel::payload::{Endpoint, OutboundBatch, Priority, QrItem, StatusItem, StatusWord};
use crate::mailbox::MeteredAddr;
use crate::metrics::Metrics;
use crate::qr_render::QrRenderer;
use crate::stats::GatewayStats;

/// QR requests allowed in flight at once; beyond that, codes coalesce.
const MAX_QR_IN_FLIGHT: usize = 4;

/// A session has a new QR code.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublishQr {
    pub session_id: SessionId,
    pub code: Arc<str>,
    pub timestamp: u64,
    pub expires_at: u64,
    pub seq: u64,
}

/// A session's pending QR is moot (it connected or was deleted).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ClearQr {
    pub session_id: SessionId,
}

#[derive(Debug, Message)]
#[rtype(result = "QrPending")]
pub struct DescribeQrPending;

/// Counts and ages only: a pending code is a live pairing secret (whoever
/// scans it links their phone into the session), so it never leaves the
/// batcher through this door.
#[derive(Debug, Clone, MessageResponse)]
pub struct QrPending {
    pub pending: usize,
    pub last_flush_ms: Option<u64>,
    /// How long the longest-waiting pending code has waited.
    pub oldest_wait_ms: Option<u64>,
}

/// How the QR travels to Laravel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrPayload {
    /// `data:image/png;base64,…` (default; Laravel can show it as is).
    PngDataUrl,
    /// The raw QR string (`QR_FORMAT=raw`; Laravel renders it).
    Raw,
}

pub struct QrBatcher {
    config: BatchConfig,
    payload: QrPayload,
    /// Latest code per session, waiting for the next flush.
    pending: Coalescing<SessionId, PublishQr>,
    in_flight: usize,
    last_flush_ms: Option<u64>,
    renderer: QrRenderer,
    client: MeteredAddr<LaravelClient>,
    drain: DrainWaiters,
    metrics: Arc<Metrics>,
    stats: Arc<GatewayStats>,
}

impl QrBatcher {
    pub fn new(
        config: BatchConfig,
        payload: QrPayload,
        renderer: QrRenderer,
        client: MeteredAddr<LaravelClient>,
        metrics: Arc<Metrics>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Self {
            config,
            payload,
            pending: Coalescing::default(),
            in_flight: 0,
            last_flush_ms: None,
            renderer,
            client,
            drain: DrainWaiters::default(),
            metrics,
            stats,
        }
    }

    /// Sends full batches, and a partial one only once its oldest code has
    /// waited `BATCH_INTERVAL` (a linger, not a fixed tick: under load every
    /// request is full).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < MAX_QR_IN_FLIGHT && !self.pending.is_empty() {
            let full = self.pending.len() >= self.config.size;
            let ripe = self
                .pending
                .oldest()
                .is_some_and(|t| t.elapsed() >= self.config.interval);
            if !(full || ripe || self.drain.draining()) {
                break;
            }
            let items = self.pending.take(self.config.size, |_| false);
            self.send(items.into_iter().map(|(_, v)| v).collect(), ctx);
        }
        self.stats.qr.set_waiting(self.pending.len());
    }

    fn send(&mut self, items: Vec<PublishQr>, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        self.last_flush_ms = Some(unix_ms());
        let (renderer, payload) = (self.renderer.clone(), self.payload);
        let (client, stats) = (self.client.clone(), Arc::clone(&self.stats));
        ctx.spawn(
            async move {
                let qrs = render_all(&renderer, payload, &items).await;
                let batch = OutboundBatch::new(Endpoint::QrBatch, "qrs", &qrs, unix_ms());
                deliver(client, batch, &stats.qr).await
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.in_flight -= 1;
                act.flush(ctx);
                let idle = act.in_flight == 0 && act.pending.is_empty();
                act.drain.settle(idle);
            }),
        );
    }

    /// The old gateway's two requests per QR: `POST /qr` and `POST /whatsapp/status`.
    fn send_legacy(&mut self, item: PublishQr, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let (renderer, payload) = (self.renderer.clone(), self.payload);
        let (client, stats) = (self.client.clone(), Arc::clone(&self.stats));
        ctx.spawn(
            async move {
                let status = StatusItem {
                    session_id: item.session_id.clone(),
                    status: StatusWord::Qr,
                    priority: Priority::Normal,
                    reason: None,
                    timestamp: item.timestamp,
                    seq: item.seq,
                };
                let qr = render_all(&renderer, payload, std::slice::from_ref(&item)).await;
                let now = unix_ms();
                let qr_batch = OutboundBatch::single(Endpoint::LegacyQr, &qr[0], now);
                let status_batch = OutboundBatch::single(Endpoint::LegacyStatus, &status, now);
                futures_util::join!(
                    deliver(client.clone(), qr_batch, &stats.qr),
                    deliver(client, status_batch, &stats.status)
                );
            }
            .into_actor(self)
            .map(|_, act, _| {
                act.in_flight -= 1;
                act.drain.settle(act.in_flight == 0);
            }),
        );
    }
}

/// Renders the payload of each item on the render pool (cached per code).
async fn render_all(renderer: &QrRenderer, payload: QrPayload, items: &[PublishQr]) -> Vec<QrItem> {
    let rendered = join_all(items.iter().map(|item| async move {
        match payload {
            QrPayload::Raw => item.code.to_string(),
            QrPayload::PngDataUrl => renderer.png_data_url(&item.code).await.unwrap_or_else(|e| {
                // A code WhatsApp issued always fits; fall back to raw rather than lose it.
                tracing::error!(session = %item.session_id, error = %e, "QR render failed; sending it raw");
                item.code.to_string()
            }),
        }
    }))
    .await;
    items
        .iter()
        .zip(rendered)
        .map(|(item, qr)| QrItem {
            session_id: item.session_id.clone(),
            qr,
            status: StatusWord::Qr,
            timestamp: item.timestamp,
            expires_at: item.expires_at,
            seq: item.seq,
        })
        .collect()
}

impl Actor for QrBatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(super::linger_tick(self.config.interval), |act, ctx| {
            act.flush(ctx)
        });
    }
}

crate::metered_actor!(QrBatcher: PublishQr, ClearQr, Drain, DescribeQrPending);

impl Handler<PublishQr> for QrBatcher {
    type Result = ();

    fn handle(&mut self, msg: PublishQr, ctx: &mut Self::Context) {
        self.metrics.qr_events.inc();
        if self.config.legacy {
            return self.send_legacy(msg, ctx);
        }
        self.pending
            .push(msg.session_id.clone(), msg, Instant::now());
        self.flush(ctx);
    }
}

impl Handler<ClearQr> for QrBatcher {
    type Result = ();

    fn handle(&mut self, msg: ClearQr, _: &mut Self::Context) {
        self.pending.remove(&msg.session_id);
        self.stats.qr.set_waiting(self.pending.len());
    }
}

impl Handler<Drain> for QrBatcher {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) {
        self.drain.add(msg.done);
        self.flush(ctx);
        self.drain
            .settle(self.in_flight == 0 && self.pending.is_empty());
    }
}

impl Handler<DescribeQrPending> for QrBatcher {
    type Result = QrPending;

    fn handle(&mut self, _: DescribeQrPending, _: &mut Self::Context) -> QrPending {
        QrPending {
            pending: self.pending.len(),
            last_flush_ms: self.last_flush_ms,
            oldest_wait_ms: self
                .pending
                .oldest()
                .map(|t| t.elapsed().as_millis() as u64),
        }
    }
}
