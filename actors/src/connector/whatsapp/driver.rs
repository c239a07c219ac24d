//! One session's WhatsApp Web client, as a task on the WhatsApp runtime:
//! opens (or allocates) the device, builds and spawns a `Bot`, forwards its
//! events as [`ConnectorEvent`]s, carries out the Session's commands, and on
//! close stops the client (wiping the device when WhatsApp logged it out).
//! Spawned by [`super::WhatsAppWeb::open`]; ends when the Session closes the
//! connection, drops it, the client reaches a terminal event, or the client's
//! run loop ends by itself (reported as `Closed` with the last reason heard).
//! A driver holds its device's lock until the client has flushed and let go
//! of the store, so a restarted session never runs two clients on one device.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::bot::Bot;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::{Event, EventHandler, InboundMessage};
use whatsapp_rust::{Client, PresenceStatus};

use super::deliver::{deliver, Acks};
use super::devices::DeviceDb;
use super::events::{After, Mapper};
use super::handover::{FromClient, Handover};
use super::incoming::IncomingCounters;
use super::media_in;
use super::numbers::NumberCheck;
use super::runtime::{DedicatedRuntime, WatchedTransport};
use super::{Presence, WhatsAppConfig};
use crate::connector::{ChatAction, ConnectorError, ConnectorEvent, NumberStatus, OutgoingMessage};
use crate::ids::SessionId;

/// How long a stopping client may take to flush and disconnect.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A send still unanswered after this fails (the queue retries it).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The crate announces `available` itself right after connecting and after
/// the push name syncs; ours must land after it, not race it.
const PRESENCE_SETTLE: Duration = Duration::from_secs(1);

/// What the Session asks of its connection.
pub enum Command {
    Send {
        /// Boxed: a message is far larger than the other commands.
        message: Box<OutgoingMessage>,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    PairCode {
        phone: String,
        reply: oneshot::Sender<Result<String, ConnectorError>>,
    },
    Logout {
        reply: oneshot::Sender<Result<(), ConnectorError>>,
    },
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

pub struct Driver {
    pub session: SessionId,
    pub device: Option<i32>,
    pub devices: Arc<DeviceDb>,
    pub config: Arc<WhatsAppConfig>,
    pub counters: Arc<IncomingCounters>,
    /// Incoming messages are written here before the batch is acked.
    pub journal: crate::journal::Journal,
    /// Incoming media is downloaded and kept here before the journal write.
    pub media: Option<crate::incoming_media::IncomingMedia>,
    pub events: mpsc::Sender<ConnectorEvent>,
    pub commands: mpsc::UnboundedReceiver<Command>,
}

/// Hands the client's events to the driver loop (the handler is sync);
/// server acks go straight to the send waiting for them.
struct Forward {
    events: mpsc::UnboundedSender<FromClient>,
    acks: Arc<Acks>,
}

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        if let Event::ServerAck(ack) = &*event {
            if ack.class.as_deref().is_none_or(|c| c == "message") {
                self.acks.resolve(&ack.id, ack.error.clone());
            }
            return;
        }
        let _ = self.events.send(FromClient::Event(event));
    }
}

/// The client's HTTP for media: the crate's own, or in test builds the
/// loopback one the fake WhatsApp's media host needs.
#[cfg(not(feature = "danger-loopback-media"))]
fn media_http() -> whatsapp_rust::http::UreqHttpClient {
    whatsapp_rust::http::UreqHttpClient::new()
}

