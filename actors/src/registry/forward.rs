//! Requests the registry passes on to one session's actor without deciding
//! anything: a send (from the `MessageQueue`), a pairing code, a number
//! check, a chat action, and the crash of fault injection. Each answers
//! `NotFound` for a session the table does not know and `NotRunning` for
//! one without a live actor. Called through [`super::RegistryHandle`].

use actix::prelude::*;

use super::{RegistryError, SessionRegistry};
use crate::connector::{ChatAction, ConnectorError, NumberStatus, OutgoingMessage};
use crate::ids::SessionId;
use crate::mailbox::{Metered, MeteredAddr};
use crate::session::{self, Crash, Session};

/// Send a message through a session (from the `MessageQueue`); WhatsApp's id back.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RegistryError>")]
pub struct SendMessage {
    pub id: SessionId,
    pub message: OutgoingMessage,
}

/// Ask a session for a phone-number pairing code.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RegistryError>")]
pub struct RequestPairingCode {
    pub id: SessionId,
    pub phone: String,
}

/// Ask a session which phone numbers are on WhatsApp.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NumberStatus>, RegistryError>")]
pub struct CheckNumbers {
    pub id: SessionId,
    pub phones: Vec<String>,
}

/// Have a session show a chat state or send read receipts.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct PerformChatAction {
    pub id: SessionId,
    pub action: ChatAction,
}

/// Fault injection: make the session's actor panic.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CrashSession {
    pub id: SessionId,
}

/// Passes `msg` to the session's actor (if it has one) and waits for the
/// connector's answer; a mailbox that closed meanwhile is `NotRunning`.
fn forward<M, T>(
    actor: Result<MeteredAddr<Session>, RegistryError>,
    id: SessionId,
    msg: M,
) -> ResponseFuture<Result<T, RegistryError>>
where
    M: Message<Result = Result<T, ConnectorError>> + Send + 'static,
    T: Send + 'static,
    Session: Handler<Metered<M>>,
{
    Box::pin(async move {
        actor?
            .send(msg)
            .await
            .map_err(|_| RegistryError::NotRunning(id))?
            .map_err(RegistryError::from)
    })
}

impl Handler<SendMessage> for SessionRegistry {
    type Result = ResponseFuture<Result<String, RegistryError>>;

    fn handle(&mut self, msg: SendMessage, _: &mut Self::Context) -> Self::Result {
        let message = session::SendMessage {
            message: msg.message,
        };
        forward(self.actor_of(&msg.id), msg.id, message)
    }
}

impl Handler<RequestPairingCode> for SessionRegistry {
    type Result = ResponseFuture<Result<String, RegistryError>>;

    fn handle(&mut self, msg: RequestPairingCode, _: &mut Self::Context) -> Self::Result {
        let request = session::RequestPairingCode { phone: msg.phone };
        forward(self.actor_of(&msg.id), msg.id, request)
    }
}

impl Handler<CheckNumbers> for SessionRegistry {
    type Result = ResponseFuture<Result<Vec<NumberStatus>, RegistryError>>;

    fn handle(&mut self, msg: CheckNumbers, _: &mut Self::Context) -> Self::Result {
        let check = session::CheckNumbers { phones: msg.phones };
        forward(self.actor_of(&msg.id), msg.id, check)
    }
}

impl Handler<PerformChatAction> for SessionRegistry {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: PerformChatAction, _: &mut Self::Context) -> Self::Result {
        let action = session::PerformChatAction { action: msg.action };
        forward(self.actor_of(&msg.id), msg.id, action)
    }
}

impl Handler<CrashSession> for SessionRegistry {
    type Result = Result<(), RegistryError>;

    fn handle(&mut self, msg: CrashSession, _: &mut Self::Context) -> Self::Result {
        self.actor_of(&msg.id)?.do_send(Crash);
        Ok(())
    }
}
