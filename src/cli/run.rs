//! `recon run`: runs jobs one after another and prints a short summary of each.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use recon::ExitStatus;
use recon::job;
use recon::pipeline::{self, RunOptions};
use recon::report::{Format, Status};

use super::output::{Progress, complain, job_summary, say, stderr_is_terminal};

/// Arguments of `recon run`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  recon run jobs/\n  recon run jobs/orders.toml --out reports/ --format jsonl\n  recon run jobs/ --memory-budget 2GiB"
)]
pub struct RunArgs {
    /// Job files, or folders whose *.toml files are jobs.
    #[arg(required = true, value_name = "JOB_OR_DIR")]
    paths: Vec<PathBuf>,

    /// Folder for the reports (one subfolder per job) [default: recon-reports/<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Record formats to write besides summary.json.
    #[arg(long, value_delimiter = ',', default_value = "jsonl,csv", value_parser = parse_format)]
    format: Vec<Format>,

    /// Memory a job may use to order unsorted files before spilling to disk (e.g. 512MiB, 2GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    memory_budget: usize,
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s.trim() {
        "jsonl" => Ok(Format::Jsonl),
        "csv" => Ok(Format::Csv),
        other => Err(format!("unknown format `{other}` (expected jsonl or csv)")),
    }
}

/// Parses a byte size: `1048576`, `512KiB`, `512MiB`, `2GiB` (also `K`, `M`, `G`, `KB`...).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 512MiB)"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in `{s}` (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a usable size"))
}

/// Loads every job (nothing runs if any is invalid), runs them in turn and returns the
/// combined exit status.
pub fn run(args: RunArgs, quiet: bool) -> ExitStatus {
    let jobs = match job::load_paths(&args.paths) {
        Ok(jobs) => jobs,
        Err(errors) => {
            for error in &errors {
                complain(&format!("error: {error}"));
            }
            return ExitStatus::Usage;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(&format!("error: cannot start the async runtime: {e}"));
            return ExitStatus::Failed;
        }
    };
    let mut formats = args.format;
    formats.dedup();
    let out_dir = args
        .out
        .unwrap_or_else(|| pipeline::default_out_dir(chrono::Utc::now()));
    let show_progress = !quiet && stderr_is_terminal();
    let mut statuses = Vec::new();
    for job in &jobs {
        let progress = show_progress.then(|| Arc::new(Progress::new(&job.name)));
        let options = RunOptions {
            out_dir: out_dir.clone(),
            formats: formats.clone(),
            memory_budget: args.memory_budget,
            observer: progress.clone().map(|p| p as Arc<dyn pipeline::Observer>),
        };
        let outcome = runtime.block_on(pipeline::run_job(job, &options));
        if let Some(progress) = progress {
            progress.finish();
        }
        let status = match outcome.summary.status {
            Status::Consistent => ExitStatus::Consistent,
            Status::Inconsistent => ExitStatus::Inconsistent,
            Status::Failed => ExitStatus::Failed,
        };
        if status == ExitStatus::Failed {
            complain(&format!(
                "error: {}",
                outcome.summary.error.as_deref().unwrap_or("job failed")
            ));
        }
        if !quiet {
            for line in job_summary(&outcome) {
                say(&line);
            }
        }
        statuses.push(status);
    }
    ExitStatus::combine(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }
}
