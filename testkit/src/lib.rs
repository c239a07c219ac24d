//! Test and benchmark helpers. [`FakeLaravel`] plays the Laravel backend:
//! an HTTP server on a free port, in its own thread and actix System, that
//! records every request (path, headers, body, arrival time) and answers with
//! a status the test controls. Waiters wake on each arrival.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The body parsed as JSON, when it is JSON (shared: cheap to clone).
    pub json: Option<Arc<serde_json::Value>>,
    /// When the whole body had arrived.
    pub at: Instant,
    /// The status the fake answered with.
    pub status: u16,
}

/// State shared between the server thread and the test.
struct Shared {
    requests: Mutex<Vec<Received>>,
    /// Woken after every recorded request.
    arrived: Notify,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

pub struct FakeLaravel {
    shared: Arc<Shared>,
    port: u16,
    /// Stops the server; `None` once stopped.
    handle: Option<actix_web::dev::ServerHandle>,
    thread: Option<JoinHandle<()>>,
}

async fn record(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let status = shared.status.load(Ordering::Relaxed);
    let received = Received {
        path: req.path().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        json: serde_json::from_slice(&body).ok().map(Arc::new),
        body,
        at: Instant::now(),
        status,
    };
    shared.requests.lock().push(received);
    shared.arrived.notify_waiters();
    let delay = shared.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    let code =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    if code.is_success() {
        HttpResponse::build(code).json(serde_json::json!({ "ok": true }))
    } else {
        HttpResponse::build(code)
            .json(serde_json::json!({ "error": "fake Laravel answers this on purpose" }))
    }
}

impl FakeLaravel {
    /// Starts on 127.0.0.1 with a free port; returns once it accepts connections.
    pub fn start() -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        let (tx, rx) = std::sync::mpsc::channel();
        let data = web::Data::from(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(16 << 20))
                        .default_service(web::to(record))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listening on a bound socket works")
                .run();
                tx.send(server.handle())
                    .expect("the test waits for the handle");
                let _ = server.await;
            });
        });
        let handle = rx.recv().expect("the fake Laravel thread starts");
        Self {
            shared,
            port,
            handle: Some(handle),
            thread: Some(thread),
        }
    }

    /// Base URL including the `/api` prefix Laravel apps usually have.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// Status for every following request (default 200).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::Relaxed);
    }

    /// Latency before answering (default none).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().clone()
    }

    /// Requests whose path ends with `suffix` (e.g. `/qr/batch`).
    pub fn requests_to(&self, suffix: &str) -> Vec<Received> {
        self.shared
            .requests
            .lock()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().len()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().clear();
    }

    /// Waits until `pred` holds over all requests so far, waking on each
    /// arrival; false if `timeout` passes first.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so no arrival slips between.
            let notified = self.shared.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Check a copy: the predicate may call back into this fake.
            if pred(&self.requests()) {
                return true;
            }
            // Also re-check every 50 ms: the predicate may depend on state
            // outside the requests (e.g. the gateway's index).
            let tick = tokio::time::Instant::now() + Duration::from_millis(50);
            let wake = tick.min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err() && wake >= deadline {
                return pred(&self.requests());
            }
        }
    }
}

impl Drop for FakeLaravel {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The stop command is sent at once; the returned future only
            // reports completion, which joining the thread waits for anyway.
            drop(handle.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A free TCP port on 127.0.0.1 (for processes started by tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn post(port: u16, path: &str, body: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: k1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn records_requests_and_answers_the_configured_status() {
        let fake = FakeLaravel::start();
        let out = post(fake.port, "/api/qr/batch", r#"{"qrs":[]}"#);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        fake.set_status(500);
        let out = post(fake.port, "/api/whatsapp/status/batch", "{}");
        assert!(out.starts_with("HTTP/1.1 500"), "{out}");
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path, "/api/qr/batch");
        assert_eq!(reqs[0].headers["idempotency-key"], "k1");
        assert_eq!(
            reqs[0].json.as_deref().unwrap()["qrs"],
            serde_json::json!([])
        );
        assert_eq!(reqs[1].status, 500);
        assert_eq!(fake.requests_to("/status/batch").len(), 1);
        assert!(fake.base_url().ends_with("/api"));
    }

    #[test]
    fn wait_for_wakes_on_arrival_and_times_out() {
        let fake = FakeLaravel::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let port = fake.port;
        let sender = std::thread::spawn(move || post(port, "/api/x", "{}"));
        let got = rt.block_on(fake.wait_for(Duration::from_secs(10), |r| r.len() == 1));
        assert!(got);
        sender.join().unwrap();
        let started = Instant::now();
        let none = rt.block_on(fake.wait_for(Duration::from_millis(200), |r| r.len() == 2));
        assert!(!none);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn many_start_and_stop_cleanly() {
        for _ in 0..20 {
            let fake = FakeLaravel::start();
            assert_eq!(fake.count(), 0);
        }
        assert_ne!(free_port(), 0);
    }
}
