//! What a WhatsApp message's content is, in the gateway's terms: the
//! [`MessageKind`], its text or caption, the reply it quotes and whom it
//! mentions, and — for media — what to download ([`media_of`]). Pure and
//! unit-tested; called by [`super::incoming::message`] for each decrypted
//! message, and by the driver, which downloads the media and swaps the
//! placeholder kind for [`MessageKind::Media`] before journaling.

use wa::message::protocol_message::Type as ProtocolType;
use whatsapp_rust::wacore::download::Downloadable;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::connector::MessageKind;
use crate::messages::content::ContentKind;

/// A message's content as the gateway models it.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub kind: MessageKind,
    /// Text, caption or an edit's new text.
    pub text: String,
    pub quoted_message_id: Option<String>,
    pub mentions: Vec<String>,
}

/// The media of a message, to download before it is journaled.
pub struct MediaSource<'a> {
    pub kind: ContentKind,
    pub mime_type: String,
    pub file_name: Option<String>,
    /// WhatsApp's type name, kept if the download fails (`unsupported`).
    pub original: &'static str,
    pub downloadable: &'a dyn Downloadable,
}

/// The media a message carries, if it is one of the modelled media kinds.
pub fn media_of(base: &wa::Message) -> Option<MediaSource<'_>> {
    let mime = |m: &Option<String>, default: &str| m.clone().unwrap_or_else(|| default.into());
    if let Some(m) = base.image_message.as_option() {
        return Some(MediaSource {
            kind: ContentKind::Image,
            mime_type: mime(&m.mimetype, "image/jpeg"),
            file_name: None,
            original: "imageMessage",
            downloadable: m,
        });
    }
    if let Some(m) = base.video_message.as_option() {
        return Some(MediaSource {
            kind: ContentKind::Video,
            mime_type: mime(&m.mimetype, "video/mp4"),
            file_name: None,
            original: "videoMessage",
            downloadable: m,
        });
    }
    if let Some(m) = base.audio_message.as_option() {
        let voice = m.ptt == Some(true);
        return Some(MediaSource {
            kind: if voice {
                ContentKind::Voice
            } else {
                ContentKind::Audio
            },
            mime_type: mime(&m.mimetype, "audio/ogg; codecs=opus"),
            file_name: None,
            original: "audioMessage",
            downloadable: m,
        });
    }
    if let Some(m) = base.document_message.as_option() {
        return Some(MediaSource {
            kind: ContentKind::Document,
            mime_type: mime(&m.mimetype, "application/octet-stream"),
            file_name: m.file_name.clone().or_else(|| m.title.clone()),
            original: "documentMessage",
            downloadable: m,
        });
    }
    if let Some(m) = base.sticker_message.as_option() {
        return Some(MediaSource {
            kind: ContentKind::Sticker,
            mime_type: mime(&m.mimetype, "image/webp"),
            file_name: None,
            original: "stickerMessage",
            downloadable: m,
        });
    }
    None
}

/// The reply and mentions of the first content field that carries them.
fn context(base: &wa::Message) -> (Option<String>, Vec<String>) {
    let ctx = [
        base.extended_text_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.image_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.video_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.audio_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.document_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.sticker_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.location_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.contact_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
    ]
    .into_iter()
    .flatten()
    .next();
    match ctx {
        Some(c) => (
            c.stanza_id.clone().filter(|s| !s.is_empty()),
            c.mentioned_jid.clone(),
        ),
        None => (None, Vec::new()),
    }
}

