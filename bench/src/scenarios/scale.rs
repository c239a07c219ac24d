//! Scenario 3, session scale: for each size, a fresh gateway; create that
//! many simulated sessions over HTTP, then measure resident memory per
//! session and the latency of `/health` and `GET /sessions/{id}` while they
//! live. Each session shows its first QR at once and keeps it for an hour;
//! with no Laravel configured nothing is rendered or sent, so what is
//! measured is holding sessions (scenario 1 measures QR traffic).

use std::path::Path;

use crate::chart::{self, Series};
use crate::harness::{time_gets, Gateway};
use crate::report::{table, Report};
use crate::Opts;

/// Latency samples per endpoint and size.
const SAMPLES: usize = 2000;

pub async fn run(opts: &Opts, report: &mut Report, charts: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut mem_points = Vec::new();
    let mut last = None;
    for &n in &opts.scale {
        let gw = Gateway::start(&[("SIM_QR_FIRST_MS", "3600000".into())])?;
        let base_rss = gw.rss();
        let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let took = gw.create_all(&ids, opts.clients).await?;
        let rss = gw.rss();
        let per_session = rss.saturating_sub(base_rss) as f64 / n as f64;
        let health = time_gets(&gw, SAMPLES, |_| "/health".into()).await;
        let get = time_gets(&gw, SAMPLES, |i| format!("/sessions/s{}", (i * 7919) % n)).await;
        rows.push(vec![
            n.to_string(),
            format!("{:.1} s", took.as_secs_f64()),
            format!("{:.0}/s", n as f64 / took.as_secs_f64()),
            format!("{:.0} MiB", rss as f64 / 1048576.0),
            format!("{:.1} KiB", per_session / 1024.0),
            format!("{:.2} / {:.2} / {:.2}", health.p50, health.p99, health.max),
            format!("{:.2} / {:.2} / {:.2}", get.p50, get.p99, get.max),
        ]);
        mem_points.push((n as f64, rss as f64 / 1048576.0));
        last = Some((n, rss, health));
        drop(gw);
    }
    let path = charts.join("scale-memory.svg");
    chart::lines(
        &path,
        "Resident memory of one gateway process",
        "simulated sessions",
        "MiB",
        &[Series {
            name: "RSS",
            points: mem_points,
        }],
    )?;
    let body = format!(
        "Sessions created over HTTP by {} concurrent clients, one fresh gateway per size \
         (memory store, no Laravel; each session shows one QR that lives an hour). Latencies are {SAMPLES} \
         sequential requests each, in ms.\n\n{}\n![memory](bench/scale-memory.svg)\n",
        opts.clients,
        table(
            &[
                "sessions",
                "created in",
                "creation rate",
                "RSS",
                "RSS per session",
                "/health p50 / p99 / max",
                "GET /sessions/{id} p50 / p99 / max",
            ],
            &rows
        )
    );
    report.section("3. Session scale", body);
    if let Some((n, rss, health)) = last {
        let full = n >= 100_000;
        report.target(
            "100,000 simulated sessions in ≤ 2 GiB resident",
            format!("{n} sessions: {:.0} MiB", rss as f64 / 1048576.0),
            full.then_some(rss <= 2 << 30),
        );
        report.target(
            "`/health` p99 ≤ 10 ms meanwhile",
            format!("{:.2} ms at {n} sessions", health.p99),
            full.then_some(health.p99 <= 10.0),
        );
    }
    Ok(())
}
