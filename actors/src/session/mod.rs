//! The `Session` actor: one per WhatsApp account, started on one of the
//! session arbiters by the `SessionRegistry`. It opens a connection through
//! the `Connector`, runs connector events through the [`machine`], and
//! carries out the effects: snapshot updates in the [`index`], QR and status
//! updates to the batchers, credentials to the `Store`, incoming messages to
//! the `InboundBatcher`; state changes go out through the [`publisher`]. It
//! reports how it ended ([`SessionExited`]) to whoever supervises it, through
//! a recipient (it never names the registry), including when it panicked (a
//! stop without a recorded reason).

pub mod index;
pub mod machine;
pub mod publisher;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

use self::index::{QrSnapshot, SessionShared};
use self::machine::{Effect, Exit, Machine};
use self::publisher::{Audience, StatePublisher};
use crate::batch::inbound::{InboundBatcher, RecordInbound};
use crate::batch::qr::{ClearQr, PublishQr, QrBatcher};
use crate::clock::unix_ms;
use crate::connector::{
    ChatAction, ConnectionControl, Connector, ConnectorError, ConnectorEvent, Credentials,
    NumberStatus, OutgoingMessage,
};
use crate::error_chain::Chain;
use crate::events::EventKind;
use crate::ids::SessionId;
use crate::laravel::payload::{delivery_rank, InboundItem};
use crate::mailbox::{MeteredAddr, MeteredRecipient};
use crate::store::{CacheWrite, Store};

/// How long a logout may take before the session stops anyway.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a Session talks to; one shared copy for all sessions, built
/// by whoever supervises them.
pub struct SessionDeps {
    pub connector: Arc<dyn Connector>,
    pub store: Arc<dyn Store>,
    pub qr: MeteredAddr<QrBatcher>,
    pub inbound: MeteredAddr<InboundBatcher>,
    pub publisher: StatePublisher,
    /// Where exit reports go (the registry's mailbox).
    pub exits: MeteredRecipient<SessionExited>,
}

/// A Session actor ended (sent by the Session itself to its supervisor).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionExited {
    pub id: SessionId,
    /// The supervisor's generation for the actor that ended.
    pub generation: u64,
    pub exit: Exit,
}

/// Log the device out at WhatsApp; the session ends `logged_out`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ConnectorError>")]
pub struct Logout;

/// Why a session's actor is being stopped; decides what Laravel hears and
/// whether the device is unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// `POST /stop`: kept, Laravel hears `stopped`.
    Stopped,
    /// `DELETE`: Laravel hears `stopped`; logged out, credentials deleted.
    Deleted,
    /// Never linked and idle past `SESSION_IDLE_TTL`: Laravel hears `stopped`.
    IdleTtl,
    /// A new actor replaces this one at once (restart): nothing announced.
    Restart,
    /// Past `SESSION_MAX_LIFETIME`: reconnected with keys kept, nothing announced.
    MaxLifetime,
    /// Graceful gateway shutdown: nothing announced, comes back on restore.
    Shutdown,
}

impl StopCause {
    /// The reason recorded in the snapshot (and sent to Laravel).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Deleted => "deleted",
            Self::IdleTtl => "idle_ttl",
            Self::Restart => "restart",
            Self::MaxLifetime => "max_lifetime",
            Self::Shutdown => "shutdown",
        }
    }

    /// Laravel hears the session end.
    pub fn announces(self) -> bool {
        matches!(self, Self::Stopped | Self::Deleted | Self::IdleTtl)
    }

    /// The device is unlinked and its credentials deleted.
    pub fn forgets(self) -> bool {
        self == Self::Deleted
    }
}

/// Stop this actor for `cause`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub cause: StopCause,
}

/// Send a message through the open connection (from the `MessageQueue`).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ConnectorError>")]
pub struct SendMessage {
    pub message: OutgoingMessage,
}

/// Ask for a phone-number pairing code (link without scanning a QR).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ConnectorError>")]
pub struct RequestPairingCode {
    pub phone: String,
}

/// Ask WhatsApp which of `phones` (digits) are on it (contacts check).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NumberStatus>, ConnectorError>")]
pub struct CheckNumbers {
    pub phones: Vec<String>,
}

/// Show a chat state or send read receipts through the open connection
/// (HTTP, and the `MessageQueue` for humane sends).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ConnectorError>")]
pub struct PerformChatAction {
    pub action: ChatAction,
}

/// Fault injection (simulator only): panic inside the handler.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crash;

pub struct Session {
    id: SessionId,
    deps: Arc<SessionDeps>,
    /// Counters that outlive this actor (seq, activity, mailbox depth).
    shared: Arc<SessionShared>,
    /// The registry's generation for this actor, so late exit reports of a
    /// replaced actor are ignored.
    generation: u64,
    machine: Machine,
    /// Commands to the open connection; `None` before open and after close.
    connection: Option<Box<dyn ConnectionControl>>,
    /// Why the actor is stopping, reported from `stopped`.
    exit: Option<Exit>,
    /// Set once the exit was reported; `Drop` reports a crash otherwise.
    reported: bool,
}

