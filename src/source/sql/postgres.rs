//! PostgreSQL, through a small read-only pool, with the shared keyset statements:
//! `$n` placeholders, text keys ordered `COLLATE "C"` (byte order), every column read as
//! text (`CAST(.. AS text)`, which also drops `char(n)` pad spaces; bytes as hex).
//!
//! Key order and indexes: an integer key is ordered by the bare column, so its index
//! serves every page. A text key must be ordered byte-wise, and `ORDER BY k COLLATE "C"`
//! can only be served by an index whose column (or index definition) is collated `"C"`;
//! a column in the database's default collation is ordered by the bare column only when
//! that default is itself byte order (`C`/`POSIX`, or the builtin `C.UTF-8`). Any other
//! text key (an `en_US.UTF-8` or ICU default, or `C.UTF-8` from libc, whose order recon
//! cannot vouch for) is sorted by the server for each page: give such a key column
//! `COLLATE "C"`, or an index `ON t (k COLLATE "C")`, to page it by index.
//!
//! A scan's statements run as `COPY (<statement>) TO STDOUT (FORMAT binary)`, which
//! spares the driver's per-row work. `COPY` takes no bound parameters, and values are
//! never spliced into SQL: the statement's parameters are first bound to a
//! `set_config` on the same connection, and the statement reads them back with
//! `current_setting` (see [`session_settings`]).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgTypeKind};
use sqlx::{Column as _, ConnectOptions, Connection, Executor, Row as _, TypeInfo};

use super::binary::{CopyItem, copy_header, copy_tuple};
use super::server::{
    BatchBuilder, Decoder, Engine, Kind, MAX_CONNECTIONS, OUTPUT_PREFIX, RawRow, RunError,
    STATEMENT_TIMEOUT_SECS, ServerColumn, ServerSource, Streamed, Wire, connect_error, error_message,
    map_columns, on_server, run_error,
};
use super::{Dialect, KeyColumn, Param, QUERY_ALIAS, Statement, trim_query};
use crate::job::{SqlServerConfig, SqlTarget};
use crate::source::{Key, KeyPart, KeyType, SourceError};
use tokio::sync::mpsc;

const DEFAULT_PORT: u16 = 5432;

/// A PostgreSQL source.
pub type PostgresSource = ServerSource<Postgres>;

/// PostgreSQL's spelling of the shared statements.
#[derive(Clone, Debug)]
pub struct PgDialect {
    kinds: HashMap<String, Kind>,
    text_order: HashMap<String, TextOrder>,
    nulls_first: bool,
    /// For a streamed scan, its key columns: columns are then read in the binary forms
    /// of [`stream_wire`] instead of all as text, and parameters from session settings
    /// (the statement runs inside a `COPY`).
    binary: Option<Vec<String>>,
}

/// How a text key column is put in byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrder {
    /// Its collation already is byte order (`C`/`POSIX`, or a byte-order database
    /// default): the bare column, which its index serves.
    Bare,
    /// A collatable text type: `col COLLATE "C"` (served by an index collated `"C"`).
    CollateC,
    /// Anything else (an enum, `citext`, another user-defined type) is ordered by its
    /// text: `CAST(col AS text) COLLATE "C"`.
    Cast,
}

impl PgDialect {
    /// A dialect for columns of the given kinds and text orders; `nulls_first` when a
    /// key column may hold NULL. (The engine builds it from the catalog; this is for
    /// inspecting the statements recon writes.)
    pub fn new(
        kinds: HashMap<String, Kind>,
        text_order: HashMap<String, TextOrder>,
        nulls_first: bool,
    ) -> PgDialect {
        PgDialect {
            kinds,
            text_order,
            nulls_first,
            binary: None,
        }
    }
}

/// How a streamed scan reads a PostgreSQL column of `kind` (`is_key` for a key column):
/// integers, decimals, UUIDs and bytes in their binary forms (and, outside the key,
/// floating-point numbers, booleans and `timestamptz`), everything else as its text cast. Each binary
/// form decodes to exactly the value its text would (see [`super::binary`]).
pub fn stream_wire(kind: Kind, is_key: bool) -> Wire {
    match kind {
        Kind::Integer => Wire::Int8,
        Kind::Decimal => Wire::Numeric,
        Kind::Uuid => Wire::Uuid,
        Kind::Bytes => Wire::Bytea,
        Kind::Float if !is_key => Wire::Float8,
        Kind::Float32 if !is_key => Wire::Float4,
        Kind::Bool if !is_key => Wire::Bool,
        Kind::TimestampTz if !is_key => Wire::TimestampTz,
        _ => Wire::Text,
    }
}

