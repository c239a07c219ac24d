//! WhatsApp Web client events → the gateway's [`ConnectorEvent`]s. Pure and
//! unit-tested; the driver calls [`map`] for every event the client emits.
//! Nothing of the library's types passes this point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use whatsapp_rust::types::events::{ConnectFailure, Event, InboundMessage};
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::wacore::types::events::ConnectFailureReason;
use whatsapp_rust::wacore::types::presence::ReceiptType;
use whatsapp_rust::{Jid, Server};

use crate::clock::unix_ms;
use crate::connector::{ConnectorEvent, IncomingMessage, MessageKind, Receipt};

/// What the driver does after forwarding an event's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep the client running.
    Continue,
    /// The client is done (a Bot is single-use): stop it and end the connection.
    Stop,
    /// As `Stop`, and the device's keys are dead: delete them.
    StopAndWipe,
}

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

/// Maps the events of one client; keeps what a mapping needs to remember.
pub struct Mapper {
    /// The account learned at pairing, so `Connected` can name it.
    pub own_jid: Option<String>,
    /// Forward status posts, newsletters and broadcast lists (`WA_FORWARD_STATUS`).
    pub forward_status: bool,
    pub counters: Arc<IncomingCounters>,
}

impl Mapper {
    pub fn new(forward_status: bool, counters: Arc<IncomingCounters>) -> Self {
        Self {
            own_jid: None,
            forward_status,
            counters,
        }
    }

    /// Maps one client event.
    pub fn map(&mut self, event: &Event) -> (Vec<ConnectorEvent>, After) {
        let one = |e| (vec![e], After::Continue);
        match event {
            Event::PairingQrCode(qr) => one(ConnectorEvent::Qr {
                code: qr.code.clone(),
                ttl: qr.timeout,
            }),
            Event::PairingQrCodesExhausted(_) => (vec![ConnectorEvent::QrExhausted], After::Stop),
            Event::PairingCode(p) => one(ConnectorEvent::PairCode {
                code: p.code.clone(),
            }),
            Event::PairSuccess(p) => {
                let jid = p.id.to_non_ad_string();
                self.own_jid = Some(jid.clone());
                one(ConnectorEvent::Paired { jid })
            }
            Event::Connected(_) => one(ConnectorEvent::Connected {
                jid: self.own_jid.clone().unwrap_or_default(),
            }),
            Event::Disconnected(d) => one(ConnectorEvent::Disconnected {
                reason: d.reason.to_string(),
                transient: true,
            }),
            Event::LoggedOut(l) => (
                vec![ConnectorEvent::LoggedOut {
                    reason: format!("logged out ({:?})", l.reason),
                }],
                After::StopAndWipe,
            ),
            Event::StreamReplaced(_) => (
                vec![ConnectorEvent::Ended {
                    reason: "stream_replaced: another client opened this account".into(),
                }],
                After::Stop,
            ),
            Event::ClientOutdated(_) => (
                vec![ConnectorEvent::Ended {
                    reason: "client_outdated: WhatsApp refuses this client version".into(),
                }],
                After::Stop,
            ),
            Event::TemporaryBan(b) => (
                vec![ConnectorEvent::Banned {
                    until_ms: Some(unix_ms() + b.expire.num_milliseconds().max(0) as u64),
                }],
                After::Stop,
            ),
            Event::ConnectFailure(f) => connect_failure(f),
            Event::StreamError(e) => {
                // The crate keeps the socket open for these (routing errors
                // wrapped in a stream error, usually code-less); a real
                // teardown follows as `Disconnected` if it comes at all.
                tracing::warn!(code = %e.code, "WhatsApp stream error; the connection stays up");
                (Vec::new(), After::Continue)
            }
            Event::Messages(batch) => {
                let messages = batch
                    .messages
                    .iter()
                    .filter_map(|m| self.message(m))
                    .map(ConnectorEvent::Message)
                    .collect();
                (messages, After::Continue)
            }
            Event::UndecryptableMessage(u) => {
                self.counters.undecryptable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    id = %u.info.id,
                    chat = %u.info.source.chat,
                    "an incoming message could not be decrypted; the phone may show it"
                );
                (Vec::new(), After::Continue)
            }
            Event::Receipt(r) => {
                let Some(status) = receipt_word(&r.r#type) else {
                    return (Vec::new(), After::Continue);
                };
                let timestamp_ms = r.timestamp.timestamp_millis().max(0) as u64;
                let receipts = r
                    .message_ids
                    .iter()
                    .map(|id| {
                        ConnectorEvent::Receipt(Receipt {
                            message_id: id.to_string(),
                            status: status.to_owned(),
                            timestamp_ms,
                        })
                    })
                    .collect();
                (receipts, After::Continue)
            }
            _ => (Vec::new(), After::Continue),
        }
    }

    /// One decrypted message, or `None` when it is not forwarded.
    fn message(&self, m: &InboundMessage) -> Option<IncomingMessage> {
        let source = &m.info.source;
        if source.is_from_me {
            return None;
        }
        let counter = match source.chat.server {
            Server::Broadcast if source.chat.user == "status" => Some(&self.counters.status),
            Server::Broadcast => Some(&self.counters.broadcast_list),
            Server::Newsletter => Some(&self.counters.newsletter),
            _ => None,
        };
        if let Some(counter) = counter {
            if !self.forward_status {
                counter.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let base = m.message.get_base_message();
        let (kind, text) = match base.text_content() {
            Some(text) => (MessageKind::Text, text.to_owned()),
            None => {
                // Only protocol plumbing (key distribution, context) is not news.
                let original = message_type(base)?;
                self.counters.unsupported.fetch_add(1, Ordering::Relaxed);
                let caption = base.get_caption().unwrap_or_default().to_owned();
                (MessageKind::Unsupported { original }, caption)
            }
        };
        let is_group = source.is_group || source.chat.server == Server::Group;
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
            kind,
            text,
            timestamp_ms: m.info.timestamp.timestamp_millis().max(0) as u64,
        })
    }
}

