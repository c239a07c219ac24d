//! Incoming messages of every kind over real HTTP against the simulator:
//! each kind `simulate/incoming` can deliver reaches Laravel's
//! `/whatsapp/messages/batch` with its fields (caption, location, vCard,
//! reaction target and emoji, edit and revoke targets, reply and mentions);
//! bad bodies get 400 and deliver nothing. Incoming media and its signed
//! URL (bytes, Range, tampered and expired tokens, restarts, expiry) are
//! in `media`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_testkit::FakeLaravel;

mod media;

use crate::helpers::{message_items, spawn, test_config, TestGateway, PATIENCE};

/// A test configuration that forwards to `laravel` with short batches.
pub(super) fn forwarding(laravel: &FakeLaravel) -> wagate::config::Config {
    let mut c = test_config();
    c.laravel.api = laravel.base_url();
    c.laravel.signing_secret = "media-test-secret".to_owned().into();
    c.batch.messages_interval_ms = 50;
    c
}

pub(super) fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Posts one simulated incoming message; it must be accepted.
pub(super) async fn incoming(gw: &TestGateway, session: &str, body: Value) {
    let r = gw
        .post(&format!("/sessions/{session}/simulate/incoming"), &body)
        .await;
    assert_eq!(r.status, 200, "{body}: {}", r.text());
}

/// The incoming message items Laravel has received from `from`, waiting
/// (with a deadline) until there is one.
pub(super) async fn item_from(laravel: &FakeLaravel, from: &str) -> Value {
    let found = laravel
        .wait_for(PATIENCE, |_| {
            message_items(laravel, "message")
                .iter()
                .any(|m| m["from"] == from)
        })
        .await;
    assert!(found, "no message from {from} reached Laravel");
    message_items(laravel, "message")
        .into_iter()
        .find(|m| m["from"] == from)
        .unwrap()
}

#[actix_rt::test]
async fn every_incoming_kind_reaches_laravel_with_its_fields() {
    let laravel = FakeLaravel::start();
    let gw = spawn(forwarding(&laravel)).await;
    gw.link("kinds").await;
    let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nTEL:+5215550001\nEND:VCARD";
    let jpeg = b"\xff\xd8\xff\xe0 a tiny jpeg".to_vec();
    let cases = [
        json!({"from": "1001", "text": "plain", "quotedMessageId": "Q1", "mentions": ["5215550002@s.whatsapp.net"]}),
        json!({"from": "1002", "type": "image", "base64": B64.encode(&jpeg), "caption": "look"}),
        json!({"from": "1003", "type": "location", "lat": 19.43, "lng": -99.13, "name": "Zócalo"}),
        json!({"from": "1004", "type": "contact", "vcard": vcard, "displayName": "Ana"}),
        json!({"from": "1005", "type": "reaction", "messageId": "T1", "emoji": "👍"}),
        json!({"from": "1006", "type": "reaction", "messageId": "T1", "emoji": ""}),
        json!({"from": "1007", "type": "edit", "messageId": "T2", "text": "fixed typo"}),
        json!({"from": "1008", "type": "revoke", "messageId": "T3"}),
        json!({"from": "1009", "type": "unsupported", "originalType": "pollCreationMessage"}),
        json!({"from": "1010", "type": "document", "base64": B64.encode(b"%PDF-1.4"), "mimeType": "application/pdf", "fileName": "invoice.pdf", "caption": "your invoice", "quotedMessageId": "Q9"}),
    ];
    for body in cases {
        incoming(&gw, "kinds", body).await;
    }

    let text = item_from(&laravel, "1001").await;
    assert_eq!(text["kind"], "text");
    assert_eq!(text["text"], "plain");
    assert_eq!(text["quotedMessageId"], "Q1");
    assert_eq!(text["mentions"], json!(["5215550002@s.whatsapp.net"]));
    assert!(text.get("media").is_none() && text.get("targetId").is_none());

    let image = item_from(&laravel, "1002").await;
    assert_eq!(image["kind"], "image");
    assert_eq!(image["text"], "look", "the caption is the item's text");
    assert_eq!(image["media"]["mimeType"], "image/jpeg");
    assert_eq!(image["media"]["size"], jpeg.len());
    assert_eq!(image["media"]["sha256"], sha(&jpeg));
    assert!(image["media"]["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/media/", gw.base_url())));
    assert!(image.get("quotedMessageId").is_none());

    let location = item_from(&laravel, "1003").await;
    assert_eq!(location["kind"], "location");
    assert_eq!(
        location["location"],
        json!({"lat": 19.43, "lng": -99.13, "name": "Zócalo"})
    );

    let contact = item_from(&laravel, "1004").await;
    assert_eq!(contact["kind"], "contact");
    assert_eq!(
        contact["contact"],
        json!({"displayName": "Ana", "vcard": vcard})
    );

    let reaction = item_from(&laravel, "1005").await;
    assert_eq!(
        (&reaction["kind"], &reaction["targetId"], &reaction["emoji"]),
        (&json!("reaction"), &json!("T1"), &json!("👍"))
    );
    let removed = item_from(&laravel, "1006").await;
    assert_eq!(removed["emoji"], "", "an empty emoji removes the reaction");

    let edit = item_from(&laravel, "1007").await;
    assert_eq!(
        (&edit["kind"], &edit["targetId"], &edit["text"]),
        (&json!("edit"), &json!("T2"), &json!("fixed typo"))
    );
    let revoke = item_from(&laravel, "1008").await;
    assert_eq!(
        (&revoke["kind"], &revoke["targetId"]),
        (&json!("revoke"), &json!("T3"))
    );
    let unsupported = item_from(&laravel, "1009").await;
    assert_eq!(unsupported["kind"], "unsupported");
    assert_eq!(unsupported["originalType"], "pollCreationMessage");

    let document = item_from(&laravel, "1010").await;
    assert_eq!(document["kind"], "document");
    assert_eq!(document["text"], "your invoice");
    assert_eq!(document["quotedMessageId"], "Q9");
    assert_eq!(document["media"]["fileName"], "invoice.pdf");
    assert_eq!(document["media"]["mimeType"], "application/pdf");
    gw.shutdown().await;
}

