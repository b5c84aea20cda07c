//! The `recon` command: parses arguments, hands off to `cli`, maps the outcome to an
//! exit status. Everything else lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    ExitCode::from(cli::main(args).code())
}
