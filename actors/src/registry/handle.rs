//! `RegistryHandle`: the typed door to the `SessionRegistry` for the HTTP
//! layer and the message queue. Callers never see an `Addr` or a
//! `MailboxError`: a registry that is gone answers `Unavailable`.

use tokio::sync::oneshot;

use super::{
    CheckNumbers, CrashSession, CreateSession, DeleteSession, LogoutSession, PerformChatAction,
    RegistryError, RequestPairingCode, RestartSession, SendMessage, SessionRegistry, StopAll,
    StopSession, Sweep,
};
use crate::ids::SessionId;
use crate::mailbox::MeteredAddr;
use actix::prelude::*;

/// The typed door to the registry for the HTTP layer.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: MeteredAddr<SessionRegistry>,
}

impl RegistryHandle {
    pub fn new(addr: MeteredAddr<SessionRegistry>) -> Self {
        Self { addr }
    }

    async fn call<M>(&self, msg: M) -> Result<(), RegistryError>
    where
        M: Message<Result = Result<(), RegistryError>> + Send + 'static,
        SessionRegistry: Handler<crate::mailbox::Metered<M>>,
    {
        self.addr
            .send(msg)
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    pub async fn create(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(CreateSession { id }).await
    }

    pub async fn delete(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(DeleteSession { id }).await
    }

    pub async fn stop(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(StopSession { id }).await
    }

    pub async fn restart(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(RestartSession { id }).await
    }

    pub async fn logout(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(LogoutSession { id }).await
    }

    /// Sends a message through the session's connection; WhatsApp's id back.
    pub async fn send(
        &self,
        id: SessionId,
        message: crate::connector::OutgoingMessage,
    ) -> Result<String, RegistryError> {
        self.addr
            .send(SendMessage { id, message })
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    /// A phone-number pairing code for an unlinked session.
    pub async fn pairing_code(
        &self,
        id: SessionId,
        phone: String,
    ) -> Result<String, RegistryError> {
        self.addr
            .send(RequestPairingCode { id, phone })
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    /// Which of `phones` (digits) are on WhatsApp, asked through the
    /// session's connection.
    pub async fn check_numbers(
        &self,
        id: SessionId,
        phones: Vec<String>,
    ) -> Result<Vec<crate::connector::NumberStatus>, RegistryError> {
        self.addr
            .send(CheckNumbers { id, phones })
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    /// Shows a chat state or sends read receipts through the session.
    pub async fn chat_action(
        &self,
        id: SessionId,
        action: crate::connector::ChatAction,
    ) -> Result<(), RegistryError> {
        self.call(PerformChatAction { id, action }).await
    }

    pub async fn crash(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(CrashSession { id }).await
    }

    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        self.addr
            .send(Sweep)
            .await
            .map_err(|_| RegistryError::Unavailable)
    }

    /// The registry actor is alive.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }

    /// Stops every session and waits until all have exited.
    pub async fn stop_all(&self) {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(StopAll { done: tx });
        let _ = rx.await;
    }
}
