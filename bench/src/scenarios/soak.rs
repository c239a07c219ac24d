//! Scenario 7, soak: steady load on a gateway with Redis and a fake Laravel
//! for `--soak-secs` (1 hour for the issue; CI 2 minutes): sessions showing
//! rotating QRs, a tenth of them linked, receiving outbound posts and
//! incoming messages, with churn (disconnects, stop and restart). Every
//! `--soak-sample-secs` it samples the gateway's RSS and open descriptors,
//! Redis memory and keys, and the gateway's live tokio tasks and mailbox
//! depth; `growth::judge` decides over the last half whether any grows
//! without bound, and a series that does fails the run (the bench exits
//! non-zero).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use wagate_testkit::{FakeLaravel, RedisServer};

use crate::chart::{self, Series};
use crate::growth::{judge, Bound};
use crate::harness::{sum_of, Gateway};
use crate::report::{table, Report};
use crate::Opts;

/// What is sampled, its unit and how much it may rise over the last half.
struct Watched {
    name: &'static str,
    unit: &'static str,
    bound: Bound,
    /// Why the bound is what it is, for the report.
    why: &'static str,
}

/// The bounds, each with its reason (printed in the report). Counts
/// (descriptors, keys, tasks, mailbox depth) have no reason to drift at
/// all: their bound is only the noise of a steady load. Memory may drift a
/// little per hour (fragmentation), far less than any per-message leak.
const WATCHED: [Watched; 6] = [
    Watched {
        name: "gateway RSS",
        unit: "MiB",
        bound: Bound {
            floor: 16.0,
            share: 0.02,
            per_hour: 32.0,
        },
        why: "allocator arenas and the QR render cache move it by a few MiB; 32 MiB/h is under 500 bytes per outbound message at 20/s, so one leaked record per message fails an hour's run",
    },
    Watched {
        name: "gateway open fds",
        unit: "fds",
        bound: Bound {
            floor: 16.0,
            share: 0.0,
            per_hour: 0.0,
        },
        why: "connections to Redis, Laravel and clients open and close; nothing should accumulate",
    },
    Watched {
        name: "Redis used_memory",
        unit: "MiB",
        bound: Bound {
            floor: 4.0,
            share: 0.05,
            per_hour: 16.0,
        },
        why: "flat once the message records reach their TTL, but for fragmentation",
    },
    Watched {
        name: "Redis DBSIZE",
        unit: "keys",
        bound: Bound {
            floor: 50.0,
            share: 0.02,
            per_hour: 0.0,
        },
        why: "the sessions' keys plus records between write and expiry: steady",
    },
    Watched {
        name: "gateway runtime tasks",
        unit: "tasks",
        bound: Bound {
            floor: 16.0,
            share: 0.0,
            per_hour: 0.0,
        },
        why: "connection and timer tasks come and go",
    },
    Watched {
        name: "actor mailbox depth, all actors",
        unit: "messages",
        bound: Bound {
            floor: 200.0,
            share: 0.0,
            per_hour: 0.0,
        },
        why: "a batch in hand; a backlog that keeps growing is a stuck actor",
    },
];

/// Life of a finished message's record: short, so that Redis reaches its
/// steady state in the first half (the 7-day default plateaus after 7 days).
const RECORD_TTL_SECS: u64 = 30;

/// The steady load per second: outbound posts, incoming messages; and the
/// churn period (one disconnect, one linked and one unlinked stop+restart).
fn rates(quick: bool) -> (usize, usize, u64) {
    if quick {
        (10, 5, 2)
    } else {
        (20, 10, 5)
    }
}

/// One sample of every watched series, in `WATCHED`'s order.
async fn sample(gw: &Gateway, redis: &RedisServer) -> anyhow::Result<[f64; 6]> {
    let pid = gw
        .process
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the gateway exited"))?;
    let rss = gw.rss();
    anyhow::ensure!(rss > 0, "the gateway exited");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let info = redis
        .command(&["INFO", "memory"])
        .as_text()
        .unwrap_or_default();
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let keys = redis.command(&["DBSIZE"]).as_int().unwrap_or(0);
    let metrics = gw.get_text("/metrics").await;
    Ok([
        rss as f64 / 1048576.0,
        fds as f64,
        used / 1048576.0,
        keys as f64,
        sum_of(&metrics, "wagate_runtime_alive_tasks"),
        sum_of(&metrics, "wagate_actor_mailbox_depth"),
    ])
}

