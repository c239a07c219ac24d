//! A fake WhatsApp Web server for contract tests of the real connector:
//! a WebSocket on 127.0.0.1 speaking WhatsApp's framing, the Noise XX
//! handshake (as responder, answering IK attempts with XXfallback) and its
//! binary XML nodes, built from `whatsapp-rust`'s public primitives. It plays
//! the phone too: [`FakeWhatsApp::scan`] signs a pairing the way a phone does.
//!
//! Flows: a new device gets `<pair-device>` refs (→ QR codes); a scan sends
//! `<pair-success>`, and after the client's `<pair-device-sign>` the stream
//! ends with error 515 (restart); a login gets `<success>`;
//! [`FakeWhatsApp::log_out`] ends the account with a 401;
//! [`FakeWhatsApp::refuse_connects`] answers every connect with a `<failure>`.
//!
//! It speaks Signal too: a phone book of peers ([`FakeWhatsApp::add_peer`])
//! with real keys answers the client's usync, prekey and upload IQs; what the
//! client sends them is decrypted and kept ([`FakeWhatsApp::peer_messages`]),
//! and a peer can write to a linked account ([`FakeWhatsApp::send_text`],
//! also from its privacy id: [`FakeWhatsApp::send_text_as`]) and send
//! delivery and read receipts ([`FakeWhatsApp::peer_receipt`]).
//! Groups ([`FakeWhatsApp::add_group`]) work with sender keys: the
//! client's distribution and `skmsg` reach every member's phone, and a
//! member can write to a group or post a status
//! ([`FakeWhatsApp::send_group_text`]).
//! Media goes through its media host (`media`): the client's uploads are
//! decrypted by the phones they are for, and a phone's media
//! ([`FakeWhatsApp::send_media`]) is there for the client to download.
//! [`FakeWhatsApp::withhold_acks`] keeps sends in flight (for a crash test).
//! Like WhatsApp, it sends a message again at the account's next login
//! until the client acks it with a receipt (`FakeStats::redeliveries`).
//! Every other IQ gets a bare result.
//! The client under test must skip the server certificate check (the
//! `danger-skip-cert-chain-verify` feature, enabled for tests only).
//!
//! Runs on its own thread and runtime, so any test runtime can use it.

mod groups;
mod link;
mod media;
mod messages;
mod pairing;
mod phone_book;
mod sender_keys;
mod serve;
mod signal;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::Node;

pub use groups::Addressing;
use groups::Groups;
pub use media::{MediaToSend, PeerMedia};
pub use messages::{PeerMessage, PeerReceipt, SenderAddress};
use pairing::{pair_success, stream_error};
use phone_book::PhoneBook;
use serve::accept_loop;
pub use signal::EncKind;

type Fallible<T> = Result<T, String>;

/// What tests read: how often each thing happened.
#[derive(Debug, Default)]
pub struct FakeStats {
    pub connections: AtomicUsize,
    pub registrations: AtomicUsize,
    pub logins: AtomicUsize,
    pub pairings: AtomicUsize,
    pub restarts_sent: AtomicUsize,
    pub logouts_sent: AtomicUsize,
    /// Messages sent again at a login because the client never acked them.
    pub redeliveries: AtomicUsize,
}

/// A command to one live connection.
pub(super) enum Push {
    Node(Node),
    /// Send this node, then hang up.
    Last(Node),
}

pub(super) struct Live {
    push: mpsc::UnboundedSender<Push>,
    /// Pairing refs issued to an unregistered device.
    refs: Vec<String>,
    /// The account's phone number once logged in.
    user: Option<String>,
}

