//! SQLite databases, read through one read-only connection with keyset pagination.
//!
//! SQLite is dynamically typed: a cell's value follows its runtime storage class (NULL,
//! INTEGER, REAL, TEXT, BLOB), not the column's declared type. Declared types only tell
//! [`Column::declared`] what the column is meant to hold, and whether a key column must
//! be cast to order like its [`KeyType`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteValueRef};
use sqlx::{Decode, Row as _, Sqlite, TypeInfo, ValueRef};

use super::{Dialect, KeyColumn, KeysetPager, KeysetQuery, PagerStep, QUERY_ALIAS, Statement, trim_query};
use crate::job::{SqlTarget, SqliteConfig};
use crate::source::{Column, FieldType, Key, KeyPart, KeyType, Row, ScanSpec, Source, SourceError, Value};

/// How long a read waits for a writer's lock before failing. SQLite has no statement
/// timeout; this is the closest bound on a stuck read.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys read by one statement in [`Source::fetch`].
const FETCH_BATCH: usize = 500;

/// The temporary view a custom query is described through (`PRAGMA table_info` on a view
/// reports the declared types of the columns it selects).
const DESCRIBE_VIEW: &str = "recon_describe";

/// SQLite's spelling of the shared keyset statements: `?` placeholders, `COLLATE BINARY`
/// (byte order) for text, and casts where a column is not stored as its key type.
#[derive(Clone, Copy, Debug)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    fn placeholder(&self, _index: usize) -> String {
        "?".into()
    }

    fn key_expr(&self, column: &str, ty: KeyType, cast: bool) -> String {
        match (ty, cast) {
            (KeyType::Integer, false) => column.to_owned(),
            (KeyType::Integer, true) => format!("CAST({column} AS INTEGER)"),
            (KeyType::Text, false) => format!("{column} COLLATE BINARY"),
            (KeyType::Text, true) => format!("CAST({column} AS TEXT) COLLATE BINARY"),
            // Keys hold UUIDs in canonical form (lower case, hyphenated); the database
            // rebuilds that form from whatever is stored (braces, no hyphens, upper case)
            // so that its order and its lookups match the keys'.
            (KeyType::Uuid, _) => {
                let hex = format!("LOWER(REPLACE(REPLACE(REPLACE({column}, '-', ''), '{{', ''), '}}', ''))");
                let part = |start: usize, len: usize| format!("SUBSTR({hex}, {start}, {len})");
                format!(
                    "({} || '-' || {} || '-' || {} || '-' || {} || '-' || {}) COLLATE BINARY",
                    part(1, 8),
                    part(9, 4),
                    part(13, 4),
                    part(17, 4),
                    part(21, 12)
                )
            }
        }
    }
}

/// SQLite's column affinity for a declared type
/// (<https://www.sqlite.org/datatype3.html#determination_of_column_affinity>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    fn of(declared: &str) -> Affinity {
        let d = declared.to_ascii_uppercase();
        if d.contains("INT") {
            Affinity::Integer
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| d.contains(s)) {
            Affinity::Text
        } else if d.contains("BLOB") || d.trim().is_empty() {
            Affinity::Blob
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| d.contains(s)) {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// True when a key of type `ty` read from a column of this affinity must be cast to
    /// order like the key: only INTEGER columns hold integers, only TEXT columns hold text.
    fn needs_cast(self, ty: KeyType) -> bool {
        match ty {
            KeyType::Integer => self != Affinity::Integer,
            KeyType::Text => self != Affinity::Text,
            KeyType::Uuid => false,
        }
    }
}

