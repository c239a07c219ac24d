//! Media intake for `POST /sessions/{id}/messages`: the bytes of an image,
//! video, audio, voice note, document or sticker arrive as `base64` in the
//! JSON body or by `url` (fetched here, with a size cap, a timeout and a
//! content-type check), are checked against their kind (a voice note must
//! be Opus in OGG, or it would not play), and are handed to
//! `MessagesHandle::submit`, which stores them before answering 202.
//! Also [`SendRefusal`], the stable error codes of a refused message body.
//! Called by [`super::messages`].

use std::time::Duration;

use actix_web::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use wagate_actors::messages::content::ContentKind;

/// `MEDIA_MAX_BYTES` and `MEDIA_FETCH_TIMEOUT`.
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    /// Largest media accepted, decoded (WhatsApp's own cap is 16 MB for
    /// images, audio and video; larger blobs do not belong in Redis).
    pub max_bytes: usize,
    /// Longest a `url` fetch may take, headers and body together.
    pub fetch_timeout: Duration,
    /// `MEDIA_FETCH_ALLOW_PRIVATE`: a `url` may point at a loopback,
    /// private, link-local or other non-public address
    /// ([`super::fetch_guard`]).
    pub allow_private: bool,
}

impl MediaLimits {
    /// Largest JSON body of a send: the media as base64 plus room for the
    /// other fields (a text of up to 64 KiB, a caption, a vCard).
    pub fn max_body_bytes(&self) -> usize {
        self.max_bytes.div_ceil(3) * 4 + 256 * 1024
    }
}

