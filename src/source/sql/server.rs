//! What the database-server backends (PostgreSQL, MySQL/MariaDB) share: the column
//! catalog mapped to compared types, and a [`Source`] over any [`Engine`] built on the
//! shared keyset statements and pager.
//!
//! Every column is read as text (the dialect casts it in SQL, bytes as hex), so decoding
//! is trivial and exact: numerics never pass through a float, and the declared types
//! tell `compare` how to normalize the text.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use super::{Dialect, KeyColumn, KeysetPager, KeysetQuery, PagerStep, Statement};
use crate::job::{RedactedUrl, SqlServerConfig, SqlTarget};
use crate::source::{Column, FieldType, Key, KeyPart, KeyType, Row, ScanSpec, Source, SourceError, Value};

/// Keys read by one statement in [`Source::fetch`].
const FETCH_BATCH: usize = 500;

/// How long one statement may run before the server cancels it.
pub const STATEMENT_TIMEOUT_SECS: u64 = 300;

/// The prefix of the aliases columns are read under, so that an `ORDER BY` naming a
/// column never sorts by its text form instead (both engines resolve a bare name in
/// `ORDER BY` to an output column first).
pub const OUTPUT_PREFIX: &str = "recon_out_";

/// Connections one source may hold at once.
pub const MAX_CONNECTIONS: u32 = 2;

/// How a server column is read and what it compares as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any integer type.
    Integer,
    /// numeric/decimal, read as exact text.
    Decimal,
    /// double precision (PostgreSQL `double precision`, MySQL DOUBLE).
    Float,
    /// Single precision (PostgreSQL `real`, MySQL FLOAT): read at full precision and
    /// taken by its shortest single-precision decimal form, so that a `real` 0.1 equals
    /// a `double` 0.1 and a decimal 0.1 wherever it was stored.
    Float32,
    /// boolean, MySQL tinyint(1).
    Bool,
    /// Character types and enums.
    Text,
    /// Binary types, read as hex.
    Bytes,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// timestamp, timestamptz, DATETIME.
    Timestamp,
    /// uuid.
    Uuid,
    /// json, jsonb, MySQL JSON (and MariaDB's json_valid-checked LONGTEXT).
    Json,
}

impl Kind {
    /// The compared type this kind declares.
    pub fn field_type(self) -> FieldType {
        match self {
            Kind::Integer => FieldType::Integer,
            Kind::Decimal => FieldType::Decimal,
            Kind::Float | Kind::Float32 => FieldType::Float,
            Kind::Bool => FieldType::Bool,
            Kind::Text => FieldType::Text,
            Kind::Bytes => FieldType::Bytes,
            Kind::Date => FieldType::Date,
            Kind::Time => FieldType::Time,
            Kind::Timestamp => FieldType::Timestamp,
            Kind::Uuid => FieldType::Uuid,
            Kind::Json => FieldType::Json,
        }
    }

    /// The kind of a catalog type: `data_type` as information_schema (or the driver)
    /// names it, `column_type` MySQL's full type (`tinyint(1) unsigned`) or empty.
    /// `None` for a type recon cannot compare.
    pub fn of(data_type: &str, column_type: &str) -> Option<Kind> {
        let d = data_type.trim().to_ascii_lowercase();
        let d = d.strip_suffix(" unsigned").unwrap_or(&d);
        let full = column_type.trim().to_ascii_lowercase();
        let kind = match d {
            "tinyint" if full.starts_with("tinyint(1)") => Kind::Bool,
            "smallint" | "integer" | "int" | "bigint" | "tinyint" | "mediumint" | "int2" | "int4"
            | "int8" | "year" => Kind::Integer,
            "numeric" | "decimal" => Kind::Decimal,
            // MySQL's FLOAT is single precision; PostgreSQL spells its types out.
            "real" | "float" | "float4" => Kind::Float32,
            "double precision" | "double" | "float8" => Kind::Float,
            "boolean" | "bool" => Kind::Bool,
            "character varying" | "varchar" | "character" | "char" | "bpchar" | "text" | "tinytext"
            | "mediumtext" | "longtext" | "enum" | "set" | "name" | "citext" | "user-defined" => Kind::Text,
            "bytea" | "blob" | "tinyblob" | "mediumblob" | "longblob" | "binary" | "varbinary" => Kind::Bytes,
            "date" => Kind::Date,
            "time" | "time without time zone" => Kind::Time,
            "timestamp"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "timestamptz"
            | "datetime" => Kind::Timestamp,
            "uuid" => Kind::Uuid,
            "json" | "jsonb" => Kind::Json,
            _ => return None,
        };
        Some(kind)
    }
}

/// A column as the server's catalog describes it.
#[derive(Clone, Debug)]
pub struct ServerColumn {
    /// The column's name.
    pub name: String,
    /// How it is read and compared.
    pub kind: Kind,
    /// Whether it may hold NULL (unknown counts as nullable).
    pub nullable: bool,
}

/// The columns of a table or query.
pub struct MappedColumns {
    /// Columns of a type recon reads and compares.
    pub supported: Vec<ServerColumn>,
    /// Every column in catalog order as jobs see it; one whose type recon cannot compare
    /// carries that type in `unsupported` (refused only if a job uses it).
    pub columns: Vec<Column>,
}

