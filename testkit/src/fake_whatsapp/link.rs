//! The wire under [`super::FakeWhatsApp`]: the WebSocket upgrade, the Noise
//! XX handshake as responder (IK attempts answered with XXfallback, a blank
//! certificate chain only a client that skips the check accepts), and the
//! encrypted, length-framed channel of binary nodes that follows. Called by
//! `serve` once per connection.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::{Message, ServerBuilder, WebSocketStream};
use whatsapp_rust::wacore::framing::{encode_frame, FrameDecoder};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::noise::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore_binary::consts::{
    NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use whatsapp_rust::wacore_binary::marshal::marshal;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::waproto::buffa::{Message as _, MessageField};
use whatsapp_rust::waproto::whatsapp as wa;

use super::Fallible;

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Upgrades `tcp`, runs the handshake and returns the encrypted channel with
/// what the client said about itself (its account, when it has one).
pub(super) async fn accept(tcp: TcpStream) -> Fallible<(Link, wa::ClientPayload)> {
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
    let link = Link {
        ws,
        frames,
        read,
        write,
        read_count: 0,
        write_count: 0,
    };

    Ok((link, payload))
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
pub(super) struct Link {
    ws: WebSocketStream<TcpStream>,
    frames: Frames,
    read: NoiseCipher,
    write: NoiseCipher,
    read_count: u32,
    write_count: u32,
}

impl Link {
    pub(super) async fn send(&mut self, node: &Node) -> Fallible<()> {
        let plain = marshal(node).map_err(|e| e.to_string())?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_count, &plain)
            .map_err(|e| e.to_string())?;
        self.write_count += 1;
        send_raw(&mut self.ws, &sealed).await
    }

    pub(super) async fn recv(&mut self) -> Fallible<Vec<u8>> {
        let mut frame = self.frames.next(&mut self.ws, false).await?;
        self.read
            .decrypt_in_place_with_counter(self.read_count, &mut frame)
            .map_err(|e| e.to_string())?;
        self.read_count += 1;
        Ok(frame)
    }

    pub(super) async fn close(mut self) -> Fallible<()> {
        let _ = self.ws.close().await;
        Ok(())
    }
}
