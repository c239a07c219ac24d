//! Shared test helpers: a gateway on port 0 in this test's actix System,
//! an HTTP client, and waiting on conditions with a deadline (never a bare
//! sleep).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use serde_json::Value;
use wagate::config::Config;
use wagate::Application;
use wagate_actors::Gateway;
use wagate_testkit::FakeLaravel;

/// Generous deadline for conditions that normally hold in milliseconds:
/// CI machines have 2 cores and run tests in parallel.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestGateway {
    pub base: String,
    pub http: awc::Client,
    pub gateway: Arc<Gateway>,
    handle: ServerHandle,
    stopped: Option<actix_rt::task::JoinHandle<std::io::Result<()>>>,
}

/// Defaults for tests: loopback, port 0, fast simulator, no forwarding.
pub fn test_config() -> Config {
    let mut c = Config::defaults();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.server.workers = 2;
    c.sessions.arbiters = 2;
    c.sessions.max_active = 100_000;
    c.sessions.max_stored = 100_000;
    c.store.key_counts_interval_secs = 1;
    c.simulator.qr_first_ms = 100;
    c.simulator.qr_rotate_ms = 100;
    c.simulator.qr_count = 1000;
    c.simulator.reconnect_ms = 50;
    c.simulator.send_latency_ms = 5;
    c.messages.min_gap_ms = 0;
    c.messages.retry_delay_ms = 20;
    c.messages.retry_max_ms = 200;
    c.log.level = "warn".into();
    c
}

/// [`test_config`] with everything durable in the given Redis.
pub fn redis_config(redis: &wagate_testkit::RedisServer) -> Config {
    let mut c = test_config();
    c.store.kind = wagate::config::StoreKind::Redis;
    c.redis.url = redis.url().into();
    c.store.node_id = "test-node".into();
    c
}

pub async fn spawn(config: Config) -> TestGateway {
    wagate::telemetry::init(&config.log);
    let app = Application::build(config).await.expect("gateway starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let gateway = app.gateway();
    let handle = app.handle();
    let stopped = actix_rt::spawn(app.run_until_stopped());
    TestGateway {
        base,
        http: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        gateway,
        handle,
        stopped: Some(stopped),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

impl TestGateway {
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let req = self.http.request(
            method.parse().expect("valid method"),
            format!("{}{path}", self.base),
        );
        let mut resp = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("request reaches the gateway");
        let body = resp.body().limit(10 << 20).await.expect("body");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(body)).await
    }

    pub async fn create(&self, id: &str) {
        let r = self
            .post("/sessions", serde_json::json!({ "id": id }))
            .await;
        assert_eq!(
            r.status,
            201,
            "create {id}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    pub async fn state_of(&self, id: &str) -> String {
        self.get(&format!("/sessions/{id}")).await.json()["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
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
            .post(
                &format!("/sessions/{id}/simulate/{action}"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "{action} {id}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Posts a text; returns the reply.
    pub async fn send_text(&self, id: &str, to: &str, text: &str) -> Reply {
        self.post(
            &format!("/sessions/{id}/messages"),
            serde_json::json!({ "to": to, "text": text }),
        )
        .await
    }

    /// Waits until message `mid` of session `id` has `status`; its record.
    pub async fn wait_message(&self, id: &str, mid: &str, status: &str) -> Value {
        let path = format!("/sessions/{id}/messages/{mid}");
        let ok = eventually(PATIENCE, || async {
            self.get(&path).await.json()["status"] == status
        })
        .await;
        let record = self.get(&path).await.json();
        assert!(ok, "message {mid} never reached {status}: {record}");
        record
    }

    /// Waits until the session is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) {
        let ok = eventually(PATIENCE, || async { self.state_of(id).await == state }).await;
        assert!(
            ok,
            "session {id} never reached {state} (now {})",
            self.state_of(id).await
        );
    }

    /// Stops HTTP and drains, as SIGTERM does; returns when drained.
    pub async fn shutdown(mut self) {
        self.handle.stop(true).await;
        if let Some(h) = self.stopped.take() {
            let _ = h.await;
        }
    }
}

/// Polls `cond` until it holds or `deadline` passes. The poll interval is
/// short and the deadline generous: the test waits for an event, not a time.
pub async fn eventually<F, Fut>(deadline: Duration, cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_every(deadline, Duration::from_millis(20), cond).await
}

/// [`eventually`], polling every `interval` (for conditions that are
/// expensive to check, such as a query through PHP).
pub async fn eventually_every<F, Fut>(deadline: Duration, interval: Duration, cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        actix_rt::time::sleep(interval).await;
    }
}

/// The value of the first sample whose line starts with `name_and_labels`
/// in a Prometheus text exposition; 0 when there is none.
pub fn metric_sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Items of `kind` (`send_result`, `message`, `receipt`, …) Laravel got on
/// `/whatsapp/messages/batch`, in arrival order.
pub fn message_items(laravel: &FakeLaravel, kind: &str) -> Vec<Value> {
    laravel
        .requests_to("/whatsapp/messages/batch")
        .into_iter()
        .filter_map(|r| r.json)
        .flat_map(|j| j["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["type"] == kind)
        .collect()
}