/// The compared type a declared SQLite column type suggests, by affinity-like rules
/// (case-insensitive substrings, first match wins); `None` when it suggests none.
pub fn field_type_for_declared(declared: &str) -> Option<FieldType> {
    let d = declared.to_ascii_uppercase();
    let has = |words: &[&str]| words.iter().any(|w| d.contains(w));
    let t = if has(&["BOOL"]) {
        FieldType::Bool
    } else if has(&["DATETIME", "TIMESTAMP"]) {
        FieldType::Timestamp
    } else if has(&["DATE"]) {
        FieldType::Date
    } else if has(&["TIME"]) {
        FieldType::Time
    } else if has(&["UUID"]) {
        FieldType::Uuid
    } else if has(&["JSON"]) {
        FieldType::Json
    } else if has(&["INT"]) {
        FieldType::Integer
    } else if has(&["CHAR", "CLOB", "TEXT"]) {
        FieldType::Text
    } else if has(&["BLOB"]) {
        FieldType::Bytes
    } else if has(&["REAL", "FLOA", "DOUB"]) {
        FieldType::Float
    } else if has(&["NUMERIC", "DECIMAL"]) {
        FieldType::Decimal
    } else {
        return None;
    };
    Some(t)
}

/// An SQLite database: a table, or the rows of a custom SELECT.
pub struct SqliteSource {
    pool: SqlitePool,
    url: String,
    target: SqlTarget,
    filter: Option<String>,
    columns: Vec<Column>,
    /// Each column's affinity, parallel to `columns`.
    affinity: Vec<Affinity>,
    scan: Option<Scan>,
}

/// A scan in progress.
struct Scan {
    query: KeysetQuery<SqliteDialect>,
    pager: KeysetPager,
    shape: Shape,
}

/// How a result row is laid out: the key columns first, then the scan's columns.
struct Shape {
    key: Vec<String>,
    key_types: Vec<KeyType>,
    columns: Vec<String>,
}

impl SqliteSource {
    /// Opens the database file read-only and learns the table's or query's columns, so
    /// that a missing file, a file that is not a database, a missing table or a broken
    /// query fails here.
    pub async fn open(config: &SqliteConfig) -> Result<SqliteSource, SourceError> {
        let path = config.path.as_path();
        if let Err(e) = std::fs::metadata(path) {
            return Err(SourceError::Open(format!("cannot open {}: {e}", path.display())));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| open_error(path, &e))?;
        // Reading the schema is the first thing that touches the file's contents.
        sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
            .fetch_optional(&pool)
            .await
            .map_err(|e| open_error(path, &e))?;
        let described = match &config.target {
            SqlTarget::Table(table) => table_columns(&pool, table).await?,
            SqlTarget::Query(query) => query_columns(&pool, query).await?,
        };
        let (columns, affinity) = described
            .into_iter()
            .map(|(name, declared)| {
                let column = Column {
                    name,
                    declared: field_type_for_declared(&declared),
                    unsupported: None,
                };
                (column, Affinity::of(&declared))
            })
            .unzip();
        Ok(SqliteSource {
            pool,
            url: config.url.clone(),
            target: config.target.clone(),
            filter: config.filter.clone(),
            columns,
            affinity,
            scan: None,
        })
    }

    /// `table `orders`` or `query`, for messages.
    fn target_name(&self) -> String {
        match &self.target {
            SqlTarget::Table(t) => format!("table `{t}`"),
            SqlTarget::Query(_) => "query".into(),
        }
    }

    /// Checks the spec against the columns and builds its statements.
    fn prepare(&self, spec: &ScanSpec) -> Result<(KeysetQuery<SqliteDialect>, Shape), SourceError> {
        if spec.key.is_empty() || spec.key.len() != spec.key_types.len() {
            return Err(SourceError::Schema(format!(
                "a scan needs one type per key column (got {} columns, {} types)",
                spec.key.len(),
                spec.key_types.len()
            )));
        }
        let mut key = Vec::with_capacity(spec.key.len());
        for (name, ty) in spec.key.iter().zip(&spec.key_types) {
            let i = self.column_index(name)?;
            key.push(KeyColumn {
                name: name.clone(),
                ty: *ty,
                cast: self.affinity[i].needs_cast(*ty),
            });
        }
        for name in spec.columns.iter().chain(&spec.tiebreak) {
            self.column_index(name)?;
        }
        let query = KeysetQuery::new(
            SqliteDialect,
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
        };
        Ok((query, shape))
    }

    fn column_index(&self, name: &str) -> Result<usize, SourceError> {
        self.columns.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            SourceError::Schema(format!(
                "column `{name}` not found in {} (columns: {})",
                self.target_name(),
                names.join(", ")
            ))
        })
    }
}

