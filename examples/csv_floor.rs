//! The CSV parse floor for `bench/bench.py`: tokenizes each file given with the `csv`
//! crate (the reader recon itself uses), one thread per file so both sides are read at
//! the same time as recon reads them, and prints each file's record count.
//!
//! It does no typing, sorting or comparing, so its time is a lower bound for any tool
//! that has to look at every field of both files.
//!
//! ```sh
//! cargo build --release --example csv_floor
//! target/release/examples/csv_floor owner.csv replica.csv
//! ```

use std::process::ExitCode;
use std::thread;

/// Reads `path` as CSV with a header record and returns how many data records it holds
/// and how many bytes their fields add up to (so the fields are really looked at).
fn count_records(path: &str) -> Result<(u64, u64), csv::Error> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_path(path)?;
    let mut record = csv::ByteRecord::new();
    let mut records = 0u64;
    let mut bytes = 0u64;
    while reader.read_byte_record(&mut record)? {
        records += 1;
        bytes += record.iter().map(|field| field.len() as u64).sum::<u64>();
    }
    Ok((records, bytes))
}

/// Counts every file given on the command line in parallel and prints
/// `path records field_bytes` per file; exits 2 on bad usage and 1 on an unreadable file.
fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: csv_floor FILE.csv...");
        return ExitCode::from(2);
    }
    let handles: Vec<_> = paths
        .iter()
        .cloned()
        .map(|path| thread::spawn(move || count_records(&path)))
        .collect();
    let mut status = ExitCode::SUCCESS;
    for (path, handle) in paths.iter().zip(handles) {
        match handle.join().expect("counting thread panicked") {
            Ok((records, bytes)) => println!("{path} {records} {bytes}"),
            Err(err) => {
                eprintln!("error: {path}: {err}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
