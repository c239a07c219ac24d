//! The fake WhatsApp's media host: what `mmg.whatsapp.net` is to a real
//! client. The server's answer to the client's `media_conn` IQ names this
//! host (`127.0.0.1:<port>`, plain HTTP: test builds of the gateway send
//! media for a loopback host over HTTP, the actors' `danger-loopback-media`).
//! An upload (`POST /mms/<kind>/<token>?auth=…&token=…`) is checked like
//! WhatsApp checks it (the media auth, and the token is the URL-safe
//! SHA-256 of the ciphertext) and kept under a direct path; a download
//! (`GET <direct path>?auth=…&token=…`) serves it back. The phones read the
//! blobs directly ([`Blobs`]) to decrypt what the client sent them, and put
//! theirs there before they write to a linked account ([`seal`]). Served by
//! [`serve`] on the fake's runtime; HTTP/1.1, one request per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use whatsapp_rust::wacore::download::{DownloadUtils, MediaType};
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::waproto::whatsapp as wa;

use super::link::now_secs;
use super::{EncKind, Fallible};

/// The media auth the host hands out and checks.
pub(super) const AUTH: &str = "fake-media-auth";
/// Request heads and bodies past these are refused (the gateway's
/// `MEDIA_MAX_BYTES` is below).
const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 128 << 20;

/// Uploaded ciphertexts by direct path, and how often the host was used.
#[derive(Clone, Default)]
pub(super) struct Blobs {
    stored: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub(super) uploads: Arc<AtomicUsize>,
    pub(super) downloads: Arc<AtomicUsize>,
}

impl Blobs {
    /// Keeps `ciphertext` (its token is `token`) for `kind` and returns its
    /// direct path.
    fn put(&self, kind: &str, token: &str, ciphertext: Vec<u8>) -> String {
        let path = format!("/v/t62.fake-{kind}/{token}.enc");
        self.stored.lock().insert(path.clone(), ciphertext);
        path
    }

    fn get(&self, direct_path: &str) -> Option<Vec<u8>> {
        self.stored.lock().get(direct_path).cloned()
    }
}

/// The `<media_conn>` a `w:m` IQ gets: this host, an hour's auth.
pub(super) fn media_conn(host: &str) -> Node {
    NodeBuilder::new("media_conn")
        .attr("auth", AUTH)
        .attr("ttl", "3600")
        .attr("auth_ttl", "3600")
        .children([NodeBuilder::new("host")
            .attr("hostname", host.to_owned())
            .attr("type", "primary")
            .build()])
        .build()
}

/// Serves the media host on `listener` until the fake stops.
pub(super) async fn serve(listener: TcpListener, blobs: Blobs, host: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let (blobs, host) = (blobs.clone(), host.clone());
        tokio::spawn(async move {
            let _ = one_request(stream, &blobs, &host).await;
        });
    }
}

/// A request as the host reads it.
struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    body: Vec<u8>,
}

async fn one_request(mut stream: TcpStream, blobs: &Blobs, host: &str) -> std::io::Result<()> {
    let (status, body) = match read_request(&mut stream).await? {
        Ok(request) => answer(&request, blobs, host),
        Err(why) => (400, why.into_bytes()),
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\ncontent-type: {}\r\nconnection: close\r\n\r\n",
        if status < 300 { "OK" } else { "Refused" },
        body.len(),
        if status == 200 && body.first() == Some(&b'{') {
            "application/json"
        } else {
            "application/octet-stream"
        }
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Fallible<Request>> {
    let mut buf = Vec::with_capacity(4096);
    let (head_len, method, target, length) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Err("the connection closed inside the request head".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let length = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                let method = req.method.unwrap_or_default().to_owned();
                let target = req.path.unwrap_or_default().to_owned();
                break (len, method, target, length);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Ok(Err("request head too large".into())),
            Err(e) => return Ok(Err(format!("bad request head: {e}"))),
        }
    };
    if length > MAX_BODY {
        return Ok(Err("body too large".into()));
    }
    let mut body = buf.split_off(head_len);
    if body.len() < length {
        let start = body.len();
        body.resize(length, 0);
        stream.read_exact(&mut body[start..]).await?;
    }
    body.truncate(length);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Ok(Request {
        method,
        path: path.to_owned(),
        query,
        body,
    }))
}

