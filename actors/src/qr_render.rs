//! QR images (PNG, SVG) rendered off the Session threads: a `SyncArbiter`
//! pool of `MAX_CONCURRENT_QR` threads running `QrRenderWorker`s, behind a
//! cache keyed by (QR string, format) so each code is rendered at most once
//! per format while it is cached. Callers: the QrBatcher (PNG data URLs for
//! Laravel) and the HTTP handler `GET /sessions/{id}/qr` (JSON, PNG, SVG).

use std::sync::Arc;
use std::thread;

use actix::prelude::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use fast_qr::{QRBuilder, QRCode, ECL};
use quick_cache::sync::Cache;

/// Smallest image side in pixels, quiet zone included: phones scan it
/// comfortably from a screen. The renderer rounds the module size up, so
/// images come out at this size or a little larger.
const MIN_SIDE_PX: u32 = 264;

/// Error correction level L. The code is only ever shown on a screen, where
/// nothing smudges or tears it, so extra redundancy buys nothing; L needs the
/// fewest modules for a WhatsApp code (a 177-byte one: version 8, 49 modules
/// across, against version 9, 53, at M), which makes each module bigger on
/// screen and quicker to scan.
const EC_LEVEL: ECL = ECL::L;

/// Light modules around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// No QR code holds more than 7,089 bytes (version 40-L, all digits), so a
/// longer string is refused before it costs a cache lookup or a pool trip.
const MAX_QR_BYTES: usize = 7089;

/// What comes before the base64 in [`QrRenderer::png_data_url`].
const PNG_DATA_URL_PREFIX: &str = "data:image/png;base64,";

/// Image format of a rendered QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QrFormat {
    /// 1-bit grayscale PNG.
    Png,
    /// SVG document (UTF-8 text).
    Svg,
}

/// Why a QR code could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// The string holds more data than the largest QR code can.
    #[error("the data does not fit in a QR code")]
    TooLong,
    /// The render threads are gone (the actix System is shutting down).
    #[error("the QR render pool has stopped")]
    PoolGone,
}

/// Renders one code in one format; handled on a pool thread.
#[derive(Debug, Message)]
#[rtype(result = "Result<Bytes, RenderError>")]
struct RenderQr {
    /// The QR string; shared with the cache key, so sending it copies nothing.
    code: Arc<str>,
    /// Which image to produce.
    format: QrFormat,
}

/// One render thread of the pool. Stateless: every render stands alone.
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

/// Renders synchronously, on the calling thread (only pool threads call it).
///
/// Measured on this project's 2-core machine (release build, a 177-byte
/// WhatsApp code): encoding with `fast_qr` takes ~0.15 ms where `qrcode`
/// took ~1.5 ms, and a 1-bit PNG at best compression ~0.6 ms (1.0 KB) where
/// an 8-bit one took ~1.7 ms (1.3 KB). See docs/benchmarks.md.
fn render_now(code: &str, format: QrFormat) -> Result<Bytes, RenderError> {
    // Automatic version and mode selection can only fail when the data is
    // too long for any version.
    let qr = QRBuilder::new(code.as_bytes())
        .ecl(EC_LEVEL)
        .build()
        .map_err(|_| RenderError::TooLong)?;
    Ok(match format {
        QrFormat::Png => png(&qr),
        QrFormat::Svg => svg(&qr),
    })
}

/// Modules across, quiet zone included, and pixels per module.
fn layout(qr: &QRCode) -> (usize, usize) {
    let side = qr.size + 2 * QUIET_ZONE;
    (side, (MIN_SIDE_PX as usize).div_ceil(side))
}

/// Whether module (x, y) of the padded image is dark.
fn dark(qr: &QRCode, x: usize, y: usize) -> bool {
    let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + qr.size).contains(&v);
    inside(x) && inside(y) && qr[y - QUIET_ZONE][x - QUIET_ZONE].value()
}

