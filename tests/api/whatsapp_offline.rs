//! The real WhatsApp Web connector with no WhatsApp to reach: this machine
//! has no internet, and a local port that accepts and hangs up stands in
//! for a blocked network. A session must report `disconnected` with a
//! reason, keep retrying with backoff, and leave no task behind once deleted.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tempfile::TempDir;

use crate::helpers::{eventually, spawn, test_config, TestGateway, PATIENCE};

/// A TCP port that counts connection attempts and hangs up on each.
struct HangUp {
    port: u16,
    attempts: Arc<AtomicUsize>,
}

impl HangUp {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&attempts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { port, attempts }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

pub fn whatsapp_config(data: &TempDir, url: Option<String>) -> wagate::config::Config {
    let mut c = test_config();
    c.connector.kind = wagate::config::ConnectorKind::WhatsappWeb;
    c.whatsapp.data_dir = data.path().to_string_lossy().into_owned();
    c.whatsapp.threads = 2;
    if let Some(url) = url {
        c.whatsapp.url = url;
        // No version fetch from web.whatsapp.com when pointed elsewhere.
        c.whatsapp.version = "2.3000.1000000000".into();
    }
    c
}

async fn connector_tasks(gw: &TestGateway) -> Option<u64> {
    let text = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("wagate_connector_tasks "))
        .and_then(|v| v.trim().parse().ok())
}

#[actix_rt::test]
async fn unreachable_whatsapp_is_disconnected_retried_and_delete_stops_every_task() {
    let data = tempfile::tempdir().expect("tempdir");
    let hangup = HangUp::start();
    let url = format!("ws://127.0.0.1:{}/ws/chat", hangup.port);
    let gw = spawn(whatsapp_config(&data, Some(url))).await;

    gw.create("offline-1").await;
    gw.wait_state("offline-1", "disconnected").await;
    let session = gw.get("/sessions/offline-1").await.json();
    let reason = session["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot reach WhatsApp"),
        "the reason says why: {session}"
    );
    // The client backs off (1 s, 1 s, 2 s, …) and tries again.
    let retried = eventually(PATIENCE, || async { hangup.attempts() >= 3 }).await;
    assert!(retried, "only {} connect attempts", hangup.attempts());
    assert_eq!(gw.state_of("offline-1").await, "disconnected");
    assert!(
        connector_tasks(&gw).await.unwrap_or_default() > 0,
        "the client runs on the WhatsApp runtime"
    );

    let r = gw.request("DELETE", "/sessions/offline-1", None).await;
    assert!(
        r.status < 300,
        "delete: {}",
        String::from_utf8_lossy(&r.body)
    );
    let drained = eventually(PATIENCE, || async { connector_tasks(&gw).await == Some(0) }).await;
    assert!(
        drained,
        "tasks left on the WhatsApp runtime after delete: {:?}",
        connector_tasks(&gw).await
    );
    let after = hangup.attempts();
    // Tasks are gone, so nothing can dial again; a new session still works.
    gw.create("offline-2").await;
    gw.wait_state("offline-2", "disconnected").await;
    assert!(hangup.attempts() > after);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn default_settings_without_internet_report_disconnected() {
    // WhatsApp's own URL and a version fetch, on a machine with no route out.
    let data = tempfile::tempdir().expect("tempdir");
    let gw = spawn(whatsapp_config(&data, None)).await;
    gw.create("no-net").await;
    let settled = eventually(PATIENCE, || async {
        matches!(gw.state_of("no-net").await.as_str(), "disconnected" | "qr")
    })
    .await;
    let session = gw.get("/sessions/no-net").await.json();
    assert!(settled, "neither disconnected nor a QR: {session}");
    if session["state"] == "disconnected" {
        assert!(
            session["reason"]
                .as_str()
                .is_some_and(|r| r.contains("cannot reach WhatsApp")),
            "{session}"
        );
    } // else: this machine reached the real WhatsApp, which sent a QR.
    let device_files: Vec<_> = std::fs::read_dir(data.path().join("devices"))
        .expect("DATA_DIR/devices")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "db"))
        .collect();
    assert_eq!(
        device_files.len(),
        1,
        "the device's keys live in their own file under DATA_DIR/devices"
    );
    gw.shutdown().await;
}