/// Status and body for `request`.
fn answer(request: &Request, blobs: &Blobs, host: &str) -> (u16, Vec<u8>) {
    let param = |k: &str| request.query.get(k).map(String::as_str);
    if param("auth") != Some(AUTH) {
        return (401, b"bad media auth".to_vec());
    }
    match (request.method.as_str(), request.path.strip_prefix("/mms/")) {
        ("POST", Some(rest)) => {
            let Some((kind, token)) = rest.split_once('/') else {
                return (404, b"no such upload path".to_vec());
            };
            // Nothing is ever partly uploaded here: a resume check finds nothing.
            if param("resume").is_some() {
                return (404, Vec::new());
            }
            let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(&request.body));
            if param("token") != Some(token) || token != hash {
                return (400, b"the token is not the body's SHA-256".to_vec());
            }
            blobs.uploads.fetch_add(1, Ordering::SeqCst);
            let direct_path = blobs.put(kind, token, request.body.clone());
            let json = serde_json::json!({
                "url": format!("https://{host}{direct_path}"),
                "direct_path": direct_path,
            });
            (200, json.to_string().into_bytes())
        }
        ("GET", None) => match blobs.get(&request.path) {
            Some(blob) => {
                blobs.downloads.fetch_add(1, Ordering::SeqCst);
                (200, blob)
            }
            None => (404, b"no such media".to_vec()),
        },
        _ => (405, b"method not allowed".to_vec()),
    }
}

/// Media a phone received: what the message said and what decrypting the
/// blob it names gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMedia {
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    pub kind: String,
    pub mimetype: Option<String>,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    /// The plaintext, or why the phone could not have it (no such blob,
    /// a MAC that does not match).
    pub bytes: Result<Vec<u8>, String>,
}

/// Media a phone sends: what [`super::FakeWhatsApp::send_media`] takes.
#[derive(Clone, Debug)]
pub struct MediaToSend {
    /// As [`PeerMedia::kind`].
    pub kind: String,
    pub bytes: Vec<u8>,
    pub mimetype: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
}

/// The crate's name for a kind's key derivation and upload path.
fn media_type(kind: &str) -> Fallible<MediaType> {
    Ok(match kind {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" | "voice" => MediaType::Audio,
        "document" => MediaType::Document,
        "sticker" => MediaType::Sticker,
        other => return Err(format!("no media kind {other}")),
    })
}

/// The fields every media message has.
struct Carried<'a> {
    kind: &'static str,
    direct_path: Option<&'a str>,
    media_key: Option<&'a [u8]>,
    mimetype: Option<&'a String>,
    caption: Option<&'a String>,
    file_name: Option<&'a String>,
}

fn carried(m: &wa::Message) -> Option<Carried<'_>> {
    if let Some(sent) = m.device_sent_message.as_option() {
        return sent.message.as_option().and_then(carried);
    }
    if let Some(i) = m.image_message.as_option() {
        return Some(Carried {
            kind: "image",
            direct_path: i.direct_path.as_deref(),
            media_key: i.media_key.as_deref(),
            mimetype: i.mimetype.as_ref(),
            caption: i.caption.as_ref(),
            file_name: None,
        });
    }
    if let Some(v) = m.video_message.as_option() {
        return Some(Carried {
            kind: "video",
            direct_path: v.direct_path.as_deref(),
            media_key: v.media_key.as_deref(),
            mimetype: v.mimetype.as_ref(),
            caption: v.caption.as_ref(),
            file_name: None,
        });
    }
    if let Some(a) = m.audio_message.as_option() {
        return Some(Carried {
            kind: if a.ptt == Some(true) {
                "voice"
            } else {
                "audio"
            },
            direct_path: a.direct_path.as_deref(),
            media_key: a.media_key.as_deref(),
            mimetype: a.mimetype.as_ref(),
            caption: None,
            file_name: None,
        });
    }
    if let Some(d) = m.document_message.as_option() {
        return Some(Carried {
            kind: "document",
            direct_path: d.direct_path.as_deref(),
            media_key: d.media_key.as_deref(),
            mimetype: d.mimetype.as_ref(),
            caption: d.caption.as_ref(),
            file_name: d.file_name.as_ref(),
        });
    }
    m.sticker_message.as_option().map(|s| Carried {
        kind: "sticker",
        direct_path: s.direct_path.as_deref(),
        media_key: s.media_key.as_deref(),
        mimetype: s.mimetype.as_ref(),
        caption: None,
        file_name: None,
    })
}

