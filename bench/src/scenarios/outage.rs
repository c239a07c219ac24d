//! Scenario 5, Laravel outage: under a QR storm and status churn, the fake
//! Laravel answers 503 for a while, then comes back. Counts the requests it
//! got while down (the breaker should let only probes through once open),
//! the time from its return until the outbox is drained, and the status
//! changes and incoming messages lost (must be none).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::harness::Gateway;
use crate::report::{table, Report};
use crate::Opts;

const RESET_MS: u64 = 10_000;
const THRESHOLD: u64 = 10;

pub async fn run(opts: &Opts, report: &mut Report, _charts: &Path) -> anyhow::Result<()> {
    let n = opts.storm_sessions;
    let linked = (n / 10).clamp(10, 100);
    let down_for = Duration::from_secs(opts.outage_secs);
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let laravel = FakeLaravel::start();
    let gw = Gateway::start(&[
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "bench".into()),
        ("LARAVEL_API", laravel.base_url()),
        ("SIM_QR_FIRST_MS", "2000".into()),
        ("SIM_QR_ROTATE_MS", "2000".into()),
        ("SIM_QR_COUNT", "1000000".into()),
        ("SIM_RECONNECT_MS", "200".into()),
        ("BATCH_INTERVAL", "500".into()),
        ("MESSAGES_BATCH_INTERVAL", "200".into()),
        ("CIRCUIT_BREAKER_THRESHOLD", THRESHOLD.to_string()),
        ("CIRCUIT_BREAKER_RESET", RESET_MS.to_string()),
    ])?;
    let ids: Vec<String> = (0..n).map(|i| format!("o{i}")).collect();
    gw.create_all(&ids, opts.clients).await?;
    gw.wait_state_count("qr", n as u64, Duration::from_secs(120))
        .await;
    let churn = &ids[..linked];
    for id in churn {
        gw.post(&format!("/sessions/{id}/simulate/scan"), &json!({}))
            .await;
    }
    gw.wait_state_count("connected", linked as u64, Duration::from_secs(60))
        .await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;

    // Laravel goes down; sessions keep dropping and receiving messages.
    laravel.set_status(503);
    let down_at = Instant::now();
    let mut opened_at = None;
    let mut disconnects: HashMap<String, usize> = HashMap::new();
    let mut texts = Vec::new();
    let mut round = 0usize;
    while down_at.elapsed() < down_for {
        for id in churn.iter().skip(round % 2).step_by(2) {
            let s = gw
                .post(&format!("/sessions/{id}/simulate/disconnect"), &json!({}))
                .await
                .status;
            if s == 200 {
                *disconnects.entry(id.clone()).or_default() += 1;
            }
            let text = format!("outage {id} {round}");
            let s = gw
                .post(
                    &format!("/sessions/{id}/simulate/incoming"),
                    &json!({ "from": "5215512345678", "text": text }),
                )
                .await
                .status;
            if s == 200 {
                texts.push(text);
            }
        }
        round += 1;
        let h = gw.get("/health").await.json_or_null();
        if opened_at.is_none() && h["circuitBreaker"]["state"] == "OPEN" {
            opened_at = Some(Instant::now());
        }
        actix_rt::time::sleep(Duration::from_millis(1000)).await;
    }
    let up_at = Instant::now();
    laravel.set_status(200);
    let all = laravel.requests();
    let while_down: Vec<Instant> = all
        .iter()
        .map(|r| r.at)
        .filter(|t| *t >= down_at && *t < up_at)
        .collect();
    let after_open = opened_at.map_or(0, |o| while_down.iter().filter(|t| **t > o).count());

    // Back up: wait for the outbox to drain and everything to arrive.
    let received = |laravel: &FakeLaravel| {
        let mut inactive: HashMap<String, usize> = HashMap::new();
        let mut got_texts = std::collections::HashSet::new();
        for r in laravel.requests() {
            if !(200..300).contains(&r.status) {
                continue;
            }
            let Some(j) = &r.json else { continue };
            for s in j["statuses"].as_array().into_iter().flatten() {
                if s["status"] == "inactive" {
                    *inactive
                        .entry(s["sessionId"].as_str().unwrap_or_default().to_owned())
                        .or_default() += 1;
                }
            }
            for m in j["messages"].as_array().into_iter().flatten() {
                if let Some(t) = m["text"].as_str() {
                    got_texts.insert(t.to_owned());
                }
            }
        }
        (inactive, got_texts)
    };
    let deadline = up_at + Duration::from_secs(600);
    let mut drained_at = None;
    while Instant::now() < deadline {
        let h = gw.get("/health").await.json_or_null();
        if h["queues"]["outbox"]["held"] == 0 {
            drained_at = Some(Instant::now());
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Give in-flight requests a moment to land, then count what is missing.
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let (inactive, got_texts) = received(&laravel);
    let lost_status: usize = disconnects
        .iter()
        .map(|(id, n)| n.saturating_sub(inactive.get(id).copied().unwrap_or(0)))
        .sum();
    let lost_texts = texts.iter().filter(|t| !got_texts.contains(*t)).count();
    let caused: usize = disconnects.values().sum::<usize>() + texts.len();
    let drain = drained_at.map(|d| d.duration_since(up_at));
    let opened_after = opened_at.map(|o| o.duration_since(down_at));
    let body =
        format!(
        "{n} sessions rotating QRs every 2 s (PNG), {linked} of them linked; Laravel answers 503 \
         for {} s while half of the linked sessions drop (and reconnect) and receive a message \
         every second. Breaker: {THRESHOLD} failures, {RESET_MS} ms reset; outbox in Redis.\n\n{}\n\
         While Laravel was down it received {} requests: those before the breaker opened, then \
         {after_open} once open (at most one probe per {RESET_MS} ms is expected: {}). Lost \
         counts compare what the benchmark caused with what Laravel accepted.\n",
        down_for.as_secs(),
        table(
            &[
                "requests while down",
                "breaker opened after",
                "requests once open",
                "drain time after return",
                "events caused while down",
                "status changes lost",
                "messages lost",
            ],
            &[vec![
                while_down.len().to_string(),
                opened_after.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                after_open.to_string(),
                drain.map_or("not drained".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                caused.to_string(),
                lost_status.to_string(),
                lost_texts.to_string(),
            ]]
        ),
        while_down.len(),
        down_for.as_millis() as u64 / RESET_MS + 1,
    );
    report.section("5. Laravel outage", body);
    report.target(
        "Laravel outage: only probes while open, nothing lost",
        format!(
            "{after_open} requests once open over {} s; {lost_status} status changes and {lost_texts} messages lost",
            down_for.as_secs()
        ),
        Some(
            after_open as u64 <= down_for.as_millis() as u64 / RESET_MS + 1
                && lost_status == 0
                && lost_texts == 0,
        ),
    );
    Ok(())
}
