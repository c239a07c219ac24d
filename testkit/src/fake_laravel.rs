//! [`FakeLaravel`]: the Laravel backend as the gateway sees it. Every request
//! under [`API_PREFIX`] is recorded as a [`Received`] once its whole body has
//! arrived, then answered, after the configured delay, with the configured
//! status (and `Retry-After`, if set) and a small JSON body. It speaks plain
//! HTTP, or HTTPS with a test certificate ([`FakeLaravel::start_tls`]). The
//! server runs in its own thread with its own actix System, so it does not
//! depend on the runtime of the test using it.

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// The path prefix [`FakeLaravel::base_url`] ends with, as Laravel apps
/// usually serve their API under it. Requests outside it are recorded and
/// answered 404, as a real Laravel would, so a gateway that drops the prefix
/// fails visibly.
pub const API_PREFIX: &str = "/api";

/// The largest request body accepted (16 MiB); larger ones are answered 413
/// and not recorded, since they never arrive in full.
pub const MAX_BODY: usize = 16 << 20;

/// The body of every answer in garbage mode ([`FakeLaravel::set_garbage`]):
/// not JSON, not UTF-8, labelled JSON all the same, as a broken proxy or a
/// PHP fatal error in the middle of a response would send.
pub const GARBAGE: &[u8] =
    b"\xff\xfe<html><b>Fatal error</b>: Allowed memory size exhausted\x00{\"ok\":";

/// How long [`Drop`] waits for actix's worker threads to let go of the
/// server's state after the server has stopped.
const RELEASE_PATIENCE: Duration = Duration::from_secs(5);

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The HTTP method, to tell the gateway's POSTs from anything else.
    pub method: String,
    /// The full path as received, prefix included (e.g. `/api/qr/batch`),
    /// without the query string; what [`FakeLaravel::requests_to`] matches.
    pub path: String,
    /// Headers by lower-case name, to check `authorization`,
    /// `idempotency-key`, `x-wagate-timestamp`, `x-wagate-signature` and
    /// `x-wagate-signature-version`.
    /// Repeated headers are joined with `", "`; invalid UTF-8 is replaced.
    pub headers: HashMap<String, String>,
    /// The raw body bytes as sent (not decompressed), which is what the
    /// gateway's signature covers.
    pub body: Bytes,
    /// The body parsed as JSON, so tests can inspect batches directly;
    /// `None` when the body is not valid JSON.
    pub json: Option<serde_json::Value>,
    /// When the whole body had arrived (before any delay), to measure the
    /// gateway's latency and the spacing of its retries.
    pub at: Instant,
    /// The status the fake answered with, to tell accepted batches from
    /// refused ones.
    pub status: u16,
    /// How long the answer was held back ([`FakeLaravel::set_delay`] at
    /// arrival), so a test can tell an answer the gateway saw from one it
    /// had given up on (a delay past its `LARAVEL_TIMEOUT`).
    pub delay: Duration,
}

impl Received {
    /// The header `name` (any case), if the request carried it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// State shared by the test (through [`FakeLaravel`]) and the server.
struct Shared {
    /// Every request so far, in arrival order. Readers take recursive read
    /// locks, so a [`FakeLaravel::wait_for`] predicate may call back into
    /// the fake while the requests are lent to it.
    requests: RwLock<Vec<Received>>,
    /// Woken after every recorded request (and on [`FakeLaravel::clear`]),
    /// so waiters re-check their predicate on each change instead of polling.
    changed: Notify,
    /// The status every following request is answered with.
    status: AtomicU16,
    /// Artificial latency before answering, in nanoseconds.
    delay_nanos: AtomicU64,
    /// `Retry-After` sent with every following non-2xx answer, if set.
    retry_after: Mutex<Option<String>>,
    /// Answer with [`GARBAGE`] instead of a JSON body (chaos tests).
    garbage: AtomicBool,
    /// Connections accepted (TCP, or TLS once the handshake succeeded), to
    /// check that the gateway keeps them alive.
    connections: AtomicU64,
}

impl Shared {
    fn record(&self, received: Received) {
        self.requests.write().push(received);
        self.changed.notify_waiters();
    }
}

/// What the server's workers hold. It exists apart from [`Shared`] so that
/// [`FakeLaravel`]'s drop can tell when every worker has let go of it.
struct ServerState {
    /// The state the test reads.
    shared: Arc<Shared>,
    /// Never sent on: dropping the last [`ServerState`] disconnects the
    /// channel, which tells [`FakeLaravel`]'s drop that actix's worker
    /// threads have released the server.
    _released: mpsc::Sender<()>,
}

/// The Laravel backend for integration tests and benchmarks. See the module
/// documentation.
pub struct FakeLaravel {
    /// Requests, status and delay, shared with the server thread.
    shared: Arc<Shared>,
    /// The loopback port the server listens on.
    port: u16,
    /// `https` when started with a certificate, else `http`.
    scheme: &'static str,
    /// Stops the server on drop.
    handle: ServerHandle,
    /// The thread running the server's actix System, joined on drop;
    /// `None` only once joined.
    thread: Option<JoinHandle<()>>,
    /// Disconnects once every worker has dropped its [`ServerState`]; in a
    /// mutex only so that `FakeLaravel` is `Sync` (receivers are not).
    released: Mutex<mpsc::Receiver<()>>,
}

impl FakeLaravel {
    /// Starts on 127.0.0.1, port 0 (a free port), in its own thread with its
    /// own actix System, so it is independent of the test's runtime. Returns
    /// when it accepts connections: the socket listens, and actix's acceptor
    /// and worker threads have started.
    ///
    /// # Panics
    /// When no loopback port can be bound or the server cannot start, since a
    /// test cannot go on without it.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), over HTTPS with `cert` (see
    /// [`TestCa`](crate::TestCa)); [`base_url`](Self::base_url) is then
    /// `https://127.0.0.1:<port>/api`.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_tls(cert: &crate::ServerCert) -> Self {
        Self::start_with(Some(cert.server_config()))
    }

