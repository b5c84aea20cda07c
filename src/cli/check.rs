//! `recon check`: validates job definitions without touching data.

use std::path::PathBuf;

use clap::Args;
use recon::ExitStatus;
use recon::job;

use super::output::{complain, say};

/// Arguments of `recon check`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  recon check jobs/\n  recon check jobs/orders.toml jobs/items.toml")]
pub struct CheckArgs {
    /// Job files, or folders whose *.toml files are jobs.
    #[arg(required = true, value_name = "JOB_OR_DIR")]
    paths: Vec<PathBuf>,
}

/// Loads every job; lists every problem (exit 2) or every valid job (exit 0).
pub fn check(args: CheckArgs, quiet: bool) -> ExitStatus {
    match job::load_paths(&args.paths) {
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
