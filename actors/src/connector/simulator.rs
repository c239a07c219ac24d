//! The simulated WhatsApp: one device task per open connection, with
//! WhatsApp-like QR timing (first code lives `qr_first`, then one every
//! `qr_rotate`, `qr_count` in all, then exhausted), scans, transient
//! disconnects with reconnect, logouts, incoming messages and sends.
//! Opened by Session actors like any connector; driven from outside by the
//! HTTP `simulate/*` endpoints through [`Simulator::act`] — the phone's side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dashmap::DashMap;
use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use super::{
    Connection, ConnectionControl, Connector, ConnectorError, ConnectorEvent, Credentials,
    IncomingMessage, MessageKind, EVENT_CHANNEL_CAPACITY,
};
use crate::clock::unix_ms;
use crate::ids::SessionId;

/// Simulator timing and behaviour (`SIM_*` settings).
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Life of the first QR code (WhatsApp: ~60 s).
    pub qr_first: Duration,
    /// Life of each following code (WhatsApp: ~20 s).
    pub qr_rotate: Duration,
    /// Codes issued before giving up (WhatsApp: ~6).
    pub qr_count: u32,
    /// Pause between a transient disconnect and the reconnect.
    pub reconnect_delay: Duration,
    /// Simulated latency of a send.
    pub send_latency: Duration,
    /// The first this-many attempts of every message fail (`SIM_SEND_FAIL_FIRST`),
    /// to exercise retries and the dead letter deterministically.
    pub send_fail_first: u32,
    /// Share of the remaining attempts that fail at random (`SIM_SEND_FAIL_RATE`).
    pub send_fail_rate: f64,
}

/// What the phone side can do to a simulated session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimAction {
    /// The user scans the QR code on screen.
    Scan,
    /// The network drops; the device reconnects by itself.
    Disconnect { reason: String },
    /// The user removes the linked device from the phone.
    Logout,
    /// Someone writes to this account.
    Incoming { from: String, text: String },
}

/// Why a simulated action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("the session has no open simulated connection")]
    NoDevice,
    #[error("{0}")]
    NotApplicable(&'static str),
}

enum Command {
    Act(SimAction, oneshot::Sender<Result<(), SimError>>),
    Send {
        to: String,
        message_id: String,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    Logout(oneshot::Sender<Result<(), ConnectorError>>),
    PairCode(oneshot::Sender<Result<String, ConnectorError>>),
    Close,
}

/// A device's command line, tagged so a closing connection only unregisters itself.
struct DeviceLink {
    epoch: u64,
    commands: mpsc::UnboundedSender<Command>,
}

/// The simulated WhatsApp service shared by all sessions.
pub struct Simulator {
    config: SimulatorConfig,
    /// Open devices by session, so HTTP `simulate/*` calls reach the right one.
    devices: DashMap<SessionId, DeviceLink>,
    /// Distinguishes successive connections of one session.
    next_epoch: AtomicU64,
    /// QR codes issued so far (for tests and benchmarks).
    qr_issued: AtomicU64,
    /// Texts sent through the simulator.
    sent: AtomicU64,
    /// Send attempts per message id (failed ones included).
    attempts: DashMap<String, u32>,
    /// Successful sends per message id: WhatsApp's view of what arrived.
    delivered: DashMap<String, u32>,
    /// Where successful sends are also counted (`sim:sends` hash) so a test
    /// can check "sent once" across a crash of the gateway process.
    ledger: Option<crate::redis::RedisConn>,
}

/// Hash of successful simulated sends by message id, kept when Redis is
/// configured.
pub const SEND_LEDGER_KEY: &str = "sim:sends";

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            devices: DashMap::new(),
            next_epoch: AtomicU64::new(1),
            qr_issued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            attempts: DashMap::new(),
            delivered: DashMap::new(),
            ledger: None,
        })
    }

    /// Like [`Simulator::new`], also counting sends in Redis
    /// ([`SEND_LEDGER_KEY`]), where they outlive this process.
    pub fn with_ledger(config: SimulatorConfig, ledger: crate::redis::RedisConn) -> Arc<Self> {
        let mut sim = Arc::into_inner(Self::new(config)).expect("just created");
        sim.ledger = Some(ledger);
        Arc::new(sim)
    }

    /// Successful sends of one message id (more than 1 = a duplicate).
    pub fn deliveries(&self, message_id: &str) -> u32 {
        self.delivered.get(message_id).map_or(0, |n| *n)
    }

    /// Decides whether this attempt of `message_id` fails, and counts it.
    fn attempt_fails(&self, message_id: &str) -> Option<String> {
        let n = {
            let mut a = self.attempts.entry(message_id.to_owned()).or_insert(0);
            *a += 1;
            *a
        };
        if n <= self.config.send_fail_first {
            return Some(format!(
                "simulated send failure (attempt {n} of the first {} that fail)",
                self.config.send_fail_first
            ));
        }
        let rate = self.config.send_fail_rate;
        (rate > 0.0 && rand::rng().random::<f64>() < rate)
            .then(|| "simulated random send failure".to_owned())
    }

    /// Records a successful send where it survives a crash (when configured).
    async fn record_delivery(&self, message_id: &str) -> Result<(), ConnectorError> {
        if let Some(conn) = &self.ledger {
            let mut c = conn.clone();
            redis::cmd("HINCRBY")
                .arg(SEND_LEDGER_KEY)
                .arg(message_id)
                .arg(1)
                .query_async::<i64>(&mut c)
                .await
                .map_err(|e| ConnectorError::Failed(format!("WhatsApp unreachable: {e}")))?;
        }
        *self.delivered.entry(message_id.to_owned()).or_insert(0) += 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Performs a phone-side action on a session's open connection.
    pub async fn act(&self, session: &SessionId, action: SimAction) -> Result<(), SimError> {
        let (tx, rx) = oneshot::channel();
        {
            let link = self.devices.get(session).ok_or(SimError::NoDevice)?;
            link.commands
                .send(Command::Act(action, tx))
                .map_err(|_| SimError::NoDevice)?;
        }
        rx.await.map_err(|_| SimError::NoDevice)?
    }

    /// QR codes issued since start.
    pub fn qr_issued(&self) -> u64 {
        self.qr_issued.load(Ordering::Relaxed)
    }

    /// Texts sent since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Connector for Arc<Simulator> {
    fn kind(&self) -> &'static str {
        "simulator"
    }

    fn open(&self, session: &SessionId, credentials: Option<Credentials>) -> Connection {
        let (events_tx, events) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        self.devices.insert(
            session.clone(),
            DeviceLink {
                epoch,
                commands: commands_tx.clone(),
            },
        );
        let device = Device {
            sim: Arc::clone(self),
            session: session.clone(),
            epoch,
            events: events_tx,
            linked_jid: credentials
                .as_ref()
                .map(|c| jid_from_credentials(session, c)),
            online: false,
        };
        actix_rt::spawn(device.run(commands));
        Connection {
            events,
            control: Box::new(SimControl {
                commands: commands_tx,
                sim: Arc::clone(self),
                session: session.clone(),
                epoch,
            }),
        }
    }
}