    fn start_with(tls: Option<rustls::ServerConfig>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            requests: RwLock::new(Vec::new()),
            changed: Notify::new(),
            status: AtomicU16::new(200),
            delay_nanos: AtomicU64::new(0),
            retry_after: Mutex::new(None),
            garbage: AtomicBool::new(false),
            connections: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect(
            "binding 127.0.0.1:0 fails only when the machine has no free ports or no loopback",
        );
        let port = listener
            .local_addr()
            .expect("a bound socket has a local address")
            .port();
        let (released_tx, released_rx) = mpsc::channel();
        let state = web::Data::new(ServerState {
            shared: Arc::clone(&shared),
            _released: released_tx,
        });
        let (started_tx, started_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-laravel".into())
            .spawn(move || serve(listener, tls, state, started_tx))
            .expect("spawning a thread fails only when the process is out of resources");
        let handle = match started_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => panic!("the fake Laravel could not start: {e}"),
            Err(_) => panic!("the fake Laravel thread died while starting"),
        };
        Self {
            shared,
            port,
            scheme,
            handle,
            thread: Some(thread),
            released: Mutex::new(released_rx),
        }
    }

    /// The base URL to configure the gateway with, e.g.
    /// `http://127.0.0.1:41234/api` (no trailing slash); `https://…` when
    /// started with [`start_tls`](Self::start_tls).
    pub fn base_url(&self) -> String {
        format!("{}://127.0.0.1:{}{API_PREFIX}", self.scheme, self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The status every following request under [`API_PREFIX`] is answered
    /// with (default 200). Requests answered with it are recorded whatever
    /// it is.
    ///
    /// # Panics
    /// When `status` is outside 200..=599: a 1xx cannot end an HTTP exchange.
    pub fn set_status(&self, status: u16) {
        assert!(
            (200..=599).contains(&status),
            "the fake Laravel answers final statuses only (200..=599), not {status}"
        );
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// The `Retry-After` value sent with every following non-2xx answer
    /// (seconds or an HTTP date); `None` (the default) sends none.
    pub fn set_retry_after(&self, value: Option<&str>) {
        *self.shared.retry_after.lock() = value.map(str::to_owned);
    }

    /// Artificial latency before answering each following request (default
    /// none). It starts after the request is recorded.
    pub fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Garbage mode: every following answer (its status as set) carries
    /// [`GARBAGE`] as its body instead of JSON; `false` (the default) ends it.
    pub fn set_garbage(&self, on: bool) {
        self.shared.garbage.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far (for HTTPS: handshakes that succeeded).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// All requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.read_recursive().clone()
    }

    /// Requests whose path ends with `path_suffix` (e.g. `/qr/batch`), in
    /// arrival order.
    pub fn requests_to(&self, path_suffix: &str) -> Vec<Received> {
        self.shared
            .requests
            .read_recursive()
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.requests.read_recursive().len()
    }

    /// Waits until `pred(&all_requests)` is true or `timeout` passes; returns
    /// whether it became true. The predicate is checked at once and again on
    /// each arrival (no polling). It sees the requests without copying them
    /// and may call back into the fake (e.g. [`requests_to`](Self::requests_to)),
    /// but must not call [`clear`](Self::clear), which would deadlock.
    ///
    /// Uses only tokio's runtime-agnostic `Notify` and `tokio::time`, so it
    /// works under `actix_rt` as under plain tokio.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            // Register for the next change before checking, so an arrival
            // between the check and the wait still wakes us.
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            if pred(&self.shared.requests.read_recursive()) {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        // One last look covers an arrival at the deadline.
                        return pred(&self.shared.requests.read_recursive());
                    }
                }
                // A timeout too large to represent means: wait forever.
                None => changed.await,
            }
        }
    }

    /// Forgets all requests so far. Status and delay stay as set.
    pub fn clear(&self) {
        self.shared.requests.write().clear();
        self.shared.changed.notify_waiters();
    }
}

