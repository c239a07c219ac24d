//! Rich outbound messages over real HTTP against the simulator: every kind
//! is accepted, stored and delivered with its fields (what the simulated
//! recipient saw, and `send_result` with its `kind` at Laravel); bad bodies
//! get their 4xx code and store nothing; media by `url` is fetched from a
//! local source server (success, 404, timeout, too large, wrong type);
//! media blobs are gone after sends, failures and refusals; entries stored
//! before rich messages existed are still sent.
//! Past ~500 lines on purpose: the fixtures (media bytes, the local media
//! source) serve every test here, and the first test checks each kind's
//! fields one by one.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_actors::messages::content::OutboundContent;
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::helpers::{
    eventually, message_items, redis_config, spawn, test_config, TestGateway, PATIENCE,
};

const TO: &str = "5215512345678";

fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[7; 100]);
    b
}

fn mp4() -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0x18];
    b.extend_from_slice(b"ftypmp42");
    b.extend_from_slice(&[1; 64]);
    b
}

/// One OGG page whose first packet is `head` (`OpusHead…` for Opus).
fn ogg(head: &[u8]) -> Vec<u8> {
    let mut b = b"OggS".to_vec();
    b.extend_from_slice(&[0; 22]);
    b.push(1);
    b.push(head.len() as u8);
    b.extend_from_slice(head);
    b
}

fn webp() -> Vec<u8> {
    let mut b = b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec();
    b.extend_from_slice(&[3; 24]);
    b
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn post(gw: &TestGateway, id: &str, body: Value) -> wagate_testkit::Reply {
    gw.post(&format!("/sessions/{id}/messages"), body).await
}

async fn accepted(gw: &TestGateway, id: &str, body: Value) -> String {
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

#[actix_rt::test]
async fn bad_bodies_get_their_code_and_store_nothing() {
    let mut config = test_config();
    config.messages.media_max_bytes = 1024;
    let gw = spawn(config).await;
    gw.link("bad").await;
    let b64 = |b: &[u8]| B64.encode(b);
    let cases = [
        (
            json!({"to": TO, "type": "poll", "text": "?"}),
            400,
            "unknown_message_type",
        ),
        (json!({"to": TO, "type": "image"}), 400, "missing_field"),
        (
            json!({"to": TO, "type": "document", "base64": b64(b"%PDF")}),
            400,
            "missing_field",
        ),
        (
            json!({"to": TO, "text": "hi", "emoji": "👍"}),
            400,
            "field_not_allowed",
        ),
        (
            json!({"to": TO, "type": "location", "lat": 120.0, "lng": 0.0}),
            400,
            "invalid_body",
        ),
        (
            json!({"to": TO, "type": "location", "lat": 10.0, "lng": -181.0}),
            400,
            "invalid_body",
        ),
        (
            json!({"to": TO, "type": "image", "base64": "@@not base64@@"}),
            400,
            "invalid_base64",
        ),
        (
            json!({"to": TO, "type": "image", "base64": b64(b"%PDF-1.7"), "mimeType": "application/pdf"}),
            400,
            "media_type_not_allowed",
        ),
        (
            json!({"to": TO, "type": "image", "base64": b64(&webp()), "mimeType": "image/png"}),
            400,
            "media_type_mismatch",
        ),
        (
            json!({"to": TO, "type": "voice", "base64": b64(&ogg(b"\x01vorbis\x00\x00\x00\x00"))}),
            400,
            "voice_not_opus",
        ),
        (
            json!({"to": TO, "type": "voice", "base64": b64(b"ID3\x03mp3"), "mimeType": "audio/mpeg"}),
            400,
            "voice_not_opus",
        ),
        (
            json!({"to": TO, "type": "image", "base64": b64(&vec![0u8; 2048])}),
            413,
            "media_too_large",
        ),
        (
            json!({"to": TO, "type": "reaction", "messageId": "3EB0AA", "emoji": "great"}),
            400,
            "invalid_body",
        ),
        (
            json!({"to": TO, "type": "contact", "vcard": "just a name"}),
            400,
            "invalid_body",
        ),
        (
            json!({"to": "not-a-number", "text": "hi"}),
            400,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(&gw, "bad", body.clone()).await;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code.to_owned()),
            "{body}"
        );
    }
    // The body as a whole is capped too, before it is read to the end.
    let huge =
        json!({"to": TO, "type": "document", "fileName": "a", "base64": "A".repeat(300 * 1024)});
    let r = post(&gw, "bad", huge).await;
    assert_eq!(
        (r.status, r.error_code()),
        (413, "payload_too_large".to_owned())
    );
    assert_eq!(gw.gateway.messages().blob_count().await.unwrap(), 0);
    let (counts, _) = gw.gateway.messages().counts();
    assert_eq!(counts.waiting + counts.active, 0, "nothing queued");
    assert_eq!(gw.gateway.simulator().cloned().unwrap().sent(), 0);
    gw.shutdown().await;
}

/// A local media source: `/ok.png`, `/missing` (404), `/never` (no
/// answer), `/endless` (a body that never ends, no length), `/big`
/// (announces more than the cap) and `/page.html` (HTML).
async fn media_source() -> (String, actix_web::dev::ServerHandle) {
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/ok.png",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("image/png").body(png()) }),
            )
            .route(
                "/missing",
                web::get().to(|| async { HttpResponse::NotFound().finish() }),
            )
            .route(
                "/never",
                web::get().to(|| async {
                    std::future::pending::<()>().await;
                    HttpResponse::Ok().finish()
                }),
            )
            .route(
                "/endless",
                web::get().to(|| async {
                    let chunks = futures_util::stream::repeat_with(|| {
                        Ok::<_, actix_web::Error>(Bytes::from(vec![0u8; 16 * 1024]))
                    });
                    HttpResponse::Ok()
                        .content_type("image/png")
                        .streaming(chunks)
                }),
            )
            .route(
                "/big",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("image/png")
                        .body(vec![0u8; 256 * 1024])
                }),
            )
            .route(
                "/page.html",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body("<html></html>")
                }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind the media source");
    let port = server.addrs()[0].port();
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    (format!("http://127.0.0.1:{port}"), handle)
}

