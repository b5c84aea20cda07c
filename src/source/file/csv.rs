//! CSV files (in progress).

use async_trait::async_trait;

use crate::job::CsvConfig;
use crate::source::{Column, Row, ScanSpec, Source, SourceError};

/// A CSV file.
pub struct CsvSource {
    columns: Vec<Column>,
}

impl CsvSource {
    /// Opens the file and reads its header.
    pub fn open(_config: &CsvConfig) -> Result<CsvSource, SourceError> {
        todo!()
    }
}

#[async_trait]
impl Source for CsvSource {
    fn describe(&self) -> String {
        todo!()
    }
    fn columns(&self) -> &[Column] {
        &self.columns
    }
    async fn scan(&mut self, _spec: &ScanSpec) -> Result<(), SourceError> {
        todo!()
    }
    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        todo!()
    }
}