impl Drop for FakeLaravel {
    /// Stops the server (closing open connections, even ones waiting out a
    /// delay), joins its thread, and waits for actix's worker threads to
    /// release the server, so nothing keeps running after the fake is gone.
    fn drop(&mut self) {
        // The stop command is sent before `stop` returns; its future only
        // reports completion, which joining the thread waits for anyway.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the fake Laravel server thread panicked");
            }
        }
        // Only disconnection (or the bound) ends this wait: nobody sends.
        let _ = self.released.get_mut().recv_timeout(RELEASE_PATIENCE);
    }
}

/// The server thread: runs the HTTP server in a fresh actix System until it
/// is stopped, reporting on `started` once it serves (or why it cannot).
fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    state: web::Data<ServerState>,
    started: mpsc::Sender<std::io::Result<ServerHandle>>,
) {
    actix_rt::System::new().block_on(async move {
        let counted = Arc::clone(&state.shared);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .on_connect(move |_, _| {
            counted.connections.fetch_add(1, Ordering::SeqCst);
        })
        .disable_signals();
        let server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        };
        let server = match server {
            Ok(server) => server.run(),
            Err(e) => {
                // The test is waiting in `start`, which panics with this.
                let _ = started.send(Err(e));
                return;
            }
        };
        let handle = server.handle();
        let mut server = pin!(server);
        // The first poll starts the acceptor and worker threads and returns
        // once they run (or fails); from then on connections are served.
        let first = std::future::poll_fn(|cx| Poll::Ready(server.as_mut().poll(cx))).await;
        match first {
            Poll::Pending => {
                // The test is waiting in `start`, and holds the receiver
                // until it has the handle.
                let _ = started.send(Ok(handle));
                // An error here could only be a failure to start, which the
                // first poll would have reported.
                let _ = server.await;
            }
            Poll::Ready(Err(e)) => {
                let _ = started.send(Err(e));
            }
            Poll::Ready(Ok(())) => {
                let _ = started.send(Err(std::io::Error::other(
                    "the server stopped as soon as it started",
                )));
            }
        }
    });
}

/// The single handler: reads the whole body, records the request, waits the
/// configured delay and answers.
async fn answer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let body = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(body)) => body,
        // The connection broke mid-body: nothing arrived in full.
        Ok(Err(e)) => return reply(400, &format!("the body could not be read: {e}")),
        Err(_) => return reply(413, "the body is over 16 MiB"),
    };
    let at = Instant::now();
    let shared = &state.shared;
    let under_prefix = req
        .path()
        .strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let status = if under_prefix {
        shared.status.load(Ordering::SeqCst)
    } else {
        404
    };
    let mut headers = HashMap::<String, String>::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let delay = Duration::from_nanos(shared.delay_nanos.load(Ordering::SeqCst));
    shared.record(Received {
        method: req.method().as_str().to_owned(),
        path: req.path().to_owned(),
        headers,
        json: serde_json::from_slice(&body).ok(),
        body,
        at,
        status,
        delay,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !under_prefix {
        return reply(404, &format!("no route outside {API_PREFIX}"));
    }
    let mut response = if shared.garbage.load(Ordering::SeqCst) {
        garbage(status)
    } else {
        reply(status, "status set by the test")
    };
    if !response.status().is_success() {
        if let Some(value) = shared.retry_after.lock().clone() {
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
        }
    }
    response
}

/// [`GARBAGE`] with `status`, labelled JSON (no body where HTTP forbids one).
fn garbage(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status)
        .expect("statuses come from set_status, which allows 200..=599");
    let mut response = HttpResponse::build(code);
    if matches!(status, 204 | 304) {
        return response.finish();
    }
    response
        .content_type("application/json")
        .body(Bytes::from_static(GARBAGE))
}

/// `{"ok":true}` for 2xx, `{"error":...}` otherwise, no body where HTTP
/// forbids one (204, 304).
fn reply(status: u16, error: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status)
        .expect("statuses come from set_status, which allows 200..=599, or are fixed here");
    let mut response = HttpResponse::build(code);
    if matches!(status, 204 | 304) {
        response.finish()
    } else if code.is_success() {
        response.json(serde_json::json!({ "ok": true }))
    } else {
        let reason = code.canonical_reason().unwrap_or("Unknown");
        response.json(serde_json::json!({ "error": format!("{reason}: {error}") }))
    }
}
