//! The simulated WhatsApp: one device task per open connection, with
//! WhatsApp-like QR timing (first code lives `qr_first`, then one every
//! `qr_rotate`, `qr_count` in all, then exhausted), scans, transient
//! disconnects with reconnect, logouts, incoming messages and sends.
//! Opened by Session actors like any connector; driven from outside by the
//! HTTP `simulate/*` endpoints through [`Simulator::act`] — the phone's side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use super::{
    ChatAction, Connection, Connector, ConnectorError, Credentials, NumberStatus, OutgoingMessage,
    EVENT_CHANNEL_CAPACITY,
};
use crate::connector::MessageKind;
use crate::ids::SessionId;
use crate::incoming_media::{IncomingMedia, NewMedia};

mod control;
mod device;
mod history;

use self::control::{Command, DeviceLink, SimControl};
use self::device::{jid_from_credentials, Device};
pub use self::device::{not_on_whatsapp, pairing_code, whatsapp_like_qr};
use self::history::History;

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
    /// Numbers (digits) that are not on WhatsApp besides those beginning
    /// with `0` (`SIM_NOT_ON_WHATSAPP`, comma-separated): sends to them are
    /// refused and the contacts check says so.
    pub not_on_whatsapp: Vec<String>,
}

/// What someone sends to a simulated account (`simulate/incoming`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimIncoming {
    pub from: String,
    /// The text, a media's caption or an edit's new text.
    pub text: String,
    pub content: SimContent,
    pub quoted_message_id: Option<String>,
    pub mentions: Vec<String>,
}

/// The kind of a simulated incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum SimContent {
    /// Any kind without bytes (text, location, reaction, …).
    Plain(MessageKind),
    /// Media bytes, kept like the real client's downloads before the
    /// message is journaled.
    Media(NewMedia),
}

/// What the phone side can do to a simulated session.
#[derive(Debug, Clone, PartialEq)]
pub enum SimAction {
    /// The user scans the QR code on screen.
    Scan,
    /// The network drops; the device reconnects by itself.
    Disconnect { reason: String },
    /// The user removes the linked device from the phone.
    Logout,
    /// Someone writes to this account (boxed: far larger than the rest).
    Incoming(Box<SimIncoming>),
}

/// Why a simulated action was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    #[error("the session has no open simulated connection")]
    NoDevice,
    #[error("{0}")]
    NotApplicable(&'static str),
    /// An incoming message could not be journaled, so it was not delivered.
    #[error("cannot journal the incoming message")]
    Journal(#[source] crate::journal::JournalError),
    /// The media of an incoming message could not be kept, so the message
    /// was not delivered.
    #[error("cannot keep the incoming media")]
    Media(#[source] crate::incoming_media::MediaStoreError),
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
    /// Messages sent through the simulator.
    sent: AtomicU64,
    /// Attempts, deliveries and what each recent message said, by message
    /// id: WhatsApp's view of what arrived (bounded, [`history`]).
    history: Mutex<History>,
    /// Chat states shown and read receipts sent, in order, by any session:
    /// what a contact would see (tests read it through [`Simulator::chat_actions`]).
    chat_actions: Mutex<Vec<SimChatAction>>,
    /// Where successful sends are also counted (`sim:sends` hash) so a test
    /// can check "sent once" across a crash of the gateway process.
    ledger: Option<crate::redis::RedisConn>,
    /// Incoming messages are journaled here before `simulate/incoming`
    /// answers (the real client's ack).
    journal: crate::journal::Journal,
    /// Incoming media is kept here before its message is journaled.
    media: IncomingMedia,
}

/// A message the simulated WhatsApp delivered, as its recipient sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSent {
    /// The session that sent it.
    pub session: SessionId,
    pub to: String,
    pub content: crate::messages::content::OutboundContent,
    pub quoted_message_id: Option<String>,
    pub mentions: Vec<String>,
    /// Length and hex SHA-256 of the media bytes received.
    pub media: Option<(u64, String)>,
}

/// A chat action the simulated WhatsApp carried out, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct SimChatAction {
    pub session: SessionId,
    pub action: ChatAction,
    pub at: Instant,
}

/// Hash of successful simulated sends by message id, kept when Redis is
/// configured.
pub const SEND_LEDGER_KEY: &str = "sim:sends";

/// Chat actions kept for tests; beyond it the older half is dropped.
const MAX_CHAT_ACTIONS: usize = 10_000;

