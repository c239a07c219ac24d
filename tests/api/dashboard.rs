//! The dashboard in a real browser: Debian's Chromium, headless, driven over
//! WebDriver (chromedriver, through fantoccini) against a real gateway. An
//! operator's first visit: the page asks for the API key, a session is
//! created, its QR code appears and rotates without a reload, the simulated
//! phone scans it and the page shows "connected"; then the session is
//! deleted through the confirmation dialog. Screenshots of each step are
//! written to `$CARGO_TARGET_TMPDIR/dashboard/` (or `SCREENSHOTS_DIR`); the
//! README shows the ones committed under `docs/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::{eventually_every, spawn, test_config, TestGateway, PATIENCE};

const KEY: &str = "dash-0123456789abcdef";

/// chromedriver and the Chromium it drives; both stop when dropped.
struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs: install Debian's chromium and chromium-driver (.ci/run does)");
    let url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,860"] }),
    );
    // chromedriver listens a moment after it starts.
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Browser { driver, client },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session from chromedriver: {last:?}");
}

/// Runs `script` in the page and returns its value.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("the script runs")
}

async fn text(c: &Client, css: &str) -> String {
    js(
        c,
        &format!("return document.querySelector('{css}').textContent"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// Waits until `script` returns `true` in the page.
async fn until(c: &Client, what: &str, script: &str) {
    let ok = eventually_every(PATIENCE, Duration::from_millis(100), || async {
        js(c, script).await == Value::Bool(true)
    })
    .await;
    if !ok {
        let notice = text(c, "#notice").await;
        panic!("the page never showed {what} (last notice: {notice:?})");
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = std::env::var_os("SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard"));
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(value)
        .await
        .unwrap();
}

/// `GET /sessions/{id}`'s status, with the key.
async fn session_status(gw: &TestGateway, id: &str) -> u16 {
    gw.http()
        .get(format!("{}/sessions/{id}", gw.base_url()))
        .insert_header(("X-Api-Key", KEY))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[actix_rt::test]
async fn an_operator_links_a_phone_from_the_dashboard_and_deletes_the_session() {
    let mut config = test_config();
    config.server.api_keys = KEY.into();
    // Slow enough to see one code, fast enough to see it rotate.
    config.simulator.qr_first_ms = 200;
    config.simulator.qr_rotate_ms = 1_500;
    let gw = spawn(config).await;
    let base = gw.base_url().to_owned();
    let browser = browser().await;
    let c = &browser.client;

    // `/` leads to the dashboard, which asks for the key (the API said 401).
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/dashboard"));
    until(
        c,
        "the key dialog",
        "return document.querySelector('#key-dialog').open",
    )
    .await;
    type_into(c, "#key-input", KEY).await;
    click(c, "#key-save").await;
    until(
        c,
        "the health chips",
        "return document.querySelector('#health-status').textContent === 'OK'",
    )
    .await;

    // Create a session: its QR code appears, then a new one replaces it.
    type_into(c, "#create-id", "shop-1").await;
    click(c, "#create-btn").await;
    until(
        c,
        "the QR code",
        "const i = document.querySelector('#qr-img'); \
         return !document.querySelector('#qr-box').hidden && i.complete && i.naturalWidth > 100",
    )
    .await;
    screenshot(c, "dashboard-qr.png").await;
    let first_src = js(c, "return document.querySelector('#qr-img').src").await;
    until(
        c,
        "a rotated QR code",
        &format!(
            "return document.querySelector('#qr-img').src !== {first_src} && \
             document.querySelector('#qr-img').naturalWidth > 100"
        ),
    )
    .await;
    until(
        c,
        "the session in the list",
        "return !!document.querySelector('#sessions tr[data-session=\"shop-1\"]')",
    )
    .await;

    // The phone scans: "connected" without a reload, in the detail and the list.
    click(c, "#sim-scan").await;
    until(
        c,
        "connected",
        "return document.querySelector('#detail-state').textContent === 'connected' && \
         document.querySelector('#qr-box').hidden && \
         document.querySelector('#detail-jid').textContent.endsWith('@s.whatsapp.net') && \
         document.querySelector('#sessions tr[data-session=\"shop-1\"] .state').textContent === 'connected'",
    )
    .await;
    until(
        c,
        "the state events in the session's log",
        "return [...document.querySelectorAll('#events li[data-type=\"state\"]')] \
         .some(li => li.textContent.includes('connected'))",
    )
    .await;
    until(
        c,
        "the health glance counting the connected session",
        "return document.querySelector('#health-sessions').textContent === '1 connected / 1'",
    )
    .await;
    screenshot(c, "dashboard-connected.png").await;
    assert_eq!(session_status(&gw, "shop-1").await, 200);

    // The key stays in the tab's session storage, never in the address.
    let stored = js(c, "return sessionStorage.getItem('wagate.apiKey')").await;
    assert_eq!(stored, KEY);
    assert!(!c.current_url().await.unwrap().as_str().contains(KEY));

    // Delete asks first; cancelling changes nothing, confirming deletes.
    click(c, "#detail [data-action=delete]").await;
    until(
        c,
        "the confirmation",
        "return document.querySelector('#confirm').open",
    )
    .await;
    click(c, "#confirm button[value=cancel]").await;
    assert_eq!(session_status(&gw, "shop-1").await, 200);
    click(c, "#detail [data-action=delete]").await;
    until(
        c,
        "the confirmation",
        "return document.querySelector('#confirm').open",
    )
    .await;
    click(c, "#confirm-ok").await;
    until(
        c,
        "the detail closed",
        "return document.querySelector('#detail').hidden",
    )
    .await;
    let gone = eventually_every(PATIENCE, Duration::from_millis(50), || async {
        session_status(&gw, "shop-1").await == 404
    })
    .await;
    assert!(gone, "the session was deleted");

    browser.client.clone().close().await.unwrap();
    drop(browser);
    gw.shutdown().await;
}