/// A 1-bit grayscale PNG (1 = white), `unit` pixels per module.
fn png(qr: &QRCode) -> Bytes {
    let (side, unit) = layout(qr);
    let px = side * unit;
    let stride = px.div_ceil(8);
    let mut row = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(stride * px);
    for my in 0..side {
        row.fill(0);
        for x in 0..px {
            if !dark(qr, x / unit, my) {
                row[x / 8] |= 0x80 >> (x % 8);
            }
        }
        for _ in 0..unit {
            pixels.extend_from_slice(&row);
        }
    }
    let mut out = Vec::with_capacity(2048);
    let mut encoder = ::png::Encoder::new(&mut out, px as u32, px as u32);
    encoder.set_color(::png::ColorType::Grayscale);
    encoder.set_depth(::png::BitDepth::One);
    encoder.set_compression(::png::Compression::High);
    encoder.set_filter(::png::Filter::NoFilter);
    // Cannot fail: the header is valid for any size up to 2^31 and the data
    // is exactly `stride × px` bytes, written to a Vec (no I/O).
    let mut writer = encoder.write_header().expect("a valid PNG header");
    writer
        .write_image_data(&pixels)
        .expect("image data of the declared size");
    drop(writer);
    Bytes::from(out)
}

/// An SVG document: one path of dark squares on a white background, scaled
/// to the PNG's size and crisp at any zoom.
fn svg(qr: &QRCode) -> Bytes {
    use std::fmt::Write as _;
    let (side, unit) = layout(qr);
    let px = side * unit;
    let mut path = String::with_capacity(qr.size * qr.size * 4);
    for y in 0..side {
        let mut x = 0;
        while x < side {
            if !dark(qr, x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < side && dark(qr, x, y) {
                x += 1;
            }
            let _ = write!(path, "M{start} {y}h{}v1H{start}z", x - start);
        }
    }
    Bytes::from(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{px}\" height=\"{px}\" \
         viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>\n"
    ))
}

/// Handle to the render pool and its cache. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct QrRenderer {
    /// Shared by every clone, so all callers use one pool and one cache.
    inner: Arc<Inner>,
}

/// What the clones of a [`QrRenderer`] share.
struct Inner {
    /// The render threads; when the last clone drops, the pool stops.
    pool: Addr<QrRenderWorker>,
    /// Finished images by (code, format). A code is re-requested until it
    /// expires (each Laravel batch, each HTTP poll), so it is rendered once;
    /// WhatsApp rotates codes every 20–60 s, so old ones simply age out.
    cache: Cache<(Arc<str>, QrFormat), Bytes>,
    /// Lookups answered from the cache (`qr_render_cache_total{result="hit"}`).
    hits: prometheus::IntCounter,
    /// Lookups that had to render (`qr_render_cache_total{result="miss"}`).
    misses: prometheus::IntCounter,
}