/// Posts `path_body(i)` for each `i` in `range`, 16 at a time; how many
/// got `want`.
async fn post_each(
    gw: &Gateway,
    range: std::ops::Range<usize>,
    want: u16,
    path_body: impl Fn(usize) -> (String, serde_json::Value),
) -> usize {
    stream::iter(range)
        .map(|i| {
            let (path, body) = path_body(i);
            async move { gw.post(&path, &body).await.status == want }
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}

pub async fn run(opts: &Opts, report: &mut Report, charts: &Path) -> anyhow::Result<()> {
    let n = opts.soak_sessions;
    let linked_n = (n / 10).max(2);
    let secs = opts.soak_secs;
    let every = Duration::from_secs(opts.soak_sample_secs.max(1));
    let rotate_ms: u64 = if opts.quick { 10_000 } else { 20_000 };
    let (out_rate, in_rate, churn_secs) = rates(opts.quick);
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let laravel = FakeLaravel::start();
    let gw = Gateway::start(&[
        ("REDIS_URL", redis.url()),
        ("NODE_ID", "bench".into()),
        ("LARAVEL_API", laravel.base_url()),
        ("SIM_QR_FIRST_MS", "2000".into()),
        ("SIM_QR_ROTATE_MS", rotate_ms.to_string()),
        ("SIM_QR_COUNT", "1000000".into()),
        ("SIM_RECONNECT_MS", "2000".into()),
        ("MESSAGE_RECORD_TTL", RECORD_TTL_SECS.to_string()),
    ])?;
    let ids: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    // Spread over one rotation, so QR events are steady rather than bursts.
    gw.create_paced(&ids, (n * 1000 / rotate_ms as usize).max(1))
        .await?;
    anyhow::ensure!(
        gw.wait_state_count("qr", n as u64, Duration::from_secs(180))
            .await,
        "not every session showed a QR"
    );
    let (linked, unlinked) = ids.split_at(linked_n);
    post_each(&gw, 0..linked_n, 200, |i| {
        (format!("/sessions/{}/simulate/scan", linked[i]), json!({}))
    })
    .await;
    anyhow::ensure!(
        gw.wait_state_count("connected", linked_n as u64, Duration::from_secs(120))
            .await,
        "the linked sessions did not connect"
    );

    let started = Instant::now();
    let mut samples: Vec<(f64, [f64; 6])> = Vec::new();
    let (mut accepted, mut refused, mut incoming, mut churns, mut laravel_requests) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut next_sample = started;
    let mut tick = actix_rt::time::interval(Duration::from_secs(1));
    // A slow second delays the next rather than bursting to catch up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second = 0usize;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= next_sample {
            let t = now.duration_since(started).as_secs_f64();
            samples.push((t, sample(&gw, &redis).await?));
            // The fake keeps every request; the soak needs only their count.
            laravel_requests += laravel.count();
            laravel.clear();
            next_sample += every;
        }
        if now.duration_since(started) >= Duration::from_secs(secs) {
            break;
        }
        let base = second * out_rate;
        let ok = post_each(&gw, base..base + out_rate, 202, |i| {
            let to = format!("52155{:08}", i % 100_000_000);
            (
                format!("/sessions/{}/messages", linked[i % linked_n]),
                json!({ "to": to, "text": format!("soak {i}") }),
            )
        })
        .await;
        accepted += ok;
        refused += out_rate - ok;
        let base = second * in_rate;
        incoming += post_each(&gw, base..base + in_rate, 200, |i| {
            (
                format!("/sessions/{}/simulate/incoming", linked[(i * 7) % linked_n]),
                json!({ "from": "5215550001", "text": format!("incoming {i}") }),
            )
        })
        .await;
        if second as u64 % churn_secs == 0 {
            let k = second / churn_secs as usize;
            let drop_id = &linked[k % linked_n];
            let cycle = &linked[(k + linked_n / 2) % linked_n];
            gw.post(
                &format!("/sessions/{drop_id}/simulate/disconnect"),
                &json!({}),
            )
            .await;
            for id in [cycle, &unlinked[k % unlinked.len().max(1)]] {
                gw.post(&format!("/sessions/{id}/stop"), &json!({})).await;
                gw.post(&format!("/sessions/{id}/restart"), &json!({}))
                    .await;
            }
            churns += 1;
        }
        second += 1;
    }
    let health = gw.get("/health").await.json_or_null();
    let sent = health["queues"]["messageQueue"]["completed"]
        .as_u64()
        .unwrap_or(0);
    drop(gw);

    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let series: Vec<Vec<(f64, f64)>> = (0..WATCHED.len())
        .map(|k| samples.iter().map(|(t, v)| (*t, v[k])).collect())
        .collect();
    for (w, points) in WATCHED.iter().zip(&series) {
        let j = judge(points, w.bound)
            .ok_or_else(|| anyhow::anyhow!("too few samples to judge {}", w.name))?;
        let ys = points.iter().map(|p| p.1);
        let (min, max) = (
            ys.clone().fold(f64::MAX, f64::min),
            ys.fold(f64::MIN, f64::max),
        );
        if !j.bounded {
            failed.push(w.name);
        }
        let f = |v: f64| format!("{v:.1}");
        rows.push(vec![
            format!("{} ({})", w.name, w.unit),
            f(points[0].1),
            f(points[points.len() - 1].1),
            f(min),
            f(max),
            format!("{:+.1}", j.slope_per_hour),
            format!("{:+.1}", j.robust_per_hour),
            format!(
                "{} + {} % + {}/h → {:.1}",
                w.bound.floor,
                w.bound.share * 100.0,
                w.bound.per_hour,
                j.allowed_per_hour
            ),
            if j.bounded { "bounded" } else { "**grows**" }.into(),
        ]);
    }
    let bounds = table(
        &["series", "floor", "share of median", "drift /h", "why"],
        &WATCHED
            .iter()
            .map(|w| {
                vec![
                    w.name.to_owned(),
                    format!("{} {}", w.bound.floor, w.unit),
                    format!("{} %", w.bound.share * 100.0),
                    format!("{} {}", w.bound.per_hour, w.unit),
                    w.why.to_owned(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let minutes =
        |k: usize| -> Vec<(f64, f64)> { series[k].iter().map(|(t, v)| (t / 60.0, *v)).collect() };
    let plot = |file: &str, what: &str, unit: &str, picks: &[usize]| {
        let series: Vec<Series> = picks
            .iter()
            .map(|&k| Series {
                name: WATCHED[k].name,
                points: minutes(k),
            })
            .collect();
        let title = format!("Soak, {n} sessions: {what}");
        chart::lines(&charts.join(file), &title, "minutes", unit, &series)
    };
    plot("soak-memory.svg", "memory", "MiB", &[0, 2])?;
    plot(
        "soak-counts.svg",
        "descriptors, tasks, mailboxes",
        "count",
        &[1, 4, 5],
    )?;
    plot("soak-keys.svg", "Redis keys", "keys", &[3])?;
    let body = format!(
        "{n} sessions on Redis (AOF) with a fake Laravel, for {secs} s after set-up, sampled \
         every {} s. Every session shows a QR rotating every {} s (~{} QR events/s rendered as \
         PNG); {linked_n} are linked and get {out_rate} outbound texts/s and {in_rate} incoming \
         texts/s between them; every {churn_secs} s one linked session is disconnected (back \
         after 2 s), one linked and one unlinked session are stopped and restarted. Finished \
         message records live {RECORD_TTL_SECS} s (`MESSAGE_RECORD_TTL`). Outbound: {accepted} \
         accepted, {refused} refused, {sent} sent; {incoming} incoming, {churns} churn rounds, \
         {laravel_requests} requests to Laravel.\n\n\
         Each series is judged over the last half of the run: the least-squares slope and the \
         median of pairwise slopes (Theil–Sen), per hour, against the rise allowed over that \
         window (floor + share of the median, spread over the window, + a drift per hour); it \
         grows without bound when both slopes pass. The bounds:\n\n{bounds}\n{}\n\
         ![memory](bench/soak-memory.svg)\n![counts](bench/soak-counts.svg)\n\
         ![keys](bench/soak-keys.svg)\n\n\
         The hour of the issue: `cargo run --release -p wagate-bench -- soak --soak-secs 3600 \
         --out /tmp/soak.md` (a report of this section alone), or the whole suite with \
         `--soak-secs 3600`.\n",
        every.as_secs(),
        rotate_ms / 1000,
        n as u64 * 1000 / rotate_ms,
        table(
            &[
                "series",
                "first",
                "last",
                "min",
                "max",
                "slope /h (last half)",
                "median slope /h",
                "allowed: floor + share + drift → /h",
                "verdict",
            ],
            &rows
        )
    );
    report.section("7. Soak", body);
    report.target(
        "Soak: nothing grows without bound over an hour at 10,000 sessions",
        if failed.is_empty() {
            format!("{n} sessions, {secs} s: every series bounded")
        } else {
            format!("{n} sessions, {secs} s: {} grow", failed.join(", "))
        },
        (n >= 10_000 && secs >= 3600).then_some(failed.is_empty()),
    );
    anyhow::ensure!(
        failed.is_empty(),
        "grows without bound over the last half: {}",
        failed.join(", ")
    );
    Ok(())
}
