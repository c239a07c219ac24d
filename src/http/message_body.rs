//! The body of `POST /sessions/{id}/messages` and its validation into a
//! [`Draft`]: `type` (default `text`) picks the fields that must and may be
//! present; everything else is refused with a stable code
//! ([`SendRefusal`]), before anything is stored. Media comes by `base64` or
//! `url` through [`super::media`]. Called by [`super::messages::send`].

use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wagate_actors::messages::content::{ContentKind, MediaInfo, OutboundContent, MAX_EMOJI_BYTES};
use wagate_actors::messages::handle::Draft;
use wagate_actors::messages::upload::DraftMedia;
use wagate_actors::messages::{MAX_IDEMPOTENCY_KEY, MAX_TEXT_BYTES};

use super::error::ApiError;
use super::media::{self, MediaLimits, SendRefusal};
use super::messages::{phone_digits, recipient};
use super::upload::Uploaded;

/// Most JIDs one message may mention.
const MAX_MENTIONS: usize = 256;
/// Longest message id accepted as a target or a quote.
const MAX_MESSAGE_ID: usize = 128;
/// Longest document file name, in bytes (common file systems' limit).
const MAX_FILE_NAME: usize = 255;
/// Longest location name, in bytes.
const MAX_PLACE_NAME: usize = 1024;

/// A message to send. `type` picks which other fields it must and may
/// carry (any other field is refused with `unexpected_field`): `text`:
/// `text`; `image`, `video`: media, `caption`; `document`: media,
/// `fileName`, `caption`; `audio`, `voice` (Opus in OGG), `sticker`
/// (WebP): media; `location`: `lat`, `lng`, `name`; `contact`: `vcard`;
/// `reaction`: `messageId`, `emoji` (empty removes), `fromMe`; `edit`:
/// `messageId`, `text`; `revoke`: `messageId`. Media is `base64` or `url`
/// (one of them), with an optional `mimeType`. Every kind but reactions,
/// edits and revokes may quote (`quotedMessageId`); texts and captioned
/// media may mention.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"to": "5215512345678", "text": "Hola", "idempotencyKey": "order-42"}))]
pub struct SendBody {
    /// A phone number with country code, a user JID or a group JID (`…@g.us`).
    to: String,
    /// `text` (the default), `image`, `video`, `audio`, `voice`, `document`,
    /// `sticker`, `location`, `contact`, `reaction`, `edit` or `revoke`.
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    caption: Option<String>,
    file_name: Option<String>,
    /// Checked against the media's bytes.
    mime_type: Option<String>,
    /// The media's bytes, base64 (up to `MEDIA_MAX_BYTES` decoded).
    base64: Option<String>,
    /// Where the gateway fetches the media (public http/https only).
    url: Option<String>,
    lat: Option<f64>,
    lng: Option<f64>,
    /// A location's name.
    name: Option<String>,
    vcard: Option<String>,
    /// The message a reaction, edit or revoke is about.
    message_id: Option<String>,
    emoji: Option<String>,
    /// A reaction to a message this account sent.
    from_me: Option<bool>,
    /// Reply to this message.
    quoted_message_id: Option<String>,
    /// JIDs or phone numbers to mention.
    mentions: Option<Vec<String>>,
    /// The same key for the same session within 24 h answers with the
    /// first message instead of sending again.
    idempotency_key: Option<String>,
    /// Type before sending (humane sending); any kind may say it.
    humane: Option<bool>,
}

impl SendBody {
    /// The optional fields present, by their JSON names.
    fn present(&self) -> Vec<&'static str> {
        let fields = [
            ("text", self.text.is_some()),
            ("caption", self.caption.is_some()),
            ("fileName", self.file_name.is_some()),
            ("mimeType", self.mime_type.is_some()),
            ("base64", self.base64.is_some()),
            ("url", self.url.is_some()),
            ("lat", self.lat.is_some()),
            ("lng", self.lng.is_some()),
            ("name", self.name.is_some()),
            ("vcard", self.vcard.is_some()),
            ("messageId", self.message_id.is_some()),
            ("emoji", self.emoji.is_some()),
            ("fromMe", self.from_me.is_some()),
            ("quotedMessageId", self.quoted_message_id.is_some()),
            ("mentions", self.mentions.is_some()),
        ];
        fields
            .into_iter()
            .filter_map(|(name, present)| present.then_some(name))
            .collect()
    }
}

