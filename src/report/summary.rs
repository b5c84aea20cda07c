//! `summary.json`: the job's exact counts and status, written last.

use std::path::PathBuf;

use super::atomic::write_file;
use super::{Record, ReportError, ReportHeader, ReportWriter, Summary};

/// Writes the summary when the job finishes.
pub struct SummaryWriter {
    path: PathBuf,
}

impl SummaryWriter {
    /// A writer for `path`.
    pub fn new(path: PathBuf) -> SummaryWriter {
        SummaryWriter { path }
    }
}

impl ReportWriter for SummaryWriter {
    fn begin(&mut self, _header: &ReportHeader) -> Result<(), ReportError> {
        Ok(())
    }

    fn record(&mut self, _record: &Record<'_>) -> Result<(), ReportError> {
        Ok(())
    }

    fn finish(self: Box<Self>, summary: &Summary) -> Result<(), ReportError> {
        let mut json =
            serde_json::to_vec_pretty(summary).map_err(|e| ReportError::at(&self.path)(e.into()))?;
        json.push(b'\n');
        write_file(&self.path, &json).map_err(ReportError::at(&self.path))
    }
}
