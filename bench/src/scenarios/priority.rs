//! Scenario 2, priority latency: with a QR storm running over many
//! sessions, some sessions connect (scan), then disconnect; the latency
//! from the simulated event (the HTTP call that causes it) to the fake
//! Laravel's receipt of `active` / `inactive` is the high lane's. Stopping
//! other sessions sends `stopped`, a normal-lane status that waits for its
//! batch (`BATCH_INTERVAL`): that is the normal lane's latency.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use wagate_testkit::FakeLaravel;

use crate::chart::{self, Series};
use crate::harness::{Gateway, Percentiles};
use crate::report::{table, Report};
use crate::Opts;

/// Concurrent event-causing clients.
const EVENT_CLIENTS: usize = 8;

/// First arrival of each (session, status) at Laravel.
fn arrivals(laravel: &FakeLaravel) -> HashMap<(String, String), Instant> {
    let mut first = HashMap::new();
    for r in laravel.requests_to("/whatsapp/status/batch") {
        let Some(j) = &r.json else { continue };
        for s in j["statuses"].as_array().into_iter().flatten() {
            let key = (
                s["sessionId"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            );
            first.entry(key).or_insert(r.at);
        }
    }
    first
}

/// How many of `ids` the webhook receiver got a `connected` state for.
fn webhook_connected(receiver: &FakeLaravel, ids: &[String]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for r in receiver.requests() {
        let Some(j) = &r.json else { continue };
        for e in j["events"].as_array().into_iter().flatten() {
            if e["data"]["state"] == "connected" {
                if let Some(id) = e["sessionId"].as_str() {
                    seen.insert(id.to_owned());
                }
            }
        }
    }
    ids.iter().filter(|id| seen.contains(*id)).count()
}

/// Calls `path(id)` for every id; when each call was made.
async fn cause(
    gw: &Gateway,
    ids: &[String],
    path: impl Fn(&str) -> String,
) -> Vec<(String, Instant)> {
    stream::iter(ids)
        .map(|id| {
            let p = path(id);
            async move {
                let at = Instant::now();
                let (status, body) = gw.post(&p, &json!({})).await.status_and_json();
                if status != 200 {
                    eprintln!("{p}: {status} {body}");
                }
                (id.clone(), at)
            }
        })
        .buffer_unordered(EVENT_CLIENTS)
        .collect()
        .await
}

async fn latencies(
    laravel: &FakeLaravel,
    caused: &[(String, Instant)],
    status: &str,
) -> Vec<Duration> {
    let want = caused.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = arrivals(laravel);
        let seen: Vec<Duration> = caused
            .iter()
            .filter_map(|(id, at)| {
                got.get(&(id.clone(), status.to_owned()))
                    .map(|arrived| arrived.saturating_duration_since(*at))
            })
            .collect();
        if seen.len() >= want || Instant::now() > deadline {
            return seen;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(opts: &Opts, report: &mut Report, charts: &Path) -> anyhow::Result<()> {
    let n = opts.priority_sessions;
    let m = opts.churn.min(n / 2);
    let k = m.min(200);
    let laravel = FakeLaravel::start();
    let gw = Gateway::start(&[
        ("LARAVEL_API", laravel.base_url()),
        ("SIM_QR_FIRST_MS", "2000".into()),
        ("SIM_QR_ROTATE_MS", "20000".into()),
        ("SIM_QR_COUNT", "1000000".into()),
        ("SIM_RECONNECT_MS", "3600000".into()),
    ])?;
    // Live events all along: one subscriber reads them all, one never reads.
    let watching = Instant::now();
    let reader = crate::subscribers::reading(gw.base_url()).await?;
    let stuck = crate::subscribers::stuck(gw.base_url()).await?;
    // And two webhooks: one receiver hangs (takes every event type, never
    // answers), one takes the states and answers at once.
    let hooked = FakeLaravel::start();
    let hanging_url = crate::subscribers::hanging_receiver().await?;
    for body in [
        json!({ "url": hanging_url, "description": "hangs" }),
        json!({ "url": hooked.base_url(), "events": ["state"] }),
    ] {
        let (status, answer) = gw.post("/webhooks", &body).await.status_and_json();
        if status != 201 {
            anyhow::bail!("POST /webhooks: {status} {answer}");
        }
    }
    let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    // Created over one rotation period, as customers link at different
    // times: the storm is a steady n / 20 QR events per second, not a burst
    // of n every 20 s. Then one full rotation before measuring.
    gw.create_paced(&ids, (n / 20).max(1)).await?;
    actix_rt::time::sleep(Duration::from_secs(20)).await;
    if !gw
        .wait_state_count("qr", n as u64, Duration::from_secs(120))
        .await
    {
        anyhow::bail!("not every session showed a QR");
    }
    let churn = &ids[..m];
    let scans = cause(&gw, churn, |id| format!("/sessions/{id}/simulate/scan")).await;
    let connect = latencies(&laravel, &scans, "active").await;
    let drops = cause(&gw, churn, |id| {
        format!("/sessions/{id}/simulate/disconnect")
    })
    .await;
    let disconnect = latencies(&laravel, &drops, "inactive").await;
    let stops = cause(&gw, &ids[m..m + k], |id| format!("/sessions/{id}/stop")).await;
    let stopped = latencies(&laravel, &stops, "stopped").await;
    let watched = watching.elapsed().as_secs_f64();
    let published = gw.metric("wagate_events_published_total").await;
    // As a count (an empty f64 sum is -0.0).
    let dropped = gw.metric("wagate_events_dropped_subscribers_total").await as u64;
    let read = reader.load(std::sync::atomic::Ordering::Relaxed);
    drop(stuck);
    let hooks = gw.get("/webhooks").await.json_or_null();
    let hanging = hooks["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["description"] == "hangs")
        .map(|w| w["delivery"].clone())
        .unwrap_or_default();
    // Its batches leave one at a time: give the last one a moment.
    let mut hook_connected = webhook_connected(&hooked, churn);
    let waited = Instant::now();
    while hook_connected < m && waited.elapsed() < Duration::from_secs(30) {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        hook_connected = webhook_connected(&hooked, churn);
    }

    let high: Vec<Duration> = connect.iter().chain(&disconnect).copied().collect();
    let (c, d, h, s) = (
        Percentiles::of(&connect),
        Percentiles::of(&disconnect),
        Percentiles::of(&high),
        Percentiles::of(&stopped),
    );
    let row = |what: &str, lane: &str, p: &Percentiles, want: usize| {
        vec![
            what.to_owned(),
            lane.to_owned(),
            format!("{} / {want}", p.n),
            format!("{:.1}", p.p50),
            format!("{:.1}", p.p99),
            format!("{:.1}", p.max),
        ]
    };
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect::<Vec<_>>()
    };
    chart::lines(
        &charts.join("priority-latency.svg"),
        &format!("Event → Laravel latency, {n} sessions rotating QRs"),
        "percentile",
        "ms",
        &[
            Series {
                name: "high lane (active, inactive)",
                points: chart::cdf(&ms(&high)),
            },
            Series {
                name: "normal lane (stopped)",
                points: chart::cdf(&ms(&stopped)),
            },
        ],
    )?;
    let body = format!(
        "{n} sessions with a QR rotating every 20 s (WhatsApp's timing; ~{} QR events/s as \
         PNG, steady: the sessions were created over 20 s and measured after one more \
         rotation), `BATCH_INTERVAL` 5000 ms. {m} sessions are scanned and then disconnected by \
         {EVENT_CLIENTS} concurrent clients; {k} others are stopped. Latency runs from the HTTP \
         call that causes the event to the fake Laravel's receipt of the status, in ms. \
         All along (creation included) two clients follow `GET /events`: one reads every \
         event, one never reads a byte (4 KB receive buffer); in those {watched:.0} s \
         {published:.0} events were published, the reading subscriber got {read}, and \
         {dropped} subscriber(s) dropped for falling behind. Two webhooks too: one \
         receiver takes every event type and never answers (its breaker: {}, {} events \
         dropped, {} waiting), one takes the states and got `connected` for \
         {hook_connected} of the {m} scanned sessions.\n\n{}\n\
         ![latency](bench/priority-latency.svg)\n",
        n / 20,
        hanging["state"].as_str().unwrap_or("?"),
        hanging["dropped"],
        hanging["pending"],
        table(
            &["status", "lane", "arrived", "p50", "p99", "max"],
            &[
                row("active (scan)", "high", &c, m),
                row("inactive (disconnect)", "high", &d, m),
                row("stopped", "normal", &s, k),
            ]
        )
    );
    report.section("2. Priority latency", body);
    report.target(
        "High-priority status p99 ≤ 50 ms at 10,000 sessions",
        format!("p99 {:.1} ms at {n} sessions ({} events)", h.p99, h.n),
        (n >= 10_000).then_some(h.p99 <= 50.0 && h.n == 2 * m),
    );
    report.target(
        "A live-event subscriber that stops reading is dropped, the high lane stays on target",
        format!("{dropped} dropped; high-lane p99 {:.1} ms", h.p99),
        (n >= 10_000).then_some(dropped >= 1 && h.p99 <= 50.0),
    );
    report.target(
        "A webhook receiver that hangs slows nothing: the high lane stays on target, another receiver gets every state",
        format!(
            "hanging receiver's breaker {}; the other got {hook_connected} / {m} connected states; high-lane p99 {:.1} ms",
            hanging["state"].as_str().unwrap_or("?"),
            h.p99
        ),
        (n >= 10_000).then_some(h.p99 <= 50.0 && hook_connected == m),
    );
    Ok(())
}
