//! Intake of rich messages: bad bodies get their code and store nothing;
//! media by `url` is fetched from a local source with a size cap, a timeout
//! and a content-type check.

use super::*;

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
    // The source is on 127.0.0.1, which the SSRF guard refuses by default.
    config.messages.media_fetch_allow_private = true;
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
