//! The only door to WhatsApp. A [`Connector`] opens one [`Connection`] per
//! Session: a stream of [`ConnectorEvent`]s into the Session actor and a
//! [`ConnectionControl`] for commands. Implementations: the simulator and
//! the WhatsApp Web client (cargo feature `whatsapp-web`). Connector types
//! never leak past this module: the Session sees only these events.

pub mod simulator;
#[cfg(feature = "whatsapp-web")]
pub mod whatsapp;

use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::ids::SessionId;
use crate::messages::content::OutboundContent;

/// Opaque connector credentials (keys of a linked device). The Session
/// persists them through the `Store` and hands them back to `open`, so a
/// linked account reconnects without a new QR.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(pub Vec<u8>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material must never reach a log line.
        write!(f, "Credentials({} bytes)", self.0.len())
    }
}

/// A message received by a linked account.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub id: String,
    /// Who wrote it: a phone number when known, else the full JID.
    pub from: String,
    /// Where to answer: the sender's phone number for a direct chat, the
    /// group's JID (`…@g.us`) for a group.
    pub chat: String,
    pub is_group: bool,
    pub kind: MessageKind,
    /// The text, a media's caption or an edit's new text; empty otherwise.
    pub text: String,
    /// The message this one answers (a reply), when it quotes one.
    pub quoted_message_id: Option<String>,
    /// JIDs (or phone numbers) the message mentions.
    pub mentions: Vec<String>,
    pub timestamp_ms: u64,
}

/// What an incoming message is, as far as the gateway models it.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    Text,
    /// An image, video, audio, voice note, document or sticker, already
    /// kept by [`crate::incoming_media::IncomingMedia`] (the caption is
    /// the message's `text`).
    Media {
        kind: crate::messages::content::ContentKind,
        media: crate::incoming_media::MediaRef,
    },
    Location {
        lat: f64,
        lng: f64,
        name: Option<String>,
    },
    Contact {
        display_name: String,
        vcard: String,
    },
    /// A reaction to `target_id`; an empty emoji removes the sender's earlier one.
    Reaction {
        target_id: String,
        emoji: String,
    },
    /// `target_id` now says the message's `text`.
    Edit {
        target_id: String,
    },
    /// `target_id` was deleted for everyone.
    Revoke {
        target_id: String,
    },
    /// A kind the gateway does not model (poll, live location, media it
    /// could not download…), forwarded so Laravel knows something arrived.
    /// `original` names WhatsApp's type (`pollCreationMessage`, …).
    Unsupported {
        original: String,
    },
}

impl MessageKind {
    /// The item's `kind` as Laravel receives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Media { kind, .. } => kind.as_str(),
            MessageKind::Location { .. } => "location",
            MessageKind::Contact { .. } => "contact",
            MessageKind::Reaction { .. } => "reaction",
            MessageKind::Edit { .. } => "edit",
            MessageKind::Revoke { .. } => "revoke",
            MessageKind::Unsupported { .. } => "unsupported",
        }
    }
}

/// Delivery progress of a message this account sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    /// `delivered`, `read` or `played`, as WhatsApp reports it.
    pub status: String,
    pub timestamp_ms: u64,
}

/// What a connection reports, in the order it happened. A `Message` is
/// far larger than the rest since messages carry every kind; events move
/// once through a 32-slot channel, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorEvent {
    /// A QR code to scan, valid for `ttl`.
    Qr {
        code: String,
        ttl: Duration,
    },
    /// WhatsApp stopped issuing QR codes: nobody scanned in time.
    QrExhausted,
    /// A phone-number pairing code to type on the phone.
    PairCode {
        code: String,
    },
    /// The phone accepted the link; the client is logging in and syncing
    /// (the QR is spent, sends are not possible yet).
    Paired {
        jid: String,
    },
    /// Linked and online.
    Connected {
        jid: String,
    },
    /// The connection is being re-established after a transient drop.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    /// The link dropped; `transient` means the connector reconnects by itself.
    Disconnected {
        reason: String,
        transient: bool,
    },
    /// Credentials are dead (logged out from the phone, 401/403/406).
    LoggedOut {
        reason: String,
    },
    /// The connection ended for good though the credentials still work
    /// (another client took the account over, the client is outdated).
    Ended {
        reason: String,
    },
    /// The account is banned until `until_ms` (Unix ms), if known.
    Banned {
        until_ms: Option<u64>,
    },
    /// New or changed credentials to persist.
    CredentialsUpdated(Credentials),
    Message(IncomingMessage),
    Receipt(Receipt),
    /// The connection ended and will report nothing more.
    Closed {
        error: Option<String>,
    },
}

/// Why a connector command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("the session is not connected")]
    NotConnected,
    #[error("the session is already linked to a phone")]
    AlreadyLinked,
    #[error("the connection is closed")]
    Closed,
    /// Transient: the same message may go out on a later attempt.
    #[error("the connector failed: {0}")]
    Failed(String),
    /// Permanent: WhatsApp will not take this message however often it is
    /// sent (the recipient is not on WhatsApp, a nack such as 400/404/463/479);
    /// the reason says what a person can do about it.
    #[error("WhatsApp refused the message: {0}")]
    Rejected(String),
}

