//! `multipart/form-data` sends on `POST /sessions/{id}/messages`: the form
//! fields are the JSON body's fields under the same names (`to`, `type`,
//! `caption`, `fileName`, `mimeType`, `quotedMessageId`, `idempotencyKey`;
//! `mentions` repeated once per JID), plus one `file` part with the media.
//! The file is streamed: each chunk goes into the message's blob as it
//! arrives (an `Upload`, batched to [`APPEND_CHUNK`] bytes) while its SHA-256
//! is computed and its first bytes are kept for the type check, so a
//! request holds at most one batch, never the whole file. Over
//! `MEDIA_MAX_BYTES` it is refused with 413 at once (announced length) or
//! as soon as the bytes pass it. Whatever refuses the send afterwards drops
//! the `Upload`, which deletes the blob. Called by [`super::messages::send`].

use actix_web::http::header::HeaderMap;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use wagate_actors::messages::content::{ContentKind, MediaInfo};
use wagate_actors::messages::handle::{Draft, MessagesHandle};
use wagate_actors::messages::upload::{DraftMedia, Upload};

use super::error::ApiError;
use super::media::{self, MediaLimits, SendRefusal};
use super::message_body::{validate_with, SendBody};

/// Bytes gathered before one write to the blob store: large enough that a
/// 16 MiB file is 64 round trips, small enough that 64 uploads at once hold
/// 16 MiB between them.
pub const APPEND_CHUNK: usize = 256 * 1024;
/// Bytes kept from the start of the file for the type check (an OGG page's
/// header and segment table fit well within it).
const HEAD_BYTES: usize = 4096;
/// Room for the form's other fields and the part headers, beyond the media.
const FORM_OVERHEAD: usize = 256 * 1024;
/// Fields whose form value is a number or a boolean in the JSON body.
const NUMBERS: [&str; 2] = ["lat", "lng"];

/// The `file` part once it is all in the blob store.
pub struct Uploaded {
    /// The blob, under the id its message will take.
    pub upload: Upload,
    /// The first [`HEAD_BYTES`] bytes.
    pub head: Vec<u8>,
    /// Hex SHA-256 of every byte.
    pub sha256: String,
    /// The part's own `Content-Type`, if any.
    pub part_type: Option<String>,
}

fn unreadable(e: multer::Error) -> ApiError {
    ApiError::InvalidBody(format!("cannot read the multipart body: {e}"))
}

