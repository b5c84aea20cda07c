//! The `recon` command: parses arguments, hands off to `cli`, maps the outcome to an
//! exit status. Everything else lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Rows are many small allocations freed on other threads than they were made on, where
/// mimalloc is markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    ExitCode::from(cli::main(args).code())
}