/// One message to send, as the `MessageQueue` hands it over: what it says
/// ([`OutboundContent`], the enum stored in the message log) and, for a
/// media kind, the bytes read back from the log's blob store.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// Digits, a user JID or a group JID (validated at intake).
    pub to: String,
    pub message_id: String,
    pub content: OutboundContent,
    pub quoted_message_id: Option<String>,
    /// JIDs or phone numbers mentioned.
    pub mentions: Vec<String>,
    /// Present exactly when `content.media()` is.
    pub media: Option<bytes::Bytes>,
}

/// What a chat shows about this account while it writes (WhatsApp's chat
/// state): `composing` (typing…), `recording` (recording audio…) or
/// `paused` (stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatState {
    Composing,
    Recording,
    Paused,
}

impl ChatState {
    pub const ALL: [ChatState; 3] = [Self::Composing, Self::Recording, Self::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Composing => "composing",
            Self::Recording => "recording",
            Self::Paused => "paused",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Something done in a chat that is not a message: shown at once, never
/// queued (a late "typing…" means nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAction {
    /// Show `state` to `to` (digits, a user JID or a group JID).
    Typing { to: String, state: ChatState },
    /// Mark messages of `chat` as read (blue ticks). In a group, `sender`
    /// is the author of the messages (WhatsApp wants it on the receipt).
    Read {
        chat: String,
        sender: Option<String>,
        message_ids: Vec<String>,
    },
}

/// Whether one phone number is on WhatsApp, as the contacts check answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberStatus {
    /// The number asked (digits).
    pub phone: String,
    /// `None`: WhatsApp did not say (timeout, an error for that number).
    pub on_whatsapp: Option<bool>,
    /// The account's JID when it is on WhatsApp.
    pub jid: Option<String>,
}

/// Commands to one open connection. Futures are local: they are awaited on
/// the Session's own arbiter.
pub trait ConnectionControl {
    /// Sends `message` under its `message_id`, which becomes WhatsApp's
    /// message id: a resend after a crash carries the same id, so WhatsApp
    /// (and the recipient's devices) see one message. Resolves to the id
    /// WhatsApp used.
    fn send(
        &self,
        message: OutgoingMessage,
    ) -> LocalBoxFuture<'static, Result<String, ConnectorError>>;
    /// Asks WhatsApp for a pairing code to link `phone` (digits with country
    /// code) by typing the code on the phone instead of scanning a QR.
    /// Resolves to the code; the connection also reports `PairCode`.
    fn request_pairing_code(
        &self,
        phone: &str,
    ) -> LocalBoxFuture<'static, Result<String, ConnectorError>>;
    /// Which of `phones` (digits) are on WhatsApp, in the order asked
    /// (batched and cached by the connector).
    fn check_numbers(
        &self,
        phones: Vec<String>,
    ) -> LocalBoxFuture<'static, Result<Vec<NumberStatus>, ConnectorError>>;
    /// Shows a chat state or sends read receipts, now.
    fn chat_action(
        &self,
        action: ChatAction,
    ) -> LocalBoxFuture<'static, Result<(), ConnectorError>>;
    /// Logs the device out; the connection then reports `LoggedOut`.
    fn logout(&self) -> LocalBoxFuture<'static, Result<(), ConnectorError>>;
    /// Ends the connection and its tasks; no events follow.
    fn close(&self);
}

/// One open connection.
pub struct Connection {
    pub events: mpsc::Receiver<ConnectorEvent>,
    pub control: Box<dyn ConnectionControl>,
}

/// A way to reach WhatsApp. Shared by all Sessions.
pub trait Connector: Send + Sync + 'static {
    /// `simulator` or `whatsapp-web`, as configured by `CONNECTOR`.
    fn kind(&self) -> &'static str;
    /// Opens a connection for `session`, resuming from `credentials` when the
    /// account was linked before. Called on the Session's arbiter thread, so
    /// an implementation may spawn local tasks there.
    fn open(&self, session: &SessionId, credentials: Option<Credentials>) -> Connection;
    /// Tasks alive on the connector's own runtime, if it has one (exported
    /// as a metric: it falls back to zero when no session is open).
    fn runtime_tasks(&self) -> Option<usize> {
        None
    }
    /// Incoming traffic the connector did not forward as chat messages (or
    /// forwarded as `unsupported`), by kind, counted since start.
    fn incoming_counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Resolves once every connection closed so far has flushed and let go
    /// of its keys, or `within` has passed (`false`). Called at shutdown,
    /// after the sessions were stopped.
    fn drain(&self, within: Duration) -> LocalBoxFuture<'static, bool> {
        let _ = within;
        Box::pin(async { true })
    }
}

/// Capacity of a connection's event channel: events are small and the
/// Session drains them at once; a full channel slows the connector down
/// instead of growing memory.
pub const EVENT_CHANNEL_CAPACITY: usize = 32;

/// How a connection's control talks to the task that runs the connection:
/// puts the command `make` builds around a reply channel on the task's line
/// now (so commands keep their order) and waits for the answer; a task that
/// is gone (its line or the reply dropped) is `Closed`. Used by both
/// connectors' [`ConnectionControl`]s.
pub(crate) fn ask<C, T: 'static>(
    line: &mpsc::UnboundedSender<C>,
    make: impl FnOnce(oneshot::Sender<Result<T, ConnectorError>>) -> C,
) -> LocalBoxFuture<'static, Result<T, ConnectorError>> {
    let (tx, rx) = oneshot::channel();
    let sent = line.send(make(tx)).is_ok();
    async move {
        if !sent {
            return Err(ConnectorError::Closed);
        }
        rx.await.unwrap_or(Err(ConnectorError::Closed))
    }
    .boxed_local()
}
