//! The chaos run's clients: workers that create, delete, scan, disconnect,
//! stop and restart sessions, post messages with and without idempotency
//! keys (and resend keys already used), and play phones sending incoming
//! messages. What the gateway accepted is written to a [`Record`], which the
//! invariants are checked against at the end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use wagate_testkit::GatewayClient;

use crate::convergence::Schedule;

/// The number messages go to and incoming messages come from.
pub const PEER: &str = "5215599990000";

/// What the clients were told, to check the end state against.
#[derive(Default)]
pub struct Record {
    /// Message ids answered 202, with their session.
    pub accepted: HashMap<String, String>,
    /// Every message id a 2xx answer gave for each idempotency key.
    pub keyed: HashMap<String, HashSet<String>>,
    /// Message posts nothing answered (the gateway died or was starting):
    /// each may or may not have been accepted.
    pub unanswered_posts: u64,
    /// Texts of the incoming messages `simulate/incoming` accepted (200).
    pub incoming: Vec<String>,
    /// Operations by kind: (tried, answered 2xx).
    pub ops: BTreeMap<&'static str, (u64, u64)>,
}

impl Record {
    fn count(&mut self, kind: &'static str, ok: bool) {
        let e = self.ops.entry(kind).or_default();
        e.0 += 1;
        e.1 += u64::from(ok);
    }
}

/// The sessions the workers act on: `senders` are linked at the start and
/// only disconnected (they reconnect by themselves), so most messages can
/// be sent; `churn` sessions are created, scanned, stopped, restarted,
/// logged out and deleted at random.
pub struct Pools {
    pub senders: Vec<String>,
    pub churn: Vec<String>,
}

impl Pools {
    pub fn all(&self) -> Vec<String> {
        self.senders.iter().chain(&self.churn).cloned().collect()
    }
}

/// A key a worker used, with the body to resend under it.
struct Keyed {
    session: String,
    body: Value,
}

/// Posts a message; records what came back. `key` is the idempotency key
/// (its body is the same on every resend).
async fn post_message(
    client: &GatewayClient,
    record: &RefCell<Record>,
    kind: &'static str,
    session: &str,
    body: &Value,
) -> u16 {
    let reply = client
        .post(&format!("/sessions/{session}/messages"), body)
        .await;
    let (status, answer) = reply.status_and_json();
    let mut r = record.borrow_mut();
    r.count(kind, (200..300).contains(&status));
    let id = answer["messageId"].as_str().map(str::to_owned);
    match (status, id) {
        (202, Some(id)) => {
            r.accepted.insert(id.clone(), session.to_owned());
            if let Some(key) = body["idempotencyKey"].as_str() {
                r.keyed.entry(key.to_owned()).or_default().insert(id);
            }
        }
        (200, Some(id)) => {
            if let Some(key) = body["idempotencyKey"].as_str() {
                r.keyed.entry(key.to_owned()).or_default().insert(id);
            }
        }
        (0, _) => r.unanswered_posts += 1,
        _ => {}
    }
    status
}

/// One worker's random operations until `stop` is set.
pub async fn worker(
    client: &GatewayClient,
    pools: &Pools,
    mut schedule: Schedule,
    stop: &Cell<bool>,
    record: &RefCell<Record>,
    worker: usize,
) {
    let mut n = 0u64;
    let mut keys: Vec<Keyed> = Vec::new();
    let pick =
        |s: &mut Schedule, pool: &[String]| pool[s.below(pool.len() as u64) as usize].clone();
    while !stop.get() {
        n += 1;
        let roll = schedule.below(100);
        let status = match roll {
            0..=19 => {
                let session = pick(&mut schedule, &pools.senders);
                let body = json!({ "to": PEER, "text": format!("w{worker}-m{n}") });
                post_message(client, record, "message", &session, &body).await
            }
            20..=29 => {
                let session = pick(&mut schedule, &pools.senders);
                let key = format!("w{worker}-k{n}");
                let body =
                    json!({ "to": PEER, "text": format!("w{worker}-m{n}"), "idempotencyKey": key });
                let status = post_message(client, record, "message_keyed", &session, &body).await;
                keys.push(Keyed { session, body });
                status
            }
            30..=37 if !keys.is_empty() => {
                let k = &keys[schedule.below(keys.len() as u64) as usize];
                post_message(client, record, "message_resend", &k.session, &k.body).await
            }
            30..=42 => {
                let session = pick(&mut schedule, &pools.churn);
                let body = json!({ "to": PEER, "text": format!("w{worker}-m{n}") });
                post_message(client, record, "message_churn", &session, &body).await
            }
            43..=67 => {
                let all = pools.all();
                let session = pick(&mut schedule, &all);
                let text = format!("w{worker}-in{n}");
                let status = client
                    .post(
                        &format!("/sessions/{session}/simulate/incoming"),
                        json!({ "from": PEER, "text": text }),
                    )
                    .await
                    .status;
                let mut r = record.borrow_mut();
                r.count("incoming", status == 200);
                if status == 200 {
                    r.incoming.push(text);
                }
                status
            }
            _ => {
                let (kind, method, path, body) = session_op(&mut schedule, pools, roll);
                let status = client.request(method, &path, body).await.status;
                record
                    .borrow_mut()
                    .count(kind, (200..300).contains(&status));
                status
            }
        };
        if status == 0 || status == 429 {
            // The gateway is down or starting, or its queue is full: do not
            // spin on a closed port or a full queue.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A session operation for `roll` (68..100): its kind, method, path and
/// body. Refusals (409 for a state the action does not apply to, 404 for a
/// deleted session) are part of the load.
fn session_op(
    schedule: &mut Schedule,
    pools: &Pools,
    roll: u64,
) -> (&'static str, &'static str, String, Option<Value>) {
    let churn = &pools.churn[schedule.below(pools.churn.len() as u64) as usize];
    let sender = &pools.senders[schedule.below(pools.senders.len() as u64) as usize];
    let post = |kind, path: String| (kind, "POST", path, Some(json!({})));
    match roll {
        68..=71 => post(
            "disconnect",
            format!("/sessions/{sender}/simulate/disconnect"),
        ),
        72..=79 => post("scan", format!("/sessions/{churn}/simulate/scan")),
        80..=84 => (
            "create",
            "POST",
            "/sessions".to_owned(),
            Some(json!({ "id": churn })),
        ),
        85..=88 => ("delete", "DELETE", format!("/sessions/{churn}"), None),
        89..=91 => post("stop", format!("/sessions/{churn}/stop")),
        92..=95 => post("restart", format!("/sessions/{churn}/restart")),
        96..=97 => post("logout", format!("/sessions/{churn}/simulate/logout")),
        _ => ("list", "GET", "/sessions?limit=1000".to_owned(), None),
    }
}