/// Whether `m` carries media (its stanza is then of type `media`).
pub(super) fn carries(m: &wa::Message) -> bool {
    carried(m).is_some()
}

/// What a phone makes of the media `m` carries (`None`: no media): the
/// blob it names, fetched from the host and decrypted with its key.
pub(super) fn open(m: &wa::Message, blobs: &Blobs) -> Option<PeerMedia> {
    let c = carried(m)?;
    let bytes = (|| {
        let path = c.direct_path.ok_or("no direct path")?;
        let key = c.media_key.ok_or("no media key")?;
        let blob = blobs
            .get(path)
            .ok_or_else(|| format!("no blob at {path}"))?;
        DownloadUtils::verify_and_decrypt(&blob, key, media_type(c.kind)?)
            .map_err(|e| format!("cannot decrypt the blob: {e}"))
    })();
    Some(PeerMedia {
        kind: c.kind.to_owned(),
        mimetype: c.mimetype.cloned(),
        caption: c.caption.cloned(),
        file_name: c.file_name.cloned(),
        bytes,
    })
}

/// `media` encrypted and put on the host, as the message a phone sends
/// about it.
pub(super) fn seal(media: &MediaToSend, blobs: &Blobs, host: &str) -> Fallible<wa::Message> {
    let kind = media.kind.as_str();
    let enc = whatsapp_rust::wacore::upload::encrypt_media(&media.bytes, media_type(kind)?)
        .map_err(|e| format!("cannot encrypt media: {e}"))?;
    let token = URL_SAFE_NO_PAD.encode(enc.file_enc_sha256);
    let direct_path = blobs.put(kind, &token, enc.data_to_upload);
    let url = format!("https://{host}{direct_path}");
    let caption = media.caption.clone();
    // The fields every media message carries, then the kind's own.
    macro_rules! media_message {
        ($ty:ident { $($field:ident: $value:expr),* $(,)? }) => {
            wa::message::$ty {
                url: Some(url),
                direct_path: Some(direct_path),
                media_key: Some(enc.media_key.to_vec()),
                file_sha256: Some(enc.file_sha256.to_vec()),
                file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
                file_length: Some(media.bytes.len() as u64),
                mimetype: Some(media.mimetype.clone()),
                media_key_timestamp: Some(now_secs() as i64),
                $($field: $value,)*
                ..Default::default()
            }
            .into()
        };
    }
    let mut m = wa::Message::default();
    match kind {
        "image" => m.image_message = media_message!(ImageMessage { caption: caption }),
        "video" => m.video_message = media_message!(VideoMessage { caption: caption }),
        "audio" | "voice" => {
            m.audio_message = media_message!(AudioMessage {
                ptt: Some(kind == "voice")
            })
        }
        "document" => {
            m.document_message = media_message!(DocumentMessage {
                caption: caption,
                file_name: media.file_name.clone(),
                title: media.file_name.clone(),
            })
        }
        _ => m.sticker_message = media_message!(StickerMessage {}),
    }
    Ok(m)
}

/// The test's side of media: a phone sending it, the host's counts.
impl super::FakeWhatsApp {
    /// Phone `from` sends `media` to account `to`: encrypted and put on the
    /// media host as WhatsApp's phones do, then the message naming it
    /// (its key, hashes and direct path) sealed like a text. Returns the
    /// message id and its `<enc>` kind.
    pub async fn send_media(
        &self,
        from: &str,
        to: &str,
        media: &MediaToSend,
    ) -> Fallible<(String, EncKind)> {
        let id = self.next_id();
        let message = {
            let shared = self.shared.lock();
            seal(media, &shared.blobs, &shared.media_host)?
        };
        let (kind, node) = super::messages::seal(
            &self.shared,
            from,
            to,
            &message,
            &id,
            super::SenderAddress::Phone,
        )
        .await?;
        self.deliver(to, node)?;
        Ok((id, kind))
    }

    /// Uploads the media host took and downloads it served.
    pub fn media_transfers(&self) -> (usize, usize) {
        let shared = self.shared.lock();
        (
            shared.blobs.uploads.load(Ordering::SeqCst),
            shared.blobs.downloads.load(Ordering::SeqCst),
        )
    }
}
