//! Property tests of the WhatsApp mapping, as far as it takes plain data:
//! any recipient string the API passes on, any QR or pairing code, and
//! incoming messages from any chat and sender JIDs with any text.
//! Invariants: nothing panics; bare digits are a phone number; message ids
//! are WhatsApp-shaped and stable; a forwarded text arrives unchanged; own
//! messages and (unless asked) status posts are never forwarded; a ban of
//! any length (even one the server got wrong: negative, centuries) stops
//! the session with an expiry no earlier than now.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use whatsapp_rust::types::events::{PairingCode, PairingQrCode, TempBanReason, TemporaryBan};
use whatsapp_rust::wacore::types::message::{MessageInfo, MessageSource};
use whatsapp_rust::waproto::whatsapp as wa;

use super::*;
use crate::connector::whatsapp::incoming::IncomingCounters;

/// A JID string: well formed in every server's shape, or anything at all.
fn jid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ("[0-9]{1,16}", "(:[0-9]{1,3})?", prop::sample::select(vec!["s.whatsapp.net", "g.us", "lid", "broadcast", "newsletter", "c.us"]))
            .prop_map(|(user, device, server)| format!("{user}{device}@{server}")),
        1 => Just("status@broadcast".to_owned()),
        1 => "[ -~]{0,30}@[ -~]{0,20}",
    ]
}

proptest! {
    #[test]
    fn recipients_parse_or_refuse_without_panicking(to in prop_oneof!["[0-9]{1,20}", "[+0-9 ()-]{0,20}", jid_text(), any::<String>()]) {
        match recipient(&to) {
            Ok(jid) if !to.contains('@') => {
                prop_assert_eq!(jid.user.as_str(), to.as_str(), "bare digits are the phone number");
            }
            Ok(_) => {}
            Err(why) => {
                prop_assert!(to.contains('@'), "a bare number was refused: {}", why);
                prop_assert!(why.contains("invalid recipient"), "{}", why);
            }
        }
    }

    #[test]
    fn message_ids_are_whatsapp_shaped_and_stable(id in any::<String>()) {
        let wa = wa_message_id(&id);
        prop_assert_eq!(wa.len(), 22);
        prop_assert!(wa.starts_with("3EB0"));
        prop_assert!(wa[4..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        prop_assert_eq!(wa, wa_message_id(&id));
    }

    #[test]
    fn codes_map_unchanged(code in any::<String>(), secs in any::<u64>()) {
        let mut mapper = Mapper::new(false, Arc::default());
        let qr = Event::PairingQrCode(PairingQrCode::builder().code(code.clone()).timeout(Duration::from_secs(secs)).build());
        let (out, after) = mapper.map(&qr);
        prop_assert_eq!(out, vec![ConnectorEvent::Qr { code: code.clone(), ttl: Duration::from_secs(secs) }]);
        prop_assert_eq!(after, After::Continue);
        let pair = Event::PairingCode(PairingCode::builder().code(code.clone()).timeout(Duration::from_secs(secs)).build());
        prop_assert_eq!(mapper.map(&pair).0, vec![ConnectorEvent::PairCode { code }]);
    }

    #[test]
    fn incoming_texts_from_any_chat_arrive_unchanged(
        chat in jid_text(),
        sender in jid_text(),
        text in any::<String>(),
        id in any::<String>(),
        from_me: bool,
        is_group: bool,
        forward_status: bool,
    ) {
        let (Ok(chat), Ok(sender)) = (chat.parse::<Jid>(), sender.parse::<Jid>()) else {
            return Ok(()); // the client never hands over an unparsable JID
        };
        let status_like = matches!(chat.server, whatsapp_rust::Server::Broadcast | whatsapp_rust::Server::Newsletter);
        let source = MessageSource { chat, sender, is_from_me: from_me, is_group, ..MessageSource::default() };
        let info = MessageInfo { source, id: id.clone(), ..MessageInfo::default() };
        let message = wa::Message { conversation: Some(text.clone()), ..Default::default() };
        let inbound = InboundMessage::builder().message(Arc::new(message)).info(Arc::new(info)).build();
        let counters = IncomingCounters::default();
        match incoming::message(&inbound, forward_status, &counters) {
            Some(m) => {
                prop_assert!(!from_me, "an own message forwarded");
                prop_assert!(forward_status || !status_like, "a status post forwarded");
                prop_assert_eq!(m.text, text);
                prop_assert_eq!(m.id, id);
                prop_assert!(!m.from.is_empty() || inbound.info.source.sender.user.is_empty());
            }
            None => prop_assert!(from_me || (status_like && !forward_status), "a text message dropped"),
        }
    }

    #[test]
    fn a_ban_of_any_length_stops_the_session_until_a_time_not_before_now(
        secs in prop_oneof![
            -1_000_000i64..0,
            0i64..100_000_000,
            Just(i64::MAX / 1_000),
            Just(i64::MIN / 1_000),
        ],
        code in any::<i32>(),
    ) {
        let expire = chrono::Duration::seconds(secs);
        let ban = TemporaryBan::builder().code(TempBanReason::Unknown(code)).expire(expire).build();
        let before = crate::clock::unix_ms();
        let (out, after) = Mapper::new(false, Arc::default()).map(&Event::TemporaryBan(ban));
        let after_ms = crate::clock::unix_ms();
        prop_assert_eq!(after, After::Stop);
        let [ConnectorEvent::Banned { until_ms: Some(until) }] = out.as_slice() else {
            return Err(TestCaseError::fail(format!("not one dated ban: {out:?}")));
        };
        let length = expire.num_milliseconds().max(0) as u64;
        prop_assert!(*until >= before + length && *until <= after_ms + length, "{until} for {secs} s");
    }
}
