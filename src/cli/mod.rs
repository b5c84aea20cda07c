//! The command-line glue: clap definitions, logging setup, and dispatch to `run` and
//! `check`. Below this module nothing parses flags, prints or exits.

mod check;
mod output;
mod run;

use clap::{Parser, Subcommand, ValueEnum};
use recon::ExitStatus;

/// recon: find and report drift between an owner data source and its replicas.
#[derive(Parser, Debug)]
#[command(name = "recon", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// More log output (-v: info, -vv: debug, -vvv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Print only failures; no per-job summary, no progress.
    #[arg(short, long, global = true)]
    quiet: bool,
}

const EXAMPLES: &str = "\
Examples:
  recon run jobs/                         run every job in jobs/
  recon run jobs/orders.toml --out out/   write reports to out/orders-mirror/
  recon check jobs/                       validate job files without touching data

Exit status: 0 consistent, 1 inconsistencies found, 2 bad usage or invalid job,
3 a job failed at run time.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run reconciliation jobs and write their reports.
    Run(run::RunArgs),
    /// Validate job definitions without touching any data.
    Check(check::CheckArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// Runs the parsed command and returns the process exit status.
pub fn main(cli: Cli) -> ExitStatus {
    init_logging(cli.log_format, cli.verbose, cli.quiet);
    match cli.command {
        Command::Run(args) => run::run(args, cli.quiet),
        Command::Check(args) => check::check(args, cli.quiet),
    }
}

fn init_logging(format: LogFormat, verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    // Warnings by default: a retried connection or an incomparable field is worth a line
    // in a cron log, and a failed job's error is printed by the CLI itself.
    let default = match verbose {
        0 if quiet => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(output::stderr_is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
