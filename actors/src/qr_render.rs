//! QR images (PNG, SVG) rendered off the Session threads: a `SyncArbiter`
//! pool of `MAX_CONCURRENT_QR` render threads (the old gateway's dedicated
//! QR workers) behind a cache keyed by (QR string, format), so each code is
//! rendered at most once per format while cached. Called by the QrBatcher
//! (PNG data URLs for Laravel) and by `GET /sessions/{id}/qr`.

use std::sync::Arc;

use actix::prelude::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use image::{ImageEncoder, Luma};
use qrcode::{EcLevel, QrCode};

/// Smallest image side in pixels: phones scan it comfortably from a screen.
const MIN_SIDE_PX: u32 = 264;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QrFormat {
    Png,
    Svg,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("the data does not fit in a QR code")]
    TooLong,
    #[error("the QR render pool has stopped")]
    PoolGone,
}

/// Render one code in one format (handled on a pool thread).
#[derive(Debug, Message)]
#[rtype(result = "Result<Bytes, RenderError>")]
pub struct RenderQr {
    pub code: Arc<str>,
    pub format: QrFormat,
}

/// A pool thread.
struct QrRenderWorker;

impl Actor for QrRenderWorker {
    type Context = SyncContext<Self>;
}

impl Handler<RenderQr> for QrRenderWorker {
    type Result = Result<Bytes, RenderError>;

    fn handle(&mut self, msg: RenderQr, _: &mut Self::Context) -> Self::Result {
        render_now(&msg.code, msg.format)
    }
}

/// Renders synchronously. Error level L: WhatsApp's own codes use it, and
/// it keeps the ~200-character payload at a scannable module size.
fn render_now(code: &str, format: QrFormat) -> Result<Bytes, RenderError> {
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::L)
        .map_err(|_| RenderError::TooLong)?;
    match format {
        QrFormat::Png => {
            let img = qr
                .render::<Luma<u8>>()
                .min_dimensions(MIN_SIDE_PX, MIN_SIDE_PX)
                .quiet_zone(true)
                .build();
            let mut out = Vec::with_capacity(4096);
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    image::ExtendedColorType::L8,
                )
                // Encoding a well-formed L8 buffer into a Vec cannot fail.
                .expect("PNG encoding into memory");
            Ok(Bytes::from(out))
        }
        QrFormat::Svg => {
            let svg = qr
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(MIN_SIDE_PX, MIN_SIDE_PX)
                .quiet_zone(true)
                .build();
            Ok(Bytes::from(svg))
        }
    }
}

/// Handle to the pool and its cache. Cheap to clone.
#[derive(Clone)]
pub struct QrRenderer {
    /// The render threads.
    pool: Addr<QrRenderWorker>,
    /// Rendered images by (code, format); codes rotate, so old ones age out.
    cache: Arc<quick_cache::sync::Cache<(Arc<str>, QrFormat), Bytes>>,
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
}

impl QrRenderer {
    /// Starts `workers` render threads. Must be called inside an actix System.
    pub fn start(
        workers: usize,
        cache_capacity: usize,
        hits: prometheus::IntCounter,
        misses: prometheus::IntCounter,
    ) -> Self {
        Self {
            pool: SyncArbiter::start(workers.max(1), || QrRenderWorker),
            cache: Arc::new(quick_cache::sync::Cache::new(cache_capacity.max(1))),
            hits,
            misses,
        }
    }

    /// PNG bytes or SVG text for `code`.
    pub async fn render(&self, code: &str, format: QrFormat) -> Result<Bytes, RenderError> {
        let key = (Arc::<str>::from(code), format);
        if let Some(hit) = self.cache.get(&key) {
            self.hits.inc();
            return Ok(hit);
        }
        self.misses.inc();
        let bytes = self
            .pool
            .send(RenderQr {
                code: Arc::clone(&key.0),
                format,
            })
            .await
            .map_err(|_| RenderError::PoolGone)??;
        self.cache.insert(key, bytes.clone());
        Ok(bytes)
    }

    /// `data:image/png;base64,…`
    pub async fn png_data_url(&self, code: &str) -> Result<String, RenderError> {
        let png = self.render(code, QrFormat::Png).await?;
        Ok(format!("data:image/png;base64,{}", B64.encode(&png)))
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> QrRenderer {
        let c = |n| prometheus::IntCounter::new(n, "test").unwrap();
        QrRenderer::start(2, 16, c("hits"), c("misses"))
    }

    #[actix_rt::test]
    async fn renders_scannable_png_and_svg_and_caches() {
        let r = renderer();
        let code = crate::connector::simulator::whatsapp_like_qr();
        let png = r.render(&code, QrFormat::Png).await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!(img.width(), img.height());
        assert!(img.width() >= MIN_SIDE_PX);
        let again = r.render(&code, QrFormat::Png).await.unwrap();
        assert_eq!(png, again);
        assert_eq!((r.hits.get(), r.misses.get()), (1, 1));
        let svg =
            String::from_utf8(r.render(&code, QrFormat::Svg).await.unwrap().to_vec()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        let url = r.png_data_url(&code).await.unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(B64.decode(b64).unwrap(), png.to_vec());
        assert_eq!(r.cache_len(), 2);
    }

    #[actix_rt::test]
    async fn too_long_data_is_an_error() {
        let r = renderer();
        let err = r
            .render(&"x".repeat(5000), QrFormat::Png)
            .await
            .unwrap_err();
        assert!(matches!(err, RenderError::TooLong));
    }
}
