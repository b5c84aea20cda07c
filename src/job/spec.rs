//! The raw job file, one to one with its TOML: strings and options, nothing resolved.
//! `validate` turns it into a [`Job`](crate::job::Job); nothing else should read it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A job file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job schema version; optional, and 1 is the only version.
    pub version: Option<i64>,
    /// The job's name, which names its report folder: letters, digits, `-`, `_` and
    /// `.`. Defaults to the job file's name without `.toml`.
    pub name: Option<String>,
    /// What the job checks, for people.
    pub description: Option<String>,
    /// How replica rows relate to owner rows: `mirror` (one replica row per owner row,
    /// the default) or `reference` (replica rows point at owner rows by a foreign key).
    pub relation: Option<String>,
    /// The single source of truth. Required.
    pub owner: Option<SourceSpec>,
    /// The copy being checked. Required.
    pub replica: Option<SourceSpec>,
    /// The fields to compare; omitted, every non-key column both sides have.
    pub fields: Option<Vec<FieldSpec>>,
    /// Paging, staleness and recheck settings.
    #[serde(default)]
    pub compare: CompareSpec,
    /// Report settings.
    #[serde(default)]
    pub report: ReportSpec,
}

/// `[owner]` or `[replica]`: the backend is chosen by `type`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSpec {
    /// `type = "sqlite"`: an SQLite database file.
    Sqlite(SqliteSpec),
    /// `type = "csv"`: a CSV file.
    Csv(CsvSpec),
    /// `type = "jsonl"`: a JSON Lines file, one object per line.
    Jsonl(JsonlSpec),
    /// `type = "postgres"`: a PostgreSQL table or query.
    Postgres(ServerSpec),
    /// `type = "mysql"`: a MySQL or MariaDB table or query.
    Mysql(ServerSpec),
}

/// The source types recon knows of but cannot read yet.
pub const PLANNED_SOURCE_TYPES: [&str; 1] = ["http"];

/// The source types recon reads, as written in `type = "..."`.
pub const SOURCE_TYPES: [&str; 5] = ["sqlite", "csv", "jsonl", "postgres", "mysql"];

/// An SQLite source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSpec {
    /// `sqlite://path/to/file.db`; a relative path is relative to the job file's folder.
    pub url: Option<String>,
    /// The table to read (`table` or `schema.table`); give `table` or `query`.
    pub table: Option<String>,
    /// A SELECT (or WITH) statement to read instead of a table; give `table` or `query`.
    pub query: Option<String>,
    /// An SQL condition applied to every read, e.g. `status <> 'draft'`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// The key columns, one or more. Required.
    pub key: Option<Vec<String>>,
    /// A reference replica's own identifying columns (replica only).
    pub row_key: Option<Vec<String>>,
}

/// A PostgreSQL or MySQL/MariaDB source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// `postgres://user:password@host:5432/db` or `mysql://user:password@host:3306/db`,
    /// usually `"${ORDERS_DATABASE_URL}"`; TLS as the URL asks (`sslmode=require`,
    /// `ssl-mode=REQUIRED`). The password is never printed. Required.
    pub url: Option<String>,
    /// The schema (PostgreSQL) or database (MySQL) holding `table`; default: the
    /// connection's own.
    pub schema: Option<String>,
    /// The table to read (`table` or `schema.table`); give `table` or `query`.
    pub table: Option<String>,
    /// A SELECT (or WITH) statement to read instead of a table; give `table` or `query`.
    pub query: Option<String>,
    /// An SQL condition applied to every read, e.g. `created_at > now() - interval '30 days'`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// The key columns, one or more. Required.
    pub key: Option<Vec<String>>,
    /// A reference replica's own identifying columns (replica only).
    pub row_key: Option<Vec<String>>,
}

/// A CSV file source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// The file; a relative path is relative to the job file's folder. Required.
    pub path: Option<String>,
    /// The field delimiter, one ASCII character (default `,`; `"\t"` for tabs).
    pub delimiter: Option<String>,
    /// Whether the first record names the columns (default true).
    pub header: Option<bool>,
    /// The field text read as NULL; by default an empty field is NULL.
    pub null: Option<String>,
    /// Column types, e.g. `{ id = "integer" }`, as a database declares them: they type the
    /// key (integers order and match numerically) and fields without a `type`.
    pub types: Option<BTreeMap<String, String>>,
    /// The key columns, one or more. Required.
    pub key: Option<Vec<String>>,
    /// A reference replica's own identifying columns (replica only).
    pub row_key: Option<Vec<String>>,
}

/// A JSON Lines file source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSpec {
    /// The file; a relative path is relative to the job file's folder. Required.
    pub path: Option<String>,
    /// Extra columns read from JSON pointers, e.g. `{ price = "/price/amount" }`;
    /// top-level members are columns by their own name as well.
    pub columns: Option<BTreeMap<String, String>>,
    /// Column types, e.g. `{ id = "integer" }`, over the types sampled from the lines.
    pub types: Option<BTreeMap<String, String>>,
    /// The key columns, one or more. Required.
    pub key: Option<Vec<String>>,
    /// A reference replica's own identifying columns (replica only).
    pub row_key: Option<Vec<String>>,
}

/// One `[[fields]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The column name when both sides use the same one; otherwise give `owner` and
    /// `replica`.
    pub name: Option<String>,
    /// The owner's column.
    pub owner: Option<String>,
    /// The replica's column.
    pub replica: Option<String>,
    /// The field's type: text, integer, decimal, float, bool, timestamp, date, time,
    /// uuid, bytes or json; omitted, it is taken from the sources.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// How far the replica may be from the owner and still agree: `{ absolute = x }` or
    /// `{ relative = x }` for numbers, `{ seconds = x }` for timestamps and times.
    pub tolerance: Option<ToleranceSpec>,
    /// Ignore leading and trailing white space (default false).
    #[serde(default)]
    pub trim: bool,
    /// Compare text case-insensitively (default false).
    #[serde(default)]
    pub ignore_case: bool,
}

/// `tolerance = { ... }`: exactly one of its keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceSpec {
    /// Largest allowed `|replica - owner|`.
    pub absolute: Option<f64>,
    /// Largest allowed `|replica - owner| / |owner|`.
    pub relative: Option<f64>,
    /// Largest allowed distance between two timestamps or times, in seconds.
    pub seconds: Option<f64>,
}

/// `[compare]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// Rows per page, at least 1 (default 5000).
    pub page_size: Option<i64>,
    /// The column holding each side's last-change time: `{ owner = "..", replica = ".." }`.
    pub changed_at: Option<ChangedAtSpec>,
    /// Skip rows changed within this window before the run started, e.g. `"5m"`;
    /// needs `changed_at`.
    pub staleness: Option<String>,
    /// Read inconsistent keys again before reporting them (default: true when either
    /// side is a database).
    pub recheck: Option<bool>,
    /// How long to wait before that recheck, e.g. `"30s"` (default 0).
    pub recheck_after: Option<String>,
}

/// `changed_at = { owner = "...", replica = "..." }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangedAtSpec {
    /// The owner's change-time column.
    pub owner: String,
    /// The replica's change-time column.
    pub replica: String,
}

/// `[report]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// The most records written per job (default 1,000,000); summary counts stay exact.
    pub max_records: Option<i64>,
}