/// Maps catalog rows `(name, data_type, column_type, nullable)` to columns.
pub fn map_columns(described: Vec<(String, String, String, bool)>) -> MappedColumns {
    let mut mapped = MappedColumns {
        supported: Vec::with_capacity(described.len()),
        columns: Vec::with_capacity(described.len()),
    };
    for (name, data_type, column_type, nullable) in described {
        let kind = Kind::of(&data_type, &column_type);
        let shown = if column_type.is_empty() {
            data_type
        } else {
            column_type
        };
        mapped.columns.push(Column {
            name: name.clone(),
            declared: kind.map(Kind::field_type),
            unsupported: kind.is_none().then_some(shown),
        });
        if let Some(kind) = kind {
            mapped.supported.push(ServerColumn { name, kind, nullable });
        }
    }
    mapped
}

/// One database server: its dialect, and how a statement is run.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The statements' dialect.
    type Dialect: Dialect + Send + Sync;

    /// `postgres` or `mysql`, as in job files.
    const NAME: &'static str;

    /// The dialect for a scan over `columns`; `nullable_keys` when a key column may hold
    /// NULL (so that NULL keys must sort first).
    fn dialect(&self, columns: &[ServerColumn], nullable_keys: bool) -> Self::Dialect;

    /// Runs a statement: each row as its cells' text (bytes as hex), NULL as `None`.
    /// Errors say whether a fresh connection may succeed (see [`run_error`]).
    async fn run(&self, statement: &Statement) -> Result<Vec<Vec<Option<Vec<u8>>>>, RunError>;
}

/// A table or query on a database server.
pub struct ServerSource<E: Engine> {
    engine: E,
    url: RedactedUrl,
    target: SqlTarget,
    filter: Option<String>,
    server_columns: Vec<ServerColumn>,
    columns: Vec<Column>,
    scan: Option<Scan<E::Dialect>>,
}

/// A scan in progress.
struct Scan<D> {
    query: KeysetQuery<D>,
    pager: KeysetPager,
    shape: Shape,
}

/// How a result row is laid out: the key columns first, then the scan's columns.
struct Shape {
    key: Vec<String>,
    key_types: Vec<KeyType>,
    /// The kind of each key column: a binary text key arrives as hex and keys by the
    /// text its bytes spell.
    key_kinds: Vec<Kind>,
    columns: Vec<String>,
    /// The kind of each of `columns`.
    kinds: Vec<Kind>,
}

impl<E: Engine> ServerSource<E> {
    /// A source over an open engine whose columns are known.
    pub fn new(engine: E, config: &SqlServerConfig, mapped: MappedColumns) -> ServerSource<E> {
        let MappedColumns {
            supported: server_columns,
            columns,
        } = mapped;
        ServerSource {
            engine,
            url: config.url.clone(),
            target: config.target.clone(),
            filter: config.filter.clone(),
            server_columns,
            columns,
            scan: None,
        }
    }

    fn target_name(&self) -> String {
        match &self.target {
            SqlTarget::Table(t) => format!("table `{t}`"),
            SqlTarget::Query(_) => "query".into(),
        }
    }

