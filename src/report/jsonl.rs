//! `inconsistencies.jsonl`: one JSON object per inconsistency (see [`super::Record`]).

use std::io::Write;
use std::path::PathBuf;

use super::atomic::AtomicFile;
use super::{Record, ReportError, ReportHeader, ReportWriter, Summary};

/// Writes records as JSON Lines.
pub struct JsonlWriter {
    path: PathBuf,
    file: Option<AtomicFile>,
}

impl JsonlWriter {
    /// A writer for `path`.
    pub fn new(path: PathBuf) -> JsonlWriter {
        JsonlWriter { path, file: None }
    }
}

impl ReportWriter for JsonlWriter {
    fn begin(&mut self, _header: &ReportHeader) -> Result<(), ReportError> {
        self.file = Some(AtomicFile::create(&self.path).map_err(ReportError::at(&self.path))?);
        Ok(())
    }

    fn record(&mut self, record: &Record<'_>) -> Result<(), ReportError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let w = file.writer();
        serde_json::to_writer(&mut *w, record).map_err(|e| ReportError::at(&self.path)(e.into()))?;
        w.write_all(b"\n").map_err(ReportError::at(&self.path))
    }

    fn finish(self: Box<Self>, _summary: &Summary) -> Result<(), ReportError> {
        match self.file {
            Some(file) => file.commit().map_err(ReportError::at(&self.path)),
            None => Ok(()),
        }
    }
}