impl Session {
    pub fn new(
        id: SessionId,
        deps: Arc<SessionDeps>,
        shared: Arc<SessionShared>,
        generation: u64,
    ) -> Self {
        Self {
            id,
            deps,
            shared,
            generation,
            machine: Machine::new(),
            connection: None,
            exit: None,
            reported: false,
        }
    }

    fn open(&mut self, credentials: Option<Credentials>, ctx: &mut Context<Self>) {
        let connection = self.deps.connector.open(&self.id, credentials);
        self.connection = Some(connection.control);
        ctx.add_stream(ReceiverStream::new(connection.events));
    }

    fn close_connection(&mut self) {
        if let Some(c) = self.connection.take() {
            c.close();
        }
    }

    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        // Close before publishing a final state, so nobody who sees it can
        // still reach the connection.
        if effects.iter().any(|e| matches!(e, Effect::Finish(_))) {
            self.close_connection();
        }
        for effect in effects {
            self.apply_one(effect, ctx);
        }
    }

    fn apply_one(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        let deps = &self.deps;
        let id = &self.id;
        match effect {
            Effect::Enter { state, reason } => {
                deps.publisher
                    .enter(id, &self.shared, state, reason, Audience::Laravel);
            }
            Effect::ShowQr { code, ttl } => {
                let now = unix_ms();
                let expires_at = now + ttl.as_millis() as u64;
                deps.publisher.index().update(id, |s| {
                    s.qr = Some(QrSnapshot {
                        code: Arc::clone(&code),
                        expires_at_ms: expires_at,
                    })
                });
                deps.publisher.cache(
                    id,
                    CacheWrite::Qr {
                        qr: code.to_string(),
                        timestamp: now,
                    },
                );
                deps.publisher.events().publish(
                    EventKind::Qr,
                    id,
                    &serde_json::json!({ "qr": &*code, "expiresAt": expires_at }),
                );
                deps.qr.do_send(PublishQr {
                    session_id: id.clone(),
                    code,
                    timestamp: now,
                    expires_at,
                    seq: self.shared.next_seq(),
                });
            }
            Effect::HideQr => {
                deps.publisher.index().update(id, |s| s.qr = None);
                deps.publisher.cache(id, CacheWrite::ClearQr);
                deps.qr.do_send(ClearQr {
                    session_id: id.clone(),
                });
            }
            Effect::Linked { jid } => deps.publisher.index().update(id, |s| {
                s.jid = Some(jid);
                s.pair_code = None;
            }),
            Effect::PairCode { code } => deps
                .publisher
                .index()
                .update(id, |s| s.pair_code = Some(code)),
            Effect::SaveCredentials(creds) => {
                self.shared.set_linked(true);
                let (store, id) = (Arc::clone(&deps.store), id.clone());
                // Detached: a store write must finish even if the actor stops.
                actix_rt::spawn(async move {
                    if let Err(e) = store.save_credentials(&id, &creds).await {
                        tracing::error!(session = %id, error = %Chain(&e), "cannot save credentials");
                    }
                });
            }
            Effect::DeleteCredentials => self.forget_credentials(),
            Effect::Message(m) => {
                let item = InboundItem::incoming(id, m);
                deps.publisher
                    .events()
                    .publish(EventKind::Message, id, &item);
                deps.inbound.do_send(RecordInbound { item });
            }
            Effect::Receipt(r) => {
                let item = InboundItem::Receipt {
                    session_id: id.clone(),
                    message_id: r.message_id,
                    rank: delivery_rank(&r.status),
                    status: r.status,
                    timestamp: r.timestamp_ms,
                };
                deps.publisher
                    .events()
                    .publish(EventKind::Receipt, id, &item);
                deps.inbound.do_send(RecordInbound { item });
            }
            Effect::Finish(exit) => {
                self.exit = Some(exit);
                self.close_connection();
                ctx.stop();
            }
        }
    }

    fn forget_credentials(&self) {
        self.shared.set_linked(false);
        let (store, id) = (Arc::clone(&self.deps.store), self.id.clone());
        actix_rt::spawn(async move {
            if let Err(e) = store.delete_credentials(&id).await {
                tracing::error!(session = %id, error = %Chain(&e), "cannot delete credentials");
            }
        });
    }

    fn report(&mut self, exit: Exit) {
        self.reported = true;
        self.deps.exits.do_send(SessionExited {
            id: self.id.clone(),
            generation: self.generation,
            exit,
        });
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shared.touch();
        let effects = self.machine.start();
        self.apply(effects, ctx);
        let (store, id) = (Arc::clone(&self.deps.store), self.id.clone());
        ctx.wait(
            async move { store.load_credentials(&id).await }
                .into_actor(self)
                .map(|loaded, act, ctx| {
                    let creds = loaded.unwrap_or_else(|e| {
                        tracing::error!(session = %act.id, error = %Chain(&e), "cannot load credentials; starting unlinked");
                        None
                    });
                    act.shared.set_linked(creds.is_some());
                    act.open(creds, ctx);
                }),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.close_connection();
        // Every deliberate stop records why first. None means the actor's
        // task died under us: actix stops (and calls this) when it drops the
        // context of an actor whose handler panicked.
        let exit = self.exit.take().unwrap_or_else(|| {
            tracing::error!(session = %self.id, "session actor crashed");
            Exit::Crashed
        });
        self.report(exit);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.reported {
            // Dropped without `stopped` (a panic inside `stopped` itself).
            self.close_connection();
            tracing::error!(session = %self.id, "session actor crashed while stopping");
            self.report(Exit::Crashed);
        }
    }
}