    fn column(&self, name: &str) -> Result<&ServerColumn, SourceError> {
        self.server_columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.server_columns.iter().map(|c| c.name.as_str()).collect();
                SourceError::Schema(format!(
                    "column `{name}` not found in {} (columns: {})",
                    self.target_name(),
                    names.join(", ")
                ))
            })
    }

    /// Checks the spec against the columns and builds its statements.
    fn prepare(&self, spec: &ScanSpec) -> Result<(KeysetQuery<E::Dialect>, Shape), SourceError> {
        if spec.key.is_empty() || spec.key.len() != spec.key_types.len() {
            return Err(SourceError::Schema(format!(
                "a scan needs one type per key column (got {} columns, {} types)",
                spec.key.len(),
                spec.key_types.len()
            )));
        }
        let mut key = Vec::with_capacity(spec.key.len());
        let mut key_kinds = Vec::with_capacity(spec.key.len());
        let mut nullable_keys = false;
        for (name, ty) in spec.key.iter().zip(&spec.key_types) {
            let column = self.column(name)?;
            nullable_keys |= column.nullable;
            key_kinds.push(column.kind);
            let cast = match ty {
                KeyType::Integer => column.kind != Kind::Integer,
                KeyType::Text => column.kind != Kind::Text,
                KeyType::Uuid => false,
            };
            key.push(KeyColumn {
                name: name.clone(),
                ty: *ty,
                cast,
            });
        }
        let mut kinds = Vec::with_capacity(spec.columns.len());
        for name in &spec.columns {
            kinds.push(self.column(name)?.kind);
        }
        for name in &spec.tiebreak {
            self.column(name)?;
        }
        let dialect = self.engine.dialect(&self.server_columns, nullable_keys);
        let query = KeysetQuery::new(
            dialect,
            &self.target,
            self.filter.as_deref(),
            &key,
            &spec.columns,
            &spec.tiebreak,
        );
        let shape = Shape {
            key: spec.key.clone(),
            key_types: spec.key_types.clone(),
            key_kinds,
            columns: spec.columns.clone(),
            kinds,
        };
        Ok((query, shape))
    }

    /// The statement a scan with `spec` runs for the page after `after` (the first page
    /// when `None`), exactly as [`Source::next_page`] would send it: for inspecting the
    /// server's plan (`EXPLAIN`). Fails like [`Source::scan`] on an unknown column.
    pub fn page_statement(&self, spec: &ScanSpec, after: Option<&Key>) -> Result<Statement, SourceError> {
        let (query, _) = self.prepare(spec)?;
        // The pager asks for one row more than a page, to see where a run of keys ends.
        Ok(query.page(after, spec.page_size.max(1) + 1))
    }

    /// Runs a statement and converts its rows; `after` is the key it reads after, for
    /// messages. A statement whose connection fails is retried (see [`retry`]).
    async fn run(
        &self,
        statement: &Statement,
        shape: &Shape,
        after: Option<&Key>,
    ) -> Result<Vec<Row>, SourceError> {
        let place = || match after {
            Some(k) => format!("after key {k}"),
            None => "from the start".into(),
        };
        // Retrying the same statement resumes where the scan stood: the pager builds it
        // from the last key it received, and a failed statement delivers no rows.
        let raw = retry(
            || self.engine.run(statement),
            tokio::time::sleep,
            |attempt, delay, error| {
                tracing::warn!(
                    source = %self.url,
                    at = %place(),
                    attempt,
                    max_attempts = MAX_ATTEMPTS,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %self.url.scrub(&error.message),
                    "Statement failed on a lost connection; retrying."
                );
            },
        )
        .await
        .map_err(|Exhausted { error, attempts }| {
            let message = self.url.scrub(&error.message);
            SourceError::Read(if error.transient {
                format!("reading {} failed after {attempts} attempts: {message}", place())
            } else {
                format!("reading {} failed: {message}", place())
            })
        })?;
        let mut rows: Vec<Row> = Vec::with_capacity(raw.len());
        for cells in raw {
            let prev = rows.last().map(|row| &row.key).or(after);
            rows.push(convert(cells, shape, prev)?);
        }
        Ok(rows)
    }
}

#[async_trait]
impl<E: Engine> Source for ServerSource<E> {
    fn describe(&self) -> String {
        match &self.target {
            SqlTarget::Table(t) => format!("{} {} table {t}", E::NAME, self.url),
            SqlTarget::Query(_) => format!("{} {} query", E::NAME, self.url),
        }
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn is_live(&self) -> bool {
        true
    }

    async fn scan(&mut self, spec: &ScanSpec) -> Result<(), SourceError> {
        self.scan = None;
        let (query, shape) = self.prepare(spec)?;
        self.scan = Some(Scan {
            query,
            pager: KeysetPager::new(spec.page_size),
            shape,
        });
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        let Some(mut scan) = self.scan.take() else {
            return Err(SourceError::Read("no scan was started".into()));
        };
        let result = loop {
            match scan.pager.step(&scan.query) {
                PagerStep::Yield(rows) => break Ok(Some(rows)),
                PagerStep::End => break Ok(None),
                PagerStep::Run(statement) => {
                    let rows = match self.run(&statement, &scan.shape, scan.pager.after()).await {
                        Ok(rows) => rows,
                        Err(e) => break Err(e),
                    };
                    if let Err(e) = scan.pager.receive(rows) {
                        break Err(e);
                    }
                }
            }
        };
        self.scan = Some(scan);
        result
    }

    async fn fetch(&mut self, spec: &ScanSpec, keys: &[Key]) -> Result<Vec<Row>, SourceError> {
        let (query, shape) = self.prepare(spec)?;
        let mut keys: Vec<&Key> = keys.iter().collect();
        if let Some(k) = keys.iter().find(|k| k.0.len() != shape.key.len()) {
            return Err(SourceError::Read(format!(
                "key {k} has {} parts, the key has {} columns",
                k.0.len(),
                shape.key.len()
            )));
        }
        keys.sort();
        keys.dedup();
        let mut rows = Vec::new();
        for batch in keys.chunks(FETCH_BATCH) {
            let batch: Vec<Key> = batch.iter().map(|k| (*k).clone()).collect();
            let statement = query.any_of(&batch);
            rows.extend(self.run(&statement, &shape, None).await?);
        }
        // Stable: rows sharing a key keep the database's (tiebreak) order.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    fn can_fetch(&self) -> bool {
        true
    }
}

/// Converts a result row; `prev` is the key before it, to say where a bad row is.
fn convert(cells: Vec<Option<Vec<u8>>>, shape: &Shape, prev: Option<&Key>) -> Result<Row, SourceError> {
    let place = || match prev {
        Some(k) => format!("in row after key {k}"),
        None => "in the first row".into(),
    };
    if cells.len() != shape.key.len() + shape.columns.len() {
        return Err(SourceError::Read(format!(
            "{} columns returned {}, expected {}",
            cells.len(),
            place(),
            shape.key.len() + shape.columns.len()
        )));
    }
    let mut cells = cells.into_iter();
    let mut parts = Vec::with_capacity(shape.key.len());
    for ((name, ty), kind) in shape.key.iter().zip(&shape.key_types).zip(&shape.key_kinds) {
        let value = match cells.next().flatten() {
            None => Value::Null,
            Some(bytes) => {
                // (A binary UUID key keeps its hex: a UUID key parses 32 hex digits.)
                let bytes = if *kind == Kind::Bytes && *ty == KeyType::Text {
                    unhex(&bytes)
                        .map_err(|e| SourceError::Read(format!("key column `{name}` {}: {e}", place())))?
                } else {
                    bytes
                };
                Value::Text(String::from_utf8(bytes).map_err(|_| {
                    SourceError::Read(format!("key column `{name}` {}: not UTF-8 text", place()))
                })?)
            }
        };
        let part = match KeyPart::from_value(&value, *ty) {
            Ok(part) => part,
            Err(_) if value.is_null() || value == Value::Text(String::new()) => {
                return Err(SourceError::Read(format!(
                    "key column `{name}` is empty {}",
                    place()
                )));
            }
            Err(e) => return Err(SourceError::Read(format!("key column `{name}` {}: {e}", place()))),
        };
        parts.push(part);
    }
    let key = Key(parts);
    let mut values = Vec::with_capacity(shape.columns.len());
    for ((name, kind), cell) in shape.columns.iter().zip(&shape.kinds).zip(cells) {
        let value = match cell {
            None => Value::Null,
            Some(bytes) => value_of(bytes, *kind)
                .map_err(|e| SourceError::Read(format!("column `{name}` in row with key {key}: {e}")))?,
        };
        values.push(value);
    }
    Ok(Row { key, values })
}

/// A cell's text as the value its kind says it is.
fn value_of(bytes: Vec<u8>, kind: Kind) -> Result<Value, String> {
    if kind == Kind::Bytes {
        return unhex(&bytes).map(Value::Bytes);
    }
    let text = String::from_utf8(bytes).map_err(|_| "text is not valid UTF-8".to_string())?;
    Ok(match kind {
        Kind::Integer => match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Decimal(text),
        },
        Kind::Decimal => Value::Decimal(text),
        Kind::Float => match text.parse::<f64>() {
            Ok(f) => Value::Float(f),
            Err(_) => Value::Text(text),
        },
        // The exact single-precision value (MySQL sends it widened to a double), then
        // its shortest decimal form: what the column holds, without widening noise.
        Kind::Float32 => match text.parse::<f32>() {
            Ok(f) => Value::Float(f.to_string().parse::<f64>().unwrap_or(f64::from(f))),
            Err(_) => Value::Text(text),
        },
        Kind::Bool => match text.as_str() {
            "t" | "true" | "1" => Value::Bool(true),
            "f" | "false" | "0" => Value::Bool(false),
            _ => Value::Text(text),
        },
        Kind::Json => Value::Json(text),
        _ => Value::Text(text),
    })
}