/// Why a message body was refused; each has a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum SendRefusal {
    #[error("unknown message type {0:?}; use one of: text, image, video, audio, voice, document, sticker, location, contact, reaction, edit, revoke")]
    UnknownType(String),
    #[error("type {kind} needs '{field}'")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("'{field}' does not apply to type {kind}")]
    FieldNotAllowed {
        kind: &'static str,
        field: &'static str,
    },
    #[error("{0}")]
    InvalidField(String),
    #[error("'base64' is not valid base64")]
    InvalidBase64(#[source] base64::DecodeError),
    #[error("the media is larger than MEDIA_MAX_BYTES ({limit} bytes)")]
    MediaTooLarge { limit: usize },
    #[error("a {kind} cannot be {mime}; accepted: {accepted}")]
    MediaTypeNotAllowed {
        kind: &'static str,
        mime: String,
        accepted: &'static str,
    },
    #[error("the bytes are not a {expected} file (declared {declared})")]
    MediaMismatch {
        expected: &'static str,
        declared: String,
    },
    #[error(
        "a voice note must be Opus audio in an OGG container (it would not play otherwise): {0}"
    )]
    VoiceNotOpus(&'static str),
    #[error("fetching {url} answered HTTP {status}")]
    SourceStatus { url: String, status: u16 },
    #[error("fetching {url} took longer than {secs} s (MEDIA_FETCH_TIMEOUT)")]
    SourceTimeout { url: String, secs: u64 },
    #[error("cannot fetch {url}: {reason}")]
    SourceUnreachable { url: String, reason: String },
    #[error("{url} resolves to {addr}, a {class} address; media is only fetched from public addresses (MEDIA_FETCH_ALLOW_PRIVATE)")]
    SourceForbidden {
        url: String,
        addr: std::net::IpAddr,
        class: &'static str,
    },
    #[error("a multipart send of type {kind} needs a 'file' part with the media")]
    MissingFile { kind: &'static str },
}

impl SendRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            SendRefusal::UnknownType(_) => "unknown_message_type",
            SendRefusal::MissingField { .. } => "missing_field",
            SendRefusal::FieldNotAllowed { .. } => "field_not_allowed",
            // The code bad values had before rich messages: clients match on it.
            SendRefusal::InvalidField(_) => "invalid_body",
            SendRefusal::InvalidBase64(_) => "invalid_base64",
            SendRefusal::MediaTooLarge { .. } => "media_too_large",
            SendRefusal::MediaTypeNotAllowed { .. } => "media_type_not_allowed",
            SendRefusal::MediaMismatch { .. } => "media_type_mismatch",
            SendRefusal::VoiceNotOpus(_) => "voice_not_opus",
            SendRefusal::SourceStatus { .. } => "media_source_status",
            SendRefusal::SourceTimeout { .. } => "media_source_timeout",
            SendRefusal::SourceUnreachable { .. } => "media_source_unreachable",
            SendRefusal::SourceForbidden { .. } => "media_source_forbidden",
            SendRefusal::MissingFile { .. } => "missing_file",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SendRefusal::MediaTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // The request was fine; what it points at is not.
            SendRefusal::SourceStatus { .. }
            | SendRefusal::SourceTimeout { .. }
            | SendRefusal::SourceUnreachable { .. }
            | SendRefusal::SourceForbidden { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Decodes `base64` media, refusing an oversized one before decoding it.
pub fn decode_base64(raw: &str, limits: &MediaLimits) -> Result<Bytes, SendRefusal> {
    let raw = raw.trim();
    // A data URL's prefix is allowed: clients often have one at hand.
    let raw = match raw.split_once(";base64,") {
        Some((head, rest)) if head.starts_with("data:") => rest,
        _ => raw,
    };
    if raw.len() / 4 * 3 > limits.max_bytes + 2 {
        return Err(SendRefusal::MediaTooLarge {
            limit: limits.max_bytes,
        });
    }
    let bytes = B64.decode(raw).map_err(SendRefusal::InvalidBase64)?;
    if bytes.len() > limits.max_bytes {
        return Err(SendRefusal::MediaTooLarge {
            limit: limits.max_bytes,
        });
    }
    Ok(Bytes::from(bytes))
}

/// Fetches media from `url`: refused at once when the source announces
/// more than the cap, and as soon as the body passes it otherwise (never
/// read whole); the whole fetch is bounded by `fetch_timeout`. Returns the
/// bytes and the source's `Content-Type` without parameters.
pub async fn fetch(
    url: &str,
    limits: &MediaLimits,
) -> Result<(Bytes, Option<String>), SendRefusal> {
    let parsed: awc::http::Uri = url
        .parse()
        .map_err(|_| SendRefusal::InvalidField(format!("'url' is not a valid URL: {url:?}")))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        return Err(SendRefusal::InvalidField(format!(
            "'url' must be an http or https URL, got {url:?}"
        )));
    }
    let forbidden = |f: &super::fetch_guard::Forbidden| SendRefusal::SourceForbidden {
        url: url.to_owned(),
        addr: f.addr,
        class: f.class,
    };
    if !limits.allow_private {
        // An IP literal never reaches the resolver: judged here.
        let host = parsed.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = host.parse::<std::net::IpAddr>() {
            if let Some(class) = super::fetch_guard::non_global(addr) {
                return Err(forbidden(&super::fetch_guard::Forbidden { addr, class }));
            }
        }
    }
    let timeout = limits.fetch_timeout;
    let timed_out = || SendRefusal::SourceTimeout {
        url: url.to_owned(),
        secs: timeout.as_secs().max(1),
    };
    let work = async {
        let client = super::fetch_guard::client(timeout, !limits.allow_private);
        let mut response = client.get(parsed).send().await.map_err(|e| match e {
            awc::error::SendRequestError::Timeout => timed_out(),
            ref other if super::fetch_guard::refusal(other).is_some() => {
                forbidden(super::fetch_guard::refusal(other).expect("checked just above"))
            }
            other => SendRefusal::SourceUnreachable {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SendRefusal::SourceStatus {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = SendRefusal::MediaTooLarge {
            limit: limits.max_bytes,
        };
        let announced = response
            .headers()
            .get(awc::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limits.max_bytes as u64) {
            return Err(too_large);
        }
        let content_type = response
            .headers()
            .get(awc::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(bare_mime);
        let mut body = BytesMut::new();
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| SendRefusal::SourceUnreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// `image/jpeg; charset=x` → `image/jpeg`, lower-cased.
fn bare_mime(raw: &str) -> String {
    raw.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What the first bytes say a file is.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"OggS") {
        Some("audio/ogg")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some("video/mp4")
    } else {
        None
    }
}

/// Whether `bytes` is an OGG stream whose first logical stream is Opus:
/// the first page's first packet is the `OpusHead` identification header
/// (RFC 7845 §5.1), right after the page's segment table.
fn is_ogg_opus(bytes: &[u8]) -> Result<(), &'static str> {
    if !bytes.starts_with(b"OggS") {
        return Err("the file is not an OGG container");
    }
    let segments = *bytes.get(26).ok_or("the OGG page is cut short")? as usize;
    let start = 27 + segments;
    match bytes.get(start..start + 8) {
        Some(b"OpusHead") => Ok(()),
        Some(_) => Err("the OGG stream is not Opus (e.g. Vorbis); convert it with `ffmpeg -i in -c:a libopus out.ogg`"),
        None => Err("the OGG page is cut short"),
    }
}

/// The mime types each media kind accepts (WhatsApp's own lists).
fn accepted(kind: ContentKind) -> &'static [&'static str] {
    match kind {
        ContentKind::Image => &["image/jpeg", "image/png"],
        ContentKind::Video => &["video/mp4", "video/3gpp"],
        ContentKind::Audio => &[
            "audio/aac",
            "audio/mp4",
            "audio/mpeg",
            "audio/amr",
            "audio/ogg",
            "audio/opus",
        ],
        ContentKind::Voice => &["audio/ogg", "audio/opus"],
        ContentKind::Sticker => &["image/webp"],
        _ => &[],
    }
}

/// Checks media bytes against their kind and the declared type (a
/// `mimeType` field, or the URL's `Content-Type`); returns the mime type to
/// store. Documents take any type; the other kinds only WhatsApp's, and
/// images, stickers and voice notes must also look like what they claim.
pub fn check(
    kind: ContentKind,
    declared: Option<&str>,
    bytes: &[u8],
) -> Result<String, SendRefusal> {
    let sniffed = sniff(bytes);
    let declared = declared
        .map(bare_mime)
        .filter(|m| !m.is_empty() && m != "application/octet-stream");
    if kind == ContentKind::Document {
        return Ok(declared
            .or(sniffed.map(str::to_owned))
            .unwrap_or_else(|| "application/octet-stream".to_owned()));
    }
    if kind == ContentKind::Voice {
        if let Some(d) = &declared {
            if !accepted(kind).contains(&d.as_str()) {
                return Err(SendRefusal::VoiceNotOpus(
                    "the declared type is not OGG/Opus audio",
                ));
            }
        }
        is_ogg_opus(bytes).map_err(SendRefusal::VoiceNotOpus)?;
        return Ok("audio/ogg; codecs=opus".to_owned());
    }
    let mime = declared.or(sniffed.map(str::to_owned)).ok_or_else(|| {
        SendRefusal::InvalidField(format!(
            "cannot tell the type of this {}: send 'mimeType'",
            kind.as_str()
        ))
    })?;
    let allowed = accepted(kind);
    if !allowed.contains(&mime.as_str()) {
        return Err(SendRefusal::MediaTypeNotAllowed {
            kind: kind.as_str(),
            accepted: match kind {
                ContentKind::Image => "image/jpeg, image/png",
                ContentKind::Video => "video/mp4, video/3gpp",
                ContentKind::Audio => "audio/aac, audio/mp4, audio/mpeg, audio/amr, audio/ogg",
                _ => "image/webp",
            },
            mime,
        });
    }
    // Pictures are cheap to recognise and WhatsApp renders nothing for a
    // wrong one: the bytes must be what the type says.
    if matches!(kind, ContentKind::Image | ContentKind::Sticker) && sniffed != Some(mime.as_str()) {
        return Err(SendRefusal::MediaMismatch {
            expected: if kind == ContentKind::Sticker {
                "WebP"
            } else {
                "JPEG or PNG"
            },
            declared: mime,
        });
    }
    Ok(mime)
}

/// Reads a request body up to `limit` bytes: refused with 413 as soon as
/// the announced length or the bytes read pass it, never read whole.
pub async fn read_body(
    headers: &actix_web::http::header::HeaderMap,
    mut payload: actix_web::web::Payload,
    limit: usize,
) -> Result<Bytes, super::error::ApiError> {
    let too_large = || super::error::ApiError::PayloadTooLarge(limit);
    let announced = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            super::error::ApiError::InvalidJson(format!("cannot read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first page of an OGG stream carrying `head` as its first packet.
    pub(crate) fn ogg(head: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0; 22]); // version .. checksum
        page.push(1); // one segment
        page.push(head.len() as u8);
        page.extend_from_slice(head);
        page
    }

    #[test]
    fn voice_notes_must_be_opus_in_ogg() {
        let opus = ogg(b"OpusHead\x01\x01");
        assert_eq!(
            check(ContentKind::Voice, None, &opus).unwrap(),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            check(ContentKind::Voice, Some("audio/ogg; codecs=opus"), &opus).unwrap(),
            "audio/ogg; codecs=opus"
        );
        let vorbis = ogg(b"\x01vorbis\x00\x00");
        assert!(matches!(
            check(ContentKind::Voice, None, &vorbis),
            Err(SendRefusal::VoiceNotOpus(_))
        ));
        let mp3 = b"ID3\x03\x00rest";
        assert!(matches!(
            check(ContentKind::Voice, Some("audio/mpeg"), mp3),
            Err(SendRefusal::VoiceNotOpus(_))
        ));
        assert!(matches!(
            check(ContentKind::Voice, None, b"OggS"),
            Err(SendRefusal::VoiceNotOpus(_))
        ));
    }

    #[test]
    fn pictures_must_be_what_they_claim() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        assert_eq!(check(ContentKind::Image, None, png).unwrap(), "image/png");
        assert_eq!(
            check(ContentKind::Image, Some("image/png"), png).unwrap(),
            "image/png"
        );
        assert!(matches!(
            check(ContentKind::Image, Some("image/jpeg"), png),
            Err(SendRefusal::MediaMismatch { .. })
        ));
        assert!(matches!(
            check(ContentKind::Image, Some("application/pdf"), png),
            Err(SendRefusal::MediaTypeNotAllowed { .. })
        ));
        let webp = b"RIFF\x00\x00\x00\x00WEBPVP8 ";
        assert_eq!(
            check(ContentKind::Sticker, None, webp).unwrap(),
            "image/webp"
        );
        assert!(check(ContentKind::Sticker, None, png).is_err());
        assert_eq!(
            check(ContentKind::Document, Some("application/pdf"), b"%PDF-1.7").unwrap(),
            "application/pdf"
        );
        assert_eq!(
            check(ContentKind::Document, None, b"plain").unwrap(),
            "application/octet-stream"
        );
        assert!(check(ContentKind::Video, None, b"no idea").is_err());
    }

    #[test]
    fn base64_is_capped_before_decoding() {
        let limits = MediaLimits {
            max_bytes: 6,
            fetch_timeout: Duration::from_secs(1),
            allow_private: false,
        };
        assert_eq!(
            decode_base64("aGVsbG8=", &limits).unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(
            decode_base64("data:text/plain;base64,aGVsbG8=", &limits).unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(matches!(
            decode_base64("aGVsbG8gd29ybGQ=", &limits),
            Err(SendRefusal::MediaTooLarge { .. })
        ));
        assert!(matches!(
            decode_base64("not base64!", &limits),
            Err(SendRefusal::InvalidBase64(_))
        ));
    }
}