#[cfg(feature = "danger-loopback-media")]
fn media_http() -> super::loopback_media::LoopbackMedia {
    super::loopback_media::LoopbackMedia::new()
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
        let (id, device, _device_lock) = match self.device {
            Some(id) => {
                // Waits for a previous client of this device to let go.
                let lock = self.devices.lock(id).await;
                let device = self.devices.open(id).await.map_err(|e| e.to_string())?;
                (id, device, lock)
            }
            None => {
                let (id, device, lock) =
                    self.devices.allocate().await.map_err(|e| e.to_string())?;
                self.emit(ConnectorEvent::CredentialsUpdated(DeviceDb::credentials(
                    id,
                )))
                .await?;
                (id, device, lock)
            }
        };

        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let acks = Arc::new(Acks::default());
        let (fail_tx, mut fail_rx) = mpsc::unbounded_channel();
        let mut transport = TokioWebSocketTransportFactory::new();
        if let Some(url) = &self.config.url {
            transport = transport.with_url(url.clone());
        }
        let mut builder = Bot::builder()
            .with_backend(device.store.clone())
            .with_transport_factory(WatchedTransport {
                inner: Arc::new(transport),
                failures: fail_tx,
            })
            .with_http_client(media_http())
            .with_runtime(DedicatedRuntime(Handle::current()))
            .with_event_handler(Forward {
                events: event_tx.clone(),
                acks: Arc::clone(&acks),
            })
            .with_inbound_durability_hook(Handover { driver: event_tx })
            .skip_history_sync();
        if let Some(version) = self.config.version {
            builder = builder.with_version(version);
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| format!("cannot start the WhatsApp client: {e}"))?;
        let mut handle = bot.spawn();
        let client = handle.client();
        let numbers = NumberCheck::start(Arc::clone(&client));

        let mut mapper = Mapper::new(self.config.forward_status, Arc::clone(&self.counters));
        let mut wipe = false;
        // What the client last said went wrong, for a run loop that ends by itself.
        let mut last_trouble: Option<String> = None;
        let mut run_loop_ended = false;
        loop {
            tokio::select! {
                // In order: events before commands, and the run loop's end
                // only once every event it dispatched has been forwarded.
                biased;
                Some(from) = event_rx.recv() => {
                    let after = match from {
                        FromClient::Messages { batch, taken } => {
                            self.hand_over(&client, &mapper, &batch, taken).await
                        }
                        FromClient::Event(event) => {
                            self.event(&client, &mut mapper, &event, &mut last_trouble).await
                        }
                    };
                    match after {
                        After::Continue => {}
                        After::Stop => break,
                        After::StopAndWipe => { wipe = true; break; }
                    }
                }
                Some(failed) = fail_rx.recv() => {
                    let reason = format!("cannot reach WhatsApp: {}", failed.0);
                    last_trouble = Some(reason.clone());
                    let e = ConnectorEvent::Disconnected { reason, transient: true };
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
                    Some(command) => self.command(&client, &acks, &numbers, command),
                },
                // The Session dropped its end: nobody listens any more.
                () = self.events.closed() => break,
                // The client gave up by itself (auto-reconnect off after a
                // failure it did not name as an event we end on). Last, so
                // the events it dispatched before exiting are handled first.
                () = &mut handle => {
                    run_loop_ended = true;
                    break;
                }
            }
        }

        // Batches the hook is still waiting on stay unacked: WhatsApp
        // redelivers them to the next client of this device.
        drop(event_rx);
        drop(numbers);
        // Stop the client: a graceful disconnect flushes its state and ends
        // the run loop; the abort ends whatever is left after the deadline.
        let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
            client.disconnect().await;
            if !run_loop_ended {
                (&mut handle).await;
            }
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(session = %self.session, "the WhatsApp client did not stop in time; aborted");
        }
        handle.abort();
        drop(client);
        drop(handle);
        if wipe {
            if let Err(e) = self.devices.wipe(device, id).await {
                tracing::error!(session = %self.session, error = %e, "cannot delete the logged-out device's keys");
            }
        } else {
            drop(device);
        }
        // `_device_lock` is released here: the next client may open the device.
        if run_loop_ended {
            let reason = last_trouble.unwrap_or_else(|| "no reason given".into());
            return Err(format!("the WhatsApp client stopped by itself: {reason}"));
        }
        Ok(())
    }

    /// Forwards one client event; says whether the client is done.
    async fn event(
        &self,
        client: &Arc<Client>,
        mapper: &mut Mapper,
        event: &Event,
        last_trouble: &mut Option<String>,
    ) -> After {
        if mapper.own_jid.is_none() && matches!(event, Event::Connected(_)) {
            // Resumed from stored keys: no PairSuccess this run.
            mapper.own_jid = client.pn().map(|j| j.to_non_ad_string());
        }
        if matches!(event, Event::Connected(_) | Event::SelfPushNameUpdated(_)) {
            self.set_presence(client);
        }
        let (mapped, after) = mapper.map(event);
        for e in mapped {
            if let ConnectorEvent::Disconnected { reason, .. } = &e {
                *last_trouble = Some(reason.clone());
            }
            let e = resolve_lid(client, e).await;
            if self.events.send(e).await.is_err() {
                break;
            }
        }
        after
    }

    /// Journals each message of a batch the durability hook holds and puts
    /// it into the Session's channel, then lets the hook return (and the
    /// client ack the batch): from then on the journal, not WhatsApp, keeps
    /// it until Laravel has it. A Session that went away, or a journal that
    /// cannot be written, gets nothing acked: WhatsApp redelivers (Laravel
    /// dedupes what had reached it on the message id).
    async fn hand_over(
        &self,
        client: &Client,
        mapper: &Mapper,
        batch: &[InboundMessage],
        taken: oneshot::Sender<()>,
    ) -> After {
        for (source, m) in mapper.messages_from(batch) {
            let m = match &self.media {
                Some(keeper) => media_in::keep(client, keeper, &self.session, source, m).await,
                None => m,
            };
            let e = resolve_lid(client, ConnectorEvent::Message(m)).await;
            if let ConnectorEvent::Message(m) = &e {
                if let Err(err) = self.journal.hold_message(&self.session, m).await {
                    tracing::warn!(session = %self.session, error = %crate::error_chain::Chain(&err),
                        "cannot journal an incoming message; leaving the batch unacked for redelivery");
                    return After::Continue;
                }
            }
            if self.events.send(e).await.is_err() {
                return After::Stop;
            }
        }
        let _ = taken.send(());
        After::Continue
    }

    /// Sets the configured presence once the crate's own `available` is out
    /// (it sends one on connect and when the push name syncs): `unavailable`
    /// keeps the phone's notifications on.
    fn set_presence(&self, client: &Arc<Client>) {
        let status = match self.config.presence {
            Presence::Unavailable => PresenceStatus::Unavailable,
            Presence::Available => return,
        };
        let (client, session) = (Arc::clone(client), self.session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PRESENCE_SETTLE).await;
            if let Err(e) = client.presence().set(status).await {
                tracing::debug!(session = %session, error = ?e, "cannot set presence yet");
            }
        });
    }

    async fn emit(&self, event: ConnectorEvent) -> Result<(), String> {
        self.events
            .send(event)
            .await
            .map_err(|_| "the session went away".to_owned())
    }

    /// Runs a command in its own task, so a slow send never holds up events.
    fn command(
        &self,
        client: &Arc<Client>,
        acks: &Arc<Acks>,
        numbers: &NumberCheck,
        command: Command,
    ) {
        let client = Arc::clone(client);
        let acks = Arc::clone(acks);
        let numbers = numbers.clone();
        match command {
            Command::Send { message, reply } => {
                tokio::spawn(async move {
                    let sent = tokio::time::timeout(
                        SEND_TIMEOUT,
                        deliver(&client, &acks, &numbers, *message),
                    )
                    .await
                    .unwrap_or_else(|_| Err(ConnectorError::Failed("send timed out".into())));
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
            Command::Check { phones, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(Ok(super::chat::check(&numbers, phones).await));
                });
            }
            Command::Chat { action, reply } => {
                tokio::spawn(async move {
                    let done =
                        tokio::time::timeout(SEND_TIMEOUT, super::chat::perform(&client, action))
                            .await
                            .unwrap_or_else(|_| Err(ConnectorError::Failed("timed out".into())));
                    let _ = reply.send(done);
                });
            }
            // Handled by the loop itself.
            Command::Logout { .. } | Command::Close => {}
        }
    }
}

/// Replaces `@lid` chats and senders of a message with the phone number
/// when the client knows the mapping (learned from earlier traffic).
async fn resolve_lid(client: &Client, event: ConnectorEvent) -> ConnectorEvent {
    let ConnectorEvent::Message(mut m) = event else {
        return event;
    };
    for field in [&mut m.from, &mut m.chat] {
        if !field.ends_with("@lid") {
            continue;
        }
        let Ok(jid) = field.parse::<whatsapp_rust::Jid>() else {
            continue;
        };
        if let Ok(Some(entry)) = client.get_lid_pn_entry(&jid).await {
            *field = entry.phone_number.to_string();
        }
    }
    ConnectorEvent::Message(m)
}
