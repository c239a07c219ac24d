//! `GET /media/{id}?token=…`: the bytes of incoming media, for Laravel to
//! fetch by the signed URL an item's `media.url` carries. No API key: the
//! token (an expiring HMAC over the id, see `incoming_media::token`) is the
//! credential, so a bad, tampered or expired one is 403 and changes
//! nothing; media past `MEDIA_TTL` is 410. One `Range: bytes=` range is
//! honoured (206, 416 outside the media); several ranges get the whole
//! body (RFC 9110 lets a server ignore `Range`).

use actix_web::http::header::{self, ByteRangeSpec, Range};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use wagate_actors::clock::unix_ms;
use wagate_actors::incoming_media::{OpenError, StoredMedia};

use super::error::ApiError;
use super::routes::Routes;
use super::views::ErrorBody;
use super::AppState;

pub fn routes() -> Routes {
    Routes::new("/media").at("/{id}", Method::GET, download)
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// The bytes of an incoming message's media, by the signed URL in the
/// item's `media.url` (no API key: the token is the credential).
#[utoipa::path(get, path = "/media/{id}", tag = "media", security(()),
    params(
        ("id" = String, Path, description = "The media id"),
        ("token" = String, Query, description = "The URL's signature (expires with `MEDIA_TTL`)"),
    ),
    responses(
        (status = 200, description = "The media, with its `Content-Type`", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "One `Range: bytes=` range", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 403, description = "`media_forbidden`: missing, tampered or expired token", body = ErrorBody),
        (status = 410, description = "`media_gone`: past `MEDIA_TTL`", body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`", body = ErrorBody),
    ))]
pub(crate) async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let token = query
        .into_inner()
        .token
        .ok_or_else(|| ApiError::MediaForbidden("the media URL has no token".into()))?;
    let media = state
        .gateway
        .incoming_media()
        .open(&id, &token, unix_ms())
        .await
        .map_err(|e| match e {
            OpenError::Token(t) => ApiError::MediaForbidden(t.to_string()),
            OpenError::Gone => ApiError::MediaGone(id.clone()),
            OpenError::Store(s) => {
                ApiError::StoreUnavailable(wagate_actors::error_chain::Chain(&s).to_string())
            }
        })?;
    let size = media.bytes.len() as u64;
    match requested_range(&req, size)? {
        Some((first, last)) => Ok(respond(&media, HttpResponse::PartialContent())
            .insert_header((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            ))
            .body(media.bytes.slice(first as usize..=last as usize))),
        None => Ok(respond(&media, HttpResponse::Ok()).body(media.bytes.clone())),
    }
}

/// The one satisfiable byte range asked for, `None` for the whole body.
fn requested_range(req: &HttpRequest, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let specs: Vec<ByteRangeSpec> = match raw.parse::<Range>() {
        Ok(Range::Bytes(specs)) => specs,
        // Another unit or a malformed header: ignored, as RFC 9110 says.
        _ => return Ok(None),
    };
    match specs.as_slice() {
        [one] => one
            .to_satisfiable_range(size)
            .map(Some)
            .ok_or(ApiError::RangeNotSatisfiable { size }),
        _ => Ok(None),
    }
}

/// The headers every answer carries.
fn respond(
    media: &StoredMedia,
    mut builder: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    builder
        .content_type(media.meta.mime_type.as_str())
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, format!("\"{}\"", media.meta.sha256)))
        // The URL is a credential; shared caches must not keep the bytes.
        .insert_header((header::CACHE_CONTROL, "private, max-age=0"));
    if let Some(name) = &media.meta.file_name {
        builder.insert_header(header::ContentDisposition {
            disposition: header::DispositionType::Attachment,
            parameters: vec![header::DispositionParam::Filename(name.clone())],
        });
    }
    builder
}
