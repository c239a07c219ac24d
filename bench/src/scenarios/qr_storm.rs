//! Scenario 1, QR storm: the same sessions rotating QR codes on two
//! gateways at once, one batched and one in legacy mode (a request per QR
//! and per status, as the old gateway did), each with its own fake Laravel.
//! Counts Laravel requests, bytes and QRs delivered per minute, beside the
//! lower bound Σ ceil(QR events in an interval / BATCH_SIZE).

use std::path::Path;
use std::time::{Duration, Instant};

use wagate_testkit::{FakeLaravel, Received};

use crate::chart::{self, Series};
use crate::harness::Gateway;
use crate::report::{table, Report};
use crate::Opts;

/// WhatsApp's timing (first code 60 s, then 20 s) sped up ten times, and the
/// batch interval with it (5 s → 500 ms); codes never run out.
const QR_FIRST_MS: u64 = 6_000;
const QR_ROTATE_MS: u64 = 2_000;
const BATCH_SIZE: u64 = 50;
const BATCH_INTERVAL_MS: u64 = 500;

fn env(laravel: &FakeLaravel, legacy: bool) -> Vec<(&'static str, String)> {
    vec![
        ("LARAVEL_API", laravel.base_url()),
        ("LARAVEL_LEGACY", legacy.to_string()),
        ("SIM_QR_FIRST_MS", QR_FIRST_MS.to_string()),
        ("SIM_QR_ROTATE_MS", QR_ROTATE_MS.to_string()),
        ("SIM_QR_COUNT", "1000000".into()),
        ("BATCH_SIZE", BATCH_SIZE.to_string()),
        ("BATCH_INTERVAL", BATCH_INTERVAL_MS.to_string()),
    ]
}

struct Counts {
    requests: usize,
    qr_requests: usize,
    bytes: usize,
    qrs: usize,
}

fn count(reqs: &[Received], from: Instant, to: Instant) -> Counts {
    let window: Vec<&Received> = reqs.iter().filter(|r| r.at >= from && r.at < to).collect();
    let qr_requests: Vec<&&Received> = window
        .iter()
        .filter(|r| r.path.ends_with("/qr/batch") || r.path.ends_with("/qr"))
        .collect();
    let qrs = qr_requests
        .iter()
        .map(|r| match &r.json {
            Some(j) if r.path.ends_with("/qr/batch") => j["qrs"].as_array().map_or(0, Vec::len),
            _ => 1,
        })
        .sum();
    Counts {
        requests: window.len(),
        qr_requests: qr_requests.len(),
        bytes: window.iter().map(|r| r.body.len()).sum(),
        qrs,
    }
}

/// Requests per second over the window, for the chart.
fn per_second(reqs: &[Received], from: Instant, secs: u64) -> Vec<(f64, f64)> {
    let mut buckets = vec![0u64; secs as usize];
    for r in reqs {
        if let Some(d) = r.at.checked_duration_since(from) {
            if let Some(b) = buckets.get_mut(d.as_secs() as usize) {
                *b += 1;
            }
        }
    }
    buckets
        .iter()
        .enumerate()
        .map(|(i, n)| (i as f64, *n as f64))
        .collect()
}

