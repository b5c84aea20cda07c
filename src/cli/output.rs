//! Everything `recon` prints for people: per-job summaries on stdout, problems on stderr,
//! progress bars on a terminal. A closed stdout (`recon run jobs/ | head`) is not an error.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use recon::job::Side;
use recon::pipeline::{JobOutcome, Observer};
use recon::report::Status;

/// True when stderr is a terminal (progress bars and colors only then).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints a line on stdout; a closed pipe silently ends the output.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Prints a line on stderr.
pub fn complain(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The short human summary of one job.
pub fn job_summary(outcome: &JobOutcome) -> Vec<String> {
    let s = &outcome.summary;
    let status = match s.status {
        Status::Consistent => "consistent",
        Status::Inconsistent => "INCONSISTENT",
        Status::Failed => "FAILED",
    };
    let mut lines = vec![format!(
        "{}: {status} (owner {} rows, replica {} rows)",
        s.job, s.owner_rows, s.replica_rows
    )];
    if let Some(error) = &s.error {
        lines.push(format!("  error: {error}"));
    }
    let mut counts = Vec::new();
    for (name, n) in [
        ("missing in replica", s.missing_in_replica),
        ("missing in owner", s.missing_in_owner),
        ("mismatched rows", s.mismatched_rows),
        ("duplicate keys", s.duplicate_keys),
        ("dangling references", s.dangling_references),
        ("skipped as recent", s.skipped_recent),
        ("resolved in flight", s.resolved_in_flight),
    ] {
        if n > 0 {
            counts.push(format!("{n} {name}"));
        }
    }
    if !counts.is_empty() {
        lines.push(format!("  {}", counts.join(", ")));
    }
    if !s.field_mismatches.0.is_empty() {
        let fields: Vec<String> = s
            .field_mismatches
            .0
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        lines.push(format!("  fields: {}", fields.join(", ")));
    }
    if s.truncated {
        lines.push(format!(
            "  records truncated at {} (counts above are exact)",
            s.records_written
        ));
    }
    lines.push(format!("  report: {}", outcome.report_dir.display()));
    lines
}

/// A spinner per job showing rows read from each side.
pub struct Progress {
    bar: ProgressBar,
    counts: Mutex<(u64, u64)>,
}

impl Progress {
    /// A spinner on stderr for the named job.
    pub fn new(job: &str) -> Progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(job.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress {
            bar,
            counts: Mutex::new((0, 0)),
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn rows_read(&self, _job: &str, side: Side, rows: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            match side {
                Side::Owner => counts.0 = rows,
                Side::Replica => counts.1 = rows,
            }
            self.bar
                .set_message(format!("owner {} rows, replica {} rows", counts.0, counts.1));
        }
    }
}
