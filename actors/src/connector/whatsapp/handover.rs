//! What the client hands the driver: its events, and batches of incoming
//! messages to take over before WhatsApp is told they arrived. The crate's
//! inbound durability hook ([`Handover`]) buffers each decrypted batch in
//! the device's SQLite store, then awaits the driver: only once every
//! message of the batch is journaled (the gateway's convergence journal,
//! in Redis) and in the Session's channel does the hook return and the
//! client ack them to WhatsApp. If the gateway dies first, the messages stay
//! unacked (and buffered): WhatsApp redelivers them on the next connect and
//! the hook runs again; if it dies after, the next start replays the
//! journal. So incoming is at-least-once up to Laravel, which dedupes on the
//! message id. Installed on every client by the driver.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::anyhow;
use whatsapp_rust::types::durability_hook::InboundDurabilityHook;
use whatsapp_rust::types::events::{Event, InboundMessage};
use whatsapp_rust::Client;

/// From the client to the driver loop, in the order it happened.
pub enum FromClient {
    Event(Arc<Event>),
    /// Messages to forward before `taken` fires; dropping `taken` (the
    /// connection is closing) leaves them unacked for redelivery.
    Messages {
        batch: Vec<InboundMessage>,
        taken: oneshot::Sender<()>,
    },
}

/// The client's inbound durability hook.
pub struct Handover {
    pub driver: mpsc::UnboundedSender<FromClient>,
}

#[async_trait::async_trait]
impl InboundDurabilityHook for Handover {
    async fn on_messages(
        &self,
        _client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let (taken, done) = oneshot::channel();
        self.driver
            .send(FromClient::Messages {
                batch: batch.to_vec(),
                taken,
            })
            .map_err(|_| anyhow::anyhow!("the connection is closing"))?;
        done.await
            .map_err(|_| anyhow::anyhow!("the session did not take the messages"))
    }
}
