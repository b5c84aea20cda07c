//! The `Source` seam: what every backend (SQLite, CSV, JSON Lines, PostgreSQL,
//! MySQL; later HTTP) must do, the shared row types, and `open`, the one way to build a source
//! from a job. Backends live in their own files; normalization does not live here.

pub mod batch;
pub mod file;
pub mod key_bytes;
pub mod sql;
pub mod value;

use std::fmt;

use async_trait::async_trait;

pub use value::{FieldType, Key, KeyPart, KeyType, Row, Value};

use crate::job::{SourceConfig, SourceDef};

/// A column a source offers, with the type it declares if it knows one (a SQL column's
/// declared type, a JSON number or boolean). CSV columns declare nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The column's name as the job refers to it.
    pub name: String,
    /// The type the source knows the column to have, if any.
    pub declared: Option<FieldType>,
    /// The column's own type name when recon cannot compare it (a PostgreSQL
    /// `interval`): a job that compares or keys by the column is refused, one that
    /// leaves it out is not.
    pub unsupported: Option<String>,
}

/// What a scan reads: which key columns (typed), which other columns, in what page size.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    /// Key column names, in key order.
    pub key: Vec<String>,
    /// How each key column is typed (and so ordered).
    pub key_types: Vec<KeyType>,
    /// Further columns to read; each [`Row::values`] follows this order.
    pub columns: Vec<String>,
    /// Columns that break ties between rows sharing a key (a reference replica's own
    /// row key), so that SQL sources page deterministically. Must also be in `columns`.
    pub tiebreak: Vec<String>,
    /// Rows per page.
    pub page_size: usize,
    /// Memory this source may use to order an unsorted file before spilling to disk.
    pub memory_budget: usize,
}

/// A failure inside a source. The pipeline prefixes it with the job, the side and the
/// source's description, so the message itself says only what and where (line, key).
#[derive(Debug)]
pub enum SourceError {
    /// The source could not be opened (missing file, not a database, unreachable server).
    Open(String),
    /// The source lacks a column the job needs.
    Schema(String),
    /// Reading failed at a location (line of a file, key of a table).
    Read(String),
    /// The source yielded keys out of order: continuing would report false differences.
    Order(String),
    /// The capability is not offered by this backend.
    Unsupported(&'static str),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Open(m) | SourceError::Schema(m) | SourceError::Read(m) => f.write_str(m),
            SourceError::Order(m) => write!(f, "keys out of order: {m}"),
            SourceError::Unsupported(what) => write!(f, "{what} is not supported by this source"),
        }
    }
}

impl std::error::Error for SourceError {}

/// A data source: the owner or the replica of a job.
///
/// The contract every backend honors (and `tests/support` checks):
/// - [`Source::scan`] prepares a scan; [`Source::next_page`] then yields pages of rows
///   in ascending [`Key`] order (integers numerically, text byte-wise), ending with
///   `Ok(None)`. Pages may have any size up to the page size; an empty page is not the end.
/// - Rows sharing a key are all yielded (a duplicate is never dropped); a source that
///   cannot keep key order fails with [`SourceError::Order`] rather than yield out of order.
/// - NULL is [`Value::Null`], distinct from the empty string.
/// - A key column that is NULL or empty, a malformed row or an unreadable value fails the
///   scan with [`SourceError::Read`] naming the line or key.
/// - Errors never contain credentials.
#[async_trait]
pub trait Source: Send {
    /// A short description for messages and reports, with any credentials redacted.
    fn describe(&self) -> String;

    /// The columns the source offers, known after opening.
    fn columns(&self) -> &[Column];

    /// True when the data can change while recon reads it (a database), so that
    /// re-reading inconsistent keys can tell drift from replication in flight.
    fn is_live(&self) -> bool {
        false
    }

    /// True when every value a scan yields is of its column's declared type (a database
    /// server's typed columns), not merely sampled or hinted at (JSON Lines, SQLite).
    fn enforces_types(&self) -> bool {
        false
    }

    /// Starts a scan; any earlier scan is abandoned.
    async fn scan(&mut self, spec: &ScanSpec) -> Result<(), SourceError>;

    /// The next page of rows in key order, or `None` at the end.
    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError>;

    /// The next page packed (see [`batch::RowBatch`]): the rows [`Source::next_page`]
    /// would yield, not yet decoded. Only for sources that [`Source::packs_rows`].
    async fn next_batch(&mut self) -> Result<Option<batch::RowBatch>, SourceError> {
        Err(SourceError::Unsupported("reading packed pages"))
    }

    /// True when [`Source::next_batch`] is implemented: the source reads rows in a wire
    /// form that is cheaper to compare than to decode (a database server).
    fn packs_rows(&self) -> bool {
        false
    }

    /// Reads the rows with the given keys again (recheck, repair verification), in key
    /// order. Optional: backends that cannot read by key keep this default.
    async fn fetch(&mut self, _spec: &ScanSpec, _keys: &[Key]) -> Result<Vec<Row>, SourceError> {
        Err(SourceError::Unsupported("reading rows by key"))
    }

    /// Checks, without reading any rows, that the scan `spec` describes would run: a
    /// server prepares its statement, so a `where` naming a missing column or a `query`
    /// that does not parse fails here (`recon check --connect`). By default nothing to
    /// check beyond opening.
    async fn probe(&mut self, _spec: &ScanSpec) -> Result<(), SourceError> {
        Ok(())
    }

    /// The source as a file a digest-first compare can index, when it is one.
    fn as_indexed(&mut self) -> Option<&mut dyn file::IndexedFile> {
        None
    }

    /// True when [`Source::fetch`] is implemented.
    fn can_fetch(&self) -> bool {
        false
    }
}

/// Opens the source a job side describes: connects or opens the file and learns its
/// columns, so that a wrong path or URL fails before any scan starts.
pub async fn open(def: &SourceDef) -> Result<Box<dyn Source>, SourceError> {
    match &def.config {
        SourceConfig::Sqlite(config) => Ok(Box::new(sql::sqlite::SqliteSource::open(config).await?)),
        SourceConfig::Csv(config) => Ok(Box::new(file::csv::CsvSource::open(config)?)),
        SourceConfig::Jsonl(config) => Ok(Box::new(file::jsonl::JsonlSource::open(config)?)),
        SourceConfig::Postgres(config) => Ok(Box::new(sql::postgres::PostgresSource::open(config).await?)),
        SourceConfig::Mysql(config) => Ok(Box::new(sql::mysql::MysqlSource::open(config).await?)),
    }
}
