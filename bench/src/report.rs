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
