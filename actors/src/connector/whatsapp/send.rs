//! The send path's mapping from an [`OutgoingMessage`] to what whatsapp-rust
//! 0.7 sends: a `wa::Message` (text, uploaded media with its mime type and
//! `ptt` for voice notes, location, contact, reaction, revoke) or an edit of
//! an earlier message. Quotes and mentions become a `ContextInfo`. Called by
//! the driver's `send`, which owns the number check, the message id and the
//! wait for WhatsApp's ack.

use bytes::Bytes;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::media::{self, AudioOptions, DocumentOptions, ImageOptions, VideoOptions};
use whatsapp_rust::upload::UploadResponse;
use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, Jid, UploadOptions};

use super::events;
use crate::clock::unix_ms;
use crate::connector::{ConnectorError, OutgoingMessage};
use crate::messages::content::OutboundContent;

/// What to hand the client for one message.
pub(super) enum Prepared {
    /// Sent with `send_message_with_options` under the gateway's id (the
    /// crate infers the stanza's edit attribute for a revoke or a reaction
    /// removal from the content).
    Message(wa::Message),
    /// An edit of `original` (the crate wraps `content` in the edit
    /// protocol message, with the own JID as participant in groups).
    Edit {
        original: String,
        content: wa::Message,
    },
}

/// WhatsApp's id of a message `id` names: the gateway's own ids (`3EB0` +
/// 16 hex digits) went out under [`events::wa_message_id`]; any other id is
/// WhatsApp's already (an incoming message, one sent from the phone).
pub(super) fn target_id(id: &str) -> String {
    let gateway_shaped = id.len() == 20
        && id.starts_with("3EB0")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    if gateway_shaped {
        events::wa_message_id(id)
    } else {
        id.to_owned()
    }
}

/// The quote and mentions of `m`, if it has any. A quoted message is
/// referred to by id; in a direct chat its author is taken to be the peer
/// (a reply to what they wrote), in a group the author is left to WhatsApp.
fn context(chat: &Jid, m: &OutgoingMessage) -> Option<wa::ContextInfo> {
    if m.quoted_message_id.is_none() && m.mentions.is_empty() {
        return None;
    }
    let mut ci = wa::ContextInfo {
        mentioned_jid: m.mentions.clone(),
        ..Default::default()
    };
    if let Some(quoted) = &m.quoted_message_id {
        ci.stanza_id = Some(target_id(quoted));
        if !chat.to_string().ends_with("@g.us") {
            ci.participant = Some(chat.to_string());
        }
        ci.quoted_message = MessageField::some(wa::Message::default());
    }
    Some(ci)
}

/// The display name of a vCard (`FN:`), which WhatsApp shows on the card.
fn vcard_name(vcard: &str) -> Option<String> {
    vcard.lines().find_map(|l| {
        let l = l.trim();
        let (key, value) = l.split_once(':')?;
        (key.eq_ignore_ascii_case("FN") || key.to_ascii_uppercase().starts_with("FN;"))
            .then(|| value.trim().to_owned())
    })
}

async fn upload(
    client: &Client,
    bytes: &Bytes,
    kind: MediaType,
) -> Result<UploadResponse, ConnectorError> {
    client
        .upload(bytes.to_vec(), kind, UploadOptions::default())
        .await
        .map_err(|e| ConnectorError::Failed(format!("media upload failed: {e}")))
}

