//! One session's WhatsApp Web client, as a task on the WhatsApp runtime:
//! opens (or allocates) the device, builds and spawns a `Bot`, forwards its
//! events as [`ConnectorEvent`]s, carries out the Session's commands, and on
//! close stops the client (wiping the device when WhatsApp logged it out).
//! Spawned by [`super::WhatsAppWeb::open`]; ends when the Session closes the
//! connection, drops it, or the client reaches a terminal event.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::bot::Bot;
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::{Event, EventHandler};
use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, SendError, SendOptions};

use super::devices::DeviceDb;
use super::events::{self, After};
use super::runtime::{DedicatedRuntime, WatchedTransport};
use super::WhatsAppConfig;
use crate::connector::{ConnectorError, ConnectorEvent};
use crate::ids::SessionId;

/// How long a stopping client may take to flush and disconnect.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A send still unanswered after this fails (the queue retries it).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the Session asks of its connection.
pub enum Command {
    Send {
        to: String,
        text: String,
        message_id: String,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    PairCode {
        phone: String,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    Logout {
        reply: oneshot::Sender<Result<(), ConnectorError>>,
    },
    Close,
}

pub struct Driver {
    pub session: SessionId,
    pub device: Option<i32>,
    pub devices: Arc<DeviceDb>,
    pub config: Arc<WhatsAppConfig>,
    pub events: mpsc::Sender<ConnectorEvent>,
    pub commands: mpsc::UnboundedReceiver<Command>,
}

/// Hands the client's events to the driver loop (the handler is sync).
struct Forward(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }
}

impl Driver {
    pub async fn run(self) {
        let (events, session) = (self.events.clone(), self.session.clone());
        if let Err(error) = self.drive().await {
            tracing::warn!(session = %session, %error, "WhatsApp Web connection ended");
            let _ = events
                .send(ConnectorEvent::Closed { error: Some(error) })
                .await;
        }
    }

    async fn drive(mut self) -> Result<(), String> {
        let (id, store) = match self.device {
            Some(id) => (id, self.devices.open(id).await.map_err(|e| e.to_string())?),
            None => {
                let (id, store) = self.devices.allocate().await.map_err(|e| e.to_string())?;
                self.emit(ConnectorEvent::CredentialsUpdated(DeviceDb::credentials(
                    id,
                )))
                .await?;
                (id, store)
            }
        };

        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let (fail_tx, mut fail_rx) = mpsc::unbounded_channel();
        let mut transport = TokioWebSocketTransportFactory::new();
        if let Some(url) = &self.config.url {
            transport = transport.with_url(url.clone());
        }
        let mut builder = Bot::builder()
            .with_backend(store.clone())
            .with_transport_factory(WatchedTransport {
                inner: Arc::new(transport),
                failures: fail_tx,
            })
            .with_http_client(UreqHttpClient::new())
            .with_runtime(DedicatedRuntime(Handle::current()))
            .with_event_handler(Forward(event_tx))
            .skip_history_sync();
        if let Some(version) = self.config.version {
            builder = builder.with_version(version);
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| format!("cannot start the WhatsApp client: {e}"))?;
        let handle = bot.spawn();
        let client = handle.client();

        let mut own_jid = None;
        let mut wipe = false;
        loop {
            tokio::select! {
                Some(event) = event_rx.recv() => {
                    if own_jid.is_none() && matches!(*event, Event::Connected(_)) {
                        // Resumed from stored keys: no PairSuccess this run.
                        own_jid = client.pn().map(|j| j.to_non_ad_string());
                    }
                    let (mapped, after) = events::map(&event, &mut own_jid);
                    for e in mapped {
                        if self.events.send(e).await.is_err() {
                            break;
                        }
                    }
                    match after {
                        After::Continue => {}
                        After::Stop => break,
                        After::StopAndWipe => { wipe = true; break; }
                    }
                }
                Some(failed) = fail_rx.recv() => {
                    let e = ConnectorEvent::Disconnected {
                        reason: format!("cannot reach WhatsApp: {}", failed.0),
                        transient: true,
                    };
                    if self.events.send(e).await.is_err() {
                        break;
                    }
                }
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => break,
                    Some(Command::Logout { reply }) => {
                        // Inline, so a Close queued behind it cannot cut it
                        // short: the device is unlinked, then wiped.
                        let _ = tokio::time::timeout(STOP_TIMEOUT, client.logout()).await;
                        let _ = reply.send(Ok(()));
                        let _ = self.events.send(ConnectorEvent::LoggedOut {
                            reason: "logged out by request".into(),
                        }).await;
                        wipe = true;
                        break;
                    }
                    Some(command) => self.command(&client, command),
                },
                // The Session dropped its end: nobody listens any more.
                () = self.events.closed() => break,
            }
        }

        // Stop the client: a graceful disconnect flushes its state; the
        // abort ends whatever is left of the run loop.
        let _ = tokio::time::timeout(STOP_TIMEOUT, client.disconnect()).await;
        handle.abort();
        drop(client);
        if wipe {
            if let Err(e) = self.devices.wipe(&store, id).await {
                tracing::error!(session = %self.session, error = %e, "cannot delete the logged-out device's keys");
            }
        }
        Ok(())
    }

    async fn emit(&self, event: ConnectorEvent) -> Result<(), String> {
        self.events
            .send(event)
            .await
            .map_err(|_| "the session went away".to_owned())
    }

    /// Runs a command in its own task, so a slow send never holds up events.
    fn command(&self, client: &Arc<Client>, command: Command) {
        let client = Arc::clone(client);
        match command {
            Command::Send {
                to,
                text,
                message_id,
                reply,
            } => {
                tokio::spawn(async move {
                    let sent =
                        tokio::time::timeout(SEND_TIMEOUT, send(&client, &to, text, &message_id))
                            .await
                            .unwrap_or_else(|_| {
                                Err(ConnectorError::Failed("send timed out".into()))
                            });
                    let _ = reply.send(sent);
                });
            }
            Command::PairCode { phone, reply } => {
                tokio::spawn(async move {
                    let options = PairCodeOptions {
                        phone_number: phone,
                        ..PairCodeOptions::default()
                    };
                    let code = client
                        .pair_with_code(options)
                        .await
                        .map_err(|e| ConnectorError::Failed(e.to_string()));
                    let _ = reply.send(code);
                });
            }
            // Handled by the loop itself.
            Command::Logout { .. } | Command::Close => {}
        }
    }
}

async fn send(
    client: &Client,
    to: &str,
    text: String,
    message_id: &str,
) -> Result<String, ConnectorError> {
    let jid = events::recipient(to).map_err(ConnectorError::Rejected)?;
    let options = SendOptions::default().with_message_id(events::wa_message_id(message_id));
    match client
        .send_message_with_options(jid, wa::Message::text(text), options)
        .await
    {
        Ok(sent) => Ok(sent.message_id),
        Err(SendError::NotLoggedIn) => Err(ConnectorError::NotConnected),
        Err(SendError::InvalidRequest(why)) => Err(ConnectorError::Rejected(why)),
        Err(e) => Err(ConnectorError::Failed(e.to_string())),
    }
}
