//! The body of `POST /sessions/{id}/simulate/incoming`: what a contact
//! sends, of any kind the gateway models (`type`: text, image, video,
//! audio, voice, document, sticker, location, contact, reaction, edit,
//! revoke, or unsupported), with media as base64. Checked here (400 on a
//! missing or bad field, nothing delivered) and turned into a
//! [`SimIncoming`] for the simulator. Called by `simulate.rs`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use wagate_actors::connector::simulator::{SimContent, SimIncoming};
use wagate_actors::connector::MessageKind;
use wagate_actors::incoming_media::NewMedia;
use wagate_actors::messages::content::ContentKind;

use super::error::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IncomingBody {
    /// The contact: a phone number or a JID.
    #[schema(example = "5215512345678")]
    from: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Text; an edit's new text.
    #[serde(default)]
    text: Option<String>,
    /// A media's caption (the item's `text`).
    #[serde(default)]
    caption: Option<String>,
    /// Media bytes.
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lng: Option<f64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    vcard: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    /// What a reaction, edit or revoke acts on.
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
    /// WhatsApp's type name of an `unsupported` message.
    #[serde(default)]
    original_type: Option<String>,
    #[serde(default)]
    quoted_message_id: Option<String>,
    #[serde(default)]
    mentions: Vec<String>,
}

fn missing(kind: &str, field: &str) -> ApiError {
    ApiError::InvalidBody(format!("a simulated {kind} message needs '{field}'"))
}

/// The media type when none is given (WhatsApp's usual one per kind).
fn default_mime(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::Image => "image/jpeg",
        ContentKind::Video => "video/mp4",
        ContentKind::Audio => "audio/mpeg",
        ContentKind::Voice => "audio/ogg; codecs=opus",
        ContentKind::Sticker => "image/webp",
        _ => "application/octet-stream",
    }
}

/// `type/subtype` with optional parameters, nothing a header cannot carry.
fn valid_mime(m: &str) -> bool {
    let essence = m.split(';').next().unwrap_or("").trim();
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(essence.split_once('/'), Some((t, s)) if ok(t) && ok(s))
        && m.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl IncomingBody {
    pub fn into_sim(self) -> Result<SimIncoming, ApiError> {
        let raw_kind = self.kind.clone().unwrap_or_else(|| "text".into());
        let text_or_caption = |b: &Self| b.caption.clone().or(b.text.clone()).unwrap_or_default();
        let content = match raw_kind.as_str() {
            "unsupported" => SimContent::Plain(MessageKind::Unsupported {
                original: self
                    .original_type
                    .clone()
                    .ok_or_else(|| missing("unsupported", "originalType"))?,
            }),
            raw => match ContentKind::parse(raw) {
                Some(k) if k.is_media() => {
                    let encoded = self.base64.as_deref().ok_or_else(|| missing(raw, "base64"))?;
                    let bytes = B64.decode(encoded.trim()).map_err(|e| {
                        ApiError::InvalidBody(format!("'base64' is not valid base64: {e}"))
                    })?;
                    if bytes.is_empty() {
                        return Err(ApiError::InvalidBody("'base64' holds no bytes".into()));
                    }
                    let mime = self.mime_type.clone().unwrap_or_else(|| default_mime(k).into());
                    if !valid_mime(&mime) {
                        return Err(ApiError::InvalidBody(format!(
                            "'mimeType' {mime:?} is not a media type such as image/jpeg"
                        )));
                    }
                    SimContent::Media(NewMedia {
                        kind: k,
                        mime_type: mime,
                        file_name: self.file_name.clone(),
                        bytes: bytes.into(),
                    })
                }
                Some(ContentKind::Text) => {
                    if self.text.is_none() {
                        return Err(missing(raw, "text"));
                    }
                    SimContent::Plain(MessageKind::Text)
                }
                Some(ContentKind::Location) => {
                    let (lat, lng) = match (self.lat, self.lng) {
                        (Some(lat), Some(lng))
                            if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng) =>
                        {
                            (lat, lng)
                        }
                        _ => {
                            return Err(ApiError::InvalidBody(
                                "a simulated location needs 'lat' (-90..90) and 'lng' (-180..180)"
                                    .into(),
                            ))
                        }
                    };
                    SimContent::Plain(MessageKind::Location {
                        lat,
                        lng,
                        name: self.name.clone(),
                    })
                }
                Some(ContentKind::Contact) => SimContent::Plain(MessageKind::Contact {
                    vcard: self.vcard.clone().ok_or_else(|| missing(raw, "vcard"))?,
                    display_name: self.display_name.clone().unwrap_or_default(),
                }),
                Some(k @ (ContentKind::Reaction | ContentKind::Edit | ContentKind::Revoke)) => {
                    let target_id = self
                        .message_id
                        .clone()
                        .ok_or_else(|| missing(raw, "messageId"))?;
                    SimContent::Plain(match k {
                        ContentKind::Reaction => MessageKind::Reaction {
                            target_id,
                            emoji: self.emoji.clone().ok_or_else(|| missing(raw, "emoji"))?,
                        },
                        ContentKind::Edit => {
                            if self.text.is_none() {
                                return Err(missing(raw, "text"));
                            }
                            MessageKind::Edit { target_id }
                        }
                        _ => MessageKind::Revoke { target_id },
                    })
                }
                _ => {
                    return Err(ApiError::InvalidBody(format!(
                        "unknown 'type' {raw:?}: use text, image, video, audio, voice, document, sticker, location, contact, reaction, edit, revoke or unsupported"
                    )))
                }
            },
        };
        let text = match &content {
            SimContent::Media(_) => text_or_caption(&self),
            SimContent::Plain(MessageKind::Text | MessageKind::Edit { .. }) => {
                self.text.clone().unwrap_or_default()
            }
            _ => String::new(),
        };
        Ok(SimIncoming {
            from: self.from,
            text,
            content,
            quoted_message_id: self.quoted_message_id,
            mentions: self.mentions,
        })
    }
}