#[async_trait]
impl Source for SqliteSource {
    fn describe(&self) -> String {
        match &self.target {
            SqlTarget::Table(t) => format!("sqlite {} table {t}", self.url),
            SqlTarget::Query(_) => format!("sqlite {} query", self.url),
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
        let Some(scan) = self.scan.as_mut() else {
            return Err(SourceError::Read("no scan was started".into()));
        };
        loop {
            match scan.pager.step(&scan.query) {
                PagerStep::Yield(rows) => return Ok(Some(rows)),
                PagerStep::End => return Ok(None),
                PagerStep::Run(statement) => {
                    let rows = run(&self.pool, &statement, &scan.shape, scan.pager.after()).await?;
                    scan.pager.receive(rows)?;
                }
            }
        }
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
            let statement = query.any_of(batch);
            rows.extend(run(&self.pool, &statement, &shape, None).await?);
        }
        // Stable: rows sharing a key keep the database's (tiebreak) order.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    fn can_fetch(&self) -> bool {
        true
    }
}

/// The message for a failure to open or first read the file.
fn open_error(path: &Path, e: &sqlx::Error) -> SourceError {
    let message = error_message(e);
    if message.contains("file is not a database") {
        SourceError::Open(format!("{} is not an SQLite database", path.display()))
    } else {
        SourceError::Open(format!("cannot open {}: {message}", path.display()))
    }
}

/// SQLite's own message for a database error, sqlx's description otherwise.
fn error_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// A table's columns and declared types; `schema.table` reads the schema's table.
async fn table_columns(pool: &SqlitePool, table: &str) -> Result<Vec<(String, String)>, SourceError> {
    let (schema, name) = match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let statement = match schema {
        Some(_) => "SELECT name, type FROM pragma_table_info(?, ?) ORDER BY cid",
        None => "SELECT name, type FROM pragma_table_info(?) ORDER BY cid",
    };
    let mut q = sqlx::query(statement).bind(name);
    if let Some(schema) = schema {
        q = q.bind(schema);
    }
    let rows = q.fetch_all(pool).await.map_err(|e| {
        SourceError::Schema(format!(
            "cannot read the columns of table `{table}`: {}",
            error_message(&e)
        ))
    })?;
    if rows.is_empty() {
        return Err(SourceError::Schema(format!("table `{table}` not found")));
    }
    rows.iter().map(name_and_type).collect()
}

/// A custom query's columns and declared types, read through a temporary view on the
/// read-only connection (the temporary schema is writable even then). The view selects
/// `* FROM (<query>) AS recon_q`, as every scan statement does, so the names match.
async fn query_columns(pool: &SqlitePool, query: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| SourceError::Open(format!("cannot connect: {}", error_message(&e))))?;
    let drop = format!("DROP VIEW IF EXISTS temp.{DESCRIBE_VIEW}");
    let create = format!(
        "CREATE TEMP VIEW {DESCRIBE_VIEW} AS SELECT * FROM (\n{}\n) AS {QUERY_ALIAS}",
        trim_query(query)
    );
    let failed = |e: sqlx::Error| SourceError::Schema(format!("query failed: {}", error_message(&e)));
    sqlx::query(&drop)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(failed)?;
    sqlx::query(&create)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(failed)?;
    let described = sqlx::query("SELECT name, type FROM pragma_table_info(?, 'temp') ORDER BY cid")
        .bind(DESCRIBE_VIEW)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await
        .map_err(failed);
    let dropped = sqlx::query(&drop)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(failed);
    let rows = described?;
    dropped?;
    rows.iter().map(name_and_type).collect()
}

/// `(name, declared type)` from a `pragma_table_info` row.
fn name_and_type(row: &SqliteRow) -> Result<(String, String), SourceError> {
    let name: String = row
        .try_get("name")
        .map_err(|e| SourceError::Schema(format!("cannot read a column name: {e}")))?;
    let declared: Option<String> = row
        .try_get("type")
        .map_err(|e| SourceError::Schema(format!("cannot read the type of `{name}`: {e}")))?;
    Ok((name, declared.unwrap_or_default()))
}

