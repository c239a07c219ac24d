//! Rich outbound messages over real HTTP against the simulator: every kind
//! is accepted, stored and delivered with its fields (what the simulated
//! recipient saw, and `send_result` with its `kind` at Laravel); bad bodies
//! get their 4xx code and store nothing; media by `url` is fetched from a
//! local source server (success, 404, timeout, too large, wrong type);
//! media blobs are gone after sends, failures and refusals; entries stored
//! before rich messages existed are still sent.
//! The fixtures (media bytes, posting helpers) are here with the test of
//! every kind; refusals and `url` fetching are in `intake`, blob lifetime and
//! old records in `storage`.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_actors::messages::content::OutboundContent;
use wagate_testkit::{FakeLaravel, RedisServer};

mod intake;
mod ssrf;
mod storage;
mod upload;

use crate::helpers::{
    eventually, message_items, redis_config, spawn, test_config, TestGateway, PATIENCE,
};

pub(super) const TO: &str = "5215512345678";

pub(super) fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[7; 100]);
    b
}

pub(super) fn mp4() -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0x18];
    b.extend_from_slice(b"ftypmp42");
    b.extend_from_slice(&[1; 64]);
    b
}

/// One OGG page whose first packet is `head` (`OpusHead…` for Opus).
pub(super) fn ogg(head: &[u8]) -> Vec<u8> {
    let mut b = b"OggS".to_vec();
    b.extend_from_slice(&[0; 22]);
    b.push(1);
    b.push(head.len() as u8);
    b.extend_from_slice(head);
    b
}

pub(super) fn webp() -> Vec<u8> {
    let mut b = b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec();
    b.extend_from_slice(&[3; 24]);
    b
}

pub(super) fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) async fn post(gw: &TestGateway, id: &str, body: Value) -> wagate_testkit::Reply {
    gw.post(&format!("/sessions/{id}/messages"), body).await
}

