//! What the real-Laravel tests ask of both sides: the Laravel app's
//! database and PHP (statuses, messages, signed posts) and the gateway's
//! own view, and the comparison between them. Used by `real_laravel`'s tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wagate_actors::clock::unix_ms;
use wagate_actors::laravel::signature::SignatureVersion;
use wagate_testkit::LaravelApp;

use crate::helpers::{eventually_every, TestGateway};

pub(super) const TOKEN: &str = "real-laravel-token";
pub(super) const SECRET: &str = "real-laravel-secret";
pub(super) const TO: &str = "5215512345678";

pub(super) fn laravel_env() -> [(&'static str, &'static str); 2] {
    [("WAGATE_TOKEN", TOKEN), ("WAGATE_SIGNING_SECRET", SECRET)]
}

/// Forwarding to `app` with short batch windows and quick retries.
pub(super) fn forward_to(
    mut c: wagate::config::Config,
    app: &LaravelApp,
    secret: &str,
) -> wagate::config::Config {
    c.laravel.api = app.api_url();
    c.laravel.token = TOKEN.into();
    c.laravel.signing_secret = secret.into();
    c.laravel.retry_base_ms = 50;
    c.laravel.retry_max_ms = 200;
    c.batch.interval_ms = 50;
    c.batch.priority_interval_ms = 50;
    c.batch.messages_interval_ms = 50;
    // One QR batch per 10 s, not per 100 ms: an unlinked session must not
    // flood the outbox during the outage phase.
    c.simulator.qr_rotate_ms = 10_000;
    c
}

/// Runs a query off the actix thread (it spawns `php`), so the gateway's
/// actors on this thread keep running meanwhile.
pub(super) async fn query(app: &Arc<LaravelApp>, sql: &str) -> Vec<Value> {
    let (app, sql) = (Arc::clone(app), sql.to_owned());
    actix_rt::task::spawn_blocking(move || app.query(&sql))
        .await
        .expect("the query thread does not panic")
}

/// Runs PHP in the booted app off the actix thread (see [`query`]).
pub(super) async fn php_eval(app: &Arc<LaravelApp>, code: String) -> Value {
    let app = Arc::clone(app);
    actix_rt::task::spawn_blocking(move || app.eval(&code))
        .await
        .expect("the eval thread does not panic")
}

/// The docs' `WagateRecords::messagePosted`, as the application calls it
/// after a 202; returns the row's delivery status.
pub(super) async fn message_posted(
    app: &Arc<LaravelApp>,
    session: &str,
    mid: &str,
    text: &str,
) -> Value {
    php_eval(
        app,
        format!("return \\App\\Support\\WagateRecords::messagePosted('{session}', '{mid}', '{TO}', '{text}')->delivery_status;"),
    )
    .await
}

/// Polls `cond` (a query through PHP) every 200 ms until it holds or
/// `deadline` passes.
pub(super) async fn within<F, Fut>(deadline: Duration, cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_every(deadline, Duration::from_millis(200), cond).await
}

/// The status Laravel should hold for a session in the gateway's `state`;
/// `None` for a session the gateway no longer has (logged out or stopped
/// before a restart), whose last status Laravel must show as terminal.
pub(super) fn status_word(state: &str) -> Option<&str> {
    match state {
        "" => None,
        "connected" => Some("active"),
        "disconnected" => Some("inactive"),
        other => Some(other), // qr, starting, logged_out, stopped, failed
    }
}