/// The session setting the `index`-th parameter of a scan's statement is passed in.
fn setting_name(index: usize) -> String {
    format!("recon.p{index}")
}

/// The statement that passes a scan statement's parameters to the `COPY` it runs in:
/// `SELECT set_config('recon.p1', $1, false), ...`, each value bound as text (an integer
/// in decimal), read back by the statement as `current_setting('recon.p1')` (cast to
/// `bigint` for an integer). The settings last for the session, and each `COPY` is
/// preceded by the statement setting every parameter it reads, on its connection.
pub fn session_settings(params: &[Param]) -> Statement {
    let calls: Vec<String> = (1..=params.len())
        .map(|i| format!("set_config('{}', ${i}, false)", setting_name(i)))
        .collect();
    Statement {
        sql: format!("SELECT {}", calls.join(", ")),
        params: params
            .iter()
            .map(|p| match p {
                Param::Int(i) => Param::Text(i.to_string()),
                Param::Text(s) => Param::Text(s.clone()),
            })
            .collect(),
    }
}

/// A scan's statement as the `COPY` that streams its rows in binary.
pub fn copy_statement(sql: &str) -> String {
    // On lines of their own, so that a `--` comment in the job's SQL ends at its line.
    format!("COPY (\n{sql}\n) TO STDOUT (FORMAT binary)")
}

impl Dialect for PgDialect {
    fn placeholder(&self, index: usize) -> String {
        format!("${index}")
    }

    fn param_expr(&self, index: usize, param: &Param) -> String {
        if self.binary.is_none() {
            return self.placeholder(index);
        }
        // The same types a bound `i64` (int8) and `String` (text) have, so that the
        // statement is typed, planned and served by an index exactly as with `$n`.
        let setting = format!("current_setting('{}')", setting_name(index));
        match param {
            Param::Int(_) => format!("CAST({setting} AS bigint)"),
            Param::Text(_) => setting,
        }
    }

    fn key_expr(&self, column: &str, ty: KeyType, cast: bool) -> String {
        match (ty, cast) {
            (KeyType::Integer, false) => column.to_owned(),
            (KeyType::Integer, true) => format!("CAST({column} AS bigint)"),
            (KeyType::Text, false) => format!("{column} COLLATE \"C\""),
            (KeyType::Text, true) => format!("CAST({column} AS text) COLLATE \"C\""),
            (KeyType::Uuid, _) => format!("lower(CAST({column} AS text)) COLLATE \"C\""),
        }
    }

    fn key_column_expr(&self, column: &str, key: &KeyColumn) -> String {
        if key.ty != KeyType::Text {
            return self.key_expr(column, key.ty, key.cast);
        }
        match self.kinds.get(&key.name) {
            // Binary keys key by the text their bytes spell, in byte order.
            Some(Kind::Bytes) => format!("convert_from({column}, 'UTF8') COLLATE \"C\""),
            Some(Kind::Text) => match self.text_order.get(&key.name) {
                Some(TextOrder::Bare) => column.to_owned(),
                Some(TextOrder::CollateC) | None => format!("{column} COLLATE \"C\""),
                Some(TextOrder::Cast) => format!("CAST({column} AS text) COLLATE \"C\""),
            },
            _ => self.key_expr(column, key.ty, key.cast),
        }
    }

