//! The benchmark report: one Markdown section per scenario plus a table of
//! the targets with what was measured, printed and written (with the date,
//! the commit and the machine) to `docs/benchmarks.md`. Filled by the
//! scenarios, written by `main`.

use std::fmt::Write;

/// One target of the issue and what this run measured.
pub struct Target {
    pub what: String,
    pub measured: String,
    /// `None` when the scenario did not run at the size the target names.
    pub met: Option<bool>,
}

/// What profiling found and what was changed, with the figures before and
/// after (measured with this harness on the same machine). Kept by hand.
const WHERE_THE_TIME_WENT: &str = "## Where the time went\n\n\
- **QR rendering** was the most expensive thing the gateway does: a 177-byte WhatsApp code took \
~1.5 ms to encode (`qrcode`, evaluating all eight masks) and ~1.7 ms to write as an 8-bit PNG at \
best compression. 10,000 sessions rotating every 20 s make 500 codes/s, 1.6 cores. Now: `fast_qr` \
encodes in ~0.15 ms and a 1-bit PNG takes ~0.6 ms (1.0 KB instead of 1.3 KB).\n\
- **Rendering for nobody**: without `LARAVEL_API` the QR batcher still rendered every code. Creating \
100,000 sessions then rendered 100,000 PNGs: 3,700 sessions/s and `/health` p99 8.3 ms. Skipping \
it: ~30,000 sessions/s and `/health` p99 0.16 ms at 20,000 sessions.\n\
- **Message intake** made three sequential Redis round trips per accepted message (queue length, \
record, XADD). One pipelined round trip instead: 15,900 → 24,500 accepted/s, p99 9.2 → 6.3 ms \
(quick mode, 64 clients).\n\
- **Message outcomes** were written to Redis one round trip each (two for a dead letter: the \
ordered write, then a trim), one write at a time, and a send's slot is freed only once its \
outcome is written: sends were capped by Redis round trips, and a backlog of messages for \
stopped sessions failed at 10-20 a second in the 1-hour chaos run. Now every outcome that ended \
while a write ran goes in the next one (up to 256 in one pipeline): intake scenario at full \
size, same machine, sent end to end 6,808 → 10,731 messages/s, all sent 101.8 → 51.0 s after \
the start.\n\
- **Batching**: the batchers flushed everything pending on a fixed `BATCH_INTERVAL` tick, so each \
tick sent one partial batch: 610 QR requests/min for 29,835 QR events/min (98.98 % fewer than \
legacy, short of 99 %). They now flush a partial batch only once its oldest item has waited \
`BATCH_INTERVAL` (a linger); under load every request is full.\n\
- **Synchronised QR bursts**: sessions created within a second rotate their QRs together: \
10,000 codes every 20 s, a burst that keeps both cores busy for seconds; high-priority statuses \
caused inside it waited up to 90 ms (p99 22-88 ms over four runs). The priority scenario now \
creates its sessions over one rotation period (as customers link at different times; a restore \
is paced by `RESTORE_RATE` for the same reason): p99 9-18 ms.\n\
- Legacy mode sends 2 requests per QR event; a batch holds at most `BATCH_SIZE` (50) QRs, so \
\"99 % fewer\" is exactly full batches: no batching policy can do better at this batch size.\n";

#[derive(Default)]
pub struct Report {
    pub sections: Vec<(String, String)>,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn section(&mut self, title: &str, body: String) {
        println!("\n## {title}\n\n{body}");
        self.sections.push((title.to_owned(), body));
    }

    pub fn target(&mut self, what: &str, measured: String, met: Option<bool>) {
        self.targets.push(Target {
            what: what.to_owned(),
            measured,
            met,
        });
    }

    pub fn render(&self, header: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{header}");
        if !self.targets.is_empty() {
            let _ = writeln!(out, "## Targets\n");
            let _ = writeln!(out, "| Target | Measured | Met |\n|---|---|---|");
            for t in &self.targets {
                let met = match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a (quick size)",
                };
                let _ = writeln!(out, "| {} | {} | {met} |", t.what, t.measured);
            }
            out.push('\n');
        }
        for (title, body) in &self.sections {
            let _ = writeln!(out, "## {title}\n\n{body}");
        }
        out.push_str(WHERE_THE_TIME_WENT);
        out
    }
}

/// A Markdown table from a header and rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

/// Sections of `docs/benchmarks.md` written by hand from other runs (the
/// chaos test `tests/api/chaos`, the hour-long soak, clean build timings),
/// which a rewrite of the report keeps.
const KEPT_SECTIONS: [&str; 3] = ["## Chaos", "## Soak, one hour", "## Build"];

/// The [`KEPT_SECTIONS`] of an earlier report, each up to the next `## `
/// heading, in their order; empty when there are none.
pub fn kept_sections(old: &str) -> String {
    let mut out = String::new();
    let mut keeping = false;
    for line in old.lines() {
        if line.starts_with("## ") {
            keeping = KEPT_SECTIONS.iter().any(|k| line.starts_with(k));
            if keeping {
                out.push('\n');
            }
        }
        if keeping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod kept_tests {
    #[test]
    fn a_chaos_section_survives_a_rewrite_and_others_do_not() {
        let old = "# B\n\n## Targets\nx\n## Chaos\nseed 1\n\n| a |\n## Where the time went\ny\n";
        assert_eq!(super::kept_sections(old), "\n## Chaos\nseed 1\n\n| a |\n");
        assert_eq!(super::kept_sections("# B\n## Targets\n"), "");
    }
}
