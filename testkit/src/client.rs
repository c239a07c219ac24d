//! [`GatewayClient`]: an HTTP client for a gateway running in another
//! process ([`crate::GatewayProcess`]), for crash tests and the benchmark:
//! JSON requests that report the status instead of failing, session-state
//! polling, and raw text for `/metrics`. Runs inside an actix System.

use std::time::{Duration, Instant};

use serde_json::Value;

/// How often [`GatewayClient::wait_state`] looks again.
const POLL: Duration = Duration::from_millis(20);

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

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with an optional JSON body; the status and the
    /// JSON answer (`Null` if not JSON). Status 0: the request failed
    /// (connection refused, timeout), as it does while a gateway is down.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        match self.send(method, path, body).await {
            Some((status, bytes)) => (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ),
            None => (0, Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(body)).await
    }

    /// The body of a GET as text (e.g. `/metrics`); empty on failure.
    pub async fn get_text(&self, path: &str) -> String {
        self.send("GET", path, None)
            .await
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// A session's `state`, or "" when it cannot be read.
    pub async fn state(&self, id: &str) -> String {
        match self.get(&format!("/sessions/{id}")).await {
            (200, v) => v["state"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        }
    }

    /// Waits up to `patience` for a session to reach `state`.
    pub async fn wait_state(&self, id: &str, state: &str, patience: Duration) -> bool {
        let end = Instant::now() + patience;
        loop {
            if self.state(id).await == state {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            actix_rt::time::sleep(POLL).await;
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, bytes::Bytes)> {
        let req = self
            .http
            .request(method.parse().ok()?, format!("{}{path}", self.base));
        let mut resp = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        }
        .ok()?;
        let bytes = resp.body().limit(16 << 20).await.ok()?;
        Some((resp.status().as_u16(), bytes))
    }
}