    fn select_expr(&self, column: &str, name: &str) -> String {
        let kind = self.kinds.get(name).copied();
        let expr = match (&self.binary, kind) {
            (Some(key), Some(kind)) => {
                let ty = match stream_wire(kind, key.iter().any(|k| k == name)) {
                    Wire::Int8 => "bigint",
                    Wire::Numeric => "numeric",
                    Wire::Uuid => "uuid",
                    Wire::Bytea => "bytea",
                    Wire::Float8 => "double precision",
                    Wire::Float4 => "real",
                    Wire::Bool => "boolean",
                    Wire::TimestampTz => "timestamptz",
                    Wire::Text | Wire::Hex => "text",
                };
                format!("CAST({column} AS {ty})")
            }
            (None, Some(Kind::Bytes)) => format!("encode({column}, 'hex')"),
            _ => format!("CAST({column} AS text)"),
        };
        // An alias of its own: `ORDER BY "id"` must mean the column, not this text.
        format!(
            "{expr} AS {}",
            super::quote_name(&format!("{OUTPUT_PREFIX}{name}"))
        )
    }

    fn one_of(&self, expr: &str, parts: &[&KeyPart], bind: &mut dyn FnMut(Param) -> String) -> String {
        // One array parameter instead of a list of placeholders: PostgreSQL plans a list
        // of 2,000 values several times slower than it reads their rows. Integers come as
        // a bigint[] literal, which the server reads several times faster than jsonb.
        let ints: Option<Vec<String>> = parts
            .iter()
            .map(|part| match part {
                KeyPart::Int(i) => Some(i.to_string()),
                KeyPart::Text(_) => None,
            })
            .collect();
        if let Some(ints) = ints {
            let placeholder = bind(Param::Text(format!("{{{}}}", ints.join(","))));
            return format!("{expr} = ANY(CAST({placeholder} AS bigint[]))");
        }
        let values: Vec<serde_json::Value> = parts
            .iter()
            .map(|part| match part {
                KeyPart::Int(i) => serde_json::Value::from(*i),
                KeyPart::Text(s) => serde_json::Value::from(s.as_str()),
            })
            .collect();
        let placeholder = bind(Param::Text(serde_json::Value::Array(values).to_string()));
        format!("{expr} = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST({placeholder} AS jsonb))))")
    }

    fn order_suffix(&self) -> &'static str {
        // NULLS FIRST would keep a plain index from serving the order: only when needed.
        if self.nulls_first { " NULLS FIRST" } else { "" }
    }
}

/// An open PostgreSQL pool.
pub struct Postgres {
    pool: PgPool,
    /// How each text column is put in byte order, from the catalog.
    text_order: HashMap<String, TextOrder>,
}

#[async_trait]
impl Engine for Postgres {
    type Dialect = PgDialect;
    const NAME: &'static str = "postgres";

    fn dialect(&self, columns: &[ServerColumn], nullable_keys: bool) -> PgDialect {
        PgDialect {
            kinds: columns.iter().map(|c| (c.name.clone(), c.kind)).collect(),
            text_order: self.text_order.clone(),
            nulls_first: nullable_keys,
            binary: None,
        }
    }

    fn stream_dialect(&self, columns: &[ServerColumn], nullable_keys: bool, key: &[String]) -> PgDialect {
        PgDialect {
            binary: Some(key.to_vec()),
            ..self.dialect(columns, nullable_keys)
        }
    }

    fn wire(&self, kind: Kind, is_key: bool) -> Wire {
        stream_wire(kind, is_key)
    }

    fn stream(
        &self,
        statement: Statement,
        decoder: Arc<Decoder>,
        batch: usize,
        after: Option<Key>,
    ) -> mpsc::Receiver<Streamed> {
        let (tx, rx) = mpsc::channel(super::server::STREAM_AHEAD);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            // The task owns the connection: the COPY stream borrows it.
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = tx.send(Streamed::Failed(run_error(&e))).await;
                    return;
                }
            };
            if !copy_rows(&mut conn, &statement, &decoder, batch, after, &tx).await {
                // A COPY not read to its end leaves the connection mid-protocol (and a
                // failed one is likely dead): never hand it to the next statement.
                conn.close_on_drop();
            }
        });
        rx
    }

    async fn prepare(&self, statement: &Statement) -> Result<(), RunError> {
        (&self.pool)
            .prepare(statement.sql.as_str())
            .await
            .map(|_| ())
            .map_err(|e| run_error(&e))
    }
}

