//! The SSRF guard of media by `url`: with the default settings a URL that
//! names or resolves to a loopback, private, link-local (cloud metadata)
//! or unspecified address is refused with 422 `media_source_forbidden`
//! before any connection (the source never sees a request) and stores
//! nothing; `MEDIA_FETCH_ALLOW_PRIVATE=true` lets the same URL through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

/// A source on 127.0.0.1 serving a PNG and counting the requests it got.
async fn counting_source() -> (u16, Arc<AtomicUsize>, actix_web::dev::ServerHandle) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().content_type("image/png").body(png()) }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind the source");
    let port = server.addrs()[0].port();
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    (port, hits, handle)
}

#[actix_rt::test]
async fn media_urls_reaching_internal_addresses_are_refused_by_default() {
    let (port, hits, source) = counting_source().await;
    let redis = RedisServer::start();
    let config = redis_config(&redis);
    assert!(
        !config.messages.media_fetch_allow_private,
        "the default is off"
    );
    let gw = spawn(config).await;
    gw.link("ssrf").await;
    let image = |url: String| json!({"to": TO, "type": "image", "url": url});
    for url in [
        format!("http://127.0.0.1:{port}/a.png"),
        // A name is judged by what it resolves to.
        format!("http://localhost:{port}/a.png"),
        format!("http://[::1]:{port}/a.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/a.png"),
        format!("http://0.0.0.0:{port}/a.png"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/a.png".to_owned(),
        "https://192.168.0.10/a.png".to_owned(),
        "http://[fd00::1]/a.png".to_owned(),
    ] {
        let r = post(&gw, "ssrf", image(url.clone())).await;
        assert_eq!(
            (r.status, r.error_code()),
            (422, "media_source_forbidden".to_owned()),
            "{url}: {}",
            r.text()
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request reached the source"
    );
    assert_eq!(gw.gateway.messages().blob_count().await.unwrap(), 0);
    let (counts, _) = gw.gateway.messages().counts();
    assert_eq!(counts.waiting + counts.active, 0, "nothing queued");
    gw.shutdown().await;

    // Allowed, the same source is fetched.
    let mut config = redis_config(&redis);
    config.messages.media_fetch_allow_private = true;
    let gw = spawn(config).await;
    gw.link("allowed").await;
    let id = accepted(
        &gw,
        "allowed",
        image(format!("http://localhost:{port}/a.png")),
    )
    .await;
    gw.wait_message("allowed", &id, "sent").await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
    source.stop(false).await;
}
