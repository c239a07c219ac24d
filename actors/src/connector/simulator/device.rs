//! One simulated linked device: the task behind each open simulator
//! connection (QR rotation, scan, reconnect, logout, sends) and the
//! WhatsApp-shaped values it makes up. Started by [`Simulator`]'s
//! `open`; driven by its `Command`s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::Rng;
use tokio::sync::mpsc;

use super::control::Command;
use super::{SimAction, SimContent, SimError, SimIncoming, Simulator};
use crate::clock::unix_ms;
use crate::connector::{ConnectorError, ConnectorEvent, Credentials, IncomingMessage, MessageKind};
use crate::ids::SessionId;

/// The simulator's rule for numbers that are not on WhatsApp: those that
/// begin with `0`. No country code does, so no real number is refused.
/// A send to one (while connected) fails at once as `Rejected`, like the
/// real connector's `is_on_whatsapp` check, and never counts as an attempt
/// or a delivery of the simulated WhatsApp.
pub fn not_on_whatsapp(to: &str) -> Option<&str> {
    let number = to.strip_suffix("@s.whatsapp.net").unwrap_or(to);
    (number.starts_with('0') && number.bytes().all(|b| b.is_ascii_digit())).then_some(number)
}

/// One simulated linked-device connection.
pub(super) struct Device {
    pub(super) sim: Arc<Simulator>,
    pub(super) session: SessionId,
    pub(super) epoch: u64,
    pub(super) events: mpsc::Sender<ConnectorEvent>,
    /// Set once linked (from stored credentials or a scan).
    pub(super) linked_jid: Option<String>,
    /// Connected right now (false while reconnecting).
    pub(super) online: bool,
}

/// What the device waits for next when no command arrives.
enum Timer {
    /// Issue QR number `n` (0-based) at the deadline.
    Qr(u32),
    /// Reconnect after a transient drop.
    Reconnect,
    Idle,
}