/// Hex text (as `encode(.., 'hex')` or `HEX()` give it) as bytes.
fn unhex(hex: &[u8]) -> Result<Vec<u8>, String> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err("bytes did not arrive as hex".to_string()),
    };
    if hex.len() % 2 != 0 {
        return Err("bytes did not arrive as hex".into());
    }
    hex.chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The message for a failure to connect: `cannot connect to host:port: reason`, with
/// the driver's reason scrubbed of the URL's secrets.
pub fn connect_error(url: &RedactedUrl, default_port: u16, e: &sqlx::Error) -> SourceError {
    let reason = match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Configuration(_) => "invalid connection options in the URL".into(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    SourceError::Open(format!(
        "cannot connect to {}: {}",
        url.host_port(default_port),
        url.scrub(&reason)
    ))
}

/// A driver error as a message: the server's own words when it sent some.
pub fn error_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// Attempts a statement gets when its connection keeps failing: the first run and up
/// to `MAX_ATTEMPTS - 1` retries.
pub const MAX_ATTEMPTS: u32 = 5;

/// The ceiling of the wait before the first retry; it doubles with each further retry.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);

/// The most any one wait between attempts may reach.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Why a statement failed, as [`Engine::run`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError {
    /// True when the connection failed rather than the statement (lost, reset, refused,
    /// the server shutting down), so that the same statement may succeed on a fresh one.
    pub transient: bool,
    /// The server's or driver's message; callers scrub it of the URL's secrets.
    pub message: String,
}

impl RunError {
    /// A failure retrying cannot fix (bad SQL, a value that does not decode).
    pub fn permanent(message: impl Into<String>) -> RunError {
        RunError {
            transient: false,
            message: message.into(),
        }
    }
}

/// How a failure is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The connection's fault: retry on a fresh one.
    Transient,
    /// The server cancelled the statement at its statement timeout: retrying would only
    /// load the server again for as long, so it fails, saying so.
    Timeout,
    /// The statement's fault.
    Permanent,
}