/// A `<failure>` at connect. Logouts come as `LoggedOut`, bans with an
/// expiry as `TemporaryBan`; what reaches here ends the client's run loop
/// unless the crate retries it (500, 503).
fn connect_failure(f: &ConnectFailure) -> (Vec<ConnectorEvent>, After) {
    let detail = f
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let reason = format!("connect failure {}{detail}", failure_name(&f.reason));
    if f.reason.should_reconnect() {
        return (
            vec![ConnectorEvent::Disconnected {
                reason,
                transient: true,
            }],
            After::Continue,
        );
    }
    if f.reason.is_logged_out() {
        // The crate reports these as `LoggedOut`; never here in practice.
        return (
            vec![ConnectorEvent::LoggedOut { reason }],
            After::StopAndWipe,
        );
    }
    if matches!(f.reason, ConnectFailureReason::TempBanned) {
        // A ban whose expiry WhatsApp did not say.
        return (vec![ConnectorEvent::Banned { until_ms: None }], After::Stop);
    }
    (
        vec![ConnectorEvent::Disconnected {
            reason,
            transient: false,
        }],
        After::Stop,
    )
}

/// `409 (bad user agent)`: WhatsApp's code and what it means.
fn failure_name(reason: &ConnectFailureReason) -> String {
    use ConnectFailureReason as R;
    let (code, what) = match reason {
        R::Generic => (400, "bad request"),
        R::LoggedOut => (401, "logged out"),
        R::TempBanned => (402, "temporarily banned"),
        R::AccountLocked => (403, "account locked"),
        R::UnknownLogout => (406, "logged out"),
        R::ClientOutdated => (405, "client outdated"),
        R::BadUserAgent => (409, "bad user agent"),
        R::CatExpired => (413, "auth token expired"),
        R::CatInvalid => (414, "auth token invalid"),
        R::NotFound => (415, "not found"),
        R::ClientUnknown => (418, "client unknown"),
        R::InternalServerError => (500, "WhatsApp server error"),
        R::Experimental => (501, "experimental"),
        R::ServiceUnavailable => (503, "WhatsApp unavailable"),
        R::Unknown(code) => (*code, "unknown reason"),
    };
    format!("{code} ({what})")
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

/// A reason a person can act on for a server nack of a sent message.
pub fn nack_reason(code: &str) -> String {
    let why = match code {
        "400" => "WhatsApp found the message malformed",
        "401" | "403" => "this account may not message that chat (blocked, or not a member)",
        "404" => "the recipient is not on WhatsApp",
        "406" => "WhatsApp does not accept this kind of message for that chat",
        "408" | "500" | "503" => "WhatsApp could not take the message right now",
        "421" | "463" => {
            "WhatsApp holds back messages to this contact until they write first or save the number"
        }
        "479" => "WhatsApp flagged the message or account (spam or restriction)",
        _ => "WhatsApp refused the message",
    };
    format!("{why} (nack {code})")
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

fn receipt_word(kind: &ReceiptType) -> Option<&'static str> {
    match kind {
        ReceiptType::Delivered => Some("delivered"),
        ReceiptType::Read => Some("read"),
        ReceiptType::Played => Some("played"),
        // WhatsApp could not deliver a message it had accepted.
        ReceiptType::ServerError => Some("failed"),
        _ => None,
    }
}

/// The WhatsApp message id for a gateway message id: `3EB0` and 18 hex
/// digits of its SHA-256, the shape WhatsApp Web uses. Deterministic, so a
/// resend after a crash carries the same id and recipients see one message.
pub fn wa_message_id(message_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message_id.as_bytes());
    format!("3EB0{}", &hex::encode_upper(digest)[..18])
}

