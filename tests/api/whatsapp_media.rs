//! Media through the real WhatsApp Web client, offline. `FakeWhatsApp`
//! answers the client's `media_conn` with its own media host, which checks
//! each upload's auth and token (the SHA-256 of the ciphertext) as
//! WhatsApp's does. A posted image and document must be uploaded encrypted
//! and reach the peer's phone as messages whose key, hashes and direct
//! path let it fetch and decrypt exactly the posted bytes; Laravel hears
//! `sent`. The other way, a peer's image and voice note, encrypted and put
//! on the host by the phone, must be downloaded and decrypted by the
//! client and reach Laravel once with a signed URL that serves exactly the
//! phone's bytes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_testkit::{MediaToSend, PeerMedia};

use crate::helpers::{eventually, message_items, PATIENCE};
use crate::whatsapp_send::{at_peer, linked, Linked, PEER};

/// A PNG-looking image of `n` bytes past its signature (the gateway checks
/// the signature against the type).
fn png(n: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..n).map(|i| (i * 7 % 253) as u8));
    b
}

fn pdf(n: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    b.extend((0..n).map(|i| (i % 241) as u8));
    b
}

/// One OGG page with an Opus head: what a voice note starts with.
fn opus(n: usize) -> Vec<u8> {
    let mut b = b"OggS".to_vec();
    b.extend_from_slice(&[0; 22]);
    b.push(1);
    b.push(19);
    b.extend_from_slice(b"OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00");
    b.extend((0..n).map(|i| (i % 199) as u8));
    b
}

/// Posts `body` as a message of session `id` and waits for `sent`;
/// returns the message id.
async fn post_sent(linked: &Linked, id: &str, body: Value) -> String {
    let r = linked
        .gw
        .post(&format!("/sessions/{id}/messages"), &body)
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    linked.gw.wait_message(id, &mid, "sent").await;
    mid
}

/// The phone decrypted exactly `want` (a mismatch reports sizes and
/// digests, not the bytes).
fn same_bytes(got: &Result<Vec<u8>, String>, want: &[u8]) {
    let digest = |b: &[u8]| (b.len(), hex::encode(Sha256::digest(b)));
    match got {
        Ok(bytes) => assert_eq!(digest(bytes), digest(want), "the exact bytes"),
        Err(why) => panic!("the phone could not have the media: {why}"),
    }
}

/// The media the peer decrypted under `mid`, exactly once.
fn peer_media(linked: &Linked, mid: &str) -> PeerMedia {
    let got = at_peer(&linked.server, mid);
    assert_eq!(
        got.len(),
        1,
        "once: {got:?}; undecryptable: {:?}",
        linked.server.undecryptable()
    );
    assert_eq!(got[0].from, linked.user);
    got[0].media.clone().expect("the message carries media")
}

#[actix_rt::test]
async fn whatsapp_web_media_is_uploaded_encrypted_and_the_peer_decrypts_the_exact_bytes() {
    let id = "media-out";
    let linked = linked(id).await;

    let image = png(40_000);
    let mid = post_sent(
        &linked,
        id,
        json!({"to": PEER, "type": "image", "base64": B64.encode(&image), "caption": "the plan"}),
    )
    .await;
    let got = peer_media(&linked, &mid);
    assert_eq!(got.kind, "image");
    assert_eq!(got.caption.as_deref(), Some("the plan"));
    assert_eq!(got.mimetype.as_deref(), Some("image/png"));
    same_bytes(&got.bytes, &image);

    let doc = pdf(120_000);
    let mid = post_sent(
        &linked,
        id,
        json!({"to": PEER, "type": "document", "base64": B64.encode(&doc),
               "fileName": "invoice-42.pdf", "mimeType": "application/pdf"}),
    )
    .await;
    let got = peer_media(&linked, &mid);
    assert_eq!(got.kind, "document");
    assert_eq!(got.file_name.as_deref(), Some("invoice-42.pdf"));
    assert_eq!(got.mimetype.as_deref(), Some("application/pdf"));
    same_bytes(&got.bytes, &doc);

    let (uploads, _) = linked.server.media_transfers();
    assert_eq!(uploads, 2, "one upload per media message");
    let laravel = &linked.laravel;
    assert!(
        laravel
            .wait_for(PATIENCE, |_| message_items(laravel, "send_result").len()
                >= 2)
            .await
    );
    let results = message_items(laravel, "send_result");
    assert!(results.iter().all(|r| r["status"] == "sent"), "{results:?}");
}

#[actix_rt::test]
async fn whatsapp_web_a_peers_image_and_voice_note_reach_laravel_with_urls_to_the_decrypted_bytes()
{
    let id = "media-in";
    let linked = linked(id).await;
    let Linked {
        laravel,
        server,
        user,
        ..
    } = &linked;

    let image = png(30_000);
    let (image_id, _) = server
        .send_media(
            PEER,
            user,
            &MediaToSend {
                kind: "image".into(),
                bytes: image.clone(),
                mimetype: "image/png".into(),
                caption: Some("look".into()),
                file_name: None,
            },
        )
        .await
        .expect("the peer sends an image");
    let voice = opus(8_000);
    let (voice_id, _) = server
        .send_media(
            PEER,
            user,
            &MediaToSend {
                kind: "voice".into(),
                bytes: voice.clone(),
                mimetype: "audio/ogg; codecs=opus".into(),
                caption: None,
                file_name: None,
            },
        )
        .await
        .expect("the peer sends a voice note");

    let items = |wire: &str| -> Vec<Value> {
        message_items(laravel, "message")
            .into_iter()
            .filter(|m| m["sessionId"] == id && m["id"] == wire)
            .collect()
    };
    let arrived = eventually(PATIENCE, || async {
        !items(&image_id).is_empty() && !items(&voice_id).is_empty()
    })
    .await;
    assert!(
        arrived,
        "Laravel got {:?}",
        message_items(laravel, "message")
    );

    for (wire, kind, bytes) in [(&image_id, "image", &image), (&voice_id, "voice", &voice)] {
        let mine = items(wire);
        assert_eq!(mine.len(), 1, "once: {mine:?}");
        let item = &mine[0];
        assert_eq!(item["kind"], kind, "{item}");
        assert_eq!(item["from"], PEER);
        let media = &item["media"];
        assert_eq!(media["size"], bytes.len(), "{item}");
        assert_eq!(media["sha256"], hex::encode(Sha256::digest(bytes)));
        let url = media["url"].as_str().expect("a signed URL");
        let mut resp = awc::Client::new().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.body().limit(8 << 20).await.unwrap();
        same_bytes(&Ok(body.to_vec()), bytes);
    }
    assert_eq!(items(&image_id)[0]["text"], "look", "the caption");
    let (_, downloads) = server.media_transfers();
    assert_eq!(downloads, 2, "each blob downloaded once");
}