/// The fields a kind takes besides `to`, `type` and `idempotencyKey`.
fn allowed(kind: ContentKind) -> &'static [&'static str] {
    const MEDIA: [&str; 3] = ["base64", "url", "mimeType"];
    match kind {
        ContentKind::Text => &["text", "quotedMessageId", "mentions"],
        ContentKind::Image | ContentKind::Video => &[
            MEDIA[0],
            MEDIA[1],
            MEDIA[2],
            "caption",
            "quotedMessageId",
            "mentions",
        ],
        ContentKind::Document => &[
            MEDIA[0],
            MEDIA[1],
            MEDIA[2],
            "fileName",
            "caption",
            "quotedMessageId",
            "mentions",
        ],
        ContentKind::Audio | ContentKind::Voice | ContentKind::Sticker => {
            &[MEDIA[0], MEDIA[1], MEDIA[2], "quotedMessageId"]
        }
        ContentKind::Location => &["lat", "lng", "name", "quotedMessageId"],
        ContentKind::Contact => &["vcard", "quotedMessageId"],
        ContentKind::Reaction => &["messageId", "emoji", "fromMe"],
        ContentKind::Edit => &["messageId", "text"],
        ContentKind::Revoke => &["messageId"],
    }
}

fn required<T>(value: Option<T>, kind: ContentKind, field: &'static str) -> Result<T, SendRefusal> {
    value.ok_or(SendRefusal::MissingField {
        kind: kind.as_str(),
        field,
    })
}

/// Free text: not blank, within WhatsApp's limit.
fn text_field(value: String, field: &str) -> Result<String, SendRefusal> {
    if value.trim().is_empty() {
        return Err(SendRefusal::InvalidField(format!(
            "'{field}' must not be empty"
        )));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(SendRefusal::InvalidField(format!(
            "'{field}' is {} bytes; the limit is {MAX_TEXT_BYTES}",
            value.len()
        )));
    }
    Ok(value)
}

/// A message id a client refers to (a target or a quote).
fn message_id(value: String, field: &str) -> Result<String, SendRefusal> {
    let ok = (1..=MAX_MESSAGE_ID).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(SendRefusal::InvalidField(format!(
            "'{field}' must be a message id (1 to {MAX_MESSAGE_ID} letters and digits), got {value:?}"
        )))
    }
}

/// A mention as WhatsApp wants it: a user JID (a phone number becomes one).
fn mention(raw: &str) -> Result<String, SendRefusal> {
    if let Some(digits) = phone_digits(raw) {
        return Ok(format!("{digits}@s.whatsapp.net"));
    }
    match recipient(raw) {
        Ok(jid) if !jid.ends_with("@g.us") && jid.contains('@') => Ok(jid),
        _ => Err(SendRefusal::InvalidField(format!(
            "each of 'mentions' must be a phone number or a user JID, got {raw:?}"
        ))),
    }
}

fn coordinate(value: f64, field: &str, bound: f64) -> Result<f64, SendRefusal> {
    if value.is_finite() && (-bound..=bound).contains(&value) {
        Ok(value)
    } else {
        Err(SendRefusal::InvalidField(format!(
            "'{field}' must be a number from -{bound} to {bound}, got {value}"
        )))
    }
}