crate::metered_actor!(
    Session: Logout,
    Shutdown,
    SendMessage,
    RequestPairingCode,
    CheckNumbers,
    PerformChatAction,
    Crash,
);

impl StreamHandler<ConnectorEvent> for Session {
    fn handle(&mut self, event: ConnectorEvent, ctx: &mut Self::Context) {
        self.shared.touch();
        let effects = self.machine.on_event(event);
        self.apply(effects, ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The connector dropped its end without `Closed`: same meaning.
        if self.exit.is_none() && !self.machine.state().is_terminal() {
            let effects = self
                .machine
                .on_event(ConnectorEvent::Closed { error: None });
            self.apply(effects, ctx);
        }
    }
}

impl Handler<Logout> for Session {
    type Result = ResponseFuture<Result<(), ConnectorError>>;

    fn handle(&mut self, _: Logout, _: &mut Self::Context) -> Self::Result {
        self.shared.touch();
        match &self.connection {
            Some(c) => {
                let fut = c.logout();
                Box::pin(async move {
                    tokio::time::timeout(LOGOUT_TIMEOUT, fut)
                        .await
                        .unwrap_or_else(|_| Err(ConnectorError::Failed("logout timed out".into())))
                })
            }
            None => Box::pin(async { Err(ConnectorError::NotConnected) }),
        }
    }
}

impl Handler<SendMessage> for Session {
    type Result = ResponseFuture<Result<String, ConnectorError>>;

    fn handle(&mut self, msg: SendMessage, _: &mut Self::Context) -> Self::Result {
        self.shared.touch();
        if self.machine.state() != machine::SessionState::Connected {
            return Box::pin(async { Err(ConnectorError::NotConnected) });
        }
        match &self.connection {
            Some(c) => c.send(msg.message),
            None => Box::pin(async { Err(ConnectorError::NotConnected) }),
        }
    }
}

impl Handler<RequestPairingCode> for Session {
    type Result = ResponseFuture<Result<String, ConnectorError>>;

    fn handle(&mut self, msg: RequestPairingCode, _: &mut Self::Context) -> Self::Result {
        self.shared.touch();
        use machine::SessionState::{Qr, Starting};
        if !matches!(self.machine.state(), Qr | Starting) {
            return Box::pin(async { Err(ConnectorError::AlreadyLinked) });
        }
        match &self.connection {
            Some(c) => c.request_pairing_code(&msg.phone),
            None => Box::pin(async { Err(ConnectorError::NotConnected) }),
        }
    }
}

impl Session {
    /// The open connection, if the session is connected (commands other
    /// than linking need a connected session).
    fn connected(&self) -> Result<&dyn ConnectionControl, ConnectorError> {
        if self.machine.state() != machine::SessionState::Connected {
            return Err(ConnectorError::NotConnected);
        }
        self.connection
            .as_deref()
            .ok_or(ConnectorError::NotConnected)
    }
}

impl Handler<CheckNumbers> for Session {
    type Result = ResponseFuture<Result<Vec<NumberStatus>, ConnectorError>>;

    fn handle(&mut self, msg: CheckNumbers, _: &mut Self::Context) -> Self::Result {
        self.shared.touch();
        match self.connected() {
            Ok(c) => c.check_numbers(msg.phones),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<PerformChatAction> for Session {
    type Result = ResponseFuture<Result<(), ConnectorError>>;

    fn handle(&mut self, msg: PerformChatAction, _: &mut Self::Context) -> Self::Result {
        self.shared.touch();
        match self.connected() {
            Ok(c) => c.chat_action(msg.action),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<Shutdown> for Session {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        if msg.cause.forgets() {
            if let Some(c) = &self.connection {
                // Best effort: unlink the device at WhatsApp too.
                let logout = c.logout();
                actix_rt::spawn(async move {
                    let _ = tokio::time::timeout(LOGOUT_TIMEOUT, logout).await;
                });
            }
            self.forget_credentials();
        }
        let effects = self.machine.stop(msg.cause.reason(), msg.cause.announces());
        self.apply(effects, ctx);
    }
}

impl Handler<Crash> for Session {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("simulated crash of session {}", self.id);
    }
}