impl QrRenderer {
    /// Starts `workers` render threads (at least one) and a cache of up to
    /// `cache_capacity` images. Must be called inside a running actix System.
    pub fn start(
        workers: usize,
        cache_capacity: usize,
        hits: prometheus::IntCounter,
        misses: prometheus::IntCounter,
    ) -> Self {
        let mut n = 0;
        let pool = SyncArbiter::start_with_thread_builder(
            workers.max(1),
            move || {
                n += 1;
                thread::Builder::new().name(format!("qr-render-{n}"))
            },
            || QrRenderWorker,
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                cache: Cache::new(cache_capacity),
                hits,
                misses,
            }),
        }
    }

    /// PNG bytes or SVG text (UTF-8) for `code`, from the cache or rendered
    /// on the pool. Concurrent calls for the same uncached code render it
    /// once: the others wait for that render and count as hits.
    pub async fn render(&self, code: &str, format: QrFormat) -> Result<Bytes, RenderError> {
        if code.len() > MAX_QR_BYTES {
            return Err(RenderError::TooLong);
        }
        let inner = &*self.inner;
        let key = (Arc::<str>::from(code), format);
        let guard = match inner.cache.get_value_or_guard_async(&key).await {
            Ok(bytes) => {
                inner.hits.inc();
                return Ok(bytes);
            }
            Err(guard) => guard,
        };
        inner.misses.inc();
        // If this future is dropped while waiting, the guard goes with it and
        // a waiting caller (if any) takes over the render.
        let bytes = inner
            .pool
            .send(RenderQr {
                code: key.0,
                format,
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "QR render pool unreachable");
                RenderError::PoolGone
            })??;
        // Err only if the slot was removed meanwhile; the caller still gets
        // its image, the next one renders again.
        let _ = guard.insert(bytes.clone());
        Ok(bytes)
    }

    /// The PNG as `data:image/png;base64,…`, the form Laravel stores.
    pub async fn png_data_url(&self, code: &str) -> Result<String, RenderError> {
        let png = self.render(code, QrFormat::Png).await?;
        let mut url = String::with_capacity(PNG_DATA_URL_PREFIX.len() + png.len().div_ceil(3) * 4);
        url.push_str(PNG_DATA_URL_PREFIX);
        B64.encode_string(&png, &mut url);
        Ok(url)
    }

    /// Images currently cached (all formats).
    pub fn cache_len(&self) -> usize {
        self.inner.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer(workers: usize) -> QrRenderer {
        let c = |n| prometheus::IntCounter::new(n, "test").unwrap();
        QrRenderer::start(workers, 16, c("hits"), c("misses"))
    }

    /// Shaped like WhatsApp's pairing QR: `2@ref,noise,identity,adv`, 177
    /// characters. Deterministic (a fixed pseudo-random sequence per seed).
    fn whatsapp_like_qr(seed: u32) -> String {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        let mut b64 = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    B64_ALPHABET[(x % 64) as usize] as char
                })
                .collect()
        };
        format!("2@{},{},{},{}", b64(60), b64(44), b64(44), b64(24))
    }

    const B64_ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    #[actix_rt::test]
    async fn renderer_is_send_sync_and_its_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<QrRenderer>();
        // Only the types are checked: the futures are dropped unpolled.
        let r = renderer(1);
        send(&r.render("x", QrFormat::Png));
        send(&r.png_data_url("x"));
    }

    #[actix_rt::test]
    async fn png_is_a_square_image_of_the_code_at_least_264_wide() {
        let r = renderer(2);
        let code = whatsapp_like_qr(1);
        assert_eq!(code.len(), 2 + 60 + 1 + 44 + 1 + 44 + 1 + 24);
        let png = r.render(&code, QrFormat::Png).await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory(&png).unwrap().into_luma8();
        assert_eq!(img.width(), img.height());
        assert!(img.width() >= MIN_SIDE_PX, "{} px", img.width());

        // An independent decoder reads the input back from the image.
        assert_eq!(decode(img), code);
    }

    /// Decodes the one QR code in a grayscale image with `rqrr`.
    fn decode(img: image::GrayImage) -> String {
        let mut prepared = rqrr::PreparedImage::prepare(img);
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1, "one code in the image");
        grids[0].decode().expect("a readable code").1
    }

    #[actix_rt::test]
    async fn png_and_svg_agree_module_for_module() {
        let r = renderer(1);
        let code = whatsapp_like_qr(7);
        let png = r.render(&code, QrFormat::Png).await.unwrap();
        let img = image::load_from_memory(&png).unwrap().into_luma8();
        let svg = r.render(&code, QrFormat::Svg).await.unwrap();
        let svg = std::str::from_utf8(&svg).unwrap();
        let qr = QRBuilder::new(code.as_bytes())
            .ecl(EC_LEVEL)
            .build()
            .ok()
            .unwrap();
        let (side, unit) = layout(&qr);
        assert_eq!(img.width() as usize, side * unit);
        // Each dark run in the SVG path is dark in the PNG, and the counts match.
        let mut dark_in_svg = 0;
        for cmd in svg.split('M').skip(1) {
            let (xy, rest) = cmd.split_once('h').unwrap();
            let (x, y) = xy.split_once(' ').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let len: usize = rest.split_once('v').unwrap().0.parse().unwrap();
            for dx in 0..len {
                let p = img.get_pixel(
                    ((x + dx) * unit + unit / 2) as u32,
                    (y * unit + unit / 2) as u32,
                );
                assert_eq!(p[0], 0, "module ({},{y})", x + dx);
            }
            dark_in_svg += len;
        }
        let dark_in_png = (0..side * side)
            .filter(|i| {
                let (x, y) = (i % side, i / side);
                img.get_pixel((x * unit + unit / 2) as u32, (y * unit + unit / 2) as u32)[0] == 0
            })
            .count();
        assert_eq!(dark_in_svg, dark_in_png);
    }

    #[actix_rt::test]
    async fn svg_is_a_complete_document_at_least_264_wide() {
        let r = renderer(1);
        let bytes = r.render(&whatsapp_like_qr(2), QrFormat::Svg).await.unwrap();
        let svg = std::str::from_utf8(&bytes).unwrap();
        assert!(
            svg.starts_with("<?xml") || svg.starts_with("<svg"),
            "{svg:.60}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        let width: u32 = svg
            .split_once(" width=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .and_then(|(w, _)| w.parse().ok())
            .unwrap();
        assert!(width >= MIN_SIDE_PX, "{width}");
    }

    #[actix_rt::test]
    async fn second_render_is_a_cache_hit_per_format() {
        let r = renderer(2);
        let code = whatsapp_like_qr(3);
        let first = r.render(&code, QrFormat::Png).await.unwrap();
        let again = r.render(&code, QrFormat::Png).await.unwrap();
        assert_eq!(first, again);
        assert_eq!((r.inner.hits.get(), r.inner.misses.get()), (1, 1));
        assert_eq!(r.cache_len(), 1);

        // Same code, other format: a separate entry.
        let svg = r.render(&code, QrFormat::Svg).await.unwrap();
        assert_ne!(svg, first);
        assert_eq!((r.inner.hits.get(), r.inner.misses.get()), (1, 2));
        assert_eq!(r.cache_len(), 2);
    }

    #[actix_rt::test]
    async fn concurrent_misses_render_once_and_agree() {
        let r = renderer(4);
        let code: Arc<str> = whatsapp_like_qr(4).into();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (r, code) = (r.clone(), Arc::clone(&code));
                actix_rt::spawn(async move { r.render(&code, QrFormat::Png).await })
            })
            .collect();
        let mut images = Vec::new();
        for t in tasks {
            images.push(t.await.unwrap().unwrap());
        }
        assert!(images.iter().all(|i| *i == images[0]));
        assert_eq!((r.inner.hits.get(), r.inner.misses.get()), (7, 1));
        assert_eq!(r.cache_len(), 1);
    }

    #[actix_rt::test]
    async fn png_data_url_wraps_the_png() {
        let r = renderer(1);
        let code = whatsapp_like_qr(5);
        let png = r.render(&code, QrFormat::Png).await.unwrap();
        let url = r.png_data_url(&code).await.unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(B64.decode(b64).unwrap(), png);
        assert_eq!(r.inner.hits.get(), 1);
    }

    #[actix_rt::test]
    async fn too_long_data_is_an_error_and_not_cached() {
        let r = renderer(1);
        for len in [5_000, MAX_QR_BYTES + 1] {
            for format in [QrFormat::Png, QrFormat::Svg] {
                let err = r.render(&"x".repeat(len), format).await.unwrap_err();
                assert!(matches!(err, RenderError::TooLong), "{len} {format:?}");
            }
        }
        let err = r.png_data_url(&"x".repeat(5_000)).await.unwrap_err();
        assert!(matches!(err, RenderError::TooLong));
        assert_eq!(r.cache_len(), 0);
        // Still usable afterwards.
        r.render(&whatsapp_like_qr(6), QrFormat::Png).await.unwrap();
    }
}