impl Simulator {
    pub fn new(
        config: SimulatorConfig,
        journal: crate::journal::Journal,
        media: IncomingMedia,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            devices: DashMap::new(),
            next_epoch: AtomicU64::new(1),
            qr_issued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            history: Mutex::new(History::default()),
            chat_actions: Mutex::new(Vec::new()),
            ledger: None,
            journal,
            media,
        })
    }

    /// Like [`Simulator::new`], also counting sends in Redis
    /// ([`SEND_LEDGER_KEY`]), where they outlive this process.
    pub fn with_ledger(
        config: SimulatorConfig,
        ledger: crate::redis::RedisConn,
        journal: crate::journal::Journal,
        media: IncomingMedia,
    ) -> Arc<Self> {
        let mut sim = Arc::into_inner(Self::new(config, journal, media)).expect("just created");
        sim.ledger = Some(ledger);
        Arc::new(sim)
    }

    /// What message `message_id` said when it was delivered.
    pub fn sent_message(&self, message_id: &str) -> Option<SimSent> {
        self.history().sent(message_id).map(|(s, _)| s.clone())
    }

    /// When message `message_id` was (last) delivered.
    pub fn delivered_at(&self, message_id: &str) -> Option<Instant> {
        self.history().sent(message_id).map(|(_, at)| *at)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The chat actions `session` carried out so far, oldest first.
    pub fn chat_actions(&self, session: &SessionId) -> Vec<SimChatAction> {
        self.chat_actions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|a| &a.session == session)
            .cloned()
            .collect()
    }

    fn record_chat_action(&self, session: &SessionId, action: ChatAction) {
        let mut actions = self
            .chat_actions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Bounded: a long load test must not grow it without end.
        if actions.len() >= MAX_CHAT_ACTIONS {
            actions.drain(..MAX_CHAT_ACTIONS / 2);
        }
        actions.push(SimChatAction {
            session: session.clone(),
            action,
            at: Instant::now(),
        });
    }

    /// Whether `number` (digits or a user JID) is on the simulated
    /// WhatsApp: not if it begins with `0` ([`not_on_whatsapp`]) or is
    /// listed in `SIM_NOT_ON_WHATSAPP`.
    pub fn refuses_number<'a>(&self, to: &'a str) -> Option<&'a str> {
        not_on_whatsapp(to).or_else(|| {
            let number = to.strip_suffix("@s.whatsapp.net").unwrap_or(to);
            self.config
                .not_on_whatsapp
                .iter()
                .any(|n| n == number)
                .then_some(number)
        })
    }

    /// The contacts check's answer for `phones` (digits).
    fn check(&self, phones: Vec<String>) -> Vec<NumberStatus> {
        phones
            .into_iter()
            .map(|phone| {
                let on = self.refuses_number(&phone).is_none();
                NumberStatus {
                    jid: on.then(|| format!("{phone}@s.whatsapp.net")),
                    on_whatsapp: Some(on),
                    phone,
                }
            })
            .collect()
    }

    /// Successful sends of one message id (more than 1 = a duplicate).
    pub fn deliveries(&self, message_id: &str) -> u32 {
        self.history().deliveries(message_id)
    }

    /// Decides whether this attempt of `message_id` fails, and counts it.
    fn attempt_fails(&self, message_id: &str) -> Option<String> {
        let n = self.history().attempt(message_id);
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

    /// Refuses what WhatsApp would refuse whatever the attempt: an edit or
    /// a revoke of a message this session never sent, media whose bytes
    /// are missing.
    fn refusal(&self, session: &SessionId, m: &OutgoingMessage) -> Option<String> {
        use crate::messages::content::OutboundContent::{Edit, Revoke};
        if let Edit { message_id, .. } | Revoke { message_id } = &m.content {
            let ours = self
                .history()
                .sent(message_id)
                .is_some_and(|(s, _)| &s.session == session);
            if !ours {
                return Some(format!(
                    "message {message_id} was not sent by this account; only its own messages can be edited or revoked"
                ));
            }
        }
        (m.content.media().is_some() != m.media.is_some())
            .then(|| "the media bytes are missing".to_owned())
    }

    /// Records a successful send where it survives a crash (when configured).
    async fn record_delivery(
        &self,
        session: &SessionId,
        m: OutgoingMessage,
    ) -> Result<String, ConnectorError> {
        let message_id = m.message_id.as_str();
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
        self.sent.fetch_add(1, Ordering::Relaxed);
        let media = m.media.as_ref().map(|b| {
            use sha2::{Digest, Sha256};
            (b.len() as u64, hex::encode(Sha256::digest(b)))
        });
        let sent = SimSent {
            session: session.clone(),
            to: m.to,
            content: m.content,
            quoted_message_id: m.quoted_message_id,
            mentions: m.mentions,
            media,
        };
        self.history()
            .delivered(&m.message_id, sent, Instant::now());
        Ok(m.message_id)
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

    /// Messages sent since start.
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
