//! WhatsApp Web client events → the gateway's [`ConnectorEvent`]s. Pure and
//! unit-tested; the driver calls [`Mapper::map`] for every event the client
//! emits (messages themselves are mapped in [`super::incoming`]).
//! Nothing of the library's types passes this point.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use whatsapp_rust::types::events::{ConnectFailure, Event, InboundMessage};
use whatsapp_rust::wacore::types::events::ConnectFailureReason;
use whatsapp_rust::wacore::types::presence::ReceiptType;
use whatsapp_rust::Jid;

use super::incoming::{self, IncomingCounters};
use crate::clock::unix_ms;
use crate::connector::{ConnectorEvent, Receipt};

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

    /// Maps decrypted incoming messages (those that are forwarded).
    pub fn messages(&self, batch: &[InboundMessage]) -> Vec<ConnectorEvent> {
        self.messages_from(batch)
            .into_iter()
            .map(|(_, m)| ConnectorEvent::Message(m))
            .collect()
    }

    /// As [`Mapper::messages`], each beside the client's message it came
    /// from (the driver downloads media from it).
    pub fn messages_from<'a>(
        &self,
        batch: &'a [InboundMessage],
    ) -> Vec<(&'a InboundMessage, crate::connector::IncomingMessage)> {
        batch
            .iter()
            .filter_map(|m| {
                incoming::message(m, self.forward_status, &self.counters).map(|out| (m, out))
            })
            .collect()
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
            // The durability hook already handed these over (`messages`).
            Event::Messages(batch) if batch.hook_committed => (Vec::new(), After::Continue),
            // Not gated by the hook: newsletters, placeholder recoveries.
            Event::Messages(batch) => (self.messages(&batch.messages), After::Continue),
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

/// The WhatsApp message id for a gateway message id. The gateway's ids are
/// WhatsApp-shaped already (`3EB0` + 16 hex digits, `OutboundMessage::new_id`)
/// and go on the wire as they are: receipts then name the id Laravel got
/// in the 202, so it can apply them by rank (docs/laravel.md). An id of any
/// other shape gets `3EB0` and 18 hex digits of its SHA-256. Either way a
/// resend after a crash carries the same id and recipients see one message.
pub fn wa_message_id(message_id: &str) -> String {
    if is_whatsapp_shaped(message_id) {
        return message_id.to_owned();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message_id.as_bytes());
    format!("3EB0{}", &hex::encode_upper(digest)[..18])
}

/// `3EB0` and 16 to 28 upper-case hex digits: what WhatsApp Web clients
/// send (20 to 32 characters).
fn is_whatsapp_shaped(id: &str) -> bool {
    id.starts_with("3EB0")
        && (20..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
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
    fn the_gateways_own_ids_go_on_the_wire_as_they_are() {
        // What `OutboundMessage::new_id` makes: receipts must name it.
        assert_eq!(
            wa_message_id("3EB0A1B2C3D4E5F60718"),
            "3EB0A1B2C3D4E5F60718"
        );
        // Lower case, too short or too long is not WhatsApp's shape.
        for odd in [
            "3EB0a1b2c3d4e5f60718",
            "3EB0A1B2",
            &format!("3EB0{}", "A".repeat(40)),
        ] {
            let wire = wa_message_id(odd);
            assert_ne!(wire, odd);
            assert!(is_whatsapp_shaped(&wire), "{wire}");
        }
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

#[cfg(test)]
#[path = "events_props.rs"]
mod props;
