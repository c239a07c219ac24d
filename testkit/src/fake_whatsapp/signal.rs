//! One Signal device of a fake peer (a phone in the phone book), built on the
//! crate's own libsignal port: an identity key pair, a signed prekey,
//! one-time prekeys, and in-memory stores for the sessions and identities
//! it learns. It hands out prekey bundles, decrypts what the client sent it
//! (`pkmsg` first, `msg` after) and encrypts to the client's device from the
//! prekeys the client uploaded; its sender keys (groups, status posts) live
//! in `sender_keys`. Used by the phone book.

use std::collections::{HashMap, VecDeque};

use whatsapp_rust::async_trait;
use whatsapp_rust::wacore::libsignal::protocol::{
    message_decrypt, message_encrypt, process_prekey_bundle, CiphertextMessage, DeviceId,
    Direction, GenericSignedPreKey, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord, PreKeySignalMessage, PreKeyStore,
    ProtocolAddress, PublicKey, SessionRecord, SessionStore, SignalMessage, SignalProtocolError,
    SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore, Timestamp, UsePQRatchet,
};
use whatsapp_rust::wacore::messages::{decode_plaintext, MessageUtils};
use whatsapp_rust::waproto::whatsapp as wa;

use super::sender_keys::SenderKeys;
use super::Fallible;

type SignalResult<T> = Result<T, SignalProtocolError>;

/// WhatsApp's `<enc type=…>`: a first message carries the prekey exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncKind {
    /// `pkmsg`: opens a session from a prekey bundle.
    PreKey,
    /// `msg`: continues an established session.
    Whisper,
    /// `skmsg`: a group or status message under the sender's sender key.
    SenderKey,
}

impl EncKind {
    pub fn wire(self) -> &'static str {
        match self {
            EncKind::PreKey => "pkmsg",
            EncKind::Whisper => "msg",
            EncKind::SenderKey => "skmsg",
        }
    }

    pub(super) fn parse(wire: &str) -> Option<Self> {
        match wire {
            "pkmsg" => Some(EncKind::PreKey),
            "msg" => Some(EncKind::Whisper),
            "skmsg" => Some(EncKind::SenderKey),
            _ => None,
        }
    }
}

/// What the client uploaded for its own device: the bundle a peer needs to
/// open a session to it.
#[derive(Clone)]
pub(super) struct UploadedKeys {
    /// The device that uploaded them (the companion's device number).
    pub device: u32,
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_id: u32,
    pub signed_public: [u8; 32],
    pub signed_signature: Vec<u8>,
    /// One-time prekeys not yet used, oldest first.
    pub one_time: VecDeque<(u32, [u8; 32])>,
}

impl UploadedKeys {
    /// A bundle with the next unused one-time prekey (consumed).
    pub fn take_bundle(&mut self, device: u32) -> Fallible<PreKeyBundle> {
        let one_time = match self.one_time.pop_front() {
            Some((id, key)) => Some((PreKeyId::from(id), djb(&key)?)),
            None => None,
        };
        PreKeyBundle::new(
            self.registration_id,
            DeviceId::from(device),
            one_time,
            SignedPreKeyId::from(self.signed_id),
            djb(&self.signed_public)?,
            self.signed_signature.clone(),
            IdentityKey::new(djb(&self.identity)?),
        )
        .map_err(|e| e.to_string())
    }
}

fn djb(key: &[u8]) -> Fallible<PublicKey> {
    PublicKey::from_djb_public_key_bytes(key).map_err(|e| e.to_string())
}

pub(super) fn rng() -> rand10::rngs::StdRng {
    rand10::make_rng()
}

/// A peer's device: its keys and what it learned from the client.
pub(super) struct SignalDevice {
    identities: Identities,
    sessions: Sessions,
    prekeys: PreKeys,
    signed: SignedPreKeys,
    /// One-time prekeys never handed out in a bundle, oldest first.
    unissued: VecDeque<u32>,
    /// Group and status keys: its own and those distributed to it.
    pub sender_keys: SenderKeys,
}

impl SignalDevice {
    const SIGNED_ID: u32 = 1;

    /// Fresh keys: an identity, a signed prekey and `one_time` prekeys.
    pub fn generate(one_time: u32) -> Fallible<Self> {
        let mut rng = rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let signed_pair = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key()
            .calculate_signature(&signed_pair.public_key.serialize(), &mut rng)
            .map_err(|e| e.to_string())?;
        let signed = SignedPreKeyRecord::new(
            SignedPreKeyId::from(Self::SIGNED_ID),
            Timestamp::from_epoch_millis(super::link::now_secs() * 1000),
            &signed_pair,
            &signature,
        );
        let mut prekeys = HashMap::new();
        for id in 1..=one_time {
            let pair = KeyPair::generate(&mut rng);
            prekeys.insert(id, PreKeyRecord::new(PreKeyId::from(id), &pair));
        }
        Ok(Self {
            identities: Identities {
                own: identity,
                registration_id: rand10::random::<u32>() & 0x3fff,
                known: HashMap::new(),
            },
            sessions: Sessions::default(),
            prekeys: PreKeys(prekeys),
            signed: SignedPreKeys(signed),
            unissued: (1..=one_time).collect(),
            sender_keys: SenderKeys::default(),
        })
    }