pub(super) async fn accepted(gw: &TestGateway, id: &str, body: Value) -> String {
    let r = post(gw, id, body.clone()).await;
    assert_eq!(
        r.status,
        202,
        "{body}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["messageId"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn every_kind_is_delivered_with_its_fields_and_reported_with_its_kind() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    let gw = spawn(config).await;
    gw.link("rich").await;
    let sim = gw.gateway.simulator().cloned().unwrap();
    let b64 = |b: &[u8]| B64.encode(b);

    let text = accepted(&gw, "rich", json!({"to": TO, "text": "hola @ana", "mentions": ["+5215500000001"], "quotedMessageId": "ABCDEF0123456789ABCDEF0123456789"})).await;
    let image = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "image", "base64": b64(&png()), "caption": "Modelo 1"}),
    )
    .await;
    let video = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "video", "base64": b64(&mp4())}),
    )
    .await;
    let audio = accepted(&gw, "rich", json!({"to": TO, "type": "audio", "base64": b64(b"ID3\x03rest of an mp3"), "mimeType": "audio/mpeg"})).await;
    let voice_bytes = ogg(b"OpusHead\x01\x01\x38\x01");
    let voice = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "voice", "base64": b64(&voice_bytes)}),
    )
    .await;
    let doc = accepted(&gw, "rich", json!({"to": "120363-1234@g.us", "type": "document", "base64": format!("data:application/pdf;base64,{}", b64(b"%PDF-1.7 invoice")), "mimeType": "application/pdf", "fileName": "factura-118.pdf", "caption": "Su factura"})).await;
    let sticker = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "sticker", "base64": b64(&webp())}),
    )
    .await;
    let location = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "location", "lat": 19.4326, "lng": -99.1332, "name": "Zócalo"}),
    )
    .await;
    let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nTEL:+5215500000001\nEND:VCARD";
    let contact = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "contact", "vcard": vcard}),
    )
    .await;
    for id in [&text, &image] {
        gw.wait_message("rich", id, "sent").await;
    }
    let reaction = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "reaction", "messageId": text, "emoji": "👍", "fromMe": true}),
    )
    .await;
    let unreact = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "reaction", "messageId": text, "emoji": ""}),
    )
    .await;
    let edit = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "edit", "messageId": text, "text": "hola, Ana"}),
    )
    .await;
    let revoke = accepted(
        &gw,
        "rich",
        json!({"to": TO, "type": "revoke", "messageId": image}),
    )
    .await;

    let all = [
        (&text, "text"),
        (&image, "image"),
        (&video, "video"),
        (&audio, "audio"),
        (&voice, "voice"),
        (&doc, "document"),
        (&sticker, "sticker"),
        (&location, "location"),
        (&contact, "contact"),
        (&reaction, "reaction"),
        (&unreact, "reaction"),
        (&edit, "edit"),
        (&revoke, "revoke"),
    ];
    for (id, kind) in all {
        let record = gw.wait_message("rich", id, "sent").await;
        assert_eq!(record["type"], kind, "{record}");
        assert_eq!(sim.deliveries(id), 1, "{kind} delivered once");
    }

    let seen = |id: &str| sim.sent_message(id).expect("delivered");
    let t = seen(&text);
    assert_eq!(
        t.content,
        OutboundContent::Text {
            text: "hola @ana".into()
        }
    );
    assert_eq!(t.mentions, ["5215500000001@s.whatsapp.net"]);
    assert_eq!(
        t.quoted_message_id.as_deref(),
        Some("ABCDEF0123456789ABCDEF0123456789")
    );
    let i = seen(&image);
    match &i.content {
        OutboundContent::Image { media, caption } => {
            assert_eq!(media.mime_type, "image/png");
            assert_eq!(caption.as_deref(), Some("Modelo 1"));
        }
        other => panic!("not an image: {other:?}"),
    }
    assert_eq!(
        i.media,
        Some((png().len() as u64, sha(&png()))),
        "the exact bytes"
    );
    assert_eq!(seen(&video).media, Some((mp4().len() as u64, sha(&mp4()))));
    assert!(
        matches!(&seen(&audio).content, OutboundContent::Audio { media } if media.mime_type == "audio/mpeg")
    );
    let v = seen(&voice);
    assert!(
        matches!(&v.content, OutboundContent::Voice { media } if media.mime_type == "audio/ogg; codecs=opus")
    );
    assert_eq!(v.media.unwrap().1, sha(&voice_bytes));
    let d = seen(&doc);
    assert_eq!(d.to, "120363-1234@g.us");
    match &d.content {
        OutboundContent::Document {
            media,
            file_name,
            caption,
        } => {
            assert_eq!(media.mime_type, "application/pdf");
            assert_eq!(file_name, "factura-118.pdf");
            assert_eq!(caption.as_deref(), Some("Su factura"));
        }
        other => panic!("not a document: {other:?}"),
    }
    assert_eq!(d.media.unwrap().1, sha(b"%PDF-1.7 invoice"));
    assert!(
        matches!(&seen(&sticker).content, OutboundContent::Sticker { media } if media.mime_type == "image/webp")
    );
    assert_eq!(
        seen(&location).content,
        OutboundContent::Location {
            lat: 19.4326,
            lng: -99.1332,
            name: Some("Zócalo".into())
        }
    );
    assert_eq!(
        seen(&contact).content,
        OutboundContent::Contact {
            vcard: vcard.into()
        }
    );
    assert_eq!(
        seen(&reaction).content,
        OutboundContent::Reaction {
            message_id: text.clone(),
            emoji: "👍".into(),
            from_me: true
        }
    );
    assert_eq!(
        seen(&unreact).content,
        OutboundContent::Reaction {
            message_id: text.clone(),
            emoji: String::new(),
            from_me: false
        }
    );
    assert_eq!(
        seen(&edit).content,
        OutboundContent::Edit {
            message_id: text.clone(),
            text: "hola, Ana".into()
        }
    );
    assert_eq!(
        seen(&revoke).content,
        OutboundContent::Revoke {
            message_id: image.clone()
        }
    );

    let reported = laravel
        .wait_for(PATIENCE, |_| {
            message_items(&laravel, "send_result").len() >= all.len()
        })
        .await;
    assert!(reported, "{:?}", message_items(&laravel, "send_result"));
    for (id, kind) in all {
        let item = message_items(&laravel, "send_result")
            .into_iter()
            .find(|m| m["messageId"] == id.as_str())
            .expect("reported");
        assert_eq!(item["kind"], kind, "{item}");
    }
    assert_eq!(
        gw.gateway.messages().blob_count().await.unwrap(),
        0,
        "no blob left"
    );
    gw.shutdown().await;
}