#[actix_rt::test]
async fn media_by_url_is_fetched_capped_timed_and_type_checked() {
    let (source, handle) = media_source().await;
    let mut config = test_config();
    config.messages.media_max_bytes = 64 * 1024;
    config.messages.media_fetch_timeout_ms = 500;
    let gw = spawn(config).await;
    gw.link("url").await;
    let sim = gw.gateway.simulator().cloned().unwrap();

    let id = accepted(
        &gw,
        "url",
        json!({"to": TO, "type": "image", "url": format!("{source}/ok.png")}),
    )
    .await;
    gw.wait_message("url", &id, "sent").await;
    let seen = sim.sent_message(&id).unwrap();
    assert_eq!(
        seen.media,
        Some((png().len() as u64, sha(&png()))),
        "the source's bytes"
    );

    let refused = |path: &str| json!({"to": TO, "type": "image", "url": format!("{source}{path}")});
    let r = post(&gw, "url", refused("/missing")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (422, "media_source_status".to_owned())
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("404"));
    let started = Instant::now();
    let r = post(&gw, "url", refused("/never")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (422, "media_source_timeout".to_owned())
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by MEDIA_FETCH_TIMEOUT"
    );
    // An endless body is cut at the cap: answered at all means not read whole.
    let r = post(&gw, "url", refused("/endless")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (413, "media_too_large".to_owned())
    );
    let r = post(&gw, "url", refused("/big")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (413, "media_too_large".to_owned())
    );
    let r = post(&gw, "url", refused("/page.html")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "media_type_not_allowed".to_owned())
    );
    let r = post(
        &gw,
        "url",
        json!({"to": TO, "type": "image", "url": "ftp://example.com/a.png"}),
    )
    .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_body".to_owned()));

    assert_eq!(sim.sent(), 1, "only the good one went out");
    assert_eq!(gw.gateway.messages().blob_count().await.unwrap(), 0);
    gw.shutdown().await;
    handle.stop(false).await;
}

