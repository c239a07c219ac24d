//! A fake WhatsApp Web server for contract tests of the real connector:
//! a WebSocket on 127.0.0.1 speaking WhatsApp's framing, the Noise XX
//! handshake (as responder, answering IK attempts with XXfallback) and its
//! binary XML nodes, built from `whatsapp-rust`'s public primitives. It plays
//! the phone too: [`FakeWhatsApp::scan`] signs a pairing the way a phone does.
//!
//! Flows: a new device gets `<pair-device>` refs (→ QR codes); a scan sends
//! `<pair-success>`, and after the client's `<pair-device-sign>` the stream
//! ends with error 515 (restart); a login gets `<success>` and every IQ a
//! bare result; [`FakeWhatsApp::log_out`] ends the account with a 401;
//! [`FakeWhatsApp::refuse_connects`] answers every connect with a `<failure>`.
//! The client under test must skip the server certificate check (the
//! `danger-skip-cert-chain-verify` feature, enabled for tests only).
//!
//! Runs on its own thread and runtime, so any test runtime can use it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Message, ServerBuilder, WebSocketStream};
use whatsapp_rust::wacore::framing::{encode_frame, FrameDecoder};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::noise::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::consts::{
    NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use whatsapp_rust::wacore_binary::marshal::{marshal, unmarshal_ref};
use whatsapp_rust::wacore_binary::util::unpack;
use whatsapp_rust::wacore_binary::{Node, NodeRef};
use whatsapp_rust::waproto::buffa::{Message as _, MessageField};
use whatsapp_rust::waproto::whatsapp as wa;

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
}

/// A command to one live connection.
enum Push {
    Node(Node),
    /// Send this node, then hang up.
    Last(Node),
}

struct Live {
    push: mpsc::UnboundedSender<Push>,
    /// Pairing refs issued to an unregistered device.
    refs: Vec<String>,
    /// The account's phone number once logged in.
    user: Option<String>,
}

#[derive(Default)]
struct Shared {
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
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared {
            next_user: 15_550_000_000,
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
                    tokio::select! {
                        () = accept_loop(listener, s, st) => {}
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
        let live = shared
            .live
            .values()
            .find(|l| l.refs.iter().any(|r| r == pair_ref))
            .ok_or("no connection issued this QR code")?;
        let node = pair_success(&user, &identity, &adv)?;
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>, stats: Arc<FakeStats>) {
    let ids = AtomicUsize::new(0);
    while let Ok((tcp, _)) = listener.accept().await {
        let id = ids.fetch_add(1, Ordering::SeqCst);
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, stats) = (Arc::clone(&shared), Arc::clone(&stats));
        tokio::spawn(async move {
            let _ = serve(id, tcp, &shared, &stats).await;
            shared.lock().live.remove(&id);
        });
    }
}

/// One client connection: WebSocket upgrade, handshake, then nodes.
async fn serve(
    id: usize,
    tcp: TcpStream,
    shared: &Mutex<Shared>,
    stats: &FakeStats,
) -> Fallible<()> {
    let (_request, mut ws) = ServerBuilder::new()
        .accept(tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut frames = Frames::default();

    // -> e (XX), or e, s, payload (IK: refused, answered as XXfallback).
    let first = frames.next(&mut ws, true).await?;
    let hello = wa::HandshakeMessage::decode_from_slice(&first).map_err(|e| e.to_string())?;
    let client_hello = hello.client_hello.into_option().ok_or("no ClientHello")?;
    let client_eph: [u8; 32] = client_hello
        .ephemeral
        .ok_or("no ephemeral")?
        .try_into()
        .map_err(|_| "bad ephemeral")?;
    let pattern = if client_hello.r#static.is_some() {
        NOISE_PATTERN_XXFALLBACK
    } else {
        NOISE_PATTERN_XX
    };
    let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER).map_err(|e| e.to_string())?;
    noise.authenticate(&client_eph);