/// A recipient as the client wants it: bare digits are a phone number.
pub fn recipient(to: &str) -> Result<Jid, String> {
    if to.contains('@') {
        to.parse::<Jid>()
            .map_err(|e| format!("invalid recipient {to:?}: {e}"))
    } else {
        Ok(Jid::pn(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use whatsapp_rust::types::events::{
        Connected, LoggedOut, PairSuccess, PairingQrCode, StreamError, StreamReplaced,
    };
    use whatsapp_rust::wacore::types::message::{MessageInfo, MessageSource};
    use whatsapp_rust::waproto::buffa::MessageField;
    use whatsapp_rust::waproto::whatsapp as wa;

    fn mapper() -> Mapper {
        Mapper::new(false, Arc::default())
    }

    #[test]
    fn qr_maps_with_its_ttl() {
        let ev = Event::PairingQrCode(
            PairingQrCode::builder()
                .code("ref,a,b,c,1".to_string())
                .timeout(Duration::from_secs(60))
                .build(),
        );
        let (out, after) = mapper().map(&ev);
        assert_eq!(
            out,
            vec![ConnectorEvent::Qr {
                code: "ref,a,b,c,1".into(),
                ttl: Duration::from_secs(60)
            }]
        );
        assert_eq!(after, After::Continue);
    }

    #[test]
    fn connected_names_the_account_learned_at_pairing() {
        let mut m = mapper();
        let paired = Event::PairSuccess(
            PairSuccess::builder()
                .id("15550001111:7@s.whatsapp.net".parse().unwrap())
                .lid(Jid::default())
                .business_name(String::new())
                .platform("android".into())
                .build(),
        );
        assert_eq!(
            m.map(&paired).0,
            vec![ConnectorEvent::Paired {
                jid: "15550001111@s.whatsapp.net".into()
            }]
        );
        let (out, _) = m.map(&Event::Connected(Connected::builder().build()));
        assert_eq!(
            out,
            vec![ConnectorEvent::Connected {
                jid: "15550001111@s.whatsapp.net".into()
            }]
        );
    }

    #[test]
    fn logout_wipes_and_replacement_only_stops() {
        let ev = Event::LoggedOut(
            LoggedOut::builder()
                .on_connect(true)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        );
        let (out, after) = mapper().map(&ev);
        assert!(matches!(&out[..], [ConnectorEvent::LoggedOut { .. }]));
        assert_eq!(after, After::StopAndWipe);
        let (out, after) = mapper().map(&Event::StreamReplaced(StreamReplaced::builder().build()));
        assert!(matches!(&out[..], [ConnectorEvent::Ended { .. }]));
        assert_eq!(after, After::Stop);
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
        let forwarding = Mapper::new(true, Arc::default());
        let status = forwarding
            .message(&inbound("status@broadcast", sender, text("my day")))
            .unwrap();
        assert_eq!(status.chat, "status@broadcast");
        assert!(!status.is_group);
    }

    #[test]
    fn unmodelled_kinds_are_forwarded_as_unsupported_with_their_type() {
        let m = mapper();
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
        assert!(m
            .counters
            .snapshot()
            .contains(&("unsupported_forwarded", 1)));
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

    fn failure(reason: ConnectFailureReason) -> Event {
        Event::ConnectFailure(ConnectFailure::builder().reason(reason).build())
    }

    #[test]
    fn connect_failures_end_the_client_unless_whatsapp_retries_them() {
        let (out, after) = mapper().map(&failure(ConnectFailureReason::BadUserAgent));
        assert_eq!(
            out,
            vec![ConnectorEvent::Disconnected {
                reason: "connect failure 409 (bad user agent)".into(),
                transient: false
            }]
        );
        assert_eq!(after, After::Stop);
        let (out, after) = mapper().map(&failure(ConnectFailureReason::ServiceUnavailable));
        assert!(matches!(
            &out[..],
            [ConnectorEvent::Disconnected {
                transient: true,
                ..
            }]
        ));
        assert_eq!(after, After::Continue);
        let (out, after) = mapper().map(&failure(ConnectFailureReason::TempBanned));
        assert_eq!(out, vec![ConnectorEvent::Banned { until_ms: None }]);
        assert_eq!(after, After::Stop);
    }

    #[test]
    fn a_stream_error_is_not_a_state_change() {
        let ev = Event::StreamError(StreamError::builder().code(String::new()).build());
        assert_eq!(mapper().map(&ev), (Vec::new(), After::Continue));
    }

    #[test]
    fn nacks_say_what_went_wrong() {
        assert!(
            nack_reason("463").contains("write first"),
            "{}",
            nack_reason("463")
        );
        assert!(nack_reason("404").contains("not on WhatsApp"));
        assert!(nack_reason("479").ends_with("(nack 479)"));
        assert!(nack_reason("999").starts_with("WhatsApp refused the message"));
    }

    #[test]
    fn server_error_receipts_mark_the_message_failed() {
        assert_eq!(receipt_word(&ReceiptType::ServerError), Some("failed"));
        assert_eq!(receipt_word(&ReceiptType::Sender), None);
    }

    #[test]
    fn message_ids_are_whatsapp_shaped_and_stable() {
        let a = wa_message_id("0190c8a2-1111-7000-8000-000000000001");
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert_eq!(a, wa_message_id("0190c8a2-1111-7000-8000-000000000001"));
        assert_ne!(a, wa_message_id("0190c8a2-1111-7000-8000-000000000002"));
    }

    #[test]
    fn recipients_are_phone_numbers_or_jids() {
        assert_eq!(
            recipient("5511999999999").unwrap().to_string(),
            "5511999999999@s.whatsapp.net"
        );
        assert_eq!(
            recipient("120363000000000000@g.us").unwrap().to_string(),
            "120363000000000000@g.us"
        );
    }
}
