//! Unit tests of [`FakeLaravel`], talking to the fake over real sockets:
//! plain HTTP/1.1 on a `TcpStream` from plain threads, and `awc` inside an
//! actix System. `wait_for` is exercised from both a tokio runtime and an
//! actix System. The other helpers' tests are in `tests/` ([`others`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{FakeLaravel, Received, MAX_BODY};

mod garbage;
mod others;

/// Tests that start servers share this lock for reading; the test counting
/// server threads takes it for writing, so no other server is alive then.
static SERVERS: RwLock<()> = RwLock::new(());

pub(crate) fn servers_shared() -> RwLockReadGuard<'static, ()> {
    SERVERS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn servers_exclusive() -> RwLockWriteGuard<'static, ()> {
    SERVERS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One HTTP/1.1 POST on a fresh connection; the status and body of the answer.
fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    let headers = [("Content-Type", "application/json")];
    post(port, path, &headers, body.as_bytes()).expect("the fake answers")
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

#[test]
fn records_path_headers_body_json_time_and_status() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    assert_eq!(
        fake.base_url(),
        format!("http://127.0.0.1:{}/api", fake.port())
    );
    let body = br#"{"qrs":[{"sessionId":"shop-1","seq":1}]}"#;
    let before = Instant::now();
    let (status, answer) = post(
        fake.port(),
        "/api/qr/batch",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer secret-token"),
            ("Idempotency-Key", "0190a1b2-c3d4"),
            ("X-Wagate-Timestamp", "1700000000000"),
            ("X-Wagate-Signature", "sha256=abc"),
            ("X-Twice", "one"),
            ("X-Twice", "two"),
        ],
        body,
    )
    .unwrap();
    let after = Instant::now();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
        json!({"ok": true})
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(fake.count(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/qr/batch");
    assert_eq!(r.headers["authorization"], "Bearer secret-token");
    assert_eq!(r.headers["idempotency-key"], "0190a1b2-c3d4");
    assert_eq!(r.headers["x-wagate-timestamp"], "1700000000000");
    assert_eq!(r.headers["x-wagate-signature"], "sha256=abc");
    assert_eq!(r.headers["x-twice"], "one, two");
    assert_eq!(r.header("X-Wagate-Signature"), Some("sha256=abc"));
    assert!(r.headers.keys().all(|k| *k == k.to_ascii_lowercase()));
    assert_eq!(&r.body[..], &body[..]);
    assert_eq!(r.json.as_ref().unwrap()["qrs"][0]["sessionId"], "shop-1");
    assert!(before <= r.at && r.at <= after);
    assert_eq!(r.status, 200);
}

#[test]
fn non_2xx_statuses_are_answered_and_recorded() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    fake.set_status(500);
    let (status, answer) = post_json(
        fake.port(),
        "/api/whatsapp/status/batch",
        r#"{"statuses":[]}"#,
    );
    assert_eq!(status, 500);
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["error"].is_string(), "{answer}");
    fake.set_status(429);
    assert_eq!(
        post_json(fake.port(), "/api/whatsapp/status/batch", "{}").0,
        429
    );
    fake.set_status(204);
    assert_eq!(
        post_json(fake.port(), "/api/whatsapp/status/batch", "{}"),
        (204, String::new())
    );
    fake.set_status(200);
    assert_eq!(
        post_json(fake.port(), "/api/whatsapp/status/batch", "{}").0,
        200
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 204, 200]);
}

#[test]
#[should_panic(expected = "final statuses only")]
fn informational_statuses_are_refused() {
    let _servers = servers_shared();
    FakeLaravel::start().set_status(100);
}

#[test]
fn requests_to_matches_path_suffixes_and_clear_forgets() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    for path in [
        "/api/qr/batch",
        "/api/whatsapp/status/batch",
        "/api/whatsapp/messages/batch",
        "/api/qr",
        "/api/whatsapp/status",
        "/api/qr/batch",
    ] {
        assert_eq!(post_json(fake.port(), path, "{}").0, 200, "{path}");
    }
    assert_eq!(fake.count(), 6);
    assert_eq!(fake.requests_to("/qr/batch").len(), 2);
    assert_eq!(fake.requests_to("/whatsapp/status/batch").len(), 1);
    assert_eq!(fake.requests_to("/whatsapp/messages/batch").len(), 1);
    assert_eq!(fake.requests_to("/qr").len(), 1);
    assert_eq!(fake.requests_to("/whatsapp/status").len(), 1);
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[3], "/api/qr", "arrival order");
    fake.clear();
    assert_eq!(fake.count(), 0);
    assert!(fake.requests().is_empty());
    assert_eq!(post_json(fake.port(), "/api/qr", "{}").0, 200);
    assert_eq!(fake.count(), 1);
}