#[derive(Default)]
pub(super) struct Shared {
    live: HashMap<usize, Live>,
    /// Accounts the phone unlinked: their logins fail with 401.
    revoked: Vec<String>,
    /// The most connections each account had open at once: more than one
    /// means two clients ran on one device.
    peak: HashMap<String, usize>,
    /// `<presence type=…>` announcements received, with the account that sent them.
    presences: Vec<(String, String)>,
    /// When set, every connection gets `<failure reason=…>` after the handshake.
    refusal: Option<String>,
    next_user: u64,
    /// Accounts on WhatsApp: peers and linked accounts' phones.
    book: PhoneBook,
    /// Groups and their members, for the client's group-info queries.
    groups: Groups,
    /// What the phones decrypted, in arrival order.
    inbox: Vec<PeerMessage>,
    /// `<enc>`s no phone could decrypt, with why.
    undecryptable: Vec<String>,
    /// `<receipt>`s the client sent (id, type; `""` is a delivery receipt).
    client_receipts: Vec<(String, String)>,
    /// Every `<message>` stanza routed to a phone (id, the phone's number),
    /// decryptable or not: how often a message reached it.
    stanzas: Vec<(String, String)>,
    /// Messages delivered to an account (its number, the id, the stanza)
    /// that its client has not acked with a receipt yet: WhatsApp sends them
    /// again at the account's next login.
    unacked: Vec<(String, String, Node)>,
    /// While set, messages are routed but not acked, so a send stays in
    /// flight at the client.
    withhold_acks: bool,
    next_message: u64,
    /// `<chatstate>`s the client sent: (to, `composing`, `recording` for
    /// `composing media="audio"`, or `paused`).
    chat_states: Vec<(String, String)>,
    /// The media host's blobs, and its `host:port` for `media_conn`.
    blobs: media::Blobs,
    media_host: String,
}

/// The server. Dropping it stops accepting and closes every connection.
pub struct FakeWhatsApp {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<FakeStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeWhatsApp {
    pub fn start() -> Self {
        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            (listener, addr)
        };
        let (std_listener, addr) = bind();
        let (media_listener, media_addr) = bind();
        let blobs = media::Blobs::default();
        let shared = Arc::new(Mutex::new(Shared {
            next_user: 15_550_000_000,
            blobs: blobs.clone(),
            media_host: media_addr.to_string(),
            ..Shared::default()
        }));
        let stats = Arc::new(FakeStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (s, st) = (Arc::clone(&shared), Arc::clone(&stats));
        std::thread::Builder::new()
            .name("fake-whatsapp".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    let media = TcpListener::from_std(media_listener).expect("listener");
                    tokio::select! {
                        () = accept_loop(listener, s, st) => {}
                        () = media::serve(media, blobs, media_addr.to_string()) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("thread");
        Self {
            addr,
            shared,
            stats,
            stop: Some(stop),
        }
    }

    /// The URL to give the client (`WA_URL`).
    pub fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    pub fn stats(&self) -> &FakeStats {
        &self.stats
    }

    /// The phone scans `qr` (as shown by the client): the connection that
    /// issued its ref receives a signed `<pair-success>`. Returns the JID
    /// of the new account.
    pub fn scan(&self, qr: &str) -> Fallible<String> {
        let mut fields = qr.split(',');
        let (Some(pair_ref), Some(_noise), Some(identity), Some(adv)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("not a WhatsApp QR code: {qr}"));
        };
        let identity: [u8; 32] = decode32(identity)?;
        let adv: [u8; 32] = decode32(adv)?;
        let mut shared = self.shared.lock();
        shared.next_user += 1;
        let user = shared.next_user.to_string();
        // The account's phone joins the book: the client sends it copies of
        // what it sends, and its identity signs the new device.
        let phone = shared.book.add(&user, Some(&format!("{user}1")))?;
        let account_key = phone
            .device
            .try_lock()
            .map_err(|_| "the phone is busy")?
            .identity()
            .clone();
        let live = shared
            .live
            .values()
            .find(|l| l.refs.iter().any(|r| r == pair_ref))
            .ok_or("no connection issued this QR code")?;
        let node = pair_success(&user, &account_key, &identity, &adv)?;
        live.push
            .send(Push::Node(node))
            .map_err(|_| "the connection closed")?;
        self.stats.pairings.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{user}@s.whatsapp.net"))
    }

    /// The presence types (`available`, `unavailable`) account `user`
    /// announced, oldest first.
    pub fn presences(&self, user: &str) -> Vec<String> {
        self.shared
            .lock()
            .presences
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, kind)| kind.clone())
            .collect()
    }