/// Streams the rows of a scan statement through `COPY ... (FORMAT binary)` on `conn`,
/// decoded by `decoder` and sent in batches of about `batch` rows, then
/// [`Streamed::End`], or the failure; `after` is the key before the first row, for
/// messages. True when the connection is left ready for another statement.
async fn copy_rows(
    conn: &mut PgConnection,
    statement: &Statement,
    decoder: &Arc<Decoder>,
    batch: usize,
    after: Option<Key>,
    tx: &mpsc::Sender<Streamed>,
) -> bool {
    if !statement.params.is_empty() {
        let settings = session_settings(&statement.params);
        let mut q = sqlx::query(&settings.sql);
        for param in &settings.params {
            if let Param::Text(s) = param {
                q = q.bind(s.as_str());
            }
        }
        if let Err(e) = q.execute(&mut *conn).await {
            let _ = tx.send(Streamed::Failed(run_error(&e))).await;
            return false;
        }
    }
    // COPY goes over the simple query protocol, which runs several `;`-separated
    // statements: preparing the statement first (cached after the first chunk) makes
    // the server refuse a `where` or `query` that is more than one SELECT.
    if let Err(e) = conn.prepare(&statement.sql).await {
        let _ = tx.send(Streamed::Failed(run_error(&e))).await;
        return false;
    }
    let mut chunks = match conn.copy_out_raw(&copy_statement(&statement.sql)).await {
        Ok(chunks) => chunks,
        Err(e) => {
            let _ = tx.send(Streamed::Failed(run_error(&e))).await;
            return false;
        }
    };
    let mut out = BatchBuilder::new(decoder.clone(), batch, after);
    let mut reader = CopyReader::default();
    loop {
        let next = std::future::poll_fn(|cx| chunks.as_mut().poll_next(cx)).await;
        match next {
            Some(Ok(chunk)) => {
                if let Err(e) = reader.feed(&chunk, &mut out) {
                    let _ = tx.send(Streamed::Bad(e)).await;
                    return false;
                }
                if out.is_full() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return false;
                }
            }
            Some(Err(e)) => {
                // Rows read before the failure are good: the scan holds back what may
                // be an incomplete run and resumes after them.
                if !out.is_empty() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return false;
                }
                let _ = tx.send(Streamed::Failed(run_error(&e))).await;
                return false;
            }
            None => {
                if !reader.ended {
                    let message = "the binary COPY stream ended without its trailer";
                    let _ = tx.send(Streamed::Bad(SourceError::Read(message.into()))).await;
                    return false;
                }
                if !out.is_empty() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return false;
                }
                let _ = tx.send(Streamed::End).await;
                return true;
            }
        }
    }
}

/// Splits a binary COPY stream's chunks into tuples and decodes each. A tuple within
/// one chunk is decoded in place; the rare one cut across chunks is gathered in
/// `partial` first (the server sends one chunk per tuple).
#[derive(Default)]
struct CopyReader {
    header: bool,
    ended: bool,
    partial: Vec<u8>,
    /// The current tuple's fields, reused from tuple to tuple.
    fields: Vec<Option<(usize, usize)>>,
}

/// A tuple of a binary COPY stream, as a [`RawRow`].
struct CopyRow<'a> {
    data: &'a [u8],
    fields: &'a [Option<(usize, usize)>],
}

impl RawRow for CopyRow<'_> {
    fn width(&self) -> usize {
        self.fields.len()
    }

    fn cell(&self, index: usize) -> Result<Option<&[u8]>, String> {
        match self.fields.get(index) {
            Some(Some((start, len))) => Ok(Some(&self.data[*start..*start + *len])),
            Some(None) => Ok(None),
            None => Err(format!("no column {index}")),
        }
    }
}