/// The request body as the `Send` stream the parser wants: actix's payload
/// is tied to its thread, so a local task forwards it through a channel of
/// two chunks (back-pressure stays: the task waits while the parser does).
/// The task ends with the body, or when the parser is dropped.
fn forwarded(
    mut payload: actix_web::web::Payload,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    actix_web::rt::spawn(async move {
        while let Some(chunk) = payload.next().await {
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// Reads a multipart send into a [`Draft`] whose media is already stored.
pub async fn read(
    headers: &HeaderMap,
    payload: actix_web::web::Payload,
    limits: &MediaLimits,
    messages: &MessagesHandle,
) -> Result<Draft, ApiError> {
    let too_large = || SendRefusal::MediaTooLarge {
        limit: limits.max_bytes,
    };
    let announced = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limits.max_bytes + FORM_OVERHEAD) {
        return Err(too_large().into());
    }
    let boundary = headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            ApiError::InvalidBody("a multipart/form-data body needs its 'boundary'".into())
        })?;
    let mut form = multer::Multipart::new(forwarded(payload), boundary);
    let mut fields = Map::new();
    let mut mentions = Vec::new();
    let mut fields_bytes = 0usize;
    let mut uploaded: Option<Uploaded> = None;
    let mut file_name: Option<String> = None;
    while let Some(mut part) = form.next_field().await.map_err(unreadable)? {
        let name = part.name().unwrap_or_default().to_owned();
        if name == "file" {
            if uploaded.is_some() {
                return Err(ApiError::InvalidBody(
                    "send one 'file' part, not several".into(),
                ));
            }
            file_name = part.file_name().map(str::to_owned);
            let part_type = part.content_type().map(|m| m.essence_str().to_owned());
            let mut upload = messages.begin_upload();
            let (mut head, mut hasher, mut batch) = (
                Vec::new(),
                Sha256::new(),
                BytesMut::with_capacity(APPEND_CHUNK),
            );
            let mut size = 0usize;
            while let Some(chunk) = part.chunk().await.map_err(unreadable)? {
                size += chunk.len();
                if size > limits.max_bytes {
                    return Err(too_large().into());
                }
                if head.len() < HEAD_BYTES {
                    let take = (HEAD_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                batch.extend_from_slice(&chunk);
                if batch.len() >= APPEND_CHUNK {
                    upload.append(batch.split().freeze()).await.map_err(store)?;
                }
            }
            upload.append(batch.freeze()).await.map_err(store)?;
            uploaded = Some(Uploaded {
                upload,
                head,
                sha256: hex::encode(hasher.finalize()),
                part_type,
            });
            continue;
        }
        // Any other part is a text field, small like the JSON body's.
        let mut value = Vec::new();
        while let Some(chunk) = part.chunk().await.map_err(unreadable)? {
            fields_bytes += chunk.len();
            if fields_bytes > FORM_OVERHEAD {
                return Err(ApiError::InvalidBody(format!(
                    "the form's fields besides 'file' are larger than {FORM_OVERHEAD} bytes"
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| ApiError::InvalidBody(format!("form field '{name}' is not UTF-8 text")))?;
        if name == "mentions" {
            mentions.push(Value::String(value));
            continue;
        }
        let value = if NUMBERS.contains(&name.as_str()) {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .ok_or_else(|| {
                    ApiError::InvalidBody(format!("'{name}' must be a number, got {value:?}"))
                })?
        } else if name == "fromMe" {
            Value::Bool(value.trim().eq_ignore_ascii_case("true"))
        } else {
            Value::String(value)
        };
        if fields.insert(name.clone(), value).is_some() {
            return Err(ApiError::InvalidBody(format!(
                "form field '{name}' is given twice"
            )));
        }
    }
    if !mentions.is_empty() {
        fields.insert("mentions".into(), Value::Array(mentions));
    }
    let kind = fields
        .get("type")
        .and_then(Value::as_str)
        .and_then(ContentKind::parse);
    // A document's name defaults to the uploaded file's.
    if kind == Some(ContentKind::Document) && !fields.contains_key("fileName") {
        if let Some(name) = file_name.filter(|n| !n.trim().is_empty()) {
            fields.insert("fileName".into(), Value::String(name));
        }
    }
    if uploaded.is_none() {
        if let Some(kind) = kind.filter(|k| k.is_media()) {
            if !fields.contains_key("base64") && !fields.contains_key("url") {
                return Err(SendRefusal::MissingFile {
                    kind: kind.as_str(),
                }
                .into());
            }
        }
    }
    let body: SendBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::InvalidBody(format!("invalid form: {e}")))?;
    validate_with(body, limits, uploaded).await
}

fn store(e: wagate_actors::messages::QueueError) -> ApiError {
    ApiError::StoreUnavailable(format!(
        "cannot store the upload: {}",
        wagate_actors::error_chain::Chain(&e)
    ))
}

/// The media description of an uploaded file of `kind`: an upload is the
/// only source (no `base64` or `url` beside it), and its type is checked
/// as for the other sources (`mimeType` first, else the part's type).
pub fn describe(
    kind: ContentKind,
    base64: Option<String>,
    url: Option<String>,
    mime_type: Option<String>,
    up: Uploaded,
) -> Result<(DraftMedia, MediaInfo), SendRefusal> {
    if base64.is_some() || url.is_some() {
        return Err(SendRefusal::InvalidField(
            "send the media as the 'file' part only, not also as 'base64' or 'url'".into(),
        ));
    }
    let size = up.upload.written();
    if size == 0 {
        return Err(SendRefusal::InvalidField("the media is empty".into()));
    }
    let declared = mime_type.or(up.part_type);
    let mime_type = media::check(kind, declared.as_deref(), &up.head)?;
    let info = MediaInfo {
        mime_type,
        size,
        sha256: up.sha256,
        source_url: None,
    };
    Ok((DraftMedia::Uploaded(up.upload), info))
}

/// Whether a request's `Content-Type` is `multipart/form-data`.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("multipart/form-data")
        })
}