#[actix_rt::test]
async fn blobs_are_stored_until_the_message_ends_and_never_leak_in_redis() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.simulator.qr_first_ms = 60_000;
    config.simulator.qr_rotate_ms = 60_000;
    config.messages.max_retries = 0;
    let gw = spawn(config).await;
    let blobs = || async { gw.gateway.messages().blob_count().await.unwrap() };
    gw.create("blobs").await;
    gw.wait_state("blobs", "qr").await;

    // Accepted while the session is not linked: the bytes wait in Redis.
    let image = |n: u8| {
        let mut b = png();
        b.push(n);
        json!({"to": TO, "type": "image", "base64": B64.encode(&b), "idempotencyKey": format!("img-{n}")})
    };
    let first = accepted(&gw, "blobs", image(1)).await;
    let second = accepted(&gw, "blobs", image(2)).await;
    assert_eq!(blobs().await, 2, "accepted means stored");
    // A repeated idempotency key stores nothing new.
    let again = post(&gw, "blobs", image(1)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["messageId"], first.as_str());
    assert_eq!(blobs().await, 2, "the duplicate's blob was dropped");
    // Media bound for a number that is not on WhatsApp fails for good.
    let doomed = accepted(&gw, "blobs", json!({"to": "0015550001", "type": "document", "base64": B64.encode(b"%PDF-1.7"), "fileName": "x.pdf"})).await;
    // An edit of a message this account never sent is refused for good.
    let bad_edit = accepted(
        &gw,
        "blobs",
        json!({"to": TO, "type": "edit", "messageId": "3EB0000000000000BEEF", "text": "x"}),
    )
    .await;
    assert_eq!(blobs().await, 3);

    gw.simulate("blobs", "scan").await;
    gw.wait_message("blobs", &first, "sent").await;
    gw.wait_message("blobs", &second, "sent").await;
    let failed = gw.wait_message("blobs", &doomed, "failed").await;
    assert_eq!(failed["type"], "document");
    let failed = gw.wait_message("blobs", &bad_edit, "failed").await;
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("not sent by this account"),
        "{failed}"
    );
    let gone = eventually(PATIENCE, || async { blobs().await == 0 }).await;
    assert!(
        gone,
        "{} blobs left after sends and failures",
        blobs().await
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn texts_stored_before_rich_messages_are_still_sent() {
    let redis = RedisServer::start();
    let gw = spawn(redis_config(&redis)).await;
    gw.link("legacy").await;
    // An entry and record exactly as the text-only gateway wrote them.
    let id = "3EB00123456789ABCDEF";
    let entry = json!({"id": id, "session": "legacy", "to": TO, "text": "from before", "createdMs": 1_767_225_600_000u64});
    let record = json!({"messageId": id, "session": "legacy", "to": TO, "status": "queued", "attempts": 0, "lastError": null, "createdMs": 1_767_225_600_000u64, "updatedMs": 1_767_225_600_000u64});
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["SET", &format!("wagate:message:{id}"), &record.to_string()]);
    cli(&["XADD", "wagate:messages", "*", "m", &entry.to_string()]);
    // A new message wakes the queue, which reads both.
    let new = gw.send_text("legacy", TO, "from after").await.json()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = gw.wait_message("legacy", id, "sent").await;
    assert_eq!(old["type"], "text");
    gw.wait_message("legacy", &new, "sent").await;
    let sim = gw.gateway.simulator().cloned().unwrap();
    assert_eq!(
        sim.sent_message(id).unwrap().content,
        OutboundContent::Text {
            text: "from before".into()
        }
    );
    gw.shutdown().await;
}