impl CopyReader {
    /// Packs the tuples `chunk` completes into `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut BatchBuilder) -> Result<(), SourceError> {
        if self.partial.is_empty() {
            let used = self.decode(chunk, out)?;
            self.partial.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.partial);
            data.extend_from_slice(chunk);
            let used = self.decode(&data, out)?;
            data.drain(..used);
            self.partial = data;
        }
        Ok(())
    }

    /// Packs the complete items at the start of `data`; returns the bytes they took.
    fn decode(&mut self, data: &[u8], out: &mut BatchBuilder) -> Result<usize, SourceError> {
        let malformed = |e: String| SourceError::Read(format!("malformed COPY data: {e}"));
        let mut at = 0;
        while at < data.len() {
            if self.ended {
                return Err(malformed("data after the trailer".into()));
            }
            if !self.header {
                match copy_header(&data[at..]).map_err(malformed)? {
                    Some(n) => {
                        at += n;
                        self.header = true;
                        continue;
                    }
                    None => break,
                }
            }
            match copy_tuple(&data[at..], &mut self.fields).map_err(malformed)? {
                None => break,
                Some(CopyItem::Trailer) => {
                    at += 2;
                    self.ended = true;
                }
                Some(CopyItem::Tuple(n)) => {
                    let raw = CopyRow {
                        data: &data[at..at + n],
                        fields: &self.fields,
                    };
                    out.push(&raw)?;
                    at += n;
                }
            }
        }
        Ok(at)
    }
}

impl ServerSource<Postgres> {
    /// Connects and learns the table's or query's columns, so that an unreachable
    /// server, a wrong password, a missing table or an unsupported type fails here.
    pub async fn open(config: &SqlServerConfig) -> Result<PostgresSource, SourceError> {
        let url = &config.url;
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| connect_error(url, DEFAULT_PORT, &e))?
            .application_name("recon")
            // A streamed statement reads many pages and may take seconds by design: the
            // driver's "slow statement" warnings would only be noise.
            .disable_statement_logging()
            // Shortest exact text for real and double precision on PostgreSQL 12+ (any
            // value above 0), and enough digits to round-trip (9 and 17) before 12. The
            // driver sends its own setting (2) as a startup parameter, which would
            // override one given in `options`.
            .extra_float_digits(3)
            .options([
                ("statement_timeout", format!("{}s", STATEMENT_TIMEOUT_SECS)),
                ("default_transaction_read_only", "on".to_owned()),
                ("TimeZone", "UTC".to_owned()),
                ("DateStyle", "ISO".to_owned()),
                ("bytea_output", "hex".to_owned()),
            ]);
        // One direct connection first: a pool retries a refused connection until its
        // acquire timeout, which would hide the reason.
        let probe = options
            .connect()
            .await
            .map_err(|e| connect_error(url, DEFAULT_PORT, &e))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(15))
            .connect_lazy_with(options);
        let (described, text_order) = match &config.target {
            SqlTarget::Table(table) => table_columns(&pool, table)
                .await
                .map_err(|e| on_server(e, url, DEFAULT_PORT))?,
            SqlTarget::Query(query) => query_columns(&pool, query).await?,
        };
        let columns = map_columns(described);
        Ok(ServerSource::new(Postgres { pool, text_order }, config, columns))
    }
}

/// Catalog rows `(name, data_type, column_type, nullable)`, and how each text column is
/// put in byte order.
type Described = (Vec<(String, String, String, bool)>, HashMap<String, TextOrder>);

/// A table's columns from information_schema: `(name, data_type, "", nullable)`, and
/// each text column's order from its collation.
async fn table_columns(pool: &PgPool, table: &str) -> Result<Described, SourceError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let rows = sqlx::query(
        "SELECT CAST(c.column_name AS text), CAST(c.data_type AS text), CAST(c.udt_name AS text), \
         CAST(c.is_nullable AS text), CAST(c.collation_name AS text), \
         (SELECT CAST(t.typtype AS text) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
          WHERE n.nspname = c.udt_schema AND t.typname = c.udt_name) \
         FROM information_schema.columns c \
         WHERE c.table_schema = COALESCE($1, current_schema()) AND c.table_name = $2 \
         ORDER BY c.ordinal_position",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(pool)
    .await
    .map_err(|e| {
        SourceError::Schema(format!(
            "cannot read the columns of table `{table}`: {}",
            error_message(&e)
        ))
    })?;
    if rows.is_empty() {
        return Err(SourceError::Schema(format!("table `{table}` not found")));
    }
    let default_is_bytewise = default_collation_is_bytewise(pool).await;
    let mut columns = Vec::with_capacity(rows.len());
    let mut text_order = HashMap::new();
    for r in &rows {
        let get = |i: usize| {
            r.try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let (name, data_type, udt, collation) = (get(0), get(1), get(2), get(4));
        // An array reports `ARRAY`; its element type (`_int4` is int4's array) names it.
        // `USER-DEFINED` is an enum (compared by its label) or `citext`, but also a
        // composite, a range or an extension's type (hstore, geometry): those are named
        // by their own type, which recon does not compare.
        let data_type = if data_type == "ARRAY" {
            format!("{}[]", udt.strip_prefix('_').unwrap_or(&udt))
        } else if data_type == "USER-DEFINED" && get(5) != "e" && udt != "citext" {
            udt.clone()
        } else {
            data_type
        };
        let order = match data_type.as_str() {
            "text" | "character varying" => match collation.as_str() {
                "C" => TextOrder::CollateC,
                "POSIX" => TextOrder::Bare,
                "" if default_is_bytewise => TextOrder::Bare,
                _ => TextOrder::CollateC,
            },
            "character" | "name" => TextOrder::CollateC,
            _ => TextOrder::Cast,
        };
        text_order.insert(name.clone(), order);
        columns.push((name, data_type, String::new(), get(3) != "NO"));
    }
    Ok((columns, text_order))
}