pub async fn run(opts: &Opts, report: &mut Report, charts: &Path) -> anyhow::Result<()> {
    let n = opts.storm_sessions;
    let secs = opts.storm_secs;
    let batched_laravel = FakeLaravel::start();
    let legacy_laravel = FakeLaravel::start();
    let batched = Gateway::start(&env(&batched_laravel, false))?;
    let legacy = Gateway::start(&env(&legacy_laravel, true))?;
    let ids: Vec<String> = (0..n).map(|i| format!("q{i}")).collect();
    let (a, b) = futures_util::join!(
        batched.create_all(&ids, opts.clients),
        legacy.create_all(&ids, opts.clients)
    );
    a?;
    b?;
    // Measure once every session is rotating.
    actix_rt::time::sleep(Duration::from_millis(QR_FIRST_MS + 1_000)).await;
    let from = Instant::now();
    let to = from + Duration::from_secs(secs);
    let (mut lb_batched, mut lb_legacy, mut events_b, mut events_l) = (0u64, 0u64, 0u64, 0u64);
    let mut prev_b = batched.metric("wagate_qr_events_total").await as u64;
    let mut prev_l = legacy.metric("wagate_qr_events_total").await as u64;
    while Instant::now() < to {
        actix_rt::time::sleep(Duration::from_millis(BATCH_INTERVAL_MS)).await;
        let now_b = batched.metric("wagate_qr_events_total").await as u64;
        let now_l = legacy.metric("wagate_qr_events_total").await as u64;
        let (db, dl) = (now_b.saturating_sub(prev_b), now_l.saturating_sub(prev_l));
        lb_batched += db.div_ceil(BATCH_SIZE);
        lb_legacy += dl.div_ceil(BATCH_SIZE);
        events_b += db;
        events_l += dl;
        (prev_b, prev_l) = (now_b, now_l);
    }
    let end = Instant::now();
    let per_min = |x: f64| x * 60.0 / end.duration_since(from).as_secs_f64();
    let b_reqs = batched_laravel.requests();
    let l_reqs = legacy_laravel.requests();
    let bc = count(&b_reqs, from, end);
    let lc = count(&l_reqs, from, end);
    let row = |name: &str, c: &Counts, events: u64, lb: u64| {
        vec![
            name.to_owned(),
            format!("{:.0}", per_min(events as f64)),
            format!("{:.0}", per_min(c.requests as f64)),
            format!("{:.0}", per_min(c.qr_requests as f64)),
            format!("{:.0}", per_min(lb as f64)),
            format!("{:.0}", per_min(c.bytes as f64) / 1024.0),
            format!("{:.0}", per_min(c.qrs as f64)),
        ]
    };
    let reduction = 100.0 * (1.0 - bc.requests as f64 / lc.requests.max(1) as f64);
    let over_lb = bc.qr_requests as f64 / lb_batched.max(1) as f64;
    let path = charts.join("qr-storm.svg");
    chart::lines(
        &path,
        &format!("Laravel requests per second, {n} sessions rotating QR codes"),
        "seconds",
        "requests/s",
        &[
            Series {
                name: "legacy (one request per event)",
                points: per_second(&l_reqs, from, secs),
            },
            Series {
                name: "batched",
                points: per_second(&b_reqs, from, secs),
            },
        ],
    )?;
    let body = format!(
        "{n} simulated sessions on each gateway, both running at once on this machine. \
         QR timing is WhatsApp's sped up 10× (first code {QR_FIRST_MS} ms, then every \
         {QR_ROTATE_MS} ms, never exhausted) and `BATCH_INTERVAL` with it ({BATCH_INTERVAL_MS} ms; \
         `BATCH_SIZE` {BATCH_SIZE}); QRs are PNG data URLs. Measured over {secs} s of steady \
         rotation; figures per minute. The lower bound is Σ ceil(QR events in each \
         {BATCH_INTERVAL_MS} ms interval / {BATCH_SIZE}).\n\n{}\n\
         Batched sends **{reduction:.2} % fewer requests** than legacy; its QR requests are \
         **{over_lb:.3} ×** the lower bound.\n\n![qr storm](bench/qr-storm.svg)\n",
        table(
            &[
                "mode",
                "QR events/min",
                "Laravel requests/min",
                "QR requests/min",
                "lower bound/min",
                "KiB/min",
                "QRs delivered/min",
            ],
            &[
                row("batched", &bc, events_b, lb_batched),
                row("legacy", &lc, events_l, lb_legacy),
            ]
        )
    );
    report.section("1. QR storm", body);
    let full = n >= 1000;
    report.target(
        "QR storm: ≤ 1.1 × the lower bound of Laravel requests",
        format!(
            "{over_lb:.3} × ({} QR requests, bound {lb_batched})",
            bc.qr_requests
        ),
        full.then_some(over_lb <= 1.1),
    );
    report.target(
        "QR storm: ≥ 99 % fewer requests than legacy mode",
        format!(
            "{reduction:.2} % fewer ({} vs {})",
            bc.requests, lc.requests
        ),
        full.then_some(reduction >= 99.0),
    );
    Ok(())
}
