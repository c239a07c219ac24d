//! WhatsApp Web client events → the gateway's [`ConnectorEvent`]s. Pure and
//! unit-tested; the driver calls [`map`] for every event the client emits.
//! Nothing of the library's types passes this point.

use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::wacore::types::presence::ReceiptType;
use whatsapp_rust::{Jid, Server};

use crate::clock::unix_ms;
use crate::connector::{ConnectorEvent, IncomingMessage, Receipt};

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

/// Maps one client event. `own_jid` remembers the account learned at
/// pairing, so `Connected` can name it.
pub fn map(event: &Event, own_jid: &mut Option<String>) -> (Vec<ConnectorEvent>, After) {
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
            *own_jid = Some(p.id.to_non_ad_string());
            (Vec::new(), After::Continue)
        }
        Event::Connected(_) => one(ConnectorEvent::Connected {
            jid: own_jid.clone().unwrap_or_default(),
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
        Event::ConnectFailure(f) if !f.reason.is_logged_out() => {
            one(ConnectorEvent::Disconnected {
                reason: format!("connect failure ({:?})", f.reason),
                transient: true,
            })
        }
        Event::StreamError(e) => one(ConnectorEvent::Disconnected {
            reason: format!("stream error {}", e.code),
            transient: true,
        }),
        Event::Messages(batch) => {
            let messages = batch
                .messages
                .iter()
                .filter(|m| !m.info.source.is_from_me)
                .filter_map(|m| {
                    let text = m.message.text_content()?;
                    let source = &m.info.source;
                    Some(ConnectorEvent::Message(IncomingMessage {
                        id: m.info.id.to_string(),
                        from: address(&source.sender, source.sender_alt.as_ref()),
                        text: text.to_owned(),
                        timestamp_ms: m.info.timestamp.timestamp_millis().max(0) as u64,
                    }))
                })
                .collect();
            (messages, After::Continue)
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
        Connected, LoggedOut, PairSuccess, PairingQrCode, StreamReplaced,
    };
    use whatsapp_rust::wacore::types::events::ConnectFailureReason;

    #[test]
    fn qr_maps_with_its_ttl() {
        let ev = Event::PairingQrCode(
            PairingQrCode::builder()
                .code("ref,a,b,c,1".to_string())
                .timeout(Duration::from_secs(60))
                .build(),
        );
        let (out, after) = map(&ev, &mut None);
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
        let mut jid = None;
        let paired = Event::PairSuccess(
            PairSuccess::builder()
                .id("15550001111:7@s.whatsapp.net".parse().unwrap())
                .lid(Jid::default())
                .business_name(String::new())
                .platform("android".into())
                .build(),
        );
        assert!(map(&paired, &mut jid).0.is_empty());
        let (out, _) = map(&Event::Connected(Connected::builder().build()), &mut jid);
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
        let (out, after) = map(&ev, &mut None);
        assert!(matches!(&out[..], [ConnectorEvent::LoggedOut { .. }]));
        assert_eq!(after, After::StopAndWipe);
        let (out, after) = map(
            &Event::StreamReplaced(StreamReplaced::builder().build()),
            &mut None,
        );
        assert!(matches!(&out[..], [ConnectorEvent::Ended { .. }]));
        assert_eq!(after, After::Stop);
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
