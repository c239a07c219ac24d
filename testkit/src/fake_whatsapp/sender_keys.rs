//! Sender keys of one fake phone: what groups and status posts are encrypted
//! with, on the crate's own libsignal port. A phone keeps the keys other
//! senders distributed to it (a `SenderKeyDistributionMessage` inside a
//! pairwise `pkmsg`/`msg`) and decrypts their `skmsg`s with them; it also
//! owns one sender key per group it writes to, hands its distribution out
//! once per recipient device, and encrypts its own `skmsg`s. Held by each
//! `SignalDevice`; used by `messages` (routing) and `groups` (a phone writes
//! to a group).

use std::collections::{HashMap, HashSet};

use whatsapp_rust::async_trait;
use whatsapp_rust::wacore::libsignal::protocol::{
    create_sender_key_distribution_message, group_decrypt, group_encrypt,
    process_sender_key_distribution_message, SenderKeyDistributionMessage, SenderKeyName,
    SenderKeyRecord, SenderKeyStore, SignalProtocolError,
};
use whatsapp_rust::wacore::messages::{decode_plaintext, MessageUtils};
use whatsapp_rust::waproto::whatsapp as wa;

use super::Fallible;

/// The name a phone keeps a sender's key under: the group (or
/// `status@broadcast`) and the sending device, `user:device`.
fn name(group: &str, sender: &str, device: u32) -> SenderKeyName {
    SenderKeyName::from_parts(group, &format!("{sender}:{device}"))
}

/// A phone's sender keys: its own and those distributed to it.
#[derive(Default)]
pub(super) struct SenderKeys {
    records: HashMap<String, SenderKeyRecord>,
    /// `(group, recipient)` pairs this phone already sent its distribution
    /// to: later messages to that group go as a bare `skmsg`, as on a phone.
    distributed: HashSet<(String, String)>,
}

impl SenderKeys {
    /// Keeps the key `sender`'s device `device` distributed for `group`
    /// (the `axolotl` bytes of a `SenderKeyDistributionMessage`).
    pub async fn accept(
        &mut self,
        group: &str,
        sender: &str,
        device: u32,
        distribution: &[u8],
    ) -> Fallible<()> {
        let skdm = SenderKeyDistributionMessage::try_from(distribution).map_err(sig)?;
        process_sender_key_distribution_message(&name(group, sender, device), &skdm, self)
            .await
            .map_err(sig)
    }

    /// Decrypts a `skmsg` `sender`'s device `device` sent to `group`.
    pub async fn decrypt(
        &mut self,
        group: &str,
        sender: &str,
        device: u32,
        ciphertext: &[u8],
    ) -> Fallible<wa::Message> {
        let padded = group_decrypt(ciphertext, self, &name(group, sender, device))
            .await
            .map_err(sig)?;
        decode_plaintext(&padded, 2).map_err(|e| e.to_string())
    }

    /// This phone's (`own`, device 0) distribution for `group`, made on
    /// first use, when `recipient` has not had it yet.
    pub async fn distribution_for(
        &mut self,
        group: &str,
        own: &str,
        recipient: &str,
    ) -> Fallible<Option<Vec<u8>>> {
        let name = name(group, own, 0);
        let skdm = create_sender_key_distribution_message(&name, self, &mut super::signal::rng())
            .await
            .map_err(sig)?;
        let first = self
            .distributed
            .insert((group.to_owned(), recipient.to_owned()));
        Ok(first.then(|| skdm.serialized().to_vec()))
    }

    /// `message` encrypted with this phone's (`own`) key for `group`.
    pub async fn encrypt(
        &mut self,
        group: &str,
        own: &str,
        message: &wa::Message,
    ) -> Fallible<Vec<u8>> {
        let padded = MessageUtils::encode_and_pad(message);
        let sealed = group_encrypt(
            self,
            &name(group, own, 0),
            &padded,
            &mut super::signal::rng(),
        )
        .await
        .map_err(sig)?;
        Ok(sealed.serialized().to_vec())
    }
}

fn sig(e: SignalProtocolError) -> String {
    e.to_string()
}

#[async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(
        &mut self,
        sender_key_name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> Result<(), SignalProtocolError> {
        self.records
            .insert(sender_key_name.cache_key().to_owned(), record);
        Ok(())
    }

    async fn load_sender_key(
        &self,
        sender_key_name: &SenderKeyName,
    ) -> Result<Option<SenderKeyRecord>, SignalProtocolError> {
        Ok(self.records.get(sender_key_name.cache_key()).cloned())
    }
}