/// Classifies a server error by its SQLSTATE and, for MySQL/MariaDB, its error number.
fn classify_database(sqlstate: Option<&str>, mysql_number: Option<u16>, message: &str) -> Class {
    if let Some(number) = mysql_number {
        return match number {
            // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ER_CONNECTION_KILLED,
            // ER_SERVER_SHUTDOWN, ER_CON_COUNT_ERROR, ER_CLIENT_INTERACTION_TIMEOUT.
            2006 | 2013 | 1927 | 1053 | 1040 | 4031 => Class::Transient,
            // MySQL's max_execution_time, MariaDB's max_statement_time.
            3024 | 1969 => Class::Timeout,
            _ if sqlstate.is_some_and(|s| s.starts_with("08")) => Class::Transient,
            _ => Class::Permanent,
        };
    }
    match sqlstate {
        // Class 08: connection exception.
        Some(s) if s.starts_with("08") => Class::Transient,
        // admin_shutdown (pg_terminate_backend too), crash_shutdown, cannot_connect_now,
        // idle_session_timeout, too_many_connections; serialization_failure and
        // deadlock_detected are what a hot standby cancels a read with when it conflicts
        // with replay, and a retry then usually succeeds.
        Some("57P01" | "57P02" | "57P03" | "57P05" | "53300" | "40001" | "40P01") => Class::Transient,
        // query_canceled: by the statement timeout, or by someone on purpose.
        Some("57014") if message.contains("statement timeout") => Class::Timeout,
        _ => Class::Permanent,
    }
}

/// A driver error as a [`RunError`]: transient when the connection failed (I/O, a
/// protocol error from a dead socket, no connection before the pool's timeout, the
/// server's connection-class errors), permanent otherwise; a statement timeout says so.
pub fn run_error(e: &sqlx::Error) -> RunError {
    let class = match e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            classify_database(db.code().as_deref(), number, db.message())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => Class::Transient,
        _ => Class::Permanent,
    };
    let message = match e {
        sqlx::Error::PoolTimedOut => "timed out opening a connection to the server".to_owned(),
        _ => error_message(e),
    };
    match class {
        Class::Transient => RunError {
            transient: true,
            message,
        },
        Class::Timeout => RunError::permanent(format!(
            "the statement hit the statement timeout ({STATEMENT_TIMEOUT_SECS}s): {message}"
        )),
        Class::Permanent => RunError::permanent(message),
    }
}

/// The ceiling of the wait after failed attempt `attempt` (counting from 1):
/// [`BACKOFF_BASE`] doubled for each earlier retry, at most [`BACKOFF_CAP`].
pub fn backoff_ceiling(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_CAP)
}

/// A cheap xorshift source of jitter: spreading retries needs no cryptographic quality.
struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock, so that parallel runs retrying at once spread apart.
    fn seeded() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // xorshift never leaves zero.
        Jitter((nanos ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// "Full jitter": a wait drawn uniformly from zero to `ceiling`, in milliseconds.
    fn below(&mut self, ceiling: Duration) -> Duration {
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.next() % ms.saturating_add(1))
    }
}

