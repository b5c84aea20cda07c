//! SQLite databases (in progress).

use async_trait::async_trait;

use crate::job::SqliteConfig;
use crate::source::{Column, Row, ScanSpec, Source, SourceError};

/// An SQLite database.
pub struct SqliteSource {
    columns: Vec<Column>,
}

impl SqliteSource {
    /// Opens the file and reads its header.
    pub async fn open(_config: &SqliteConfig) -> Result<SqliteSource, SourceError> {
        todo!()
    }
}

#[async_trait]
impl Source for SqliteSource {
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