#[test]
fn paths_outside_the_prefix_get_404_and_are_recorded() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    assert_eq!(post_json(fake.port(), "/qr/batch", "{}").0, 404);
    assert_eq!(post_json(fake.port(), "/apiqr/batch", "{}").0, 404);
    let recorded: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        recorded,
        [
            ("/qr/batch".to_owned(), 404),
            ("/apiqr/batch".to_owned(), 404)
        ]
    );
}

#[test]
fn bodies_that_are_not_json_are_kept_raw() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    let (status, _) = post(fake.port(), "/api/qr", &[], b"\xff not json").unwrap();
    assert_eq!(status, 200);
    let r = fake.requests().remove(0);
    assert_eq!(&r.body[..], b"\xff not json");
    assert!(r.json.is_none());
}

#[test]
fn bodies_up_to_16_mib_are_accepted_larger_ones_refused() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    // A JSON string filling exactly MAX_BODY bytes.
    let mut body = Vec::with_capacity(MAX_BODY + 1);
    body.extend_from_slice(br#"{"qr":""#);
    body.resize(MAX_BODY - 2, b'a');
    body.extend_from_slice(br#""}"#);
    assert_eq!(body.len(), MAX_BODY);
    let (status, _) = post(fake.port(), "/api/qr/batch", &[], &body).unwrap();
    assert_eq!(status, 200);
    let r = fake.requests().remove(0);
    assert_eq!(r.body.len(), MAX_BODY);
    assert_eq!(r.json.unwrap()["qr"].as_str().unwrap().len(), MAX_BODY - 9);

    fake.clear();
    body.push(b' ');
    // The fake may close the connection while the last bytes are in flight.
    if let Ok((status, _)) = post(fake.port(), "/api/qr/batch", &[], &body) {
        assert_eq!(status, 413);
    }
    assert_eq!(post_json(fake.port(), "/api/qr", "{}").0, 200);
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/api/qr"], "an oversized body is not recorded");
}

#[test]
fn delay_comes_after_recording() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    let delay = Duration::from_millis(300);
    fake.set_delay(delay);
    let sent = Instant::now();
    assert_eq!(post_json(fake.port(), "/api/qr/batch", "{}").0, 200);
    let answered = Instant::now();
    let r = fake.requests().remove(0);
    assert!(
        answered.duration_since(r.at) >= delay,
        "answered after the delay"
    );
    assert!(
        r.at.duration_since(sent) < delay,
        "recorded on arrival, before the delay"
    );
    fake.set_delay(Duration::ZERO);
    let sent = Instant::now();
    assert_eq!(post_json(fake.port(), "/api/qr/batch", "{}").0, 200);
    assert!(sent.elapsed() < delay);
}

#[test]
fn wait_for_wakes_on_arrival_under_tokio() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    let port = fake.port();
    tokio_runtime().block_on(async {
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            post_json(port, "/api/qr/batch", "{}")
        });
        let started = Instant::now();
        let arrived = fake
            .wait_for(Duration::from_secs(30), |reqs| reqs.len() == 1)
            .await;
        assert!(arrived);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the arrival, not the timeout"
        );
        assert_eq!(sender.join().unwrap().0, 200);
        // Already true: returns at once.
        let started = Instant::now();
        assert!(
            fake.wait_for(Duration::from_secs(30), |reqs| !reqs.is_empty())
                .await
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    });
}

#[test]
fn wait_for_times_out_when_nothing_comes() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    tokio_runtime().block_on(async {
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        assert!(!fake.wait_for(timeout, |reqs| !reqs.is_empty()).await);
        let waited = started.elapsed();
        assert!(waited >= timeout, "waited {waited:?}");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    });
}

