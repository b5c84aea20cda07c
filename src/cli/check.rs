//! `recon check`: validates job definitions without touching data.

use std::path::PathBuf;

use clap::Args;
use recon::ExitStatus;
use recon::job::{self, Job};
use recon::pipeline;

use super::output::{complain, say};

/// Arguments of `recon check`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  recon check jobs/\n  recon check jobs/orders.toml jobs/items.toml\n  recon check --connect jobs/postgres/\n\nExit status: 0 every job is valid; 2 a job is invalid (or does not fit its\ntables, with --connect); 3 a source could not be reached (with --connect)."
)]
pub struct CheckArgs {
    /// Job files, or folders whose *.toml files are jobs.
    #[arg(required = true, value_name = "JOB_OR_DIR")]
    paths: Vec<PathBuf>,

    /// Also connect to every source and check that its table or query, the key and
    /// field columns exist and that each field's columns have comparable types (reads
    /// no rows).
    #[arg(long)]
    connect: bool,
}

/// Loads every job; lists every problem (exit 2) or every valid job (exit 0).
pub fn check(args: CheckArgs, quiet: bool) -> ExitStatus {
    match job::load_paths(&args.paths) {
        Ok(jobs) if args.connect => connect(&jobs, quiet),
        Ok(jobs) => {
            if !quiet {
                for job in &jobs {
                    say(&format!(
                        "ok: {} ({}): owner {}, replica {}",
                        job.name,
                        job.path.display(),
                        job.owner.config.type_name(),
                        job.replica.config.type_name()
                    ));
                }
            }
            ExitStatus::Consistent
        }
        Err(errors) => {
            for error in &errors {
                complain(&format!("error: {error}"));
            }
            ExitStatus::Usage
        }
    }
}

/// Connects to every job's sources; lists every problem of every job.
fn connect(jobs: &[Job], quiet: bool) -> ExitStatus {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(&format!("error: cannot start the async runtime: {e}"));
            return ExitStatus::Failed;
        }
    };
    let mut statuses = Vec::new();
    for job in jobs {
        let problems = runtime.block_on(pipeline::check_sources(job));
        if problems.is_empty() {
            if !quiet {
                say(&format!(
                    "ok: {} ({}): owner {}, replica {}: connected, columns and types fit",
                    job.name,
                    job.path.display(),
                    job.owner.config.describe(),
                    job.replica.config.describe()
                ));
            }
            statuses.push(ExitStatus::Consistent);
        }
        for problem in problems {
            complain(&format!("error: {}", problem.message));
            statuses.push(if problem.unreachable {
                ExitStatus::Failed
            } else {
                ExitStatus::Usage
            });
        }
    }
    ExitStatus::combine(statuses)
}