/// Whether the database's default collation orders text byte-wise: libc `C` or
/// `POSIX`, or (PostgreSQL 17) the builtin provider's `C` or `C.UTF-8`. Unknown counts
/// as no, which only costs a sort.
async fn default_collation_is_bytewise(pool: &PgPool) -> bool {
    // Through jsonb, so that columns a server version lacks read as NULL.
    let row = sqlx::query(
        "SELECT CAST(datcollate AS text), to_jsonb(d) ->> 'datlocprovider', \
         to_jsonb(d) ->> 'datlocale' FROM pg_database AS d WHERE datname = current_database()",
    )
    .fetch_optional(pool)
    .await;
    let Ok(Some(row)) = row else {
        return false;
    };
    let get = |i: usize| row.try_get_unchecked::<Option<String>, _>(i).ok().flatten();
    match get(1).as_deref() {
        None | Some("c") => matches!(get(0).as_deref(), Some("C" | "POSIX")),
        Some("b") => matches!(get(2).as_deref(), Some("C" | "C.UTF-8")),
        Some(_) => false,
    }
}

/// A custom query's columns, as the server describes `SELECT * FROM (<query>) AS recon_q`
/// (no collations: text keys are ordered `COLLATE "C"`). An enum reports its own name
/// and a domain its base type's.
async fn query_columns(pool: &PgPool, query: &str) -> Result<Described, SourceError> {
    let sql = format!("SELECT * FROM (\n{}\n) AS {QUERY_ALIAS}", trim_query(query));
    let described = pool
        .describe(&sql)
        .await
        .map_err(|e| SourceError::Schema(format!("query failed: {}", error_message(&e))))?;
    let mut columns = Vec::with_capacity(described.columns().len());
    let mut text_order = HashMap::new();
    for (i, c) in described.columns().iter().enumerate() {
        let type_name = described_type(c.type_info());
        let order = match type_name.as_str() {
            "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" => TextOrder::CollateC,
            _ => TextOrder::Cast,
        };
        text_order.insert(c.name().to_owned(), order);
        columns.push((
            c.name().to_owned(),
            type_name,
            String::new(),
            described.nullable(i).unwrap_or(true),
        ));
    }
    Ok((columns, text_order))
}

