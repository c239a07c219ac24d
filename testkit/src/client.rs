//! [`GatewayClient`]: the one HTTP client the tests and the benchmark use
//! on a gateway, in this process (the integration tests' `TestGateway`
//! wraps it) or in another ([`crate::GatewayProcess`]): requests that
//! report what came back ([`Reply`], status 0 when nothing did), the
//! session and message steps tests repeat (create, link, simulate, send),
//! and waiting on a session or message state with a deadline. Runs inside
//! an actix System.

use std::borrow::Borrow;
use std::time::Duration;

use awc::http::header::HeaderMap;
use serde_json::{json, Value};

use crate::wait::{eventually, PATIENCE};

/// Largest answer body read (`/sessions` pages, `/metrics`).
const BODY_LIMIT: usize = 16 << 20;

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    /// 0 when the request did not reach the gateway or no answer came
    /// (connection refused, timeout), as while a gateway is down.
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    fn unanswered() -> Self {
        Self {
            status: 0,
            headers: HeaderMap::new(),
            body: bytes::Bytes::new(),
        }
    }

    /// The body as JSON; panics (showing the body) when it is not JSON.
    pub fn json(&self) -> Value {
        assert_ne!(self.status, 0, "the request did not reach the gateway");
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as JSON, or `Null` when it is not JSON (or nothing came).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The status and [`Self::json_or_null`], for a `match` or a `let`.
    pub fn status_and_json(&self) -> (u16, Value) {
        (self.status, self.json_or_null())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

pub struct GatewayClient {
    base: String,
    http: awc::Client,
}

impl GatewayClient {
    /// A client for `base_url` (e.g. [`crate::GatewayProcess::base_url`]),
    /// with a connection pool for hundreds of concurrent requests.
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: awc::Client::builder()
                .connector(awc::Connector::new().limit(512))
                .timeout(Duration::from_secs(60))
                .finish(),
        }
    }

    /// `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying client, for requests these methods do not cover
    /// (other headers, raw bodies).
    pub fn http(&self) -> &awc::Client {
        &self.http
    }

    /// Sends `method path` with an optional JSON body. Never panics: a
    /// request that gets no answer is a [`Reply`] with status 0.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, body.as_ref())
            .await
            .unwrap_or_else(Reply::unanswered)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None)
            .await
            .unwrap_or_else(Reply::unanswered)
    }

    /// POSTs `body` (a `Value` or a `&Value`) as JSON.
    pub async fn post(&self, path: &str, body: impl Borrow<Value>) -> Reply {
        self.send("POST", path, Some(body.borrow()))
            .await
            .unwrap_or_else(Reply::unanswered)
    }

    /// POSTs a `multipart/form-data` body ([`crate::Form`]).
    pub async fn post_form(&self, path: &str, form: &crate::Form) -> Reply {
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .insert_header(("content-type", form.content_type()))
            .send_body(form.body())
            .await;
        let Ok(mut resp) = sent else {
            return Reply::unanswered();
        };
        let Ok(body) = resp.body().limit(BODY_LIMIT).await else {
            return Reply::unanswered();
        };
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        }
    }

    /// The body of a GET as text (e.g. `/metrics`); empty when nothing came.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text()
    }

    /// Creates a session; it must be accepted (201).
    pub async fn create(&self, id: &str) {
        let r = self.post("/sessions", json!({ "id": id })).await;
        assert_eq!(r.status, 201, "create {id}: {}", r.text());
    }

    /// A session's `state`, or "" when it cannot be read.
    pub async fn state_of(&self, id: &str) -> String {
        match self.get(&format!("/sessions/{id}")).await {
            r if r.status == 200 => r.json_or_null()["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        }
    }

    /// Creates a session and links it (QR shown, scanned, connected).
    pub async fn link(&self, id: &str) {
        self.create(id).await;
        self.wait_state(id, "qr").await;
        self.simulate(id, "scan").await;
        self.wait_state(id, "connected").await;
    }

    /// Plays the phone's `action` (scan, disconnect, logout) on the
    /// simulator; it must be accepted.
    pub async fn simulate(&self, id: &str, action: &str) {
        let r = self
            .post(&format!("/sessions/{id}/simulate/{action}"), json!({}))
            .await;
        assert_eq!(r.status, 200, "{action} {id}: {}", r.text());
    }

    /// Posts a text; returns the reply.
    pub async fn send_text(&self, id: &str, to: &str, text: &str) -> Reply {
        self.post(
            &format!("/sessions/{id}/messages"),
            json!({ "to": to, "text": text }),
        )
        .await
    }

    /// Waits until message `mid` of session `id` has `status`; its record.
    pub async fn wait_message(&self, id: &str, mid: &str, status: &str) -> Value {
        let path = format!("/sessions/{id}/messages/{mid}");
        let ok = eventually(PATIENCE, || async {
            self.get(&path).await.json_or_null()["status"] == status
        })
        .await;
        let record = self.get(&path).await.json();
        assert!(ok, "message {mid} never reached {status}: {record}");
        record
    }

    /// Waits up to [`PATIENCE`] until the session is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) {
        let ok = self.reaches_state(id, state, PATIENCE).await;
        assert!(
            ok,
            "session {id} never reached {state} (now {})",
            self.state_of(id).await
        );
    }

    /// Whether the session reaches `state` within `patience`.
    pub async fn reaches_state(&self, id: &str, state: &str, patience: Duration) -> bool {
        eventually(patience, || async { self.state_of(id).await == state }).await
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Option<Reply> {
        let req = self
            .http
            .request(method.parse().ok()?, format!("{}{path}", self.base));
        let mut resp = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        }
        .ok()?;
        let body = resp.body().limit(BODY_LIMIT).await.ok()?;
        Some(Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        })
    }
}