struct SimControl {
    commands: mpsc::UnboundedSender<Command>,
    /// To unregister the device at once on close, so no phone-side action
    /// reaches a connection its Session has let go.
    sim: Arc<Simulator>,
    session: SessionId,
    epoch: u64,
}

impl ConnectionControl for SimControl {
    fn send_text(
        &self,
        to: &str,
        _text: &str,
        message_id: &str,
    ) -> futures_util::future::LocalBoxFuture<'static, Result<String, ConnectorError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Send {
            to: to.to_owned(),
            message_id: message_id.to_owned(),
            reply: tx,
        });
        async move {
            sent.map_err(|_| ConnectorError::Closed)?;
            rx.await.map_err(|_| ConnectorError::Closed)?
        }
        .boxed_local()
    }

    fn request_pairing_code(
        &self,
        _phone: &str,
    ) -> futures_util::future::LocalBoxFuture<'static, Result<String, ConnectorError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::PairCode(tx));
        async move {
            sent.map_err(|_| ConnectorError::Closed)?;
            rx.await.map_err(|_| ConnectorError::Closed)?
        }
        .boxed_local()
    }

    fn logout(&self) -> futures_util::future::LocalBoxFuture<'static, Result<(), ConnectorError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Logout(tx));
        async move {
            sent.map_err(|_| ConnectorError::Closed)?;
            rx.await.map_err(|_| ConnectorError::Closed)?
        }
        .boxed_local()
    }

    fn close(&self) {
        self.sim
            .devices
            .remove_if(&self.session, |_, link| link.epoch == self.epoch);
        // A closed device already dropped its receiver; nothing to do then.
        let _ = self.commands.send(Command::Close);
    }
}

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
struct Device {
    sim: Arc<Simulator>,
    session: SessionId,
    epoch: u64,
    events: mpsc::Sender<ConnectorEvent>,
    /// Set once linked (from stored credentials or a scan).
    linked_jid: Option<String>,
    /// Connected right now (false while reconnecting).
    online: bool,
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
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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
                    Some(Command::Send { to, message_id, reply }) => {
                        if !self.online {
                            let _ = reply.send(Err(ConnectorError::NotConnected));
                            continue;
                        }
                        if let Some(number) = not_on_whatsapp(&to) {
                            let refused = format!("{number} is not on WhatsApp");
                            let _ = reply.send(Err(ConnectorError::Rejected(refused)));
                            continue;
                        }
                        // The send runs beside the device loop, as on a
                        // real socket: sends of one session overlap.
                        let sim = Arc::clone(&self.sim);
                        actix_rt::spawn(async move {
                            tokio::time::sleep(sim.config.send_latency).await;
                            let result = match sim.attempt_fails(&message_id) {
                                Some(error) => Err(ConnectorError::Failed(error)),
                                None => sim.record_delivery(&message_id).await.map(|()| message_id),
                            };
                            let _ = reply.send(result);
                        });
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
            SimAction::Incoming { from, text } => {
                if !self.online {
                    return Err(SimError::NotApplicable("the session is not connected"));
                }
                self.emit(ConnectorEvent::Message(IncomingMessage {
                    id: message_id(),
                    // The simulator's messages are direct chats.
                    chat: from.clone(),
                    is_group: false,
                    kind: MessageKind::Text,
                    from,
                    text,
                    timestamp_ms: unix_ms(),
                }))
                .await;
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
fn jid_from_credentials(session: &SessionId, creds: &Credentials) -> String {
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