impl Device {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut timer = match self.linked_jid.clone() {
            Some(jid) => {
                self.online = true;
                self.emit(ConnectorEvent::Connected { jid }).await;
                Timer::Idle
            }
            None => Timer::Qr(0),
        };
        let mut deadline = tokio::time::Instant::now();
        // The code on screen, if any (only it can be scanned).
        let mut live_qr = false;
        loop {
            let sleep = async {
                match timer {
                    Timer::Idle => std::future::pending::<()>().await,
                    _ => tokio::time::sleep_until(deadline).await,
                }
            };
            tokio::select! {
                _ = sleep => match timer {
                    Timer::Qr(n) if n >= self.sim.config.qr_count => {
                        self.emit(ConnectorEvent::QrExhausted).await;
                        break;
                    }
                    Timer::Qr(n) => {
                        let ttl = if n == 0 { self.sim.config.qr_first } else { self.sim.config.qr_rotate };
                        self.sim.qr_issued.fetch_add(1, Ordering::Relaxed);
                        live_qr = true;
                        self.emit(ConnectorEvent::Qr { code: whatsapp_like_qr(), ttl }).await;
                        deadline = tokio::time::Instant::now() + ttl;
                        timer = Timer::Qr(n + 1);
                    }
                    Timer::Reconnect => {
                        self.emit(ConnectorEvent::Reconnecting { attempt: 1, delay: Duration::ZERO }).await;
                        self.online = true;
                        let jid = self.linked_jid.clone().unwrap_or_default();
                        self.emit(ConnectorEvent::Connected { jid }).await;
                        timer = Timer::Idle;
                    }
                    Timer::Idle => {}
                },
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => break,
                    Some(Command::Act(action, reply)) => {
                        let result = self.act(action, &mut live_qr, &mut timer, &mut deadline).await;
                        let done = matches!(result, Ok(true));
                        let _ = reply.send(result.map(|_| ()));
                        if done { break; }
                    }
                    Some(Command::Send { message, reply }) => {
                        if !self.online {
                            let _ = reply.send(Err(ConnectorError::NotConnected));
                            continue;
                        }
                        if let Some(number) = self.sim.refuses_number(&message.to) {
                            let refused = format!("{number} is not on WhatsApp");
                            let _ = reply.send(Err(ConnectorError::Rejected(refused)));
                            continue;
                        }
                        if let Some(refused) = self.sim.refusal(&self.session, &message) {
                            let _ = reply.send(Err(ConnectorError::Rejected(refused)));
                            continue;
                        }
                        // The send runs beside the device loop, as on a
                        // real socket: sends of one session overlap.
                        let sim = Arc::clone(&self.sim);
                        let session = self.session.clone();
                        actix_rt::spawn(async move {
                            tokio::time::sleep(sim.config.send_latency).await;
                            let result = match sim.attempt_fails(&message.message_id) {
                                Some(error) => Err(ConnectorError::Failed(error)),
                                None => sim.record_delivery(&session, *message).await,
                            };
                            let _ = reply.send(result);
                        });
                    }
                    Some(Command::Check { phones, reply }) => {
                        let answer = if self.online {
                            Ok(self.sim.check(phones))
                        } else {
                            Err(ConnectorError::NotConnected)
                        };
                        let _ = reply.send(answer);
                    }
                    Some(Command::Chat { action, reply }) => {
                        if !self.online {
                            let _ = reply.send(Err(ConnectorError::NotConnected));
                            continue;
                        }
                        self.sim.record_chat_action(&self.session, action);
                        let _ = reply.send(Ok(()));
                    }
                    Some(Command::PairCode(reply)) => {
                        if self.linked_jid.is_some() {
                            let _ = reply.send(Err(ConnectorError::AlreadyLinked));
                            continue;
                        }
                        // The code stands in for the QR: typing it on the
                        // phone (`simulate/scan`) links the device.
                        let code = pairing_code();
                        live_qr = true;
                        timer = Timer::Idle;
                        let _ = reply.send(Ok(code.clone()));
                        self.emit(ConnectorEvent::PairCode { code }).await;
                    }
                    Some(Command::Logout(reply)) => {
                        if self.linked_jid.is_none() {
                            let _ = reply.send(Err(ConnectorError::NotConnected));
                            continue;
                        }
                        let _ = reply.send(Ok(()));
                        self.emit(ConnectorEvent::LoggedOut { reason: "logged out by the gateway".into() }).await;
                        break;
                    }
                },
            }
            if self.events.is_closed() {
                break;
            }
        }
        self.sim
            .devices
            .remove_if(&self.session, |_, link| link.epoch == self.epoch);
    }

    /// Applies a phone-side action; `Ok(true)` means the connection ended.
    async fn act(
        &mut self,
        action: SimAction,
        live_qr: &mut bool,
        timer: &mut Timer,
        deadline: &mut tokio::time::Instant,
    ) -> Result<bool, SimError> {
        match action {
            SimAction::Scan => {
                if !*live_qr {
                    return Err(SimError::NotApplicable("no QR code is on screen to scan"));
                }
                *live_qr = false;
                let secret: [u8; 32] = rand::rng().random();
                let creds = Credentials(secret.to_vec());
                let jid = jid_from_credentials(&self.session, &creds);
                self.linked_jid = Some(jid.clone());
                self.online = true;
                *timer = Timer::Idle;
                self.emit(ConnectorEvent::CredentialsUpdated(creds)).await;
                self.emit(ConnectorEvent::Connected { jid }).await;
                Ok(false)
            }
            SimAction::Disconnect { reason } => {
                if !self.online {
                    return Err(SimError::NotApplicable("the session is not connected"));
                }
                self.online = false;
                self.emit(ConnectorEvent::Disconnected {
                    reason,
                    transient: true,
                })
                .await;
                *timer = Timer::Reconnect;
                *deadline = tokio::time::Instant::now() + self.sim.config.reconnect_delay;
                Ok(false)
            }
            SimAction::Logout => {
                if self.linked_jid.is_none() {
                    return Err(SimError::NotApplicable("the session is not linked"));
                }
                self.emit(ConnectorEvent::LoggedOut {
                    reason: "logged out from the phone".into(),
                })
                .await;
                Ok(true)
            }
            SimAction::Incoming(incoming) => {
                if !self.online {
                    return Err(SimError::NotApplicable("the session is not connected"));
                }
                let SimIncoming {
                    from,
                    text,
                    content,
                    quoted_message_id,
                    mentions,
                } = *incoming;
                let id = message_id();
                let now = unix_ms();
                let kind = match content {
                    SimContent::Plain(kind) => kind,
                    // Kept before the journal: no item names lost bytes.
                    SimContent::Media(media) => {
                        let kind = media.kind;
                        let media = self
                            .sim
                            .media
                            .keep(&self.session, &id, media, now)
                            .await
                            .map_err(SimError::Media)?;
                        MessageKind::Media { kind, media }
                    }
                };
                let message = IncomingMessage {
                    id,
                    // The simulator's messages are direct chats.
                    chat: from.clone(),
                    is_group: false,
                    kind,
                    from,
                    text,
                    quoted_message_id,
                    mentions,
                    timestamp_ms: now,
                };
                // Journaled before the phone side hears "arrived", like the
                // real client's ack: once `simulate/incoming` answers, a
                // kill -9 cannot lose the message.
                self.sim
                    .journal
                    .hold_message(&self.session, &message)
                    .await
                    .map_err(SimError::Journal)?;
                self.emit(ConnectorEvent::Message(message)).await;
                Ok(false)
            }
        }
    }

    async fn emit(&self, event: ConnectorEvent) {
        // A send error means the Session closed the connection; the run loop
        // notices `is_closed` and ends.
        let _ = self.events.send(event).await;
    }
}