    /// The most connections account `user` had open at once.
    pub fn peak_connections(&self, user: &str) -> usize {
        self.shared
            .lock()
            .peak
            .get(user)
            .copied()
            .unwrap_or_default()
    }

    /// Sends `<stream:error>` (with `code`, or none) to the account's live
    /// connection and keeps the connection open.
    pub fn stream_error(&self, user: &str, code: Option<&str>) {
        let mut node = NodeBuilder::new("stream:error");
        if let Some(code) = code {
            node = node.attr("code", code);
        }
        let node = node.build();
        for live in self.shared.lock().live.values() {
            if live.user.as_deref() == Some(user) {
                let _ = live.push.send(Push::Node(node.clone()));
            }
        }
    }

    /// WhatsApp refuses every connection from now on with a connect
    /// `<failure reason="{code}">` right after the handshake (409: bad user
    /// agent, 402 without expiry: a ban of unknown length, …).
    pub fn refuse_connects(&self, code: &str) {
        self.shared.lock().refusal = Some(code.to_owned());
    }

    /// The phone unlinks the account (`user` = its phone number): its live
    /// connection gets stream error 401 and later logins fail with 401.
    pub fn log_out(&self, user: &str) {
        let mut shared = self.shared.lock();
        shared.revoked.push(user.to_owned());
        for live in shared.live.values() {
            if live.user.as_deref() == Some(user) {
                let _ = live.push.send(Push::Last(stream_error("401")));
                self.stats.logouts_sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The phone book and the messages through it.
impl FakeWhatsApp {
    /// Puts a phone on WhatsApp: account `phone` (digits) with fresh Signal
    /// keys on its device 0, and privacy id `lid` (digits) when given.
    /// Returns its JID.
    pub fn add_peer(&self, phone: &str, lid: Option<&str>) -> Fallible<String> {
        self.shared.lock().book.add(phone, lid)?;
        Ok(format!("{phone}@s.whatsapp.net"))
    }

    /// What phone `phone` received and decrypted, oldest first.
    pub fn peer_messages(&self, phone: &str) -> Vec<PeerMessage> {
        self.shared
            .lock()
            .inbox
            .iter()
            .filter(|m| m.to == phone)
            .cloned()
            .collect()
    }

    /// `<enc>`s the phones could not decrypt, with why.
    pub fn undecryptable(&self) -> Vec<String> {
        self.shared.lock().undecryptable.clone()
    }

    /// One-time prekeys account `user`'s linked device uploaded and no peer
    /// has used yet.
    pub fn uploaded_prekeys(&self, user: &str) -> usize {
        self.shared.lock().book.uploaded_prekeys(user)
    }

    /// Receipts the client sent for message `id` (their types; `""` is a
    /// delivery receipt).
    pub fn client_receipts(&self, id: &str) -> Vec<String> {
        self.shared
            .lock()
            .client_receipts
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, kind)| kind.clone())
            .collect()
    }

    /// Phone `from` writes `text` to account `to`: encrypted to its linked
    /// device from the prekeys the client uploaded and delivered on the
    /// account's live connection. Returns the message id and whether it
    /// went as `pkmsg` or `msg`.
    pub async fn send_text(&self, from: &str, to: &str, text: &str) -> Fallible<(String, EncKind)> {
        self.send_text_as(from, to, text, SenderAddress::Phone)
            .await
    }

    /// As [`Self::send_text`], addressed as `address` says (from the phone's
    /// privacy id, with or without its number beside it).
    pub async fn send_text_as(
        &self,
        from: &str,
        to: &str,
        text: &str,
        address: SenderAddress,
    ) -> Fallible<(String, EncKind)> {
        let id = self.next_id();
        let (kind, node) = messages::seal_text(&self.shared, from, to, text, &id, address).await?;
        self.deliver(to, node)?;
        Ok((id, kind))
    }

    /// Phone `from` tells account `to` it received (or read) the messages
    /// `ids` that account sent it.
    pub fn peer_receipt(
        &self,
        from: &str,
        to: &str,
        ids: &[String],
        kind: PeerReceipt,
    ) -> Fallible<()> {
        self.deliver(to, messages::receipt(from, ids, kind)?)
    }

    /// The ids of every `<message>` stanza that reached phone `phone`, in
    /// arrival order, whether it could decrypt them or not.
    pub fn stanzas_to(&self, phone: &str) -> Vec<String> {
        self.shared
            .lock()
            .stanzas
            .iter()
            .filter(|(_, to)| to == phone)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The chat states the client showed to `to` (a phone number), in order:
    /// `composing`, `recording` or `paused`.
    pub fn chat_states_to(&self, to: &str) -> Vec<String> {
        self.shared
            .lock()
            .chat_states
            .iter()
            .filter(|(t, _)| t.split('@').next() == Some(to))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// While `on`, messages the client sends are routed (the phones get
    /// them) but never acked: the client's send stays in flight.
    pub fn withhold_acks(&self, on: bool) {
        self.shared.lock().withhold_acks = on;
    }

    /// Creates group `id` (its JID's user part, e.g. `120363000000000001`)
    /// with the phones `members` (the linked account's number among them
    /// when it is a member), addressed as `addressing` says. Returns its JID.
    pub fn add_group(&self, id: &str, members: &[&str], addressing: Addressing) -> String {
        self.shared.lock().groups.add(id, members, addressing);
        format!("{id}@g.us")
    }

    /// Phone `from` writes `text` to `chat` (a group JID, or
    /// `status@broadcast` for a status post) and WhatsApp delivers it to
    /// account `to`: the sender key distribution pairwise the first time
    /// (its kind is returned, `None` when the key went before), then the
    /// text as a `skmsg`. The sender is named as `address` says. Returns
    /// the message id.
    pub async fn send_group_text(
        &self,
        from: &str,
        to: &str,
        chat: &str,
        text: &str,
        address: SenderAddress,
    ) -> Fallible<(String, Option<EncKind>)> {
        let id = self.next_id();
        let (kind, node) =
            groups::seal_group_text(&self.shared, from, to, chat, text, &id, address).await?;
        self.deliver(to, node)?;
        Ok((id, kind))
    }

    pub(super) fn next_id(&self) -> String {
        let mut shared = self.shared.lock();
        shared.next_message += 1;
        format!("FAKE{:016X}", shared.next_message)
    }

    /// Puts `node` on account `to`'s live connection (a `<message>` is kept
    /// until the client acks it, to be sent again at its next login).
    pub(super) fn deliver(&self, to: &str, node: Node) -> Fallible<()> {
        let mut shared = self.shared.lock();
        if node.tag == "message" {
            let id = node.attrs().optional_string("id").unwrap_or_default();
            let id = id.to_string();
            shared.unacked.push((to.to_owned(), id, node.clone()));
        }
        let live = shared
            .live
            .values()
            .find(|l| l.user.as_deref() == Some(to))
            .ok_or_else(|| format!("{to} is not connected"))?;
        live.push
            .send(Push::Node(node))
            .map_err(|_| "the connection closed".to_owned())
    }
}

impl Drop for FakeWhatsApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn decode32(b64: &str) -> Fallible<[u8; 32]> {
    B64.decode(b64)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "a QR key is not 32 bytes".to_owned())
}