#[test]
fn wait_for_sees_arrivals_before_a_delayed_answer() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    fake.set_delay(Duration::from_secs(2));
    let port = fake.port();
    tokio_runtime().block_on(async {
        let sender = std::thread::spawn(move || post_json(port, "/api/qr/batch", "{}"));
        let started = Instant::now();
        assert!(
            fake.wait_for(Duration::from_secs(30), |reqs| reqs.len() == 1)
                .await
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "recorded before answering"
        );
        assert_eq!(sender.join().unwrap().0, 200);
    });
}

#[test]
fn wait_for_and_awc_under_actix_with_a_predicate_that_calls_back() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    actix_rt::System::new().block_on(async {
        let client = awc::Client::default();
        let url = format!("{}/whatsapp/messages/batch", fake.base_url());
        let send = async {
            for i in 0..3 {
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                let mut response = client
                    .post(&url)
                    .insert_header(("Idempotency-Key", format!("k{i}")))
                    .send_json(&json!({"messages": [i]}))
                    .await
                    .expect("the fake answers");
                assert_eq!(response.status().as_u16(), 200);
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body, json!({"ok": true}));
            }
        };
        // The predicate ignores its argument and reads through the fake, as
        // the gateway's tests do; this must neither deadlock nor miss wakes.
        let wait = fake.wait_for(Duration::from_secs(30), |_| {
            fake.requests_to("/messages/batch").len() == 3 && fake.count() == 3
        });
        let ((), arrived) = tokio::join!(send, wait);
        assert!(arrived);
        let keys: Vec<String> = fake
            .requests()
            .iter()
            .map(|r| r.headers["idempotency-key"].clone())
            .collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        assert_eq!(
            fake.requests()[2].json.as_ref().unwrap()["messages"],
            json!([2])
        );
    });
}

#[test]
fn clear_wakes_waiters() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    assert_eq!(post_json(fake.port(), "/api/qr", "{}").0, 200);
    tokio_runtime().block_on(async {
        let clear = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fake.clear();
        };
        let wait = fake.wait_for(Duration::from_secs(30), |reqs| reqs.is_empty());
        let started = Instant::now();
        let ((), emptied) = tokio::join!(clear, wait);
        assert!(emptied);
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn drop_does_not_wait_for_a_delayed_answer() {
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    fake.set_delay(Duration::from_secs(60));
    let port = fake.port();
    let sender = std::thread::spawn(move || post(port, "/api/qr", &[], b"{}"));
    let arrived =
        tokio_runtime().block_on(fake.wait_for(Duration::from_secs(30), |reqs| reqs.len() == 1));
    assert!(arrived);
    let started = Instant::now();
    drop(fake);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drop took {:?}",
        started.elapsed()
    );
    // The connection was closed instead of answered.
    let answer = sender.join().unwrap();
    assert!(answer.is_err(), "{answer:?}");
}

/// Threads that belong to a fake's server: ours, and actix's acceptor and
/// worker arbiters (names as the kernel keeps them, cut to 15 bytes).
#[cfg(target_os = "linux")]
fn server_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("fake-laravel") || comm.starts_with("actix-"))
        .count()
}

#[test]
fn starting_and_dropping_twenty_frees_their_threads() {
    let _servers = servers_exclusive();
    #[cfg(target_os = "linux")]
    let baseline = server_threads();
    for i in 0..20 {
        let fake = FakeLaravel::start();
        assert_eq!(fake.count(), 0);
        assert_eq!(
            post_json(fake.port(), "/api/qr", &format!("{{\"i\":{i}}}")).0,
            200
        );
        assert_eq!(fake.count(), 1);
        let port = fake.port();
        drop(fake);
        // A dropped server no longer listens.
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
        #[cfg(target_os = "linux")]
        {
            // Threads end just after releasing the server; allow a moment
            // (seconds on a loaded 2-core machine; the loop ends at once
            // when they are gone).
            let deadline = Instant::now() + Duration::from_secs(10);
            while server_threads() > baseline && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // `<=`: threads of a test that ran just before may still have
            // been ending when the baseline was counted.
            let left = server_threads();
            assert!(
                left <= baseline,
                "threads left after drop {i}: {left} > {baseline}"
            );
        }
    }
}

#[test]
fn the_fake_and_its_wait_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<FakeLaravel>();
    send_sync::<Received>();
    let _servers = servers_shared();
    let fake = FakeLaravel::start();
    let wait = fake.wait_for(Duration::ZERO, |_| true);
    send(&wait);
    assert!(tokio_runtime().block_on(wait));
}