fn emoji(value: String) -> Result<String, SendRefusal> {
    // Empty removes the reaction; otherwise one emoji, not words.
    let ok = value.len() <= MAX_EMOJI_BYTES
        && !value
            .bytes()
            .any(|b| b.is_ascii_alphanumeric() || b.is_ascii_whitespace());
    if ok {
        Ok(value)
    } else {
        Err(SendRefusal::InvalidField(format!(
            "'emoji' must be one emoji (or empty to remove the reaction), got {value:?}"
        )))
    }
}

fn file_name(value: String) -> Result<String, SendRefusal> {
    let ok = !value.trim().is_empty()
        && value.len() <= MAX_FILE_NAME
        && !value
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(value)
    } else {
        Err(SendRefusal::InvalidField(format!(
            "'fileName' must be 1 to {MAX_FILE_NAME} bytes with no slashes or control characters"
        )))
    }
}

fn vcard(value: String) -> Result<String, SendRefusal> {
    let value = text_field(value, "vcard")?;
    let upper = value.trim().to_ascii_uppercase();
    if upper.starts_with("BEGIN:VCARD") && upper.ends_with("END:VCARD") {
        Ok(value)
    } else {
        Err(SendRefusal::InvalidField(
            "'vcard' must be a vCard (BEGIN:VCARD … END:VCARD)".into(),
        ))
    }
}

/// The media bytes of a media kind and their stored description.
async fn media(
    kind: ContentKind,
    body: &mut SendBody,
    limits: &MediaLimits,
    uploaded: Option<Uploaded>,
) -> Result<(DraftMedia, MediaInfo), SendRefusal> {
    if let Some(up) = uploaded {
        return super::upload::describe(
            kind,
            body.base64.take(),
            body.url.take(),
            body.mime_type.take(),
            up,
        );
    }
    let (bytes, declared, source_url) = match (body.base64.take(), body.url.take()) {
        (Some(_), Some(_)) => {
            return Err(SendRefusal::InvalidField(
                "send the media as 'base64' or as 'url', not both".into(),
            ))
        }
        (None, None) => {
            return Err(SendRefusal::MissingField {
                kind: kind.as_str(),
                field: "base64' or 'url",
            })
        }
        (Some(b64), None) => (
            media::decode_base64(&b64, limits)?,
            body.mime_type.take(),
            None,
        ),
        (None, Some(url)) => {
            let (bytes, content_type) = media::fetch(&url, limits).await?;
            // The source's own type wins; `mimeType` only fills in for a
            // source that does not say.
            let declared = content_type
                .filter(|t| !t.is_empty() && t != "application/octet-stream")
                .or(body.mime_type.take());
            (bytes, declared, Some(url))
        }
    };
    if bytes.is_empty() {
        return Err(SendRefusal::InvalidField("the media is empty".into()));
    }
    let mime_type = media::check(kind, declared.as_deref(), &bytes)?;
    let info = MediaInfo {
        mime_type,
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        source_url,
    };
    Ok((DraftMedia::Inline(bytes), info))
}

/// Turns a body into a [`Draft`], or says what is wrong with it.
pub async fn validate(body: SendBody, limits: &MediaLimits) -> Result<Draft, ApiError> {
    validate_with(body, limits, None).await
}