/// Session id → status, as Laravel stored it.
pub(super) async fn laravel_statuses(app: &Arc<LaravelApp>) -> BTreeMap<String, String> {
    query(app, "SELECT session_id, status FROM whatsapp_sessions")
        .await
        .into_iter()
        .map(|r| {
            (
                r["session_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Session id → the gateway's state (empty when it no longer has it).
pub(super) async fn gateway_states(gw: &TestGateway, ids: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in ids {
        out.insert((*id).to_owned(), gw.state_of(id).await);
    }
    out
}

pub(super) fn agree(
    laravel: &BTreeMap<String, String>,
    gateway: &BTreeMap<String, String>,
) -> bool {
    gateway.iter().all(|(id, state)| {
        let stored = laravel.get(id).map(String::as_str);
        match status_word(state) {
            Some(word) => stored == Some(word),
            None => matches!(stored, Some("logged_out" | "stopped" | "failed")),
        }
    })
}

/// Waits until every session in `ids` has the gateway's status at Laravel.
pub(super) async fn statuses_agree(
    gw: &TestGateway,
    app: &Arc<LaravelApp>,
    ids: &[&str],
    deadline: Duration,
) {
    let agreed = within(deadline, || async {
        agree(&laravel_statuses(app).await, &gateway_states(gw, ids).await)
    })
    .await;
    let laravel = laravel_statuses(app).await;
    let gateway = gateway_states(gw, ids).await;
    assert!(
        agreed,
        "Laravel's statuses {laravel:?} never matched the gateway's states {gateway:?}\n{}",
        tail(&app.log())
    );
}

pub(super) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Incoming texts Laravel stored for `session`, in id order.
pub(super) async fn incoming_texts(app: &Arc<LaravelApp>, session: &str) -> Vec<String> {
    query(
        app,
        &format!("SELECT text FROM whatsapp_messages WHERE direction = 'in' AND session_id = '{session}' ORDER BY id"),
    )
    .await
    .into_iter()
    .map(|r| r["text"].as_str().map(str::to_owned).unwrap_or_else(|| "<null>".into()))
    .collect()
}

/// Laravel's row for an outgoing message.
pub(super) async fn outgoing(
    app: &Arc<LaravelApp>,
    session: &str,
    message_id: &str,
) -> Option<Value> {
    query(
        app,
        &format!("SELECT * FROM whatsapp_messages WHERE session_id = '{session}' AND wa_id = '{message_id}'"),
    )
    .await
    .into_iter()
    .next()
}

pub(super) async fn incoming(gw: &TestGateway, id: &str, text: &str) {
    let r = gw
        .post(
            &format!("/sessions/{id}/simulate/incoming"),
            json!({ "from": "5215550001", "text": text }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

pub(super) async fn send(gw: &TestGateway, id: &str, text: &str) -> String {
    let r = gw.send_text(id, TO, text).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"].as_str().unwrap().to_owned();
    gw.wait_message(id, &mid, "sent").await;
    mid
}

/// A request to the app as wagate would send it, signed with `version`
/// over `key`; `sign_key` lets a test sign one key and send another.
pub(super) struct Signed<'a> {
    pub(super) path: &'a str,
    pub(super) body: String,
    pub(super) key: &'a str,
    pub(super) sign_key: &'a str,
    pub(super) version: Option<SignatureVersion>,
}

pub(super) async fn post_signed(app: &LaravelApp, req: Signed<'_>) -> u16 {
    let ts = unix_ms();
    let version = req.version.unwrap_or(SignatureVersion::V1);
    let sig = version.sign(SECRET.as_bytes(), ts, req.sign_key, req.body.as_bytes());
    let mut r = awc::Client::default()
        .post(format!("{}{}", app.api_url(), req.path))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Accept", "application/json"))
        .insert_header(("Idempotency-Key", req.key))
        .insert_header(("X-Wagate-Timestamp", ts.to_string()))
        .insert_header(("X-Wagate-Signature", sig));
    if let Some(v) = req.version {
        r = r.insert_header(("X-Wagate-Signature-Version", v.as_header()));
    }
    r.timeout(Duration::from_secs(30))
        .send_body(req.body)
        .await
        .expect("the app answers")
        .status()
        .as_u16()
}

pub(super) fn receipt(session: &str, message_id: &str, status: &str, rank: u8) -> String {
    json!({"messages": [{"type": "receipt", "sessionId": session, "messageId": message_id,
        "status": status, "rank": rank, "timestamp": unix_ms()}]})
    .to_string()
}
