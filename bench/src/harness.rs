//! What every scenario stands on: the release gateway binary (built if
//! missing) started as its own process with the scenario's environment, an
//! HTTP client for it with latency measurement, the process's resident
//! memory, and small statistics helpers. Used by every `scenarios::*`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use wagate_testkit::{GatewayClient, GatewayProcess};

/// The release `wagate` binary next to this one, brought up to date by cargo.
/// `BENCH_GATEWAY_BIN` names another binary instead: the release binary
/// `.ci/run` built once, or a debug build to check a scenario without a
/// release build (its figures are not the report's).
pub fn gateway_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BENCH_GATEWAY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let here = std::env::current_exe()?;
    let dir = here.parent().context("the bench binary has a directory")?;
    let bin = dir.join("wagate");
    // Always ask cargo: a binary left by an older build would be measured
    // instead of this tree's (cargo returns at once when it is up to date).
    eprintln!("building the release gateway binary…");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "wagate",
            "--bin",
            "wagate",
        ])
        .status()?;
    if !status.success() || !bin.exists() {
        bail!("cannot build the gateway: run `cargo build --release` first");
    }
    Ok(bin)
}

/// A gateway process plus a client for it; the client's `get`, `post` and
/// `request` are reachable on the `Gateway` itself.
pub struct Gateway {
    pub process: GatewayProcess,
    pub client: GatewayClient,
}

impl std::ops::Deref for Gateway {
    type Target = GatewayClient;

    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

impl Gateway {
    /// Starts the release gateway with `env` (on top of quiet logging and
    /// high session limits).
    pub fn start(env: &[(&str, String)]) -> anyhow::Result<Self> {
        let bin = gateway_binary()?;
        let mut all: Vec<(&str, String)> = vec![
            ("MAX_ACTIVE_SESSIONS", "1000000".into()),
            ("MAX_STORED_SESSIONS", "1000000".into()),
            ("LOG_LEVEL", "error".into()),
        ];
        all.extend(env.iter().cloned());
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let process = GatewayProcess::start(&bin, &pairs);
        let client = GatewayClient::new(&process.base_url());
        Ok(Self { process, client })
    }

    /// Resident memory of the gateway process, in bytes.
    pub fn rss(&self) -> u64 {
        self.process.pid().map(rss_of).unwrap_or(0)
    }

    /// Creates `ids` with `clients` concurrent requests; the wall time.
    pub async fn create_all(&self, ids: &[String], clients: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let failures = stream::iter(ids)
            .map(|id| async move {
                let (status, body) = self
                    .post("/sessions", &serde_json::json!({ "id": id }))
                    .await
                    .status_and_json();
                (status != 201).then(|| format!("{id}: {status} {body}"))
            })
            .buffer_unordered(clients)
            .filter_map(|f| async move { f })
            .collect::<Vec<_>>()
            .await;
        if let Some(first) = failures.first() {
            bail!("{} sessions not created, e.g. {first}", failures.len());
        }
        Ok(started.elapsed())
    }

    /// Creates `ids` at about `per_sec` per second, so that their QR
    /// rotations are spread evenly instead of firing together.
    pub async fn create_paced(&self, ids: &[String], per_sec: usize) -> anyhow::Result<()> {
        let per_tick = (per_sec / 10).max(1);
        let mut tick = actix_rt::time::interval(Duration::from_millis(100));
        for chunk in ids.chunks(per_tick) {
            tick.tick().await;
            self.create_all(chunk, per_tick.min(32)).await?;
        }
        Ok(())
    }

    /// Waits until `/health` says `count` sessions are in `state`.
    pub async fn wait_state_count(&self, state: &str, count: u64, patience: Duration) -> bool {
        let end = Instant::now() + patience;
        while Instant::now() < end {
            let h = self.get("/health").await.json_or_null();
            if h["sessions"]["byState"][state].as_u64().unwrap_or(0) >= count {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Creates `ids`, waits for their QR codes, scans them all and waits
    /// until every one is connected (the sessions a sending scenario uses).
    pub async fn link_all(&self, ids: &[String]) -> anyhow::Result<()> {
        let n = ids.len() as u64;
        self.create_all(ids, 16).await?;
        self.wait_state_count("qr", n, Duration::from_secs(60))
            .await;
        for id in ids {
            self.post(
                &format!("/sessions/{id}/simulate/scan"),
                &serde_json::json!({}),
            )
            .await;
        }
        if !self
            .wait_state_count("connected", n, Duration::from_secs(60))
            .await
        {
            bail!("sessions did not connect");
        }
        Ok(())
    }

    /// A counter from `/metrics` (Prometheus text), summed over its labels.
    pub async fn metric(&self, name: &str) -> f64 {
        sum_of(&self.get_text("/metrics").await, name)
    }
}

/// A metric of a Prometheus text exposition, summed over its labels.
pub fn sum_of(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            n: ms.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

/// Times `n` sequential GETs of `path(i)`.
pub async fn time_gets(gw: &Gateway, n: usize, path: impl Fn(usize) -> String) -> Percentiles {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let status = gw.get(&path(i)).await.status;
        if status == 200 {
            samples.push(started.elapsed());
        }
    }
    Percentiles::of(&samples)
}

/// Cores and memory of this machine, for the report header.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cores} cores ({cpu}), {:.1} GiB memory",
        mem_kb as f64 / (1024.0 * 1024.0)
    )
}

/// The commit the benchmark ran on (with `-dirty` for local changes).
pub fn commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let hash = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash}-dirty")
    } else {
        hash
    }
}