/// [`validate`] for a multipart send whose `file` part is already
/// `uploaded` ([`super::upload`]).
pub async fn validate_with(
    mut body: SendBody,
    limits: &MediaLimits,
    uploaded: Option<Uploaded>,
) -> Result<Draft, ApiError> {
    let to = recipient(&body.to)?;
    let explicit_type = body.kind.is_some();
    let kind = match body.kind.take() {
        None => ContentKind::Text,
        Some(raw) => ContentKind::parse(&raw).ok_or(SendRefusal::UnknownType(raw))?,
    };
    let allowed = allowed(kind);
    if let Some(extra) = body.present().into_iter().find(|f| !allowed.contains(f)) {
        return Err(SendRefusal::FieldNotAllowed {
            kind: kind.as_str(),
            field: extra,
        }
        .into());
    }
    if let Some(key) = &body.idempotency_key {
        let ok = (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ApiError::InvalidBody(format!(
                "'idempotencyKey' must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            )));
        }
    }
    let quoted_message_id = body
        .quoted_message_id
        .take()
        .map(|q| message_id(q, "quotedMessageId"))
        .transpose()?;
    let mentions = body.mentions.take().unwrap_or_default();
    if mentions.len() > MAX_MENTIONS {
        return Err(SendRefusal::InvalidField(format!(
            "at most {MAX_MENTIONS} 'mentions', got {}",
            mentions.len()
        ))
        .into());
    }
    let mentions = mentions
        .iter()
        .map(|m| mention(m))
        .collect::<Result<Vec<_>, _>>()?;
    let caption = body
        .caption
        .take()
        .map(|c| text_field(c, "caption"))
        .transpose()?;
    if let (Some(_), false) = (&uploaded, kind.is_media()) {
        return Err(SendRefusal::FieldNotAllowed {
            kind: kind.as_str(),
            field: "file",
        }
        .into());
    }
    let (content, bytes) = if kind.is_media() {
        let (bytes, media) = media(kind, &mut body, limits, uploaded).await?;
        let content = match kind {
            ContentKind::Image => OutboundContent::Image { media, caption },
            ContentKind::Video => OutboundContent::Video { media, caption },
            ContentKind::Audio => OutboundContent::Audio { media },
            ContentKind::Voice => OutboundContent::Voice { media },
            ContentKind::Sticker => OutboundContent::Sticker { media },
            _ => OutboundContent::Document {
                media,
                file_name: file_name(required(body.file_name.take(), kind, "fileName")?)?,
                caption,
            },
        };
        (content, Some(bytes))
    } else {
        let content = match kind {
            ContentKind::Text => {
                let Some(text) = body.text.take() else {
                    // A body with neither `type` nor `text` is the old
                    // text-only shape missing its field: refused as before.
                    return Err(if explicit_type {
                        SendRefusal::MissingField {
                            kind: "text",
                            field: "text",
                        }
                        .into()
                    } else {
                        ApiError::InvalidJson("invalid JSON body: missing field `text`".into())
                    });
                };
                OutboundContent::Text {
                    text: text_field(text, "text")?,
                }
            }
            ContentKind::Location => {
                let name = body.name.take();
                if name.as_ref().is_some_and(|n| n.len() > MAX_PLACE_NAME) {
                    return Err(SendRefusal::InvalidField(format!(
                        "'name' is longer than {MAX_PLACE_NAME} bytes"
                    ))
                    .into());
                }
                OutboundContent::Location {
                    lat: coordinate(required(body.lat, kind, "lat")?, "lat", 90.0)?,
                    lng: coordinate(required(body.lng, kind, "lng")?, "lng", 180.0)?,
                    name,
                }
            }
            ContentKind::Contact => OutboundContent::Contact {
                vcard: vcard(required(body.vcard.take(), kind, "vcard")?)?,
            },
            ContentKind::Reaction => OutboundContent::Reaction {
                message_id: message_id(
                    required(body.message_id.take(), kind, "messageId")?,
                    "messageId",
                )?,
                emoji: emoji(required(body.emoji.take(), kind, "emoji")?)?,
                from_me: body.from_me.unwrap_or(false),
            },
            ContentKind::Edit => OutboundContent::Edit {
                message_id: message_id(
                    required(body.message_id.take(), kind, "messageId")?,
                    "messageId",
                )?,
                text: text_field(required(body.text.take(), kind, "text")?, "text")?,
            },
            _ => OutboundContent::Revoke {
                message_id: message_id(
                    required(body.message_id.take(), kind, "messageId")?,
                    "messageId",
                )?,
            },
        };
        (content, None)
    };
    Ok(Draft {
        to,
        content,
        quoted_message_id,
        mentions,
        idempotency_key: body.idempotency_key,
        media: bytes,
        humane: body.humane,
    })
}

#[cfg(test)]
#[path = "message_body_tests.rs"]
mod tests;
