//! The WhatsApp Web connector (`CONNECTOR=whatsapp-web`, cargo feature
//! `whatsapp-web`): each Session's connection is a `whatsapp-rust` client
//! driven by a [`driver::Driver`] task on one dedicated multi-thread tokio
//! runtime. Keys live in one SQLite file per device under `DATA_DIR`
//! ([`devices`]); client events become [`super::ConnectorEvent`]s
//! ([`events`]); incoming messages are acked to WhatsApp only once handed
//! to the Session ([`handover`]); sends check the number first ([`numbers`]),
//! chat states, read receipts and the contacts check go through [`chat`],
//! map each kind of message to the client's calls ([`send`]) and read
//! server nacks as permanent or transient ([`refusal`]). Built by
//! the `Gateway` from [`WhatsAppConfig`]; the library's types stay inside
//! this module.

mod chat;
mod deliver;
mod devices;
mod driver;
mod events;
mod handover;
mod incoming;
mod kinds;
#[cfg(feature = "danger-loopback-media")]
mod loopback_media;
mod media_in;
mod numbers;
mod refusal;
mod runtime;
mod send;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use self::devices::{DeviceDb, DeviceError};
use self::driver::{Command, Driver};
use self::incoming::IncomingCounters;
use super::{
    ChatAction, Connection, ConnectionControl, Connector, ConnectorError, Credentials,
    NumberStatus, OutgoingMessage, EVENT_CHANNEL_CAPACITY,
};
use crate::ids::SessionId;

/// `WA_*` settings.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// Holds `devices/{id}.db`, the keys of each linked device (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// WebSocket URL instead of WhatsApp's (`WA_URL`): a relay, or a test server.
    pub url: Option<String>,
    /// WhatsApp Web version to announce (`WA_VERSION`); `None` fetches the
    /// current one from web.whatsapp.com, once a day.
    pub version: Option<(u32, u32, u32)>,
    /// Worker threads of the WhatsApp runtime (`WA_THREADS`).
    pub threads: usize,
    /// Forward status posts, newsletters and broadcast lists as messages
    /// (`WA_FORWARD_STATUS`); dropped and counted otherwise.
    pub forward_status: bool,
    /// The presence each client announces once online (`WA_PRESENCE`).
    pub presence: Presence,
}

/// What a linked device tells WhatsApp about being online. `Unavailable`
/// (the default) keeps notifications on the account owner's phone: WhatsApp
/// stops pushing them while a companion device says it is `available`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Unavailable,
    Available,
}

/// The connector: the runtime all clients run on, and the device database.
pub struct WhatsAppWeb {
    /// `Some` until dropped; shut down without blocking (it may be dropped
    /// inside the actix system).
    runtime: Option<tokio::runtime::Runtime>,
    devices: Arc<DeviceDb>,
    config: Arc<WhatsAppConfig>,
    /// Incoming traffic not forwarded as chat messages, for the metric.
    counters: Arc<IncomingCounters>,
    /// Incoming messages are journaled here before WhatsApp gets the ack.
    journal: crate::journal::Journal,
    /// Where downloaded incoming media is kept (before the journal write);
    /// without it media is forwarded as `unsupported`.
    media: Option<crate::incoming_media::IncomingMedia>,
}

impl WhatsAppWeb {
    pub fn new(config: WhatsAppConfig) -> Result<Self, DeviceError> {
        let devices = DeviceDb::new(&config.data_dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("whatsapp")
            .enable_all()
            .build()
            .map_err(DeviceError::Runtime)?;
        Ok(Self {
            runtime: Some(runtime),
            devices,
            config: Arc::new(config),
            counters: Arc::default(),
            journal: crate::journal::Journal::memory(),
            media: None,
        })
    }

    /// Journals incoming messages in `journal` (the gateway's, durable with
    /// Redis) instead of this connector's own memory journal.
    pub fn with_journal(mut self, journal: crate::journal::Journal) -> Self {
        self.journal = journal;
        self
    }

    /// Downloads incoming media at receive time and keeps it in `media`.
    pub fn with_media(mut self, media: crate::incoming_media::IncomingMedia) -> Self {
        self.media = Some(media);
        self
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }
}

impl Drop for WhatsAppWeb {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Connector for WhatsAppWeb {
    fn kind(&self) -> &'static str {
        "whatsapp-web"
    }

    fn open(&self, session: &SessionId, credentials: Option<Credentials>) -> Connection {
        let device = credentials.as_ref().and_then(|c| {
            let id = DeviceDb::parse(c);
            if id.is_none() {
                tracing::warn!(session = %session, "stored credentials are not a WhatsApp Web device (another connector's?); linking anew");
            }
            id
        });
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            session: session.clone(),
            device,
            devices: Arc::clone(&self.devices),
            config: Arc::clone(&self.config),
            counters: Arc::clone(&self.counters),
            journal: self.journal.clone(),
            media: self.media.clone(),
            events: events_tx,
            commands: commands_rx,
        };
        self.handle().spawn(driver.run());
        Connection {
            events: events_rx,
            control: Box::new(Control {
                commands: commands_tx,
            }),
        }
    }

    fn runtime_tasks(&self) -> Option<usize> {
        Some(self.handle().metrics().num_alive_tasks())
    }

    fn incoming_counts(&self) -> Vec<(&'static str, u64)> {
        self.counters.snapshot()
    }

    fn drain(&self, within: std::time::Duration) -> LocalBoxFuture<'static, bool> {
        let devices = Arc::clone(&self.devices);
        async move { devices.all_released(within).await }.boxed_local()
    }
}

/// The Session's end of one connection. Dropping it ends the driver too.
struct Control {
    commands: mpsc::UnboundedSender<Command>,
}

impl Control {
    fn ask<T: 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ConnectorError>>) -> Command,
    ) -> LocalBoxFuture<'static, Result<T, ConnectorError>> {
        super::ask(&self.commands, make)
    }
}

impl ConnectionControl for Control {
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
        phone: &str,
    ) -> LocalBoxFuture<'static, Result<String, ConnectorError>> {
        let phone = phone.to_owned();
        self.ask(|reply| Command::PairCode { phone, reply })
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
        self.ask(|reply| Command::Logout { reply })
    }

    fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}
