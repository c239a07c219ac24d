//! One outgoing message through the client: the number check, the send
//! (or edit) under the gateway's id so a resend is recognised, and the wait
//! for WhatsApp's server `<ack>` or nack, which the driver's event handler
//! hands to [`Acks`]. Called by [`super::driver`] for each send command;
//! what the message becomes on the wire is [`super::send`].

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use whatsapp_rust::send::EditOptions;
use whatsapp_rust::{Client, SendError, SendOptions, Server};

use super::numbers::NumberCheck;
use super::send::{self, Prepared};
use super::{events, refusal};
use crate::connector::{ConnectorError, OutgoingMessage};

/// How long a written message may wait for WhatsApp's `<ack>` before the
/// send counts as failed (the queue retries it under the same id, which
/// WhatsApp dedups).
const SERVER_ACK_TIMEOUT: Duration = Duration::from_secs(20);
/// Sends written but not yet acknowledged by WhatsApp, by message id: the
/// server's `<ack>` (or nack with an error code) resolves them.
#[derive(Default)]
pub(super) struct Acks(Mutex<HashMap<String, oneshot::Sender<Option<String>>>>);

impl Acks {
    pub(super) fn expect(&self, id: &str) -> oneshot::Receiver<Option<String>> {
        let (tx, rx) = oneshot::channel();
        self.0.lock().insert(id.to_owned(), tx);
        rx
    }

    pub(super) fn forget(&self, id: &str) {
        self.0.lock().remove(id);
    }

    /// `error` is the nack code, `None` for a plain ack.
    pub(super) fn resolve(&self, id: &str, error: Option<String>) {
        if let Some(waiter) = self.0.lock().remove(id) {
            let _ = waiter.send(error);
        }
    }
}

pub(super) async fn deliver(
    client: &Client,
    acks: &Acks,
    numbers: &NumberCheck,
    message: OutgoingMessage,
) -> Result<String, ConnectorError> {
    let jid = events::recipient(&message.to).map_err(ConnectorError::Rejected)?;
    if jid.server == Server::Pn {
        let number = jid.user.to_string();
        if numbers.registered(&number).await == Some(false) {
            return Err(ConnectorError::Rejected(format!(
                "{number} is not on WhatsApp"
            )));
        }
    }
    let prepared = send::prepare(client, &jid, &message).await?;
    let wa_id = events::wa_message_id(&message.message_id);
    // Registered before writing: the ack may beat the write's completion.
    let ack = acks.expect(&wa_id);
    let written = match prepared {
        Prepared::Message(content) => {
            let options = SendOptions::default().with_message_id(wa_id.clone());
            client
                .send_message_with_options(jid, content, options)
                .await
                .map(|sent| sent.message_id)
        }
        // The edit's own stanza carries the gateway's id, so a resend is
        // recognised and the ack finds this send.
        Prepared::Edit { original, content } => {
            let options = EditOptions::default().with_stanza_id(wa_id.clone());
            client
                .edit_message_with_options(jid, original, content, options)
                .await
                .map(|_| wa_id.clone())
        }
    };
    let written = match written {
        Ok(id) => Ok(id),
        Err(SendError::NotLoggedIn) => Err(ConnectorError::NotConnected),
        Err(SendError::InvalidRequest(why)) => Err(ConnectorError::Rejected(why)),
        Err(e) => Err(ConnectorError::Failed(e.to_string())),
    };
    let sent_id = match written {
        Ok(id) => id,
        Err(e) => {
            acks.forget(&wa_id);
            return Err(e);
        }
    };
    // Written is not accepted: the crate resolves a send once the stanza is
    // out, even if WhatsApp then nacks it.
    let outcome = tokio::time::timeout(SERVER_ACK_TIMEOUT, ack).await;
    acks.forget(&wa_id);
    match outcome {
        Ok(Ok(None)) => Ok(sent_id),
        Ok(Ok(Some(code))) => Err(refusal::nack(&code)),
        Ok(Err(_)) => Err(ConnectorError::Closed),
        Err(_) => Err(ConnectorError::Failed(format!(
            "WhatsApp did not acknowledge the message within {} s",
            SERVER_ACK_TIMEOUT.as_secs()
        ))),
    }
}