/// Builds (uploading media first) what the client sends for `m` to `chat`.
pub(super) async fn prepare(
    client: &Client,
    chat: &Jid,
    m: &OutgoingMessage,
) -> Result<Prepared, ConnectorError> {
    let ci = context(chat, m);
    let boxed = || ci.clone().map(Box::new);
    let field = || ci.clone().map(MessageField::some).unwrap_or_default();
    let bytes = || {
        m.media
            .as_ref()
            .ok_or_else(|| ConnectorError::Rejected("the media bytes are missing".into()))
    };
    let mime = || m.content.media().map(|i| i.mime_type.clone());
    let message = match &m.content {
        OutboundContent::Text { text } => match ci {
            Some(ci) => wa::Message::text_with_context(text.clone(), ci),
            None => wa::Message::text(text.clone()),
        },
        OutboundContent::Image { caption, .. } => {
            let up = upload(client, bytes()?, MediaType::Image).await?;
            let opts = ImageOptions {
                caption: caption.clone(),
                mimetype: mime(),
                context_info: boxed(),
                ..Default::default()
            };
            media::image_message(up, opts)
        }
        OutboundContent::Video { caption, .. } => {
            let up = upload(client, bytes()?, MediaType::Video).await?;
            let opts = VideoOptions {
                caption: caption.clone(),
                mimetype: mime(),
                context_info: boxed(),
                ..Default::default()
            };
            media::video_message(up, opts)
        }
        OutboundContent::Audio { .. } | OutboundContent::Voice { .. } => {
            let voice = matches!(m.content, OutboundContent::Voice { .. });
            let up = upload(client, bytes()?, MediaType::Audio).await?;
            let opts = AudioOptions {
                // A voice note plays only as Opus in OGG, which intake
                // checked; WhatsApp wants exactly this mime for it.
                mimetype: if voice {
                    Some("audio/ogg; codecs=opus".to_owned())
                } else {
                    mime()
                },
                ptt: Some(voice),
                context_info: boxed(),
                ..Default::default()
            };
            media::audio_message(up, opts)
        }
        OutboundContent::Document {
            file_name, caption, ..
        } => {
            let up = upload(client, bytes()?, MediaType::Document).await?;
            let opts = DocumentOptions {
                mimetype: mime(),
                file_name: Some(file_name.clone()),
                title: Some(file_name.clone()),
                caption: caption.clone(),
                context_info: boxed(),
                ..Default::default()
            };
            media::document_message(up, opts)
        }
        OutboundContent::Sticker { .. } => {
            let up = upload(client, bytes()?, MediaType::Sticker).await?;
            wa::Message {
                sticker_message: MessageField::some(wa::message::StickerMessage {
                    url: Some(up.url),
                    direct_path: Some(up.direct_path),
                    media_key: Some(up.media_key.to_vec()),
                    file_sha256: Some(up.file_sha256.to_vec()),
                    file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                    file_length: Some(up.file_length),
                    media_key_timestamp: Some(up.media_key_timestamp),
                    mimetype: Some("image/webp".to_owned()),
                    context_info: field(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        OutboundContent::Location { lat, lng, name } => wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(*lat),
                degrees_longitude: Some(*lng),
                name: name.clone(),
                context_info: field(),
                ..Default::default()
            }),
            ..Default::default()
        },
        OutboundContent::Contact { vcard } => wa::Message {
            contact_message: MessageField::some(wa::message::ContactMessage {
                display_name: vcard_name(vcard),
                vcard: Some(vcard.clone()),
                context_info: field(),
                ..Default::default()
            }),
            ..Default::default()
        },
        OutboundContent::Reaction {
            message_id,
            emoji,
            from_me,
        } => {
            let key = wa::MessageKey {
                remote_jid: Some(chat.to_string()),
                from_me: Some(*from_me),
                id: Some(target_id(message_id)),
                participant: None,
            };
            whatsapp_rust::wacore::proto_helpers::build_reaction_message(
                key,
                emoji.clone(),
                unix_ms() as i64,
            )
        }
        OutboundContent::Edit { message_id, text } => {
            return Ok(Prepared::Edit {
                original: target_id(message_id),
                content: wa::Message::text(text.clone()),
            })
        }
        OutboundContent::Revoke { message_id } => wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: MessageField::some(wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(true),
                    id: Some(target_id(message_id)),
                    participant: None,
                }),
                r#type: Some(wa::message::protocol_message::Type::Revoke),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    Ok(Prepared::Message(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ids_are_mapped_to_the_id_they_went_out_under() {
        let ours = "3EB0AABBCCDDEEFF0011";
        assert_eq!(target_id(ours), events::wa_message_id(ours));
        let theirs = "3EB0C431E2A7A1E2A7B7F1";
        assert_eq!(target_id(theirs), theirs);
        let phone = "ABCDEF0123456789ABCDEF0123456789";
        assert_eq!(target_id(phone), phone);
    }

    #[test]
    fn vcard_display_name_is_read_from_fn() {
        let v =
            "BEGIN:VCARD\nVERSION:3.0\nFN;CHARSET=UTF-8:Ana Pérez\nTEL:+5215512345678\nEND:VCARD";
        assert_eq!(vcard_name(v).as_deref(), Some("Ana Pérez"));
        assert_eq!(vcard_name("BEGIN:VCARD\nEND:VCARD"), None);
    }
}