/// The type name [`Kind::of`] decides by: a domain's base type, `enum` for any enum.
fn described_type(info: &sqlx::postgres::PgTypeInfo) -> String {
    match info.kind() {
        PgTypeKind::Enum(_) => "enum".to_owned(),
        PgTypeKind::Domain(base) => described_type(base),
        _ => info.name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sql::{KeyColumn, KeysetQuery};
    use crate::source::{Key, KeyPart};

    fn key(name: &str, ty: KeyType, cast: bool) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            ty,
            cast,
        }
    }

    #[test]
    fn text_keys_are_ordered_by_the_bare_column_only_when_it_is_byte_order() {
        let kinds = [
            ("plain", Kind::Text),
            ("c", Kind::Text),
            ("mood", Kind::Text),
            ("raw", Kind::Bytes),
            ("id", Kind::Integer),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
        let order = [
            ("plain", TextOrder::Bare),
            ("c", TextOrder::CollateC),
            ("mood", TextOrder::Cast),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_owned(), o))
        .collect();
        let q = KeysetQuery::new(
            PgDialect::new(kinds, order, false),
            &SqlTarget::Table("t".into()),
            None,
            &[
                key("plain", KeyType::Text, false),
                key("c", KeyType::Text, false),
                key("mood", KeyType::Text, false),
                key("raw", KeyType::Text, true),
                key("id", KeyType::Integer, false),
            ],
            &[],
            &[],
        );
        let after = Key(vec![
            KeyPart::Text("a".into()),
            KeyPart::Text("b".into()),
            KeyPart::Text("c".into()),
            KeyPart::Text("d".into()),
            KeyPart::Int(1),
        ]);
        let s = q.page(Some(&after), 10);
        let order_by = "ORDER BY \"plain\", \"c\" COLLATE \"C\", CAST(\"mood\" AS text) COLLATE \"C\", \
                        convert_from(\"raw\", 'UTF8') COLLATE \"C\", \"id\" LIMIT $6";
        assert!(s.sql.ends_with(order_by), "{}", s.sql);
        assert!(
            s.sql.contains("encode(\"raw\", 'hex') AS \"recon_out_raw\""),
            "{}",
            s.sql
        );
        assert!(s.sql.contains(") > ($1, $2, $3, $4, $5)"), "{}", s.sql);
    }

    #[test]
    fn streamed_statements_read_their_parameters_from_session_settings() {
        let kinds: HashMap<String, Kind> = [("id", Kind::Integer), ("code", Kind::Text), ("v", Kind::Text)]
            .into_iter()
            .map(|(n, k)| (n.to_owned(), k))
            .collect();
        let dialect = PgDialect {
            binary: Some(vec!["id".into(), "code".into()]),
            ..PgDialect::new(kinds, HashMap::new(), false)
        };
        let q = KeysetQuery::new(
            dialect,
            &SqlTarget::Table("s.t".into()),
            None,
            &[
                key("id", KeyType::Integer, false),
                key("code", KeyType::Text, false),
            ],
            &["v".into()],
            &[],
        );
        let s = q.page(
            Some(&Key(vec![KeyPart::Int(7), KeyPart::Text("it's".into())])),
            10,
        );
        assert!(!s.sql.contains('$'), "{}", s.sql);
        assert!(!s.sql.contains("it's"), "{}", s.sql);
        assert!(
            s.sql.contains(
                "WHERE (\"id\", \"code\" COLLATE \"C\") > (CAST(current_setting('recon.p1') AS bigint), \
                 current_setting('recon.p2')) ORDER BY \"id\", \"code\" COLLATE \"C\" \
                 LIMIT CAST(current_setting('recon.p3') AS bigint)"
            ),
            "{}",
            s.sql
        );
        let settings = session_settings(&s.params);
        assert_eq!(
            settings.sql,
            "SELECT set_config('recon.p1', $1, false), set_config('recon.p2', $2, false), \
             set_config('recon.p3', $3, false)"
        );
        assert_eq!(
            settings.params,
            vec![
                Param::Text("7".into()),
                Param::Text("it's".into()),
                Param::Text("10".into())
            ]
        );
        assert_eq!(
            copy_statement("SELECT 1"),
            "COPY (\nSELECT 1\n) TO STDOUT (FORMAT binary)"
        );
    }

    #[test]
    fn keys_read_again_come_as_one_array_parameter_integers_as_bigint() {
        let kinds: HashMap<String, Kind> = [("id", Kind::Integer), ("code", Kind::Text), ("v", Kind::Text)]
            .into_iter()
            .map(|(n, k)| (n.to_owned(), k))
            .collect();
        let query = |key_column: KeyColumn| {
            let dialect = PgDialect {
                binary: Some(vec![key_column.name.clone()]),
                ..PgDialect::new(kinds.clone(), HashMap::new(), false)
            };
            KeysetQuery::new(
                dialect,
                &SqlTarget::Table("t".into()),
                None,
                &[key_column],
                &["v".into()],
                &[],
            )
        };
        let ints = query(key("id", KeyType::Integer, false))
            .any_of(&[&Key(vec![KeyPart::Int(-3)]), &Key(vec![KeyPart::Int(42)])]);
        assert!(
            ints.sql.contains(
                "WHERE \"id\" = ANY(CAST(current_setting('recon.p1') AS bigint[])) ORDER BY \"id\""
            ),
            "{}",
            ints.sql
        );
        assert_eq!(ints.params, [Param::Text("{-3,42}".into())]);
        let texts = query(key("code", KeyType::Text, false)).any_of(&[
            &Key(vec![KeyPart::Text("a,b".into())]),
            &Key(vec![KeyPart::Text("it's \"{}\"".into())]),
        ]);
        assert!(
            texts.sql.contains(
                "\"code\" COLLATE \"C\" = ANY(ARRAY(SELECT \
                 jsonb_array_elements_text(CAST(current_setting('recon.p1') AS jsonb))))"
            ),
            "{}",
            texts.sql
        );
        assert_eq!(texts.params, [Param::Text(r#"["a,b","it's \"{}\""]"#.into())]);
    }

    /// A binary COPY stream of `(id bigint, tag text, amount numeric)` tuples.
    fn copy_stream(rows: &[(i64, Option<&str>)]) -> Vec<u8> {
        let mut b = crate::source::sql::binary::COPY_SIGNATURE.to_vec();
        b.extend_from_slice(&[0; 8]);
        for (id, tag) in rows {
            b.extend_from_slice(&3i16.to_be_bytes());
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&id.to_be_bytes());
            match tag {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(t) => {
                    b.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    b.extend_from_slice(t.as_bytes());
                }
            }
            // 12.50: one digit group before the point, one after, scale 2.
            b.extend_from_slice(&12i32.to_be_bytes());
            for w in [2u16, 0, 0, 2, 12, 5000] {
                b.extend_from_slice(&w.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b
    }

    fn read_chunks(
        decoder: &Decoder,
        chunks: &[&[u8]],
    ) -> Result<(Vec<crate::source::Row>, bool), SourceError> {
        let mut reader = CopyReader::default();
        // Batches of one row: every tuple is sent as soon as it is complete.
        let mut out = BatchBuilder::new(Arc::new(decoder.clone()), 1, None);
        let mut rows = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, &mut out)?;
            let batch = out.take();
            rows.extend(batch.rows(0..batch.len())?);
        }
        Ok((rows, reader.ended && reader.partial.is_empty()))
    }

    #[test]
    fn copy_tuples_cut_anywhere_across_chunks_decode_the_same() {
        use crate::source::{Row, Value};
        let decoder = Decoder::for_test(
            &[("id", KeyType::Integer, Kind::Integer, Wire::Int8)],
            &[
                ("tag", Kind::Text, Wire::Text),
                ("amount", Kind::Decimal, Wire::Numeric),
            ],
        );
        let data = copy_stream(&[(1, Some("a")), (2, None), (3, Some("été"))]);
        let row = |id: i64, tag: Value| Row {
            key: Key(vec![KeyPart::Int(id)]),
            values: vec![tag, Value::Decimal("12.50".into())],
        };
        let expected = vec![
            row(1, Value::Text("a".into())),
            row(2, Value::Null),
            row(3, Value::Text("été".into())),
        ];
        assert_eq!(read_chunks(&decoder, &[&data]).unwrap(), (expected.clone(), true));
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                read_chunks(&decoder, &[a, b]).unwrap(),
                (expected.clone(), true),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(read_chunks(&decoder, &bytes).unwrap(), (expected, true));
        // Without its trailer the stream is not over; data after it is refused.
        let (_, ended) = read_chunks(&decoder, &[&data[..data.len() - 2]]).unwrap();
        assert!(!ended);
        let mut extra = data.clone();
        extra.push(0);
        assert!(read_chunks(&decoder, &[&extra]).is_err());
        // A tuple of the wrong width fails to decode, naming where.
        let two = Decoder::for_test(
            &[("id", KeyType::Integer, Kind::Integer, Wire::Int8)],
            &[("tag", Kind::Text, Wire::Text)],
        );
        let err = read_chunks(&two, &[&data]).unwrap_err();
        assert!(
            err.to_string().contains("3 columns returned in the first row"),
            "{err}"
        );
    }
}