/// The content of `base` (the message with its wrappers peeled), or
/// `None` for a kind the gateway does not model. Media maps to
/// `Unsupported { original }` until the driver has downloaded it.
pub fn content(base: &wa::Message) -> Option<Content> {
    let (quoted_message_id, mentions) = context(base);
    let with = |kind, text: &str| Content {
        kind,
        text: text.to_owned(),
        quoted_message_id: quoted_message_id.clone(),
        mentions: mentions.clone(),
    };
    if let Some(text) = base.text_content() {
        return Some(with(MessageKind::Text, text));
    }
    if let Some(media) = media_of(base) {
        let caption = base.get_caption().unwrap_or_default();
        let original = media.original.to_owned();
        return Some(with(MessageKind::Unsupported { original }, caption));
    }
    if let Some(l) = base.location_message.as_option() {
        if l.is_live != Some(true) {
            let kind = MessageKind::Location {
                lat: l.degrees_latitude.unwrap_or_default(),
                lng: l.degrees_longitude.unwrap_or_default(),
                name: l.name.clone().or_else(|| l.address.clone()),
            };
            return Some(with(kind, ""));
        }
    }
    if let Some(c) = base.contact_message.as_option() {
        let kind = MessageKind::Contact {
            display_name: c.display_name.clone().unwrap_or_default(),
            vcard: c.vcard.clone().unwrap_or_default(),
        };
        return Some(with(kind, ""));
    }
    if let Some(r) = base.reaction_message.as_option() {
        let target_id = r.key.as_option().and_then(|k| k.id.clone())?;
        let kind = MessageKind::Reaction {
            target_id,
            emoji: r.text.clone().unwrap_or_default(),
        };
        return Some(with(kind, ""));
    }
    if let Some(p) = base.protocol_message.as_option() {
        let target_id = p.key.as_option().and_then(|k| k.id.clone())?;
        if p.r#type == Some(ProtocolType::REVOKE) {
            return Some(with(MessageKind::Revoke { target_id }, ""));
        }
        if p.r#type == Some(ProtocolType::MESSAGE_EDIT) || p.edited_message.is_set() {
            let edited = p.edited_message.as_option();
            let text = edited
                .and_then(|m| m.text_content().or_else(|| m.get_caption()))
                .unwrap_or_default();
            let (quoted, mentioned) = edited.map(context).unwrap_or_default();
            return Some(Content {
                kind: MessageKind::Edit { target_id },
                text: text.to_owned(),
                quoted_message_id: quoted,
                mentions: mentioned,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::waproto::buffa::MessageField;

    fn key(id: &str) -> MessageField<wa::MessageKey> {
        MessageField::some(wa::MessageKey {
            id: Some(id.into()),
            ..Default::default()
        })
    }

    fn replying(to: &str, mentions: &[&str]) -> MessageField<wa::ContextInfo> {
        MessageField::some(wa::ContextInfo {
            stanza_id: Some(to.into()),
            mentioned_jid: mentions.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn a_reply_with_mentions_keeps_both() {
        let m = wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("hi @1".into()),
                context_info: replying("Q1", &["1@s.whatsapp.net"]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = content(&m).unwrap();
        assert_eq!(c.kind, MessageKind::Text);
        assert_eq!(c.text, "hi @1");
        assert_eq!(c.quoted_message_id.as_deref(), Some("Q1"));
        assert_eq!(c.mentions, vec!["1@s.whatsapp.net".to_string()]);
    }

    #[test]
    fn media_kinds_name_what_to_download() {
        let voice = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                ptt: Some(true),
                mimetype: Some("audio/ogg; codecs=opus".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = media_of(&voice).unwrap();
        assert_eq!(m.kind, ContentKind::Voice);
        assert_eq!(m.mime_type, "audio/ogg; codecs=opus");
        let doc = wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                file_name: Some("invoice.pdf".into()),
                mimetype: Some("application/pdf".into()),
                caption: Some("your invoice".into()),
                context_info: replying("Q2", &[]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = media_of(&doc).unwrap();
        assert_eq!(
            (m.kind, m.file_name.as_deref()),
            (ContentKind::Document, Some("invoice.pdf"))
        );
        let c = content(&doc).unwrap();
        assert_eq!(
            c.kind,
            MessageKind::Unsupported {
                original: "documentMessage".into()
            },
            "until downloaded"
        );
        assert_eq!(c.text, "your invoice");
        assert_eq!(c.quoted_message_id.as_deref(), Some("Q2"));
        let sticker = wa::Message {
            sticker_message: MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(media_of(&sticker).unwrap().mime_type, "image/webp");
    }

    #[test]
    fn location_contact_reaction_edit_and_revoke_map_to_their_kinds() {
        let location = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(-23.5),
                degrees_longitude: Some(-46.6),
                name: Some("Shop".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            content(&location).unwrap().kind,
            MessageKind::Location {
                lat: -23.5,
                lng: -46.6,
                name: Some("Shop".into())
            }
        );
        let contact = wa::Message {
            contact_message: MessageField::some(wa::message::ContactMessage {
                display_name: Some("Ana".into()),
                vcard: Some("BEGIN:VCARD\nEND:VCARD".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            matches!(content(&contact).unwrap().kind, MessageKind::Contact { display_name, .. } if display_name == "Ana")
        );
        let unreact = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: key("T1"),
                text: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            content(&unreact).unwrap().kind,
            MessageKind::Reaction {
                target_id: "T1".into(),
                emoji: String::new()
            }
        );
        let revoke = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key("T2"),
                r#type: Some(ProtocolType::REVOKE),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            content(&revoke).unwrap().kind,
            MessageKind::Revoke {
                target_id: "T2".into()
            }
        );
        let edit = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key("T3"),
                r#type: Some(ProtocolType::MESSAGE_EDIT),
                edited_message: MessageField::some(wa::Message {
                    conversation: Some("fixed".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = content(&edit).unwrap();
        assert_eq!(
            (c.kind, c.text.as_str()),
            (
                MessageKind::Edit {
                    target_id: "T3".into()
                },
                "fixed"
            )
        );
    }

    #[test]
    fn live_locations_and_other_protocol_messages_are_not_modelled() {
        let live = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                is_live: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(content(&live).is_none());
        let setting = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key("T"),
                r#type: Some(ProtocolType::EPHEMERAL_SETTING),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(content(&setting).is_none());
    }
}
