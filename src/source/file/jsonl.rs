//! JSON Lines files (in progress).

use async_trait::async_trait;

use crate::job::JsonlConfig;
use crate::source::{Column, Row, ScanSpec, Source, SourceError};

/// A JSON Lines file.
pub struct JsonlSource {
    columns: Vec<Column>,
}

impl JsonlSource {
    /// Opens the file and reads its header.
    pub fn open(_config: &JsonlConfig) -> Result<JsonlSource, SourceError> {
        todo!()
    }
}

#[async_trait]
impl Source for JsonlSource {
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
