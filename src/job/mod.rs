//! Job files: the raw serde spec (`spec`), `${VAR}` expansion (`env`), and validation
//! into [`Job`], the only form that leaves this module. The core never sees raw strings.

pub mod duration;
pub mod env;
pub mod field;
pub mod spec;
pub mod tolerance;
pub mod url;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::source::FieldType;

pub use field::FieldDef;
pub use tolerance::Tolerance;
pub use url::RedactedUrl;
pub use validate::{load_job, load_paths};

/// The current (and only) job schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// A validated reconciliation job.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job's name (default: the file stem); names the report folder.
    pub name: String,
    /// What the job checks, for people.
    pub description: Option<String>,
    /// The job file it came from.
    pub path: PathBuf,
    /// How replica rows relate to owner rows.
    pub relation: Relation,
    /// The single source of truth.
    pub owner: SourceDef,
    /// The copy being checked.
    pub replica: SourceDef,
    /// The fields to compare; `None` when the job lists none (every non-key column that
    /// both sides have, by name, resolved once the sources are open).
    pub fields: Option<Vec<FieldDef>>,
    /// Paging, staleness and recheck settings.
    pub compare: CompareSettings,
    /// Report settings.
    pub report: ReportSettings,
}

/// How replica rows relate to owner rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// One replica row per owner row, by key.
    Mirror,
    /// Many replica rows copy fields of one owner row and point at it by a foreign key.
    Reference,
}

/// Which side of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The single source of truth.
    Owner,
    /// The copy being checked.
    Replica,
}

impl Side {
    /// `owner` or `replica`, as reports and messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Side::Owner => "owner",
            Side::Replica => "replica",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One side of a job: where its data lives and how its rows are identified.
#[derive(Clone, Debug)]
pub struct SourceDef {
    /// The backend and its options.
    pub config: SourceConfig,
    /// Key columns (for a reference replica: the foreign key to the owner).
    pub key: Vec<String>,
    /// A reference replica's own identifying columns, carried in reports as `replica_key`.
    pub row_key: Vec<String>,
}

/// Backend-specific options, with paths already resolved against the job file's folder.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// An SQLite database file.
    Sqlite(SqliteConfig),
    /// A CSV file.
    Csv(CsvConfig),
    /// A JSON Lines file.
    Jsonl(JsonlConfig),
    /// A PostgreSQL server.
    Postgres(SqlServerConfig),
    /// A MySQL or MariaDB server.
    Mysql(SqlServerConfig),
}

/// A database server source (PostgreSQL, MySQL/MariaDB).
#[derive(Clone, Debug)]
pub struct SqlServerConfig {
    /// The connection URL; prints with its password masked.
    pub url: RedactedUrl,
    /// Table (`schema.table` when a schema was given) or query.
    pub target: SqlTarget,
    /// Optional SQL condition applied to every read.
    pub filter: Option<String>,
}

/// What a SQL source reads: a table, or the rows of a custom SELECT.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlTarget {
    /// A validated table name.
    Table(String),
    /// A SELECT statement, wrapped by the tool to page in key order.
    Query(String),
}

/// An SQLite source.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file, resolved.
    pub path: PathBuf,
    /// The URL as written in the job (for messages).
    pub url: String,
    /// Table or query.
    pub target: SqlTarget,
    /// Optional SQL condition applied to every read.
    pub filter: Option<String>,
}

/// A CSV file source.
#[derive(Clone, Debug)]
pub struct CsvConfig {
    /// The file, resolved.
    pub path: PathBuf,
    /// Field delimiter (default `,`).
    pub delimiter: u8,
    /// Whether the first record names the columns (default true); without a header,
    /// columns are named `1`, `2`, ...
    pub header: bool,
    /// The field text read as NULL; `None` means an empty field is NULL.
    pub null: Option<String>,
    /// Declared column types (CSV itself has none).
    pub types: Vec<(String, FieldType)>,
}

#[cfg(test)]
impl CsvConfig {
    /// The file read with every default: commas, a header, an empty field as NULL, no
    /// declared types.
    pub fn with_defaults(path: PathBuf) -> CsvConfig {
        CsvConfig {
            path,
            delimiter: b',',
            header: true,
            null: None,
            types: Vec::new(),
        }
    }
}

/// A JSON Lines file source.
#[derive(Clone, Debug)]
pub struct JsonlConfig {
    /// The file, resolved.
    pub path: PathBuf,
    /// Columns read from JSON pointers (`price = "/price/amount"`), in file order;
    /// top-level members are columns by name as well.
    pub columns: Vec<(String, String)>,
    /// Declared column types, over the sampled ones.
    pub types: Vec<(String, FieldType)>,
}

impl SourceConfig {
    /// The backend's name as written in job files.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Sqlite(_) => "sqlite",
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Jsonl(_) => "jsonl",
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
        }
    }

    /// The file the source reads, if it reads one (servers read none).
    pub fn path(&self) -> Option<&Path> {
        match self {
            SourceConfig::Sqlite(c) => Some(&c.path),
            SourceConfig::Csv(c) => Some(&c.path),
            SourceConfig::Jsonl(c) => Some(&c.path),
            SourceConfig::Postgres(_) | SourceConfig::Mysql(_) => None,
        }
    }

    /// True for database sources, whose rows can change while recon reads them.
    pub fn is_sql(&self) -> bool {
        matches!(
            self,
            SourceConfig::Sqlite(_) | SourceConfig::Postgres(_) | SourceConfig::Mysql(_)
        )
    }

    /// `type location` for messages before the source is open, credentials redacted:
    /// `csv data/o.csv`, `postgres postgres://app:****@db:5432/orders`.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Sqlite(c) => format!("sqlite {}", c.url),
            SourceConfig::Postgres(c) | SourceConfig::Mysql(c) => format!("{} {}", self.type_name(), c.url),
            other => format!(
                "{} {}",
                other.type_name(),
                other.path().unwrap_or(Path::new("")).display()
            ),
        }
    }
}

/// `[compare]` settings.
#[derive(Clone, Debug)]
pub struct CompareSettings {
    /// Rows per page (default 5000).
    pub page_size: usize,
    /// Columns holding each side's last-change time, for the staleness window.
    pub changed_at: Option<ChangedAt>,
    /// Rows changed within this window before the run started are skipped.
    pub staleness: Option<Duration>,
    /// Whether inconsistent keys are read again before reporting (default: true when a
    /// side is SQL).
    pub recheck: bool,
    /// How long to wait before the recheck.
    pub recheck_after: Duration,
}

/// The change-time column on each side.
#[derive(Clone, Debug)]
pub struct ChangedAt {
    /// The owner's change-time column.
    pub owner: String,
    /// The replica's change-time column.
    pub replica: String,
}

/// `[report]` settings.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// Most records written per job (default 1,000,000); summary counts stay exact.
    pub max_records: u64,
}

/// A problem with a job definition, naming the file.
#[derive(Clone, Debug, PartialEq)]
pub struct JobError {
    /// The job file.
    pub path: PathBuf,
    /// Where in the file, when known (`line:column`).
    pub location: Option<(usize, usize)>,
    /// What is wrong, in lower case without a trailing period.
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for JobError {}

/// The compared field type names, for messages that list them.
pub fn field_type_names() -> Vec<&'static str> {
    FieldType::ALL.iter().map(|(n, _)| *n).collect()
}
