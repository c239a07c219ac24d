//! The Session's end of a simulated connection: each [`ConnectionControl`]
//! call becomes a [`Command`] on the device task's line and waits for the
//! device's reply. Built by `Simulator::open`; the device side is
//! [`super::device`].

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{SimAction, SimError, Simulator};
use crate::connector::{
    ChatAction, ConnectionControl, ConnectorError, NumberStatus, OutgoingMessage,
};
use crate::ids::SessionId;

/// What a device task is asked to do; each carries where to answer.
pub(super) enum Command {
    Act(SimAction, oneshot::Sender<Result<(), SimError>>),
    Send {
        /// Boxed: a message is far larger than the other commands.
        message: Box<OutgoingMessage>,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    Logout(oneshot::Sender<Result<(), ConnectorError>>),
    PairCode(oneshot::Sender<Result<String, ConnectorError>>),
    Check {
        phones: Vec<String>,
        reply: oneshot::Sender<Result<Vec<NumberStatus>, ConnectorError>>,
    },
    Chat {
        action: ChatAction,
        reply: oneshot::Sender<Result<(), ConnectorError>>,
    },
    Close,
}

/// A device's command line, tagged so a closing connection only unregisters itself.
pub(super) struct DeviceLink {
    pub(super) epoch: u64,
    pub(super) commands: mpsc::UnboundedSender<Command>,
}

pub(super) struct SimControl {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// To unregister the device at once on close, so no phone-side action
    /// reaches a connection its Session has let go.
    pub(super) sim: Arc<Simulator>,
    pub(super) session: SessionId,
    pub(super) epoch: u64,
}

impl SimControl {
    fn ask<T: 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ConnectorError>>) -> Command,
    ) -> LocalBoxFuture<'static, Result<T, ConnectorError>> {
        crate::connector::ask(&self.commands, make)
    }
}

impl ConnectionControl for SimControl {
    fn send(
        &self,
        message: OutgoingMessage,
    ) -> LocalBoxFuture<'static, Result<String, ConnectorError>> {
        self.ask(|reply| Command::Send {
            message: Box::new(message),
            reply,
        })
    }

    fn request_pairing_code(
        &self,
        _phone: &str,
    ) -> LocalBoxFuture<'static, Result<String, ConnectorError>> {
        self.ask(Command::PairCode)
    }

    fn check_numbers(
        &self,
        phones: Vec<String>,
    ) -> LocalBoxFuture<'static, Result<Vec<NumberStatus>, ConnectorError>> {
        self.ask(|reply| Command::Check { phones, reply })
    }

    fn chat_action(
        &self,
        action: ChatAction,
    ) -> LocalBoxFuture<'static, Result<(), ConnectorError>> {
        self.ask(|reply| Command::Chat { action, reply })
    }

    fn logout(&self) -> LocalBoxFuture<'static, Result<(), ConnectorError>> {
        self.ask(Command::Logout)
    }

    fn close(&self) {
        self.sim
            .devices
            .remove_if(&self.session, |_, link| link.epoch == self.epoch);
        // A closed device already dropped its receiver; nothing to do then.
        let _ = self.commands.send(Command::Close);
    }
}
