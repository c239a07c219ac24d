//! The chaos run: the gateway as its own process on Redis (AOF) with a
//! fake Laravel, a seeded random schedule of faults ([`faults`]: SIGKILL
//! and restart, Redis stopped and started, Laravel answering 5xx, slowly,
//! not at all, with garbage, or 429 + Retry-After) while clients work
//! ([`load`]); then, faults healed, a bounded wait for the system to settle
//! and every invariant checked ([`invariants`], [`keys`]). The seed is
//! printed first; `CHAOS_SEED=<n>` replays the fault schedule and the
//! clients' choices (timings on a loaded machine differ). `CHAOS_SECONDS`
//! sets the time under faults (default 60, CI; the documented long run is
//! `CHAOS_SECONDS=3600`). A summary of faults, operations and checks is
//! printed at the end (`--nocapture`).

mod faults;
mod invariants;
mod keys;
mod load;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use wagate_testkit::{FakeLaravel, GatewayClient, RedisServer};

use crate::convergence::{seed, Schedule};
use faults::{FaultLog, Rig, LARAVEL_TIMEOUT_MS};
use invariants::End;
use load::{Pools, Record};

/// Sessions linked at the start that the workers message and disconnect.
const SENDERS: usize = 6;
/// Sessions the workers create, scan, stop, restart, log out and delete.
const CHURN: usize = 8;
const WORKERS: usize = 6;
/// `MAX_CONCURRENT_MESSAGES`: bounds the sends one kill can interrupt.
const MAX_IN_FLIGHT: usize = 8;
/// `MESSAGE_QUEUE_LIMIT_PER_SESSION`: ~10 s of one session's sends at its
/// `MESSAGE_MIN_GAP`.
const QUEUE_PER_SESSION: usize = 500;
/// The healed system has settled when nothing is pending; it is stuck when
/// what is pending stops changing for `STALL`; it may take `SETTLE_MAX` in all.
const STALL: Duration = Duration::from_secs(30);
const SETTLE_MAX: Duration = Duration::from_secs(300);