    // <- e, ee, s, es, certificate
    let (eph, server_static) = {
        let mut rng = rand10::rng();
        (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng))
    };
    let static_pub: [u8; 32] = server_static
        .public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| "key length")?;
    noise.authenticate(eph.public_key.public_key_bytes());
    let hs = |e| format!("{e}");
    noise
        .mix_shared_secret(eph.private_key.serialize().as_slice(), &client_eph)
        .map_err(hs)?;
    let enc_static = noise.encrypt(&static_pub).map_err(hs)?;
    noise
        .mix_shared_secret(
            server_static.private_key.serialize().as_slice(),
            &client_eph,
        )
        .map_err(hs)?;
    let cert = cert_chain(&static_pub);
    let enc_cert = noise.encrypt(&cert).map_err(hs)?;
    let server_hello = wa::HandshakeMessage {
        server_hello: MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(eph.public_key.public_key_bytes().to_vec()),
            r#static: Some(enc_static),
            payload: Some(enc_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    send_raw(&mut ws, &server_hello.encode_to_vec()).await?;

    // -> s, se, payload
    let finish = frames.next(&mut ws, false).await?;
    let finish = wa::HandshakeMessage::decode_from_slice(&finish).map_err(|e| e.to_string())?;
    let finish = finish
        .client_finish
        .into_option()
        .ok_or("no ClientFinish")?;
    let client_static = noise
        .decrypt(finish.r#static.as_deref().ok_or("no static")?)
        .map_err(hs)?;
    noise
        .mix_shared_secret(eph.private_key.serialize().as_slice(), &client_static)
        .map_err(hs)?;
    let payload = noise
        .decrypt(finish.payload.as_deref().ok_or("no payload")?)
        .map_err(hs)?;
    let payload = wa::ClientPayload::decode_from_slice(&payload).map_err(|e| e.to_string())?;
    let (read, write) = noise.finish().map_err(hs)?;
    let mut link = Link {
        ws,
        frames,
        read,
        write,
        read_count: 0,
        write_count: 0,
    };

    let refusal = shared.lock().refusal.clone();
    if let Some(code) = refusal {
        let failure = NodeBuilder::new("failure").attr("reason", code).build();
        link.send(&failure).await?;
        return link.close().await;
    }
    let (push_tx, mut push_rx) = mpsc::unbounded_channel();
    let user = payload.username.map(|u| u.to_string());
    match &user {
        None => {
            stats.registrations.fetch_add(1, Ordering::SeqCst);
            let refs: Vec<String> = (0..6).map(|i| format!("2@fake-ref-{id}-{i}")).collect();
            let node = pair_device(&refs);
            shared.lock().live.insert(
                id,
                Live {
                    push: push_tx,
                    refs,
                    user: None,
                },
            );
            link.send(&node).await?;
        }
        Some(user) => {
            stats.logins.fetch_add(1, Ordering::SeqCst);
            if shared.lock().revoked.contains(user) {
                stats.logouts_sent.fetch_add(1, Ordering::SeqCst);
                let failure = NodeBuilder::new("failure").attr("reason", "401").build();
                link.send(&failure).await?;
                return link.close().await;
            }
            {
                let mut shared = shared.lock();
                shared.live.insert(
                    id,
                    Live {
                        push: push_tx,
                        refs: Vec::new(),
                        user: Some(user.clone()),
                    },
                );
                let open = shared
                    .live
                    .values()
                    .filter(|l| l.user.as_ref() == Some(user))
                    .count();
                let peak = shared.peak.entry(user.clone()).or_default();
                *peak = (*peak).max(open);
            }
            let success = NodeBuilder::new("success")
                .attr("t", now_secs().to_string())
                .attr("lid", format!("{user}1@lid"))
                .attr("props", "1")
                .build();
            link.send(&success).await?;
            let offline = NodeBuilder::new("ib")
                .children([NodeBuilder::new("offline").attr("count", "0").build()])
                .build();
            link.send(&offline).await?;
        }
    }

    loop {
        tokio::select! {
            push = push_rx.recv() => match push {
                Some(Push::Node(node)) => link.send(&node).await?,
                Some(Push::Last(node)) => {
                    link.send(&node).await?;
                    return link.close().await;
                }
                None => return link.close().await,
            },
            incoming = link.recv() => {
                let plain = incoming?;
                let data = unpack(&plain).map_err(|e| e.to_string())?;
                let node = unmarshal_ref(&data).map_err(|e| e.to_string())?;
                if let Some(reply) = answer(&node) {
                    link.send(&reply).await?;
                }
                if node.tag.as_ref() == "presence" {
                    if let (Some(user), Some(kind)) = (&user, node.get_attr("type")) {
                        let kind = kind.as_str().into_owned();
                        shared.lock().presences.push((user.clone(), kind));
                    }
                }
                if node.get_optional_child_by_tag(&["pair-device-sign"]).is_some() {
                    // Paired: the server restarts the stream, as WhatsApp does.
                    stats.restarts_sent.fetch_add(1, Ordering::SeqCst);
                    link.send(&stream_error("515")).await?;
                    return link.close().await;
                }
            }
        }
    }
}

/// A bare result for every IQ the client asks (it copes with empty ones).
fn answer(node: &NodeRef<'_>) -> Option<Node> {
    if node.tag.as_ref() != "iq" {
        return None;
    }
    let kind = node.get_attr("type")?.as_str();
    if kind != "get" && kind != "set" {
        return None;
    }
    let id = node.get_attr("id")?.as_str().into_owned();
    let reply = NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("id", id)
        .attr("type", "result");
    let app_state = node
        .get_attr("xmlns")
        .is_some_and(|x| x.as_str() == "w:sync:app:state");
    if !app_state {
        return Some(reply.build());
    }
    // App-state sync: every asked collection answers 409 "conflict, nothing
    // more", which a client with nothing to push takes as up to date.
    let names: Vec<String> = node
        .get_optional_child_by_tag(&["sync"])
        .and_then(|sync| sync.children())
        .map(|children| {
            children
                .iter()
                .filter_map(|c| c.get_attr("name").map(|n| n.as_str().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let collections = names.into_iter().map(|name| {
        NodeBuilder::new("collection")
            .attr("name", name)
            .attr("type", "error")
            .children([NodeBuilder::new("error")
                .attr("code", "409")
                .attr("text", "conflict")
                .build()])
            .build()
    });
    Some(
        reply
            .children([NodeBuilder::new("sync").children(collections).build()])
            .build(),
    )
}

fn pair_device(refs: &[String]) -> Node {
    NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", "pair-device-1")
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device")
            .children(
                refs.iter()
                    .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
            )
            .build()])
        .build()
}

/// A certificate chain naming `server_static` as the leaf key. Its
/// signatures are blank: only a client built to skip the check accepts it.
fn cert_chain(server_static: &[u8; 32]) -> Vec<u8> {
    use wa::cert_chain::{noise_certificate::Details, NoiseCertificate};
    let now = now_secs();
    let cert = |serial, issuer, key: Vec<u8>| NoiseCertificate {
        details: Some(
            Details {
                serial: Some(serial),
                issuer_serial: Some(issuer),
                key: Some(key),
                not_before: Some(now - 3600),
                not_after: Some(now + 30 * 86_400),
            }
            .encode_to_vec(),
        ),
        signature: Some(vec![0; 64]),
    };
    wa::CertChain {
        intermediate: MessageField::some(cert(1, 0, vec![0xCC; 32])),
        leaf: MessageField::some(cert(2, 1, server_static.to_vec())),
    }
    .encode_to_vec()
}

fn stream_error(code: &str) -> Node {
    NodeBuilder::new("stream:error").attr("code", code).build()
}

/// What a phone sends to link a device: the device identity signed by the
/// account key and MACed with the QR's secret (`ADVSignedDeviceIdentityHMAC`).
fn pair_success(user: &str, device_identity: &[u8; 32], adv_secret: &[u8; 32]) -> Fallible<Node> {
    let mut rng = rand10::rng();
    let account = KeyPair::generate(&mut rng);
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(1),
        timestamp: Some(now_secs()),
        key_index: Some(1),
        ..Default::default()
    }
    .encode_to_vec();
    let mut signed = Vec::with_capacity(2 + details.len() + 32);
    signed.extend_from_slice(&[6, 0]);
    signed.extend_from_slice(&details);
    signed.extend_from_slice(device_identity);
    let signature = account
        .private_key
        .calculate_signature(&signed, &mut rng)
        .map_err(|e| e.to_string())?;
    let identity = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(adv_secret).map_err(|e| e.to_string())?;
    mac.update(&identity);
    let container = wa::ADVSignedDeviceIdentityHMAC {
        details: Some(identity),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    Ok(NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", "pair-success-1")
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(container).build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{user}:1@s.whatsapp.net"))
                    .attr("lid", format!("{user}1:1@lid"))
                    .build(),
                NodeBuilder::new("biz").attr("name", "Fake Shop").build(),
            ])
            .build()])
        .build())
}