/// How a retried operation ended without success.
#[derive(Debug)]
pub struct Exhausted {
    /// The last attempt's error.
    pub error: RunError,
    /// Attempts made, the last included.
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails permanently, or has failed [`MAX_ATTEMPTS`]
/// times, waiting a jittered [`backoff_ceiling`] (through `sleep`) between attempts and
/// telling `on_retry` the failed attempt, the wait and the error before each wait.
pub async fn retry<T, Op, Fut, Sleep, Slept>(
    mut op: Op,
    mut sleep: Sleep,
    mut on_retry: impl FnMut(u32, Duration, &RunError),
) -> Result<T, Exhausted>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RunError>>,
    Sleep: FnMut(Duration) -> Slept,
    Slept: Future<Output = ()>,
{
    let mut jitter = Jitter::seeded();
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if error.transient && attempt < MAX_ATTEMPTS => {
                let delay = jitter.below(backoff_ceiling(attempt));
                on_retry(attempt, delay, &error);
                sleep(delay).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(Exhausted {
                    error,
                    attempts: attempt,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_compared_types() {
        let cases = [
            ("integer", "", Some(Kind::Integer)),
            ("bigint unsigned", "", Some(Kind::Integer)),
            ("tinyint", "tinyint(1)", Some(Kind::Bool)),
            ("tinyint", "tinyint(4)", Some(Kind::Integer)),
            ("numeric", "", Some(Kind::Decimal)),
            ("double precision", "", Some(Kind::Float)),
            ("double", "double", Some(Kind::Float)),
            ("FLOAT8", "", Some(Kind::Float)),
            ("real", "", Some(Kind::Float32)),
            ("float", "float(7,3)", Some(Kind::Float32)),
            ("FLOAT4", "", Some(Kind::Float32)),
            ("mediumint unsigned", "mediumint(8) unsigned", Some(Kind::Integer)),
            ("enum", "enum('a','b')", Some(Kind::Text)),
            ("BOOLEAN", "tinyint(1)", Some(Kind::Bool)),
            ("json", "", Some(Kind::Json)),
            ("int4[]", "", None),
            ("time with time zone", "", None),
            ("character", "", Some(Kind::Text)),
            ("USER-DEFINED", "", Some(Kind::Text)),
            ("bytea", "", Some(Kind::Bytes)),
            ("timestamp with time zone", "", Some(Kind::Timestamp)),
            ("datetime", "datetime(6)", Some(Kind::Timestamp)),
            ("uuid", "", Some(Kind::Uuid)),
            ("jsonb", "", Some(Kind::Json)),
            ("interval", "", None),
        ];
        for (d, c, kind) in cases {
            assert_eq!(Kind::of(d, c), kind, "{d} {c}");
        }
    }

    #[test]
    fn unsupported_columns_keep_their_place_and_type() {
        let mapped = map_columns(vec![
            ("a".into(), "interval".into(), String::new(), true),
            ("b".into(), "text".into(), String::new(), true),
            ("c".into(), "bit".into(), "bit(3)".into(), true),
        ]);
        let supported: Vec<&str> = mapped.supported.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(supported, ["b"]);
        let columns: Vec<(&str, Option<&str>)> = mapped
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.unsupported.as_deref()))
            .collect();
        assert_eq!(
            columns,
            [("a", Some("interval")), ("b", None), ("c", Some("bit(3)"))]
        );
    }

    #[test]
    fn cells_decode_by_kind() {
        assert_eq!(
            value_of(b"0aFF".to_vec(), Kind::Bytes),
            Ok(Value::Bytes(vec![10, 255]))
        );
        assert_eq!(
            value_of(b"1.50".to_vec(), Kind::Decimal),
            Ok(Value::Decimal("1.50".into()))
        );
        assert_eq!(
            value_of(b"18446744073709551615".to_vec(), Kind::Integer),
            Ok(Value::Decimal("18446744073709551615".into()))
        );
        assert_eq!(value_of(b"t".to_vec(), Kind::Bool), Ok(Value::Bool(true)));
        assert_eq!(value_of(b"0".to_vec(), Kind::Bool), Ok(Value::Bool(false)));
        assert!(
            value_of(b"NaN".to_vec(), Kind::Float).is_ok_and(|v| matches!(v, Value::Float(f) if f.is_nan()))
        );
        assert!(value_of(b"abc".to_vec(), Kind::Bytes).is_err());
        // Single precision by its shortest single-precision form, whether the server
        // sends that (PostgreSQL) or the value widened to a double (MySQL `+ 0e0`).
        for (text, expected) in [
            ("0.1", 0.1),
            ("0.10000000149011612", 0.1),
            ("0.3333333432674408", 0.333_333_34),
            ("16777217", 16_777_216.0),
            ("3.3999999521443642e38", 3.4e38),
            ("-0", -0.0),
        ] {
            assert_eq!(
                value_of(text.as_bytes().to_vec(), Kind::Float32),
                Ok(Value::Float(expected)),
                "{text}"
            );
        }
        assert!(
            value_of(b"Infinity".to_vec(), Kind::Float32).is_ok_and(|v| v == Value::Float(f64::INFINITY))
        );
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::source::sql::Param;

    fn transient(message: &str) -> RunError {
        RunError {
            transient: true,
            message: message.into(),
        }
    }

    #[test]
    fn connection_failures_are_transient_and_statement_failures_are_not() {
        let pg = |code: &str, message: &str| classify_database(Some(code), None, message);
        assert_eq!(pg("08006", "connection failure"), Class::Transient);
        assert_eq!(pg("08P01", "protocol violation"), Class::Transient);
        assert_eq!(
            pg("57P01", "terminating connection due to administrator command"),
            Class::Transient
        );
        assert_eq!(pg("57P02", "crash shutdown"), Class::Transient);
        assert_eq!(
            pg("57P03", "the database system is starting up"),
            Class::Transient
        );
        assert_eq!(
            pg("57014", "canceling statement due to statement timeout"),
            Class::Timeout
        );
        assert_eq!(
            pg("57014", "canceling statement due to user request"),
            Class::Permanent
        );
        assert_eq!(pg("42601", "syntax error at or near \"SELEC\""), Class::Permanent);
        assert_eq!(pg("42703", "column \"x\" does not exist"), Class::Permanent);
        assert_eq!(classify_database(None, None, "?"), Class::Permanent);

        let my = |number: u16, sqlstate: &str| classify_database(Some(sqlstate), Some(number), "");
        assert_eq!(my(2006, "HY000"), Class::Transient);
        assert_eq!(my(2013, "HY000"), Class::Transient);
        assert_eq!(my(1927, "70100"), Class::Transient);
        assert_eq!(my(1053, "08S01"), Class::Transient);
        assert_eq!(my(1160, "08S01"), Class::Transient);
        // KILL QUERY is someone's decision, not a lost connection.
        assert_eq!(my(1317, "70100"), Class::Permanent);
        assert_eq!(my(1969, "70100"), Class::Timeout);
        assert_eq!(my(3024, "HY000"), Class::Timeout);
        assert_eq!(my(1064, "42000"), Class::Permanent);
        assert_eq!(my(1054, "42S22"), Class::Permanent);
    }

    #[test]
    fn driver_errors_are_classified_by_what_failed() {
        let io = |kind| run_error(&sqlx::Error::Io(std::io::Error::from(kind)));
        assert!(io(std::io::ErrorKind::ConnectionReset).transient);
        assert!(io(std::io::ErrorKind::ConnectionRefused).transient);
        assert!(io(std::io::ErrorKind::UnexpectedEof).transient);
        assert!(io(std::io::ErrorKind::BrokenPipe).transient);
        assert!(run_error(&sqlx::Error::Protocol("unexpected end of stream".into())).transient);
        let timed_out = run_error(&sqlx::Error::PoolTimedOut);
        assert_eq!(
            timed_out,
            RunError {
                transient: true,
                message: "timed out opening a connection to the server".into()
            }
        );
        assert!(!run_error(&sqlx::Error::ColumnNotFound("x".into())).transient);
        assert!(!run_error(&sqlx::Error::PoolClosed).transient);
        assert!(!run_error(&sqlx::Error::RowNotFound).transient);
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let ms = |attempt| backoff_ceiling(attempt).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(5)], [200, 400, 800, 1600, 3200]);
        assert_eq!(ms(6), 5000);
        assert_eq!(ms(u32::MAX), 5000);
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_varies() {
        let mut jitter = Jitter::seeded();
        let ceiling = Duration::from_millis(200);
        let draws: Vec<Duration> = (0..1000).map(|_| jitter.below(ceiling)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 50, "{} distinct waits", distinct.len());
        assert_eq!(jitter.below(Duration::ZERO), Duration::ZERO);
    }

    /// Runs `retry` over answers given in order, without sleeping; returns the outcome,
    /// the attempts made and the waits asked for.
    fn drive_retry(answers: Vec<Result<u32, RunError>>) -> (Result<u32, Exhausted>, usize, Vec<Duration>) {
        let answers = Mutex::new(answers.into_iter());
        let calls = Mutex::new(0);
        let waits = Mutex::new(Vec::new());
        let mut told = Vec::new();
        let outcome = block_on(retry(
            || {
                *calls.lock().unwrap() += 1;
                let answer = answers.lock().unwrap().next().expect("an answer per attempt");
                std::future::ready(answer)
            },
            |d| {
                waits.lock().unwrap().push(d);
                std::future::ready(())
            },
            |attempt, delay, error| told.push((attempt, delay, error.clone())),
        ));
        let waits = waits.into_inner().unwrap();
        assert_eq!(told.len(), waits.len());
        for (i, (attempt, delay, error)) in told.iter().enumerate() {
            assert_eq!(*attempt as usize, i + 1);
            assert_eq!(*delay, waits[i]);
            assert!(
                *delay <= backoff_ceiling(*attempt),
                "{delay:?} after attempt {attempt}"
            );
            assert!(error.transient);
        }
        (outcome, calls.into_inner().unwrap(), waits)
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn transient_failures_are_retried_until_one_succeeds() {
        let (outcome, calls, waits) =
            drive_retry(vec![Err(transient("reset")), Err(transient("refused")), Ok(7)]);
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(calls, 3);
        assert_eq!(waits.len(), 2);
    }

    #[test]
    fn a_failure_that_persists_stops_after_the_last_attempt() {
        let answers = (0..10).map(|i| Err(transient(&format!("gone {i}")))).collect();
        let (outcome, calls, waits) = drive_retry(answers);
        let exhausted = outcome.unwrap_err();
        assert_eq!(exhausted.attempts, MAX_ATTEMPTS);
        assert_eq!(exhausted.error, transient("gone 4"));
        assert_eq!(calls, MAX_ATTEMPTS as usize);
        assert_eq!(waits.len(), MAX_ATTEMPTS as usize - 1);
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        let (outcome, calls, waits) = drive_retry(vec![
            Err(transient("reset")),
            Err(RunError::permanent("syntax error")),
            Ok(1),
        ]);
        let exhausted = outcome.unwrap_err();
        assert_eq!(exhausted.error, RunError::permanent("syntax error"));
        assert_eq!(exhausted.attempts, 2);
        assert_eq!((calls, waits.len()), (2, 1));
    }

    /// `?` placeholders, plain key expressions.
    struct Plain;

    impl Dialect for Plain {
        fn placeholder(&self, _index: usize) -> String {
            "?".into()
        }
        fn key_expr(&self, column: &str, _ty: KeyType, _cast: bool) -> String {
            column.to_owned()
        }
    }

    /// A server holding `(id, tag)` rows sorted by id, answering the keyset statements
    /// and failing the statements whose (0-based) numbers are in `fail` with a lost
    /// connection, as many times as they are listed.
    struct Flaky {
        table: Vec<(i64, String)>,
        fail: Mutex<Vec<usize>>,
        statements: Mutex<usize>,
        failures: Mutex<usize>,
    }

    #[async_trait]
    impl Engine for Flaky {
        type Dialect = Plain;
        const NAME: &'static str = "flaky";

        fn dialect(&self, _columns: &[ServerColumn], _nullable_keys: bool) -> Plain {
            Plain
        }

        async fn run(&self, statement: &Statement) -> Result<Vec<Vec<Option<Vec<u8>>>>, RunError> {
            {
                let mut statements = self.statements.lock().unwrap();
                let mut fail = self.fail.lock().unwrap();
                if let Some(i) = fail.iter().position(|f| *f == *statements) {
                    fail.remove(i);
                    *self.failures.lock().unwrap() += 1;
                    return Err(transient("server closed the connection unexpectedly"));
                }
                *statements += 1;
            }
            let int = |p: &Param| match p {
                Param::Int(i) => *i,
                Param::Text(_) => panic!("integer keys only"),
            };
            let rows: Vec<&(i64, String)> = if statement.sql.contains("LIMIT") {
                let limit = int(statement.params.last().unwrap()) as usize;
                let after = (statement.params.len() == 2).then(|| int(&statement.params[0]));
                self.table
                    .iter()
                    .filter(|(id, _)| after.is_none_or(|a| *id > a))
                    .take(limit)
                    .collect()
            } else if statement.sql.contains(" IN (") {
                let keys: Vec<i64> = statement.params.iter().map(int).collect();
                self.table.iter().filter(|(id, _)| keys.contains(id)).collect()
            } else {
                let key = int(&statement.params[0]);
                self.table.iter().filter(|(id, _)| *id == key).collect()
            };
            Ok(rows
                .into_iter()
                .map(|(id, tag)| vec![Some(id.to_string().into_bytes()), Some(tag.clone().into_bytes())])
                .collect())
        }
    }

    fn flaky_source(table: &[(i64, &str)], fail: Vec<usize>) -> ServerSource<Flaky> {
        let engine = Flaky {
            table: table.iter().map(|(id, tag)| (*id, (*tag).to_owned())).collect(),
            fail: Mutex::new(fail),
            statements: Mutex::new(0),
            failures: Mutex::new(0),
        };
        let config = SqlServerConfig {
            url: RedactedUrl::new("flaky://user:pw@db.example/app"),
            target: SqlTarget::Table("t".into()),
            filter: None,
        };
        let columns = vec![
            ServerColumn {
                name: "id".into(),
                kind: Kind::Integer,
                nullable: false,
            },
            ServerColumn {
                name: "tag".into(),
                kind: Kind::Text,
                nullable: true,
            },
        ];
        let columns = MappedColumns {
            columns: columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    declared: Some(c.kind.field_type()),
                    unsupported: None,
                })
                .collect(),
            supported: columns,
        };
        ServerSource::new(engine, &config, columns)
    }

    fn spec(page_size: usize) -> ScanSpec {
        ScanSpec {
            key: vec!["id".into()],
            key_types: vec![KeyType::Integer],
            columns: vec!["tag".into()],
            tiebreak: vec![],
            page_size,
            memory_budget: 0,
        }
    }

    async fn scan_all(
        source: &mut ServerSource<Flaky>,
        page_size: usize,
    ) -> Result<Vec<(i64, String)>, SourceError> {
        source.scan(&spec(page_size)).await?;
        let mut rows = Vec::new();
        while let Some(page) = source.next_page().await? {
            for row in page {
                let KeyPart::Int(id) = row.key.0[0] else {
                    panic!("integer key")
                };
                let Value::Text(tag) = &row.values[0] else {
                    panic!("text tag")
                };
                rows.push((id, tag.clone()));
            }
        }
        Ok(rows)
    }

    #[tokio::test]
    async fn a_scan_resumes_after_lost_connections_without_duplicating_or_skipping_rows() {
        // Page size 3: the first page reads ids 1..=3 plus one more (the run of 4s, which
        // is held back); the run of 5s fills a page by itself and is read by `key = ?`.
        let table = [
            (1, "a"),
            (2, "b"),
            (3, "c"),
            (4, "d1"),
            (4, "d2"),
            (5, "e1"),
            (5, "e2"),
            (5, "e3"),
            (5, "e4"),
            (6, "f"),
            (7, "g"),
        ];
        let expected: Vec<(i64, String)> = table.iter().map(|(i, t)| (*i, (*t).to_owned())).collect();
        let clean = scan_all(&mut flaky_source(&table, vec![]), 3).await.unwrap();
        assert_eq!(clean, expected);
        // The first page fails once, the page the run of 5s fills twice, the `key = ?`
        // read of that run once: every retry reissues what the pager asked for.
        let mut source = flaky_source(&table, vec![0, 2, 2, 3]);
        let rows = scan_all(&mut source, 3).await.unwrap();
        assert_eq!(rows, expected);
        assert_eq!(*source.engine.failures.lock().unwrap(), 4);
        assert!(source.engine.fail.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_connection_that_stays_lost_fails_the_scan_naming_the_key_and_the_attempts() {
        let table = [(1, "a"), (2, "b"), (3, "c"), (4, "d")];
        // Statement 1 (after key 2) fails on every attempt.
        let mut source = flaky_source(&table, vec![1; MAX_ATTEMPTS as usize]);
        let err = scan_all(&mut source, 2).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading after key 2 failed after 5 attempts: server closed the connection unexpectedly"
        );
    }

    #[tokio::test]
    async fn a_recheck_fetch_is_retried_too() {
        let table = [(1, "a"), (2, "b"), (3, "c")];
        let mut source = flaky_source(&table, vec![0]);
        let keys = [Key(vec![KeyPart::Int(3)]), Key(vec![KeyPart::Int(1)])];
        let rows = source.fetch(&spec(10), &keys).await.unwrap();
        let ids: Vec<&Key> = rows.iter().map(|r| &r.key).collect();
        assert_eq!(ids, vec![&keys[1], &keys[0]]);
        assert_eq!(*source.engine.failures.lock().unwrap(), 1);
    }
}
