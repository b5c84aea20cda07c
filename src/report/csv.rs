//! `inconsistencies.csv`: the same records with columns
//! `kind,key,field,owner_value,replica_value` (a one-column key as its plain value, a
//! composite key as a JSON object; NULL as an empty cell).

use std::path::PathBuf;

use super::atomic::AtomicFile;
use super::record::JsonValue;
use super::{Record, ReportError, ReportHeader, ReportWriter, Summary};

/// Writes records as CSV.
pub struct CsvWriter {
    path: PathBuf,
    file: Option<::csv::Writer<AtomicFile>>,
}

impl CsvWriter {
    /// A writer for `path`.
    pub fn new(path: PathBuf) -> CsvWriter {
        CsvWriter { path, file: None }
    }

    fn error(&self, e: ::csv::Error) -> ReportError {
        ReportError::at(&self.path)(std::io::Error::other(e.to_string()))
    }
}

/// The csv crate writes through `io::Write`; this lets it fill the atomic file.
impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer().flush()
    }
}

fn cell(value: Option<&JsonValue<'_>>) -> String {
    match value.map(|v| v.0) {
        None => String::new(),
        Some(v) => v.to_plain_text().unwrap_or_default(),
    }
}

impl ReportWriter for CsvWriter {
    fn begin(&mut self, _header: &ReportHeader) -> Result<(), ReportError> {
        let file = AtomicFile::create(&self.path).map_err(ReportError::at(&self.path))?;
        let mut writer = ::csv::WriterBuilder::new().from_writer(file);
        writer
            .write_record(["kind", "key", "field", "owner_value", "replica_value"])
            .map_err(|e| self.error(e))?;
        self.file = Some(writer);
        Ok(())
    }

    fn record(&mut self, record: &Record<'_>) -> Result<(), ReportError> {
        let row = [
            record.kind.to_string(),
            record.key_text(),
            record.field.unwrap_or_default().to_string(),
            cell(record.owner.as_ref()),
            cell(record.replica.as_ref()),
        ];
        let result = match self.file.as_mut() {
            Some(file) => file.write_record(&row),
            None => Ok(()),
        };
        result.map_err(|e| self.error(e))
    }

    fn finish(self: Box<Self>, _summary: &Summary) -> Result<(), ReportError> {
        let Some(writer) = self.file else { return Ok(()) };
        let file = writer
            .into_inner()
            .map_err(|e| ReportError::at(&self.path)(std::io::Error::other(e.to_string())))?;
        file.commit().map_err(ReportError::at(&self.path))
    }
}
