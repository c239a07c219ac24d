//! Multipart sends (`multipart/form-data` with a `file` part) against Redis:
//! delivered with the exact bytes, refused with their codes, and streamed:
//! the blob fills in Redis while the body is still arriving, a body past
//! `MEDIA_MAX_BYTES` is refused before it ends, and an upload the client
//! abandons leaves no blob.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wagate_testkit::Form;

use super::*;

/// `n` bytes that are not all alike (a hash would not notice a repeated
/// or shifted chunk of identical bytes).
fn varied(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

async fn post_form(gw: &TestGateway, id: &str, form: &Form) -> wagate_testkit::Reply {
    gw.post_form(&format!("/sessions/{id}/messages"), form)
        .await
}

/// A raw connection that has sent the head of a chunked multipart send and
/// the start of its `file` part; the body never ends unless the test says.
async fn open_upload(gw: &TestGateway, id: &str) -> TcpStream {
    let addr = gw.base_url().trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /sessions/{id}/messages HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let fields = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{TO}\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ndocument\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    chunk(&mut conn, fields.as_bytes()).await;
    conn
}

/// Writes one HTTP chunk (a server that already answered may have stopped
/// reading: write errors are the test's reading to judge).
async fn chunk(conn: &mut TcpStream, bytes: &[u8]) {
    let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
    framed.extend_from_slice(bytes);
    framed.extend_from_slice(b"\r\n");
    let _ = conn.write_all(&framed).await;
}

/// Reads one answer (head and `Content-Length` body): its status and the
/// body's `error.code`.
async fn read_answer(conn: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if raw.len() >= split + 4 + len {
                    return Some((split, len));
                }
            }
            let n = conn.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let Ok(Some((split, len))) = read else {
        panic!("no answer: {:?}", String::from_utf8_lossy(&raw));
    };
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    let body: Value = serde_json::from_slice(&raw[split + 4..split + 4 + len]).unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[actix_rt::test]
async fn multipart_media_is_delivered_with_the_exact_bytes_and_its_blob_then_goes() {
    let redis = RedisServer::start();
    let gw = spawn(redis_config(&redis)).await;
    gw.link("up").await;
    let sim = gw.gateway.simulator().cloned().unwrap();

    let image = png();
    let form = Form::new()
        .field("to", TO)
        .field("type", "image")
        .field("caption", "Modelo 2")
        .field("mentions", "+5215500000001")
        .field("mentions", "5215500000002@s.whatsapp.net")
        .file("file", "m2.png", "image/png", Bytes::from(image.clone()));
    let r = post_form(&gw, "up", &form).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let image_id = r.json()["messageId"].as_str().unwrap().to_owned();

    // Larger than one write to Redis (256 KiB), so it goes in several; the
    // document's name comes from the part's file name.
    let pdf = [b"%PDF-1.7\n".as_slice(), &varied(1_200_000, 7)].concat();
    let form = Form::new()
        .field("to", TO)
        .field("type", "document")
        .field("idempotencyKey", "invoice-118")
        .file(
            "file",
            "factura-118.pdf",
            "application/pdf",
            Bytes::from(pdf.clone()),
        );
    let r = post_form(&gw, "up", &form).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let doc_id = r.json()["messageId"].as_str().unwrap().to_owned();
    let again = post_form(&gw, "up", &form).await;
    assert_eq!(
        (again.status, again.json()["messageId"].as_str()),
        (200, Some(doc_id.as_str())),
        "the idempotency key holds for uploads"
    );

    gw.wait_message("up", &image_id, "sent").await;
    let record = gw.wait_message("up", &doc_id, "sent").await;
    assert_eq!(record["type"], "document");
    let seen = sim.sent_message(&image_id).unwrap();
    assert_eq!(seen.media, Some((image.len() as u64, sha(&image))));
    match &seen.content {
        OutboundContent::Image { media, caption } => {
            assert_eq!(media.mime_type, "image/png");
            assert_eq!(caption.as_deref(), Some("Modelo 2"));
        }
        other => panic!("not an image: {other:?}"),
    }
    assert_eq!(
        seen.mentions,
        [
            "5215500000001@s.whatsapp.net",
            "5215500000002@s.whatsapp.net"
        ]
    );
    let seen = sim.sent_message(&doc_id).unwrap();
    assert_eq!(
        seen.media,
        Some((pdf.len() as u64, sha(&pdf))),
        "the exact bytes, in order"
    );
    match &seen.content {
        OutboundContent::Document {
            media, file_name, ..
        } => {
            assert_eq!(media.mime_type, "application/pdf");
            assert_eq!(file_name, "factura-118.pdf");
        }
        other => panic!("not a document: {other:?}"),
    }
    assert_eq!(sim.deliveries(&doc_id), 1);
    let blobs = || async { gw.gateway.messages().blob_count().await.unwrap() };
    assert!(
        eventually(PATIENCE, || async { blobs().await == 0 }).await,
        "{} blobs left after the sends",
        blobs().await
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn multipart_refusals_store_nothing_and_abandoned_uploads_leave_no_blob() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.messages.media_max_bytes = 1 << 20;
    let gw = spawn(config).await;
    gw.create("refuse").await;
    let blobs = || async { gw.gateway.messages().blob_count().await.unwrap() };
    let refused = |r: wagate_testkit::Reply| (r.status, r.error_code());

    // No file part for a media type.
    let form = Form::new().field("to", TO).field("type", "image");
    let r = post_form(&gw, "refuse", &form).await;
    assert_eq!(refused(r), (400, "missing_file".to_owned()));
    // The type is checked on the streamed bytes, as for base64 and url.
    let voice = Form::new().field("to", TO).field("type", "voice").file(
        "file",
        "v.ogg",
        "audio/ogg",
        Bytes::from(ogg(b"\x01vorbis\x00\x00")),
    );
    let r = post_form(&gw, "refuse", &voice).await;
    assert_eq!(refused(r), (400, "voice_not_opus".to_owned()));
    let fake_png = Form::new().field("to", TO).field("type", "image").file(
        "file",
        "x.png",
        "image/png",
        Bytes::from_static(b"%PDF-1.7 not a picture"),
    );
    let r = post_form(&gw, "refuse", &fake_png).await;
    assert_eq!(refused(r), (400, "media_type_mismatch".to_owned()));
    // A file where the type takes none, and a bad field beside a good file.
    let text = Form::new().field("to", TO).field("text", "hola").file(
        "file",
        "a.png",
        "image/png",
        Bytes::from(png()),
    );
    let r = post_form(&gw, "refuse", &text).await;
    assert_eq!(refused(r), (400, "field_not_allowed".to_owned()));
    let bad_to = Form::new()
        .field("to", "not-a-number")
        .field("type", "image")
        .file("file", "a.png", "image/png", Bytes::from(png()));
    let r = post_form(&gw, "refuse", &bad_to).await;
    assert_eq!(refused(r), (400, "invalid_body".to_owned()));

    // Past MEDIA_MAX_BYTES (1 MiB) the send is refused while the body is
    // still coming: it never ends here.
    let mut conn = open_upload(&gw, "refuse").await;
    for _ in 0..17 {
        chunk(&mut conn, &varied(64 * 1024, 1)).await;
    }
    assert_eq!(
        read_answer(&mut conn).await,
        (413, "media_too_large".to_owned())
    );
    drop(conn);

    // A client that goes away mid-upload: its bytes reached Redis as they
    // came (streamed, not held), and are gone once it is.
    let mut conn = open_upload(&gw, "refuse").await;
    for _ in 0..8 {
        chunk(&mut conn, &varied(64 * 1024, 2)).await;
    }
    assert!(
        eventually(PATIENCE, || async { blobs().await == 1 }).await,
        "the first 512 KiB are in Redis before the body ends"
    );
    drop(conn);
    assert!(
        eventually(PATIENCE, || async { blobs().await == 0 }).await,
        "{} blobs left after refusals and an abandoned upload",
        blobs().await
    );
    let (counts, _) = gw.gateway.messages().counts();
    assert_eq!(counts.waiting + counts.active, 0, "nothing queued");
    gw.shutdown().await;
}
