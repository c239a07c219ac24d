//! Scenario 4, message intake: many concurrent clients post messages to
//! sessions of a gateway backed by Redis; accepted per second and the
//! latency of each accepted request (the 202 comes only once the message is
//! in the Redis Stream), then how fast the queue sends them end to end.
//! `redis-benchmark` doing raw XADD on the same machine gives the ceiling.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use wagate_testkit::RedisServer;

use crate::harness::{Gateway, Percentiles};
use crate::report::{table, Report};
use crate::Opts;

const SESSIONS: usize = 100;

/// Raw XADD requests per second from `redis-benchmark` with `clients`.
fn raw_xadd(redis: &RedisServer, clients: usize) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-p", &redis.port().to_string(), "-c", &clients.to_string()])
        .args([
            "-n",
            "200000",
            "-q",
            "XADD",
            "bench:raw",
            "*",
            "m",
            "a-200-byte-message-body",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD bench:raw * m ...: 123456.79 requests per second, p50=0.2 msec"
    let before = text.split("requests per second").next()?;
    before.split_whitespace().last()?.parse().ok()
}

pub async fn run(opts: &Opts, report: &mut Report, _charts: &Path) -> anyhow::Result<()> {
    // Redis as in production: append-only file, fsync every second.
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let gw = Gateway::start(&[
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "bench".into()),
        ("SIM_QR_FIRST_MS", "200".into()),
        ("SIM_SEND_LATENCY_MS", "0".into()),
        ("MESSAGE_MIN_GAP", "0".into()),
        ("MAX_CONCURRENT_MESSAGES", "64".into()),
        ("MESSAGE_QUEUE_LIMIT", "100000000".into()),
        ("MESSAGE_QUEUE_LIMIT_PER_SESSION", "100000000".into()),
        ("MESSAGE_BUFFER", "20000".into()),
    ])?;
    let ids: Vec<String> = (0..SESSIONS).map(|i| format!("m{i}")).collect();
    gw.link_all(&ids).await?;

    let secs = opts.intake_secs;
    let clients = opts.intake_clients;
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let per_client = futures_util::future::join_all((0..clients).map(|c| {
        let gw = &gw;
        let ids = &ids;
        async move {
            let (mut ok, mut refused, mut samples) = (0u64, 0u64, Vec::new());
            let mut i = c;
            while Instant::now() < end {
                let id = &ids[i % SESSIONS];
                let body =
                    json!({ "to": "5215512345678", "text": format!("bench message {c}-{i}") });
                let t = Instant::now();
                let status = gw
                    .post(&format!("/sessions/{id}/messages"), &body)
                    .await
                    .status;
                if status == 202 {
                    ok += 1;
                    samples.push(t.elapsed());
                } else {
                    refused += 1;
                }
                i += clients;
            }
            (ok, refused, samples)
        }
    }))
    .await;
    let took = started.elapsed();
    let accepted: u64 = per_client.iter().map(|c| c.0).sum();
    let refused: u64 = per_client.iter().map(|c| c.1).sum();
    let samples: Vec<Duration> = per_client.into_iter().flat_map(|c| c.2).collect();
    let lat = Percentiles::of(&samples);
    // End to end: until every accepted message is recorded sent.
    let drain_deadline = Instant::now() + Duration::from_secs(600);
    let mut sent = 0;
    while Instant::now() < drain_deadline {
        let h = gw.get("/health").await.json_or_null();
        sent = h["queues"]["messageQueue"]["completed"]
            .as_u64()
            .unwrap_or(0);
        if sent >= accepted {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    let all_sent = started.elapsed();
    let raw = raw_xadd(&redis, clients);
    let rate = accepted as f64 / took.as_secs_f64();
    let body = format!(
        "{clients} concurrent clients post texts for {secs} s to {SESSIONS} connected simulated \
         sessions (send latency 0, no pacing, 64 sends in flight) on a gateway backed by Redis \
         (AOF, fsync every second). A 202 means the message is in the Redis Stream. The load \
         generator runs on the same 2 cores.\n\n{}\n",
        table(
            &[
                "accepted",
                "refused",
                "accepted/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "all sent after",
                "sent/s end to end",
                "raw XADD/s (redis-benchmark)",
                "gateway / raw",
            ],
            &[vec![
                accepted.to_string(),
                refused.to_string(),
                format!("{rate:.0}"),
                format!("{:.2}", lat.p50),
                format!("{:.2}", lat.p99),
                format!("{:.2}", lat.max),
                format!("{:.1} s", all_sent.as_secs_f64()),
                format!("{:.0}", sent as f64 / all_sent.as_secs_f64()),
                raw.map_or("n/a".into(), |r| format!("{r:.0}")),
                raw.map_or("n/a".into(), |r| format!("{:.1} %", 100.0 * rate / r)),
            ]]
        )
    );
    report.section("4. Message intake", body);
    report.target(
        "Message intake ≥ 20,000 accepted/s durable in Redis",
        format!("{rate:.0}/s with {clients} clients"),
        (!opts.quick).then_some(rate >= 20_000.0),
    );
    report.target(
        "Message intake p99 ≤ 20 ms",
        format!("{:.2} ms", lat.p99),
        (!opts.quick).then_some(lat.p99 <= 20.0),
    );
    Ok(())
}
