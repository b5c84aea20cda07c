//! Reports: the [`ReportWriter`] seam, one writer per format (JSON Lines, CSV, summary),
//! and [`Reports`], the fan-out that sends each record to every writer and enforces the
//! record cap. Writers never decide what is inconsistent; `compare` does.

pub mod atomic;
pub mod csv;
pub mod jsonl;
pub mod record;
pub mod summary;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use record::{Record, ReportHeader, Status, Summary};

/// A report file could not be written.
#[derive(Debug)]
pub struct ReportError {
    /// The file being written.
    pub path: PathBuf,
    /// The I/O failure.
    pub source: io::Error,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write report {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ReportError {}

impl ReportError {
    /// Wraps an I/O error with the file it concerns.
    pub fn at(path: &Path) -> impl FnOnce(io::Error) -> ReportError + '_ {
        move |source| ReportError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The report formats besides the summary, which is always written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `inconsistencies.jsonl`.
    Jsonl,
    /// `inconsistencies.csv`.
    Csv,
}

impl Format {
    /// The file the format is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Jsonl => "inconsistencies.jsonl",
            Format::Csv => "inconsistencies.csv",
        }
    }
}

/// A consumer of one job's report: `begin` once, `record` per inconsistency, `finish`
/// once with the summary. A writer dropped without `finish` must leave no file that
/// looks complete (all files go through [`atomic`]).
pub trait ReportWriter: Send {
    /// Called before the first record.
    fn begin(&mut self, header: &ReportHeader) -> Result<(), ReportError>;
    /// Called for each written record, in key order.
    fn record(&mut self, record: &Record<'_>) -> Result<(), ReportError>;
    /// Called once at the end; makes the writer's file appear.
    fn finish(self: Box<Self>, summary: &Summary) -> Result<(), ReportError>;
}

/// Sends each record to every writer, up to `max_records`; counts what it wrote.
pub struct Reports {
    writers: Vec<Box<dyn ReportWriter>>,
    max_records: u64,
    written: u64,
    truncated: bool,
}

impl Reports {
    /// A fan-out to `writers` (the summary writer last, so the summary appears last).
    pub fn new(writers: Vec<Box<dyn ReportWriter>>, max_records: u64) -> Reports {
        Reports {
            writers,
            max_records,
            written: 0,
            truncated: false,
        }
    }

    /// The writers for `formats` in `dir`, summary last. Removes the files an earlier run
    /// left there, summary first, so that no stale report passes for this run's.
    pub fn in_dir(dir: &Path, formats: &[Format], max_records: u64) -> Result<Reports, ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::at(dir))?;
        for name in ["summary.json", "inconsistencies.jsonl", "inconsistencies.csv"] {
            let path = dir.join(name);
            atomic::remove_stale(&path).map_err(ReportError::at(&path))?;
        }
        let mut writers: Vec<Box<dyn ReportWriter>> = Vec::new();
        for format in formats {
            let path = dir.join(format.file_name());
            writers.push(match format {
                Format::Jsonl => Box::new(jsonl::JsonlWriter::new(path)),
                Format::Csv => Box::new(csv::CsvWriter::new(path)),
            });
        }
        writers.push(Box::new(summary::SummaryWriter::new(dir.join("summary.json"))));
        Ok(Reports::new(writers, max_records))
    }

    /// Starts every writer.
    pub fn begin(&mut self, header: &ReportHeader) -> Result<(), ReportError> {
        self.writers.iter_mut().try_for_each(|w| w.begin(header))
    }

    /// Writes a record unless the cap is reached (then it only notes the truncation).
    pub fn record(&mut self, record: &Record<'_>) -> Result<(), ReportError> {
        if self.written >= self.max_records {
            self.truncated = true;
            return Ok(());
        }
        self.written += 1;
        self.writers.iter_mut().try_for_each(|w| w.record(record))
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// True when a record was dropped because of the cap.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Finishes every writer in order.
    pub fn finish(self, summary: &Summary) -> Result<(), ReportError> {
        self.writers.into_iter().try_for_each(|w| w.finish(summary))
    }

    /// Writes only the summary, for a job that failed: its record files are dropped
    /// unfinished and so never appear.
    pub fn finish_failed(self, dir: &Path, summary: &Summary) -> Result<(), ReportError> {
        drop(self.writers);
        write_summary(dir, summary)
    }
}

/// Writes `summary.json` alone (a job that failed, even while committing its records).
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<(), ReportError> {
    Box::new(summary::SummaryWriter::new(dir.join("summary.json"))).finish(summary)
}
