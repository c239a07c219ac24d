//! Incoming WhatsApp messages → the gateway's [`IncomingMessage`]s: which
//! chat a message belongs to (direct, group, status, newsletter, broadcast
//! list), what kind it is, and what is dropped or only counted. Pure and
//! unit-tested; called by the event mapping for every decrypted message.

use std::sync::atomic::{AtomicU64, Ordering};

use whatsapp_rust::types::events::InboundMessage;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::{Jid, Server};

use crate::connector::{IncomingMessage, MessageKind};

/// Incoming traffic the gateway did not forward as a chat message, by
/// kind; shared by every session of the connector and exported as
/// `wagate_connector_incoming_total{kind}`.
#[derive(Debug, Default)]
pub struct IncomingCounters {
    /// Status posts (`status@broadcast`), dropped unless `WA_FORWARD_STATUS`.
    pub status: AtomicU64,
    /// Newsletter (channel) posts, dropped unless `WA_FORWARD_STATUS`.
    pub newsletter: AtomicU64,
    /// Broadcast-list copies, dropped unless `WA_FORWARD_STATUS`.
    pub broadcast_list: AtomicU64,
    /// Forwarded as `kind: unsupported`.
    pub unsupported: AtomicU64,
    /// The client could not decrypt them: nobody sees their content.
    pub undecryptable: AtomicU64,
}

impl IncomingCounters {
    /// `(kind, count)` pairs for the metric.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("status_dropped", get(&self.status)),
            ("newsletter_dropped", get(&self.newsletter)),
            ("broadcast_list_dropped", get(&self.broadcast_list)),
            ("unsupported_forwarded", get(&self.unsupported)),
            ("undecryptable", get(&self.undecryptable)),
        ]
    }
}

/// One decrypted message, or `None` when it is not forwarded.
pub fn message(
    m: &InboundMessage,
    forward_status: bool,
    counters: &IncomingCounters,
) -> Option<IncomingMessage> {
    let source = &m.info.source;
    if source.is_from_me {
        return None;
    }
    let counter = match source.chat.server {
        Server::Broadcast if source.chat.user == "status" => Some(&counters.status),
        Server::Broadcast => Some(&counters.broadcast_list),
        Server::Newsletter => Some(&counters.newsletter),
        _ => None,
    };
    if let Some(counter) = counter {
        if !forward_status {
            counter.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    let base = m.message.get_base_message();
    let content = match super::kinds::content(base) {
        Some(content) => content,
        None => {
            // Only protocol plumbing (key distribution, context) is not news.
            let original = message_type(base)?;
            counters.unsupported.fetch_add(1, Ordering::Relaxed);
            let caption = base.get_caption().unwrap_or_default().to_owned();
            super::kinds::Content {
                kind: MessageKind::Unsupported { original },
                text: caption,
                quoted_message_id: None,
                mentions: Vec::new(),
            }
        }
    };
    // The crate marks status and broadcast-list copies `is_group` too; to
    // Laravel only a `…@g.us` chat is a group.
    let is_group = source.chat.server == Server::Group;
    let from = address(&source.sender, source.sender_alt.as_ref());
    let chat = if is_group || counter.is_some() {
        source.chat.to_non_ad_string()
    } else if source.chat.user == source.sender.user {
        // A direct chat is the sender: answer where the sender is known.
        from.clone()
    } else {
        address(&source.chat, None)
    };
    Some(IncomingMessage {
        id: m.info.id.to_string(),
        from,
        chat,
        is_group,
        kind: content.kind,
        text: content.text,
        quoted_message_id: content.quoted_message_id,
        mentions: content.mentions,
        timestamp_ms: m.info.timestamp.timestamp_millis().max(0) as u64,
    })
}

/// WhatsApp's name of the message's content (`imageMessage`, …), from the
/// protobuf's JSON form: the first field that is not plumbing. Called only
/// for messages without text, so the serialization is rare.
fn message_type(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<String> {
    const PLUMBING: [&str; 3] = [
        "message_context_info",
        "sender_key_distribution_message",
        "fast_ratchet_key_sender_key_distribution_message",
    ];
    let value = serde_json::to_value(message).ok()?;
    let field = value
        .as_object()?
        .iter()
        .find(|(k, v)| !v.is_null() && !PLUMBING.contains(&k.as_str()))
        .map(|(k, _)| k.clone())?;
    // The Rust field name, in the proto's own spelling (`imageMessage`).
    let mut name = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                name.extend(c.to_uppercase());
                upper = false;
            }
            c => name.push(c),
        }
    }
    Some(name)
}

