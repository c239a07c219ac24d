//! `wagate-bench`: runs the benchmark scenarios against the release gateway
//! started as a separate process (so its CPU and memory are its own), with a
//! fake Laravel that records every request and, where needed, Redis; prints
//! a Markdown report and writes it, with SVG charts, to `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p wagate-bench                 # the whole suite (~25 min, 10 of them the soak)
//! cargo run --release -p wagate-bench -- --quick      # small sizes (~4 min, 2 of them the soak)
//! cargo run --release -p wagate-bench -- scale --scale 1000,5000
//! cargo run --release -p wagate-bench -- soak --soak-secs 3600 --out /tmp/soak.md   # the hour-long soak alone
//! # check a scenario against a debug gateway (no release build):
//! BENCH_GATEWAY_BIN=target/debug/wagate cargo run -p wagate-bench -- media --quick --out /tmp/b.md
//! ```

mod chart;
mod growth;
mod harness;
mod report;
mod scenarios;
mod subscribers;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    QrStorm,
    Priority,
    Scale,
    Intake,
    Outage,
    Media,
    Soak,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the wagate gateway, as a Markdown report")]
pub struct Opts {
    /// Scenarios to run (default: all, in order).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Small sizes and short runs, to check the harness (~4 minutes, 2 of them the soak).
    #[arg(long)]
    pub quick: bool,
    /// Where the report goes; its charts go to `bench/` beside it.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Sessions of the QR storm and outage scenarios [default: 1000; quick 200].
    #[arg(long = "storm-sessions")]
    storm_sessions_opt: Option<usize>,
    /// Seconds the QR storm is measured [default: 60; quick 10].
    #[arg(long = "storm-secs")]
    storm_secs_opt: Option<u64>,
    /// Sessions rotating QRs in the priority scenario [default: 10000; quick 1000].
    #[arg(long = "priority-sessions")]
    priority_sessions_opt: Option<usize>,
    /// Sessions connected and disconnected in the priority scenario [default: 1000; quick 100].
    #[arg(long = "churn")]
    churn_opt: Option<usize>,
    /// Session counts of the scale scenario [default: 10000,50000,100000; quick 2000,5000].
    #[arg(long = "scale", value_delimiter = ',')]
    scale_opt: Option<Vec<usize>>,
    /// Seconds of message intake [default: 20; quick 5].
    #[arg(long = "intake-secs")]
    intake_secs_opt: Option<u64>,
    /// Concurrent clients posting messages [default: 64].
    #[arg(long, default_value_t = 64)]
    pub intake_clients: usize,
    /// Seconds Laravel is down in the outage scenario [default: 60; quick 10].
    #[arg(long = "outage-secs")]
    outage_secs_opt: Option<u64>,
    /// Seconds of media uploads [default: 20; quick 3].
    #[arg(long = "media-secs")]
    media_secs_opt: Option<u64>,
    /// Concurrent clients uploading media [default: 64; quick 8].
    #[arg(long = "media-clients")]
    media_clients_opt: Option<usize>,
    /// Size of each uploaded document in bytes [default: 5 MiB; quick 1 MiB].
    #[arg(long = "media-bytes")]
    media_bytes_opt: Option<usize>,
    /// Seconds of steady load in the soak [default: 600; quick 120; the issue's hour: 3600].
    #[arg(long = "soak-secs")]
    soak_secs_opt: Option<u64>,
    /// Sessions of the soak, a tenth of them linked [default: 10000; quick 1000].
    #[arg(long = "soak-sessions")]
    soak_sessions_opt: Option<usize>,
    /// Seconds between two samples of the soak [default: 10; quick 3].
    #[arg(long = "soak-sample-secs")]
    soak_sample_secs_opt: Option<u64>,
    /// Concurrent clients creating sessions.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[arg(skip)]
    pub storm_sessions: usize,
    #[arg(skip)]
    pub storm_secs: u64,
    #[arg(skip)]
    pub priority_sessions: usize,
    #[arg(skip)]
    pub churn: usize,
    #[arg(skip)]
    pub scale: Vec<usize>,
    #[arg(skip)]
    pub intake_secs: u64,
    #[arg(skip)]
    pub outage_secs: u64,
    #[arg(skip)]
    pub media_secs: u64,
    #[arg(skip)]
    pub media_clients: usize,
    #[arg(skip)]
    pub media_bytes: usize,
    #[arg(skip)]
    pub soak_secs: u64,
    #[arg(skip)]
    pub soak_sessions: usize,
    #[arg(skip)]
    pub soak_sample_secs: u64,
}