/// Runs one statement and converts its rows; `after` is where the scan stands, for
/// messages about a bad first row.
async fn run(
    pool: &SqlitePool,
    statement: &Statement,
    shape: &Shape,
    after: Option<&Key>,
) -> Result<Vec<Row>, SourceError> {
    let q = super::bound(&statement.sql, &statement.params);
    let raw = q.fetch_all(pool).await.map_err(|e| {
        let place = match after {
            Some(k) => format!("after key {k}"),
            None => "from the start".into(),
        };
        SourceError::Read(format!("reading {place} failed: {}", error_message(&e)))
    })?;
    let mut rows: Vec<Row> = Vec::with_capacity(raw.len());
    for r in &raw {
        let prev = rows.last().map(|row| &row.key).or(after);
        rows.push(convert(r, shape, prev)?);
    }
    Ok(rows)
}

/// Converts a result row; `prev` is the key before it, to say where a bad row is.
fn convert(raw: &SqliteRow, shape: &Shape, prev: Option<&Key>) -> Result<Row, SourceError> {
    let place = || match prev {
        Some(k) => format!("in row after key {k}"),
        None => "in the first row".into(),
    };
    let mut parts = Vec::with_capacity(shape.key.len());
    for (i, (name, ty)) in shape.key.iter().zip(&shape.key_types).enumerate() {
        let value =
            cell(raw, i).map_err(|e| SourceError::Read(format!("key column `{name}` {}: {e}", place())))?;
        let part = match KeyPart::from_value(&value, *ty) {
            Ok(part) => part,
            Err(_) if value.is_null() || value == Value::Text(String::new()) => {
                return Err(SourceError::Read(format!(
                    "key column `{name}` is empty {}",
                    place()
                )));
            }
            Err(e) => {
                return Err(SourceError::Read(format!("key column `{name}` {}: {e}", place())));
            }
        };
        parts.push(part);
    }
    let key = Key(parts);
    let offset = shape.key.len();
    let values = shape
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            cell(raw, offset + i)
                .map_err(|e| SourceError::Read(format!("column `{name}` in row with key {key}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Row { key, values })
}

/// One cell by its runtime storage class.
fn cell(raw: &SqliteRow, index: usize) -> Result<Value, String> {
    let value = raw.try_get_raw(index).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    let class = value.type_info().name().to_owned();
    match class.as_str() {
        "INTEGER" => decode::<i64>(value).map(Value::Int),
        "REAL" => decode::<f64>(value).map(Value::Float),
        "TEXT" => {
            let bytes = decode::<Vec<u8>>(value)?;
            String::from_utf8(bytes)
                .map(Value::Text)
                .map_err(|_| "text is not valid UTF-8".into())
        }
        "BLOB" => decode::<Vec<u8>>(value).map(Value::Bytes),
        other => Err(format!("unexpected storage class {other}")),
    }
}

fn decode<'r, T: Decode<'r, Sqlite>>(value: SqliteValueRef<'r>) -> Result<T, String> {
    T::decode(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use sqlx::{ConnectOptions, Connection};

    use super::*;

    /// Creates `name` in `dir` through a separate writable connection and runs `sql`.
    async fn make_db(dir: &Path, name: &str, sql: &str) -> PathBuf {
        let path = dir.join(name);
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        path
    }

    fn config(path: &Path, target: SqlTarget, filter: Option<&str>) -> SqliteConfig {
        SqliteConfig {
            path: path.to_owned(),
            url: "sqlite://data/test.db".into(),
            target,
            filter: filter.map(str::to_owned),
        }
    }

    fn table(name: &str) -> SqlTarget {
        SqlTarget::Table(name.into())
    }

    async fn open_table(path: &Path, name: &str) -> SqliteSource {
        SqliteSource::open(&config(path, table(name), None))
            .await
            .unwrap()
    }

    fn spec(key: &[(&str, KeyType)], columns: &[&str], page_size: usize) -> ScanSpec {
        ScanSpec {
            key: key.iter().map(|(k, _)| (*k).to_owned()).collect(),
            key_types: key.iter().map(|(_, t)| *t).collect(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            tiebreak: Vec::new(),
            page_size,
            memory_budget: 1 << 20,
        }
    }

    /// Every page of a scan, checking that no page exceeds the page size.
    async fn pages(source: &mut SqliteSource, spec: &ScanSpec) -> Result<Vec<Vec<Row>>, SourceError> {
        source.scan(spec).await?;
        let mut pages = Vec::new();
        while let Some(page) = source.next_page().await? {
            assert!(page.len() <= spec.page_size, "page of {} rows", page.len());
            pages.push(page);
        }
        Ok(pages)
    }

    async fn rows(source: &mut SqliteSource, spec: &ScanSpec) -> Vec<Row> {
        pages(source, spec).await.unwrap().concat()
    }

    fn keys(rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| r.key.to_string()).collect()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn ikey(i: i64) -> Key {
        Key(vec![KeyPart::Int(i)])
    }

    #[tokio::test]
    async fn integer_keys_come_in_numeric_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (10, 'ten'), (9, 'nine'), (100, 'hundred'), (-1, 'minus');",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("id", KeyType::Integer)], &["v"], 2)).await;
        assert_eq!(keys(&got), ["-1", "9", "10", "100"]);
        assert_eq!(got[1].values, vec![text("nine")]);
    }

    #[tokio::test]
    async fn text_keys_come_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (code TEXT COLLATE NOCASE, n INTEGER);
             INSERT INTO t VALUES ('a', 1), ('é', 2), ('B', 3), ('z', 4), ('10', 5), ('9', 6);",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("code", KeyType::Text)], &["n"], 2)).await;
        assert_eq!(
            keys(&got),
            ["\"10\"", "\"9\"", "\"B\"", "\"a\"", "\"z\"", "\"é\""]
        );
    }

    #[tokio::test]
    async fn text_keys_over_an_integer_column_order_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER, v);
             INSERT INTO t VALUES (9, 'a'), (10, 'b'), (100, 'c');",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("id", KeyType::Text)], &["v"], 1)).await;
        assert_eq!(keys(&got), ["\"10\"", "\"100\"", "\"9\""]);
    }

    #[tokio::test]
    async fn integer_keys_in_a_text_column_are_cast_to_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id TEXT, v TEXT);
             INSERT INTO t VALUES ('10', 'ten'), ('9', 'nine'), ('100', 'hundred');",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let spec = spec(&[("id", KeyType::Integer)], &["id", "v"], 1);
        let got = rows(&mut src, &spec).await;
        assert_eq!(keys(&got), ["9", "10", "100"]);
        // The key is typed; the value is what the cell holds.
        assert_eq!(got[0].key, ikey(9));
        assert_eq!(got[0].values, vec![text("9"), text("nine")]);
        let fetched = src.fetch(&spec, &[ikey(100), ikey(9)]).await.unwrap();
        assert_eq!(keys(&fetched), ["9", "100"]);
    }

    #[tokio::test]
    async fn uuid_keys_order_lower_cased() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id UUID, v);
             INSERT INTO t VALUES ('B0000000-0000-0000-0000-000000000000', 1),
                                  ('a0000000-0000-0000-0000-000000000000', 2),
                                  ('C0000000-0000-0000-0000-000000000000', 3);",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("id", KeyType::Uuid)], &["v"], 1)).await;
        let values: Vec<Value> = got.iter().map(|r| r.values[0].clone()).collect();
        assert_eq!(values, [Value::Int(2), Value::Int(1), Value::Int(3)]);
    }

    #[tokio::test]
    async fn composite_keys_page_in_order_and_can_be_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (region INTEGER, code TEXT, v REAL);
             INSERT INTO t VALUES (2, 'a', 1.5), (1, 'b', 2.5), (10, 'a', 3.5), (1, 'B', 4.5),
                                  (2, 'a', 5.5), (1, 'a', 6.5);",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let key = [("region", KeyType::Integer), ("code", KeyType::Text)];
        for page_size in 1..=7 {
            let got = rows(&mut src, &spec(&key, &["v"], page_size)).await;
            assert_eq!(
                keys(&got),
                [
                    "(1, \"B\")",
                    "(1, \"a\")",
                    "(1, \"b\")",
                    "(2, \"a\")",
                    "(2, \"a\")",
                    "(10, \"a\")"
                ],
                "page size {page_size}"
            );
        }
        let spec = spec(&key, &["v"], 3);
        let k = |r: i64, c: &str| Key(vec![KeyPart::Int(r), KeyPart::Text(c.into())]);
        let fetched = src
            .fetch(&spec, &[k(10, "a"), k(2, "a"), k(3, "zz"), k(1, "B"), k(2, "a")])
            .await
            .unwrap();
        assert_eq!(
            keys(&fetched),
            ["(1, \"B\")", "(2, \"a\")", "(2, \"a\")", "(10, \"a\")"]
        );
        let mut dup_values: Vec<f64> = fetched[1..3]
            .iter()
            .map(|r| match r.values[0] {
                Value::Float(f) => f,
                ref other => panic!("{other:?}"),
            })
            .collect();
        dup_values.sort_by(f64::total_cmp);
        assert_eq!(dup_values, [1.5, 5.5]);
    }

    #[tokio::test]
    async fn duplicate_keys_across_page_boundaries_are_all_yielded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER, n INTEGER);
             INSERT INTO t VALUES (5, 1), (5, 2), (5, 3), (5, 4), (5, 5);
             CREATE TABLE u (id INTEGER, n INTEGER);
             INSERT INTO u VALUES (1, 1), (2, 2), (2, 3), (2, 4), (3, 5), (3, 6), (3, 7),
                                  (3, 8), (3, 9), (4, 10), (5, 11), (5, 12);",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("id", KeyType::Integer)], &["n"], 2)).await;
        let mut ns: Vec<Value> = got.iter().map(|r| r.values[0].clone()).collect();
        ns.sort_by_key(|v| match v {
            Value::Int(i) => *i,
            _ => 0,
        });
        assert_eq!(ns, (1..=5).map(Value::Int).collect::<Vec<_>>());

        let mut src = open_table(&path, "u").await;
        let full = rows(&mut src, &spec(&[("id", KeyType::Integer)], &["n"], 100)).await;
        for page_size in 1..=13 {
            let got = rows(&mut src, &spec(&[("id", KeyType::Integer)], &["n"], page_size)).await;
            assert_eq!(keys(&got), keys(&full), "page size {page_size}");
            let mut ns: Vec<String> = got.iter().map(|r| format!("{:?}", r.values)).collect();
            ns.sort();
            ns.dedup();
            assert_eq!(ns.len(), 12, "page size {page_size}");
        }
    }

    #[tokio::test]
    async fn a_custom_query_with_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE orders (id INTEGER, status TEXT, total DECIMAL(10,2), ref UUID);
             INSERT INTO orders VALUES (1, 'open', 10, 'x'), (2, 'closed', 20, 'y'),
                                       (3, 'open', 30, 'z'), (4, 'open', 40, 'w');",
        )
        .await;
        let cfg = config(
            &path,
            SqlTarget::Query(
                "SELECT id AS order_id, total, ref, total * 2 AS doubled FROM orders WHERE status = 'open';"
                    .into(),
            ),
            Some("order_id <> 3"),
        );
        let mut src = SqliteSource::open(&cfg).await.unwrap();
        assert_eq!(src.describe(), "sqlite sqlite://data/test.db query");
        let declared: Vec<(&str, Option<FieldType>)> = src
            .columns()
            .iter()
            .map(|c| (c.name.as_str(), c.declared))
            .collect();
        assert_eq!(
            declared,
            [
                ("order_id", Some(FieldType::Integer)),
                ("total", Some(FieldType::Decimal)),
                ("ref", Some(FieldType::Uuid)),
                ("doubled", None)
            ]
        );
        let spec = spec(&[("order_id", KeyType::Integer)], &["total", "doubled"], 1);
        let got = rows(&mut src, &spec).await;
        assert_eq!(keys(&got), ["1", "4"]);
        assert_eq!(got[1].values, vec![Value::Int(40), Value::Int(80)]);
        let fetched = src.fetch(&spec, &[ikey(2), ikey(3), ikey(4)]).await.unwrap();
        assert_eq!(keys(&fetched), ["4"]);
    }

    #[tokio::test]
    async fn a_table_filter_applies_to_scans() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER, deleted BOOLEAN);
             INSERT INTO t VALUES (1, 0), (2, 1), (3, 0), (4, NULL);",
        )
        .await;
        let cfg = config(&path, table("t"), Some("deleted = 0 OR deleted IS NULL"));
        let mut src = SqliteSource::open(&cfg).await.unwrap();
        let got = rows(&mut src, &spec(&[("id", KeyType::Integer)], &[], 1)).await;
        assert_eq!(keys(&got), ["1", "3", "4"]);
    }

    #[tokio::test]
    async fn declared_types_map_to_field_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (a BOOLEAN, b DATETIME, c TIMESTAMP, d DATE, e TIME, f UUID,
                             g JSON, h BIGINT, i VARCHAR(20), j CLOB, k BLOB, l REAL,
                             m DOUBLE PRECISION, n NUMERIC, o DECIMAL(10, 2), p, q WHATEVER);",
        )
        .await;
        let src = open_table(&path, "t").await;
        use FieldType::*;
        let declared: Vec<Option<FieldType>> = src.columns().iter().map(|c| c.declared).collect();
        assert_eq!(
            declared,
            [
                Some(Bool),
                Some(Timestamp),
                Some(Timestamp),
                Some(Date),
                Some(Time),
                Some(Uuid),
                Some(Json),
                Some(Integer),
                Some(Text),
                Some(Text),
                Some(Bytes),
                Some(Float),
                Some(Float),
                Some(Decimal),
                Some(Decimal),
                None,
                None
            ]
        );
        assert_eq!(src.describe(), "sqlite sqlite://data/test.db table t");
        assert!(src.is_live() && src.can_fetch());
    }

    #[tokio::test]
    async fn values_follow_the_storage_class_and_null_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER, v);
             INSERT INTO t VALUES (1, NULL), (2, ''), (3, 7), (4, 2.5), (5, 'x'), (6, X'00ff');",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let got = rows(&mut src, &spec(&[("id", KeyType::Integer)], &["v"], 4)).await;
        let values: Vec<Value> = got.into_iter().map(|r| r.values[0].clone()).collect();
        assert_eq!(
            values,
            [
                Value::Null,
                text(""),
                Value::Int(7),
                Value::Float(2.5),
                text("x"),
                Value::Bytes(vec![0, 255])
            ]
        );
    }

    #[tokio::test]
    async fn empty_keys_fail_the_scan_naming_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE n (id INTEGER, v);
             INSERT INTO n VALUES (1, 'a'), (NULL, 'b');
             CREATE TABLE e (code TEXT, v);
             INSERT INTO e VALUES ('a', 1), ('', 2);
             CREATE TABLE x (id TEXT, v);
             INSERT INTO x VALUES ('1', 1), ('2', 2), ('two', 3);",
        )
        .await;
        let mut src = open_table(&path, "n").await;
        let err = pages(&mut src, &spec(&[("id", KeyType::Integer)], &["v"], 10))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Read(_)));
        assert_eq!(err.to_string(), "key column `id` is empty in the first row");

        let mut src = open_table(&path, "e").await;
        let err = pages(&mut src, &spec(&[("code", KeyType::Text)], &["v"], 10))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "key column `code` is empty in the first row");

        // 'two' casts to 0, so it sorts first.
        let mut src = open_table(&path, "x").await;
        let err = pages(&mut src, &spec(&[("id", KeyType::Integer)], &["v"], 10))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "key column `id` in the first row: key \"two\" is not an integer"
        );
    }

    #[tokio::test]
    async fn an_empty_key_after_the_first_page_names_the_last_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (a INTEGER, b TEXT);
             INSERT INTO t VALUES (1, 'x'), (2, 'x'), (3, 'x'), (4, '');",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let spec = spec(&[("a", KeyType::Integer), ("b", KeyType::Text)], &[], 2);
        let err = pages(&mut src, &spec).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "key column `b` is empty in row after key (3, \"x\")"
        );
    }

    #[tokio::test]
    async fn fetch_reads_many_keys_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1200)
             INSERT INTO t SELECT i, i * 2 FROM s;",
        )
        .await;
        let mut src = open_table(&path, "t").await;
        let spec = spec(&[("id", KeyType::Integer)], &["v"], 100);
        let wanted: Vec<Key> = (0..=1300).rev().filter(|i| i % 2 == 1).map(ikey).collect();
        let got = src.fetch(&spec, &wanted).await.unwrap();
        assert_eq!(got.len(), 600);
        assert!(got.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(
            got[0],
            Row {
                key: ikey(1),
                values: vec![Value::Int(2)]
            }
        );
        assert!(src.fetch(&spec, &[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_table_or_column_is_a_schema_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_db(
            dir.path(),
            "a.db",
            "CREATE TABLE orders (id INTEGER, total REAL);",
        )
        .await;
        let err = SqliteSource::open(&config(&path, table("nope"), None))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Schema(_)));
        assert_eq!(err.to_string(), "table `nope` not found");

        let err = SqliteSource::open(&config(&path, table("main.nope"), None))
            .await
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "table `main.nope` not found");
        assert!(
            SqliteSource::open(&config(&path, table("main.orders"), None))
                .await
                .is_ok()
        );

        let mut src = open_table(&path, "orders").await;
        let err = src
            .scan(&spec(&[("id", KeyType::Integer)], &["total", "price"], 10))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Schema(_)));
        assert_eq!(
            err.to_string(),
            "column `price` not found in table `orders` (columns: id, total)"
        );
        let err = src
            .fetch(&spec(&[("ID", KeyType::Integer)], &[], 10), &[ikey(1)])
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("column `ID` not found"), "{err}");

        let cfg = config(&path, SqlTarget::Query("SELECT * FROM missing".into()), None);
        let err = SqliteSource::open(&cfg).await.err().unwrap();
        assert_eq!(err.to_string(), "query failed: no such table: missing");
    }

    #[tokio::test]
    async fn a_missing_file_or_a_file_that_is_not_a_database_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        let err = SqliteSource::open(&config(&missing, table("t"), None))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Open(_)));
        let prefix = format!("cannot open {}: ", missing.display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
        assert!(!missing.exists(), "opening must not create the file");

        let garbage = dir.path().join("garbage.db");
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&garbage, bytes).unwrap();
        let err = SqliteSource::open(&config(&garbage, table("t"), None))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Open(_)));
        assert_eq!(
            err.to_string(),
            format!("{} is not an SQLite database", garbage.display())
        );
    }

    #[test]
    fn declared_type_names_follow_affinity_like_rules() {
        use FieldType::*;
        let cases = [
            ("bool", Some(Bool)),
            ("TIMESTAMP WITH TIME ZONE", Some(Timestamp)),
            ("date", Some(Date)),
            ("TIME", Some(Time)),
            ("uuid", Some(Uuid)),
            ("jsonb", Some(Json)),
            ("UNSIGNED BIG INT", Some(Integer)),
            ("NVARCHAR(10)", Some(Text)),
            ("blob", Some(Bytes)),
            ("FLOAT", Some(Float)),
            ("numeric(5)", Some(Decimal)),
            ("", None),
            ("STRING", None),
        ];
        for (declared, want) in cases {
            assert_eq!(field_type_for_declared(declared), want, "{declared}");
        }
        assert_eq!(Affinity::of("VARCHAR"), Affinity::Text);
        assert_eq!(Affinity::of(""), Affinity::Blob);
        assert_eq!(Affinity::of("DECIMAL"), Affinity::Numeric);
        assert!(!Affinity::of("BIGINT").needs_cast(KeyType::Integer));
        assert!(Affinity::of("TEXT").needs_cast(KeyType::Integer));
    }
}