/// A sender as Laravel knows it: the phone number when WhatsApp tells it
/// (directly or as the alternate of a privacy id), else the full JID.
fn address(sender: &Jid, alt: Option<&Jid>) -> String {
    let pn = if sender.server == Server::Pn {
        Some(sender)
    } else {
        alt.filter(|a| a.server == Server::Pn)
    };
    match pn {
        Some(j) => j.user.to_string(),
        None => sender.to_non_ad_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use whatsapp_rust::wacore::types::message::{MessageInfo, MessageSource};
    use whatsapp_rust::waproto::buffa::MessageField;
    use whatsapp_rust::waproto::whatsapp as wa;

    struct Incoming {
        forward_status: bool,
        counters: IncomingCounters,
    }

    impl Incoming {
        fn message(&self, m: &InboundMessage) -> Option<IncomingMessage> {
            message(m, self.forward_status, &self.counters)
        }
    }

    fn mapper() -> Incoming {
        Incoming {
            forward_status: false,
            counters: IncomingCounters::default(),
        }
    }

    fn inbound(chat: &str, sender: &str, message: wa::Message) -> InboundMessage {
        let chat: Jid = chat.parse().unwrap();
        let source = MessageSource {
            is_group: chat.server == Server::Group,
            chat,
            sender: sender.parse().unwrap(),
            ..MessageSource::default()
        };
        let info = MessageInfo {
            source,
            id: "M1".into(),
            ..MessageInfo::default()
        };
        InboundMessage::builder()
            .message(Arc::new(message))
            .info(Arc::new(info))
            .build()
    }

    fn text(t: &str) -> wa::Message {
        wa::Message {
            conversation: Some(t.into()),
            ..Default::default()
        }
    }

    #[test]
    fn direct_and_group_messages_name_their_chat() {
        let m = mapper();
        let direct = m
            .message(&inbound(
                "5511999999999@s.whatsapp.net",
                "5511999999999@s.whatsapp.net",
                text("hi"),
            ))
            .unwrap();
        assert_eq!(
            (direct.from.as_str(), direct.chat.as_str(), direct.is_group),
            ("5511999999999", "5511999999999", false)
        );
        assert_eq!(direct.kind, MessageKind::Text);
        let group = m
            .message(&inbound(
                "120363000000000000@g.us",
                "5511999999999@s.whatsapp.net",
                text("hello all"),
            ))
            .unwrap();
        assert_eq!(group.chat, "120363000000000000@g.us");
        assert_eq!(group.from, "5511999999999");
        assert!(group.is_group);
    }

    #[test]
    fn a_privacy_id_chat_is_answered_at_the_phone_number_when_known() {
        let mut msg = inbound("100000012345678@lid", "100000012345678@lid", text("hi"));
        let mut info = (*msg.info).clone();
        info.source.sender_alt = Some("5511999999999@s.whatsapp.net".parse().unwrap());
        msg.info = Arc::new(info);
        let out = mapper().message(&msg).unwrap();
        assert_eq!(
            (out.from.as_str(), out.chat.as_str()),
            ("5511999999999", "5511999999999")
        );
    }

    #[test]
    fn status_posts_newsletters_and_lists_are_dropped_and_counted_unless_forwarded() {
        let m = mapper();
        let sender = "5511999999999@s.whatsapp.net";
        assert!(m
            .message(&inbound("status@broadcast", sender, text("my day")))
            .is_none());
        assert!(m
            .message(&inbound("123@newsletter", sender, text("news")))
            .is_none());
        assert!(m
            .message(&inbound("1234@broadcast", sender, text("promo")))
            .is_none());
        let counts = m.counters.snapshot();
        for kind in [
            "status_dropped",
            "newsletter_dropped",
            "broadcast_list_dropped",
        ] {
            assert!(counts.contains(&(kind, 1)), "{kind} in {counts:?}");
        }
        let forwarding = Incoming {
            forward_status: true,
            counters: IncomingCounters::default(),
        };
        let status = forwarding
            .message(&inbound("status@broadcast", sender, text("my day")))
            .unwrap();
        assert_eq!(status.chat, "status@broadcast");
        assert!(!status.is_group);
    }

    #[test]
    fn unmodelled_kinds_are_forwarded_as_unsupported_with_their_type() {
        let m = mapper();
        let poll = wa::Message {
            poll_creation_message: MessageField::some(Default::default()),
            ..Default::default()
        };
        let out = m
            .message(&inbound(
                "5511999999999@s.whatsapp.net",
                "5511999999999@s.whatsapp.net",
                poll,
            ))
            .unwrap();
        assert_eq!(
            out.kind,
            MessageKind::Unsupported {
                original: "pollCreationMessage".into()
            }
        );
        assert!(m
            .counters
            .snapshot()
            .contains(&("unsupported_forwarded", 1)));
        // Media waits for its download as `unsupported`, caption included.
        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                caption: Some("look".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = m
            .message(&inbound(
                "5511999999999@s.whatsapp.net",
                "5511999999999@s.whatsapp.net",
                image,
            ))
            .unwrap();
        assert_eq!(
            out.kind,
            MessageKind::Unsupported {
                original: "imageMessage".into()
            }
        );
        assert_eq!(out.text, "look", "the caption travels");
        let plumbing = wa::Message {
            message_context_info: MessageField::some(Default::default()),
            ..Default::default()
        };
        assert!(
            m.message(&inbound(
                "5511999999999@s.whatsapp.net",
                "5511999999999@s.whatsapp.net",
                plumbing
            ))
            .is_none(),
            "protocol plumbing alone is not a message"
        );
    }

    #[test]
    fn own_messages_are_not_incoming() {
        let mut msg = inbound(
            "5511999999999@s.whatsapp.net",
            "5511999999999@s.whatsapp.net",
            text("x"),
        );
        let mut info = (*msg.info).clone();
        info.source.is_from_me = true;
        msg.info = Arc::new(info);
        assert!(mapper().message(&msg).is_none());
    }
}