fn chaos_seconds() -> u64 {
    std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// The gateway's settings: short timeouts, retries and batch intervals so
/// that each fault is felt within its few seconds.
fn gateway_env(redis: &RedisServer, laravel: &FakeLaravel) -> Vec<(&'static str, String)> {
    let mut env = crate::crash::base_env(redis);
    env.extend([
        ("LARAVEL_API", laravel.base_url()),
        ("LARAVEL_TIMEOUT", LARAVEL_TIMEOUT_MS.to_string()),
        ("LARAVEL_MAX_RETRIES", "2".into()),
        ("LARAVEL_RETRY_BASE", "100".into()),
        (
            "LARAVEL_RETRY_MAX",
            faults::LARAVEL_RETRY_MAX_MS.to_string(),
        ),
        ("CIRCUIT_BREAKER_THRESHOLD", "5".into()),
        ("CIRCUIT_BREAKER_RESET", "1000".into()),
        ("BATCH_INTERVAL", "500".into()),
        ("MESSAGES_BATCH_INTERVAL", "300".into()),
        ("MAX_CONCURRENT_MESSAGES", MAX_IN_FLIGHT.to_string()),
        ("MESSAGE_MIN_GAP", "20".into()),
        ("SIM_SEND_LATENCY_MS", "20".into()),
        ("MESSAGE_RETRY_DELAY", "200".into()),
        ("MESSAGE_RETRY_MAX", "1000".into()),
        ("MESSAGE_MAX_RETRIES", "10".into()),
        ("MESSAGE_MAX_WAIT", "10".into()),
        // Backpressure, as a client meets it: past a few seconds of sends
        // per session the gateway answers 429 and the worker backs off, so
        // an hour of load leaves a backlog of seconds, not of hours.
        (
            "MESSAGE_QUEUE_LIMIT_PER_SESSION",
            QUEUE_PER_SESSION.to_string(),
        ),
    ]);
    env
}

#[actix_rt::test]
async fn chaos_random_faults_under_load_and_every_invariant_holds() {
    let seed = seed("CHAOS_SEED");
    let seconds = chaos_seconds();
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} replays the schedule), {seconds} s of faults");
    let mut schedule = Schedule(seed);
    let redis = RedisServer::start();
    let laravel = FakeLaravel::start();
    let gateway = crate::crash::start(&gateway_env(&redis, &laravel));
    let client = GatewayClient::new(&gateway.base_url());
    let rig = Rig {
        gateway: RefCell::new(Some(gateway)),
        redis: RefCell::new(Some(redis)),
        laravel,
    };
    let pools = Pools {
        senders: (0..SENDERS).map(|i| format!("cs{i}")).collect(),
        churn: (0..CHURN).map(|i| format!("cc{i}")).collect(),
    };
    for id in &pools.senders {
        client.link(id).await;
    }
    for id in &pools.churn {
        client.create(id).await;
    }

    let stop = Cell::new(false);
    let record = RefCell::new(Record::default());
    let log = RefCell::new(FaultLog::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..WORKERS).map(|w| {
        let s = Schedule(seed ^ (w as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        load::worker(&client, &pools, s, &stop, &record, w)
    });
    let injector = async {
        faults::inject(&rig, Schedule(schedule.next()), until, &log).await;
        stop.set(true);
    };
    futures_util::join!(futures_util::future::join_all(workers), injector);

    // Healed: a fresh client (the old one's pooled connections died with
    // the killed processes).
    let client = GatewayClient::new(client.base_url());
    let (record, log) = (record.into_inner(), log.into_inner());
    let end = End {
        client: &client,
        rig: &rig,
        pools: &pools,
        record: &record,
        faults: &log,
        max_in_flight: MAX_IN_FLIGHT,
    };
    let settled = invariants::settle(&end, STALL, SETTLE_MAX).await;
    let checks = invariants::check_all(&end).await;
    summary(seed, seconds, &settled, &log, &record, &checks);
    let broken: Vec<String> = checks
        .iter()
        .flat_map(|c| c.violations.iter().map(move |v| format!("{}: {v}", c.name)))
        .collect();
    let tail = |log: String| -> String {
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        tail.iter()
            .map(|l| l.chars().take(400).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let failed = settled.is_err() || !broken.is_empty();
    // The whole log of every run, kept for a failure (the process's own
    // file goes with it).
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{seed}.log"));
    if failed {
        let _ = std::fs::write(&kept, rig.gateway_log());
    }
    assert!(
        !failed,
        "seed {seed}: not settled (stuck for {STALL:?} or past {SETTLE_MAX:?}): {:?}\nbroken invariants: {broken:#?}\ngateway log (tail; all of it in {}):\n{}",
        settled.err(),
        kept.display(),
        tail(rig.gateway_log())
    );
    let gateway = rig.gateway.borrow_mut().take();
    if let Some(mut gateway) = gateway {
        gateway.terminate();
    }
}

/// Faults by kind, operations by kind and each check, for the log and for
/// `docs/benchmarks.md`.
fn summary(
    seed: u64,
    seconds: u64,
    settled: &Result<Duration, Vec<String>>,
    log: &FaultLog,
    record: &Record,
    checks: &[invariants::Check],
) {
    let mut out = format!("chaos summary: seed {seed}, {seconds} s of faults, ");
    match settled {
        Ok(d) => out += &format!("settled {} ms after healing\n", d.as_millis()),
        Err(pending) => out += &format!("NOT settled: {pending:?}\n"),
    }
    let total: u64 = log.counts.values().sum();
    out += &format!("  faults injected: {total}\n");
    for (kind, n) in &log.counts {
        out += &format!("    {kind:<34} {n}\n");
    }
    if let Some(slowest) = log.restarts.iter().max() {
        out += &format!(
            "    (slowest restart to /health/live: {} ms)\n",
            slowest.as_millis()
        );
    }
    let tried: u64 = record.ops.values().map(|o| o.0).sum();
    out += &format!("  operations: {tried} (kind: tried / answered 2xx)\n");
    for (kind, (n, ok)) in &record.ops {
        out += &format!("    {kind:<16} {n:>6} / {ok}\n");
    }
    out += &format!(
        "    message posts unanswered: {}\n",
        record.unanswered_posts
    );
    out += "  invariants:\n";
    for c in checks {
        let verdict = if c.violations.is_empty() {
            "ok"
        } else {
            "BROKEN"
        };
        out += &format!(
            "    {verdict:<6} {} (checked {}, {} violations) {}\n",
            c.name,
            c.checked,
            c.violations.len(),
            c.figures
        );
    }
    eprintln!("{out}");
}
