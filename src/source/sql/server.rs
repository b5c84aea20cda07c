//! What the database-server backends (PostgreSQL, MySQL/MariaDB) share: the column
//! catalog mapped to compared types, and a [`Source`] over any [`Engine`] built on the
//! shared keyset statements and pager.
//!
//! Every column is read as text (the dialect casts it in SQL, bytes as hex), so decoding
//! is trivial and exact: numerics never pass through a float, and the declared types
//! tell `compare` how to normalize the text.

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
    /// real/double/float.
    Float,
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
            Kind::Float => FieldType::Float,
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
            "real" | "double precision" | "double" | "float" | "float4" | "float8" => Kind::Float,
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

/// Maps catalog rows `(name, data_type, column_type, nullable)` to columns, failing
/// with every unsupported column at once.
pub fn map_columns(
    described: Vec<(String, String, String, bool)>,
    what: &str,
) -> Result<Vec<ServerColumn>, SourceError> {
    let mut columns = Vec::with_capacity(described.len());
    let mut unsupported = Vec::new();
    for (name, data_type, column_type, nullable) in described {
        match Kind::of(&data_type, &column_type) {
            Some(kind) => columns.push(ServerColumn { name, kind, nullable }),
            None => {
                let shown = if column_type.is_empty() {
                    data_type
                } else {
                    column_type
                };
                unsupported.push(format!("column `{name}` has type `{shown}`"));
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(SourceError::Schema(format!(
            "{what}: {}, which recon cannot compare (cast it in a `query`)",
            unsupported.join(", ")
        )));
    }
    Ok(columns)
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
    /// Errors are the server's message, without credentials.
    async fn run(&self, statement: &Statement) -> Result<Vec<Vec<Option<Vec<u8>>>>, String>;
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
    columns: Vec<String>,
    /// The kind of each of `columns`.
    kinds: Vec<Kind>,
}

impl<E: Engine> ServerSource<E> {
    /// A source over an open engine whose columns are known.
    pub fn new(engine: E, config: &SqlServerConfig, server_columns: Vec<ServerColumn>) -> ServerSource<E> {
        let columns = server_columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                declared: Some(c.kind.field_type()),
            })
            .collect();
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
        let mut nullable_keys = false;
        for (name, ty) in spec.key.iter().zip(&spec.key_types) {
            let column = self.column(name)?;
            nullable_keys |= column.nullable;
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
            columns: spec.columns.clone(),
            kinds,
        };
        Ok((query, shape))
    }

    async fn run(
        &self,
        statement: &Statement,
        shape: &Shape,
        after: Option<&Key>,
    ) -> Result<Vec<Row>, SourceError> {
        let raw = self.engine.run(statement).await.map_err(|e| {
            let place = match after {
                Some(k) => format!("after key {k}"),
                None => "from the start".into(),
            };
            SourceError::Read(format!("reading {place} failed: {}", self.url.scrub(&e)))
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
    for (name, ty) in shape.key.iter().zip(&shape.key_types) {
        let value = match cells.next().flatten() {
            None => Value::Null,
            Some(bytes) => Value::Text(
                String::from_utf8(bytes)
                    .map_err(|_| SourceError::Read(format!("key column `{name}` {}: not UTF-8", place())))?,
            ),
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
    fn unsupported_columns_are_all_named() {
        let err = map_columns(
            vec![
                ("a".into(), "interval".into(), String::new(), true),
                ("b".into(), "text".into(), String::new(), true),
                ("c".into(), "bit".into(), "bit(3)".into(), true),
            ],
            "table `t`",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "table `t`: column `a` has type `interval`, column `c` has type `bit(3)`, \
             which recon cannot compare (cast it in a `query`)"
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
    }
}