impl Opts {
    /// Fills the sizes from the flags, or the defaults for the mode.
    fn resolve(mut self) -> Self {
        let q = self.quick;
        self.storm_sessions = self
            .storm_sessions_opt
            .unwrap_or(if q { 200 } else { 1000 });
        self.storm_secs = self.storm_secs_opt.unwrap_or(if q { 10 } else { 60 });
        self.priority_sessions =
            self.priority_sessions_opt
                .unwrap_or(if q { 1000 } else { 10_000 });
        self.churn = self.churn_opt.unwrap_or(if q { 100 } else { 1000 });
        self.scale = self.scale_opt.clone().unwrap_or(if q {
            vec![2000, 5000]
        } else {
            vec![10_000, 50_000, 100_000]
        });
        self.intake_secs = self.intake_secs_opt.unwrap_or(if q { 5 } else { 20 });
        self.outage_secs = self.outage_secs_opt.unwrap_or(if q { 10 } else { 60 });
        self.media_secs = self.media_secs_opt.unwrap_or(if q { 3 } else { 20 });
        self.media_clients = self.media_clients_opt.unwrap_or(if q { 8 } else { 64 });
        self.media_bytes = self
            .media_bytes_opt
            .unwrap_or(if q { 1 << 20 } else { 5 << 20 });
        self.soak_secs = self.soak_secs_opt.unwrap_or(if q { 120 } else { 600 });
        self.soak_sessions = self
            .soak_sessions_opt
            .unwrap_or(if q { 1000 } else { 10_000 });
        self.soak_sample_secs = self.soak_sample_secs_opt.unwrap_or(if q { 3 } else { 10 });
        if self.scenarios.is_empty() {
            self.scenarios = vec![
                Scenario::QrStorm,
                Scenario::Priority,
                Scenario::Scale,
                Scenario::Intake,
                Scenario::Outage,
                Scenario::Media,
                Scenario::Soak,
            ];
        }
        self
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse().resolve();
    let charts = opts
        .out
        .parent()
        .map_or_else(|| PathBuf::from("bench"), |p| p.join("bench"));
    std::fs::create_dir_all(&charts)?;
    harness::gateway_binary()?;
    // Read before the charts are rewritten, which would mark the tree dirty.
    let commit = harness::commit();
    let started = Instant::now();
    let mut report = report::Report::default();
    for s in &opts.scenarios {
        let t = Instant::now();
        eprintln!("== {s:?}");
        let result = match s {
            Scenario::QrStorm => scenarios::qr_storm::run(&opts, &mut report, &charts).await,
            Scenario::Priority => scenarios::priority::run(&opts, &mut report, &charts).await,
            Scenario::Scale => scenarios::scale::run(&opts, &mut report, &charts).await,
            Scenario::Intake => scenarios::intake::run(&opts, &mut report, &charts).await,
            Scenario::Outage => scenarios::outage::run(&opts, &mut report, &charts).await,
            Scenario::Media => scenarios::media::run(&opts, &mut report, &charts).await,
            Scenario::Soak => scenarios::soak::run(&opts, &mut report, &charts).await,
        };
        result.map_err(|e| anyhow::anyhow!("scenario {s:?} failed: {e:#}"))?;
        eprintln!("== {s:?} took {:.0} s", t.elapsed().as_secs_f64());
    }
    let header = format!(
        "# Benchmarks\n\n\
         Produced by `cargo run --release -p wagate-bench{}` on {}, commit `{}`, \
         machine: {}. The gateway runs as its own release process; the load generator, \
         the fake Laravel and Redis share the machine with it. The whole run took {:.0} s.\n\n\
         Rerun it with the same command; `--quick` checks the harness in about four minutes, two of them the soak \
         (its sizes are too small for the targets).\n",
        if opts.quick { " -- --quick" } else { "" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        commit,
        harness::machine(),
        started.elapsed().as_secs_f64(),
    );
    // Sections other runs write (the chaos test's figures) are kept.
    let old = std::fs::read_to_string(&opts.out).unwrap_or_default();
    let kept = report::kept_sections(&old);
    std::fs::write(&opts.out, report.render(&header) + &kept)?;
    eprintln!("report written to {}", opts.out.display());
    Ok(())
}
