//! Shared test helpers: a gateway on port 0 in this test's actix System
//! with the testkit's one client in front of it, test configurations, and
//! (re-exported from the testkit) waiting on conditions with a deadline.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use serde_json::Value;
use wagate::config::Config;
use wagate::Application;
use wagate_actors::Gateway;
pub use wagate_testkit::{eventually, eventually_every, PATIENCE};
use wagate_testkit::{FakeLaravel, GatewayClient, Received};

/// The gateway of one test, in this process: the shared
/// [`GatewayClient`] (every request helper, through `Deref`), the actor
/// system for in-process checks, and the drain on [`TestGateway::shutdown`].
pub struct TestGateway {
    client: GatewayClient,
    pub gateway: Arc<Gateway>,
    handle: ServerHandle,
    stopped: Option<actix_rt::task::JoinHandle<std::io::Result<()>>>,
}

impl std::ops::Deref for TestGateway {
    type Target = GatewayClient;

    fn deref(&self) -> &GatewayClient {
        &self.client
    }
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
    let client = GatewayClient::new(&format!("http://127.0.0.1:{}", app.port()));
    let gateway = app.gateway();
    let handle = app.handle();
    let stopped = actix_rt::spawn(app.run_until_stopped());
    TestGateway {
        client,
        gateway,
        handle,
        stopped: Some(stopped),
    }
}

impl TestGateway {
    /// Stops HTTP and drains, as SIGTERM does; returns when drained.
    pub async fn shutdown(mut self) {
        self.handle.stop(true).await;
        if let Some(h) = self.stopped.take() {
            let _ = h.await;
        }
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

/// The `id`s of a `GET /sessions` page, in order.
pub fn session_ids(page: &Value) -> Vec<&str> {
    page["sessions"]
        .as_array()
        .expect("a page of sessions")
        .iter()
        .map(|s| s["id"].as_str().expect("every session has an id"))
        .collect()
}

/// How many status updates the given `/whatsapp/status/batch` requests
/// carried in all.
pub fn status_items<'a>(requests: impl IntoIterator<Item = &'a Received>) -> usize {
    requests
        .into_iter()
        .map(|r| {
            r.json.as_ref().expect("a JSON batch")["statuses"]
                .as_array()
                .expect("a statuses array")
                .len()
        })
        .sum()
}

/// Items under `key` of the batches to `path` that Laravel accepted (2xx),
/// in arrival order.
pub fn accepted_items(laravel: &FakeLaravel, path: &str, key: &str) -> Vec<Value> {
    laravel
        .requests_to(path)
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| r.json)
        .flat_map(|j| j[key].as_array().cloned().unwrap_or_default())
        .collect()
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