    /// The device's identity: for a phone, the account key it signs
    /// linked devices with.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identities.own
    }

    /// This device's bundle as a server hands it out, with the next one-time
    /// prekey (a bundle without one when they ran out, as WhatsApp does).
    pub fn issue_bundle(&mut self, device: u32) -> Fallible<PreKeyBundle> {
        let one_time = match self.unissued.pop_front() {
            Some(id) => {
                let record = self.prekeys.0.get(&id).ok_or("lost a prekey")?;
                Some((PreKeyId::from(id), record.public_key().map_err(sig)?))
            }
            None => None,
        };
        let signed = &self.signed.0;
        PreKeyBundle::new(
            self.identities.registration_id,
            DeviceId::from(device),
            one_time,
            SignedPreKeyId::from(Self::SIGNED_ID),
            signed.public_key().map_err(sig)?,
            signed.signature().map_err(sig)?,
            *self.identities.own.identity_key(),
        )
        .map_err(sig)
    }

    /// Decrypts what `from` sent this device and returns the message.
    pub async fn decrypt(
        &mut self,
        from: &ProtocolAddress,
        kind: EncKind,
        ciphertext: &[u8],
    ) -> Fallible<wa::Message> {
        let message = match kind {
            EncKind::PreKey => CiphertextMessage::PreKeySignalMessage(
                PreKeySignalMessage::try_from(ciphertext).map_err(sig)?,
            ),
            EncKind::Whisper => {
                CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext).map_err(sig)?)
            }
            EncKind::SenderKey => return Err("a skmsg is not a pairwise message".into()),
        };
        let mut rng = rng();
        let result = message_decrypt(
            &message,
            from,
            &mut self.sessions,
            &mut self.identities,
            &mut self.prekeys,
            &self.signed,
            &mut rng,
            UsePQRatchet::No,
        )
        .await
        .map_err(sig)?;
        if let Some(used) = result.consumed_prekey_id {
            self.prekeys.0.remove(&u32::from(used));
        }
        decode_plaintext(&result.plaintext, 2).map_err(|e| e.to_string())
    }

    /// Encrypts `message` to `to`; without a session yet it first opens one
    /// from `bundle` (asked only then), so the first message is a `pkmsg`.
    pub async fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        message: &wa::Message,
        bundle: impl FnOnce() -> Fallible<PreKeyBundle>,
    ) -> Fallible<(EncKind, Vec<u8>)> {
        if !self.sessions.0.contains_key(&to.to_string()) {
            let bundle = bundle()?;
            let mut rng = rng();
            process_prekey_bundle(
                to,
                &mut self.sessions,
                &mut self.identities,
                &bundle,
                &mut rng,
                UsePQRatchet::No,
            )
            .await
            .map_err(sig)?;
        }
        let padded = MessageUtils::encode_and_pad(message);
        let sealed = message_encrypt(&padded, to, &mut self.sessions, &mut self.identities)
            .await
            .map_err(sig)?;
        let kind = match &sealed {
            CiphertextMessage::PreKeySignalMessage(_) => EncKind::PreKey,
            _ => EncKind::Whisper,
        };
        Ok((kind, sealed.serialize().to_vec()))
    }
}

fn sig(e: SignalProtocolError) -> String {
    e.to_string()
}

/// The device's own identity and the identities it trusted on first use.
struct Identities {
    own: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.own.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.known.insert(address.to_string(), *identity);
        Ok(IdentityChange::from_changed(
            previous.is_some_and(|p| p != *identity),
        ))
    }

    async fn is_trusted_identity(
        &self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(self
            .known
            .get(&address.to_string())
            .is_none_or(|known| known == identity))
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}

#[derive(Default)]
struct Sessions(HashMap<String, SessionRecord>);

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

struct PreKeys(HashMap<u32, PreKeyRecord>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(prekey_id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(
        &mut self,
        prekey_id: PreKeyId,
        record: &PreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(u32::from(prekey_id), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

struct SignedPreKeys(SignedPreKeyRecord);

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        if u32::from(id) == SignalDevice::SIGNED_ID {
            Ok(self.0.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0 = record.clone();
        Ok(())
    }
}