#[actix_rt::test]
async fn media_kinds_carry_their_kind_and_default_types() {
    let laravel = FakeLaravel::start();
    let gw = spawn(forwarding(&laravel)).await;
    gw.link("media-kinds").await;
    let kinds = [
        ("2001", "video", "video/mp4"),
        ("2002", "audio", "audio/mpeg"),
        ("2003", "voice", "audio/ogg; codecs=opus"),
        ("2004", "sticker", "image/webp"),
    ];
    for (from, kind, _) in kinds {
        let bytes = format!("{kind} bytes");
        incoming(
            &gw,
            "media-kinds",
            json!({"from": from, "type": kind, "base64": B64.encode(bytes.as_bytes())}),
        )
        .await;
    }
    for (from, kind, mime) in kinds {
        let item = item_from(&laravel, from).await;
        assert_eq!(item["kind"], kind);
        assert_eq!(item["media"]["mimeType"], mime);
        assert_eq!(
            item["media"]["sha256"],
            sha(format!("{kind} bytes").as_bytes())
        );
    }
    gw.shutdown().await;
}

#[actix_rt::test]
async fn bad_incoming_bodies_get_400_and_deliver_nothing() {
    let laravel = FakeLaravel::start();
    let gw = spawn(forwarding(&laravel)).await;
    gw.link("bad").await;
    let bad = [
        (
            json!({"from": "1", "type": "image", "base64": "not base64!"}),
            "base64",
        ),
        (json!({"from": "1", "type": "image"}), "base64"),
        (
            json!({"from": "1", "type": "image", "base64": "AAAA", "mimeType": "jpeg"}),
            "mimeType",
        ),
        (
            json!({"from": "1", "type": "reaction", "emoji": "👍"}),
            "messageId",
        ),
        (
            json!({"from": "1", "type": "edit", "messageId": "X"}),
            "text",
        ),
        (
            json!({"from": "1", "type": "location", "lat": 91, "lng": 0}),
            "lat",
        ),
        (json!({"from": "1", "type": "contact"}), "vcard"),
        (json!({"from": "1", "type": "poll"}), "type"),
        (json!({"from": "1"}), "text"),
    ];
    for (body, names) in bad {
        let r = gw.post("/sessions/bad/simulate/incoming", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(names), "{body}: {}", r.text());
    }
    // A good one after them: the only item Laravel sees.
    incoming(&gw, "bad", json!({"from": "2", "text": "ok"})).await;
    item_from(&laravel, "2").await;
    assert_eq!(message_items(&laravel, "message").len(), 1);
    assert_eq!(
        gw.gateway
            .incoming_media()
            .count(wagate_actors::clock::unix_ms())
            .await
            .unwrap(),
        0,
        "no media kept for a refused message"
    );
    gw.shutdown().await;
}