/// Incoming length-prefixed frames across WebSocket messages.
#[derive(Default)]
struct Frames {
    decoder: FrameDecoder,
}

impl Frames {
    async fn next(
        &mut self,
        ws: &mut WebSocketStream<TcpStream>,
        first: bool,
    ) -> Fallible<Vec<u8>> {
        let mut header_left = if first { WA_CONN_HEADER.len() } else { 0 };
        loop {
            if let Some(frame) = self.decoder.decode_frame() {
                return Ok(frame.to_vec());
            }
            let msg = ws
                .next()
                .await
                .ok_or("client hung up")?
                .map_err(|e| e.to_string())?;
            let mut data: &[u8] = msg.as_payload();
            // The first message starts with the connection header `WA 6 v`.
            let skip = header_left.min(data.len());
            data = &data[skip..];
            header_left -= skip;
            self.decoder.feed(data);
        }
    }
}

async fn send_raw(ws: &mut WebSocketStream<TcpStream>, payload: &[u8]) -> Fallible<()> {
    let frame = encode_frame(payload, None).map_err(|e| e.to_string())?;
    ws.send(Message::binary(frame))
        .await
        .map_err(|e| e.to_string())
}

/// The encrypted channel after the handshake.
struct Link {
    ws: WebSocketStream<TcpStream>,
    frames: Frames,
    read: NoiseCipher,
    write: NoiseCipher,
    read_count: u32,
    write_count: u32,
}

impl Link {
    async fn send(&mut self, node: &Node) -> Fallible<()> {
        let plain = marshal(node).map_err(|e| e.to_string())?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_count, &plain)
            .map_err(|e| e.to_string())?;
        self.write_count += 1;
        send_raw(&mut self.ws, &sealed).await
    }

    async fn recv(&mut self) -> Fallible<Vec<u8>> {
        let mut frame = self.frames.next(&mut self.ws, false).await?;
        self.read
            .decrypt_in_place_with_counter(self.read_count, &mut frame)
            .map_err(|e| e.to_string())?;
        self.read_count += 1;
        Ok(frame)
    }

    async fn close(mut self) -> Fallible<()> {
        let _ = self.ws.close().await;
        Ok(())
    }
}