/// A QR payload shaped like WhatsApp's: `ref,noiseKey,identityKey,advSecret`.
pub fn whatsapp_like_qr() -> String {
    let mut rng = rand::rng();
    let reference: [u8; 30] = rng.random();
    let noise: [u8; 32] = rng.random();
    let identity: [u8; 32] = rng.random();
    let adv: [u8; 32] = rng.random();
    format!(
        "2@{},{},{},{}",
        B64.encode(reference),
        B64.encode(noise),
        B64.encode(identity),
        B64.encode(adv)
    )
}

/// A pairing code shaped like WhatsApp's: 8 characters from its alphabet
/// (no 0, O, 1, I), shown as `ABCD-EFGH`.
pub fn pairing_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTVWXYZ23456789";
    let mut rng = rand::rng();
    let c: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &c[..4], &c[4..])
}

fn message_id() -> String {
    let id: [u8; 10] = rand::rng().random();
    format!("3EB0{}", hex::encode_upper(id))
}

/// A stable fake phone JID derived from the session and its credentials.
pub(super) fn jid_from_credentials(session: &SessionId, creds: &Credentials) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    session.hash(&mut h);
    creds.0.hash(&mut h);
    format!(
        "{}@s.whatsapp.net",
        10_000_000_000u64 + h.finish() % 90_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_looks_like_whatsapps() {
        let qr = whatsapp_like_qr();
        let parts: Vec<&str> = qr.split(',').collect();
        assert_eq!(parts.len(), 4);
        assert!(parts[0].starts_with("2@"));
        for p in &parts[1..] {
            assert_eq!(B64.decode(p).expect("base64").len(), 32);
        }
        assert_ne!(qr, whatsapp_like_qr(), "codes are random");
    }

    #[test]
    fn numbers_beginning_with_zero_are_not_on_whatsapp() {
        assert_eq!(not_on_whatsapp("0015550001"), Some("0015550001"));
        assert_eq!(
            not_on_whatsapp("0015550001@s.whatsapp.net"),
            Some("0015550001")
        );
        assert_eq!(not_on_whatsapp("5511999999999"), None);
        assert_eq!(not_on_whatsapp("0120363000000000000@g.us"), None);
    }
}
