//! What the database-server backends (PostgreSQL, MySQL/MariaDB) share: the column
//! catalog mapped to compared types, and a [`Source`] over any [`Engine`] built on the
//! shared keyset statements.
//!
//! A scan streams: each statement (`key > last ORDER BY key LIMIT n`, `n` a few pages)
//! is read row by row as the server sends it, on a task of its own, decoded straight
//! into rows, and handed out page by page; a dropped connection resumes from the last
//! key handed out (see [`STREAM_PAGES`] and the scan's state machine). Re-reads by key
//! (the recheck) stream the same way, a statement of [`FETCH_BATCH`] keys at a time,
//! read again from its start if its connection fails.
//!
//! Columns arrive as text (the dialect casts them in SQL, bytes as hex) or, where an
//! engine says so, in a binary form that decodes to exactly the same value (see
//! [`Wire`]): numerics never pass through a float, and the declared types tell
//! `compare` how to normalize.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Dialect, KeyColumn, KeysetQuery, Statement, binary};
use crate::job::{RedactedUrl, SqlServerConfig, SqlTarget};
use crate::source::batch::{CellEncoding, RowBatch, RowCodec};
use crate::source::{
    Column, FieldType, Key, KeyPart, KeyType, Row, ScanSpec, Source, SourceError, Value, key_bytes,
};

/// Keys read by one statement in [`Source::fetch`].
const FETCH_BATCH: usize = 2000;

/// What a re-read by key reads, in its messages.
const REREAD_PLACE: &str = "rows again by key";

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
    /// timestamp (without time zone), DATETIME, MySQL's TIMESTAMP.
    Timestamp,
    /// PostgreSQL's timestamptz, which streams as a binary instant.
    TimestampTz,
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
            Kind::Timestamp | Kind::TimestampTz => FieldType::Timestamp,
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
            "timestamp" | "timestamp without time zone" | "datetime" => Kind::Timestamp,
            "timestamp with time zone" | "timestamptz" => Kind::TimestampTz,
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

    /// Prepares a statement without running it: the server parses and plans it, and
    /// refuses more than one statement.
    async fn prepare(&self, statement: &Statement) -> Result<(), RunError>;

    /// The dialect a streamed scan is read in: [`Engine::dialect`] unless the engine
    /// reads some columns in a native form (see [`Engine::wire`]); `key` names the
    /// scan's key columns.
    fn stream_dialect(
        &self,
        columns: &[ServerColumn],
        nullable_keys: bool,
        _key: &[String],
    ) -> Self::Dialect {
        self.dialect(columns, nullable_keys)
    }

    /// How a column of `kind` arrives in a streamed scan (`is_key` for a key column):
    /// by default as the text [`Engine::dialect`] casts it to, bytes as hex.
    fn wire(&self, kind: Kind, _is_key: bool) -> Wire {
        if kind == Kind::Bytes {
            Wire::Hex
        } else {
            Wire::Text
        }
    }

    /// Starts streaming the rows of `statement` (in the stream dialect), decoded by
    /// `decoder`, in batches of up to `batch` rows; `after` is the key the statement
    /// reads after, for messages. The stream ends with [`Streamed::End`], or with
    /// [`Streamed::Failed`] or [`Streamed::Bad`]; dropping the receiver abandons it.
    fn stream(
        &self,
        statement: Statement,
        decoder: Arc<Decoder>,
        batch: usize,
        after: Option<Key>,
    ) -> mpsc::Receiver<Streamed>;
}

/// How a cell of a streamed row arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Text, decoded by the column's kind.
    Text,
    /// Bytes as hex text.
    Hex,
    /// PostgreSQL binary `bigint`.
    Int8,
    /// PostgreSQL binary `double precision`.
    Float8,
    /// PostgreSQL binary `real`.
    Float4,
    /// PostgreSQL binary `boolean`.
    Bool,
    /// PostgreSQL binary `numeric`.
    Numeric,
    /// PostgreSQL binary `uuid`.
    Uuid,
    /// PostgreSQL binary `bytea`: the bytes themselves.
    Bytea,
    /// PostgreSQL binary `timestamptz`.
    TimestampTz,
}

/// A row of a streamed statement: its cells in the engine's wire form, NULL as `None`.
pub trait RawRow {
    /// The number of cells.
    fn width(&self) -> usize;
    /// The cell at `index`.
    fn cell(&self, index: usize) -> Result<Option<&[u8]>, String>;
}

impl RawRow for Vec<Option<Vec<u8>>> {
    fn width(&self) -> usize {
        self.len()
    }
    fn cell(&self, index: usize) -> Result<Option<&[u8]>, String> {
        self.get(index)
            .map(|c| c.as_deref())
            .ok_or_else(|| format!("no column {index}"))
    }
}

/// What a stream sends: rows, then its end or why it stopped.
#[derive(Debug)]
pub enum Streamed {
    /// Packed rows, in the order the server sent them.
    Rows(RowBatch),
    /// The statement delivered all its rows.
    End,
    /// The statement failed (transient when a fresh connection may succeed).
    Failed(RunError),
    /// A row could not be decoded.
    Bad(SourceError),
}

/// Decodes the rows of one scan's statements: the key columns first, then the scan's
/// columns, each cell by its wire form and kind.
#[derive(Clone, Debug)]
pub struct Decoder {
    key: Vec<String>,
    key_types: Vec<KeyType>,
    key_kinds: Vec<Kind>,
    key_wires: Vec<Wire>,
    columns: Vec<String>,
    kinds: Vec<Kind>,
    wires: Vec<Wire>,
}

/// Why a key cell cannot be a key part.
enum KeyFault {
    /// NULL or empty.
    Empty,
    /// Anything else, said in the message.
    Bad(String),
}

impl Decoder {
    /// Cells in a row: the key columns, then the scan's columns.
    pub fn width(&self) -> usize {
        self.key.len() + self.columns.len()
    }

    /// Packs one row into `batch`: its key checked and encoded, the scan's cells copied
    /// as they arrived (they are decoded only if the row is ever needed as a [`Row`]).
    /// `after` is the key before the batch, to say where a bad row is; `key` is a
    /// reused buffer.
    pub fn pack<R: RawRow + ?Sized>(
        &self,
        raw: &R,
        batch: &mut RowBatch,
        after: Option<&Key>,
        key: &mut Vec<u8>,
    ) -> Result<(), SourceError> {
        let place = |batch: &RowBatch| match batch.last_key().map(key_bytes::decode) {
            Some(Ok(k)) => format!("in row after key {k}"),
            _ => match after {
                Some(k) => format!("in row after key {k}"),
                None => "in the first row".into(),
            },
        };
        let width = self.width();
        if raw.width() != width {
            return Err(SourceError::Read(format!(
                "{} columns returned {}, expected {width}",
                raw.width(),
                place(batch),
            )));
        }
        let cell_error = |i: usize, e: String, batch: &RowBatch| {
            SourceError::Read(format!("column {i} {}: {e}", place(batch)))
        };
        key.clear();
        for (i, name) in self.key.iter().enumerate() {
            let cell = raw.cell(i).map_err(|e| cell_error(i, e, batch))?;
            self.push_key_part(i, cell, key).map_err(|fault| {
                SourceError::Read(match fault {
                    KeyFault::Empty => format!("key column `{name}` is empty {}", place(batch)),
                    KeyFault::Bad(e) => format!("key column `{name}` {}: {e}", place(batch)),
                })
            })?;
        }
        batch
            .begin_row(key)
            .map_err(|e| SourceError::Read(format!("{e} {}", place(batch))))?;
        for i in self.key.len()..width {
            let pushed = match raw.cell(i) {
                Ok(cell) => batch.push_cell(cell),
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                batch.abandon_row();
                return Err(cell_error(i, e, batch));
            }
        }
        Ok(())
    }

    /// Appends key column `i`'s part, read from its cell, to `out`.
    fn push_key_part(&self, i: usize, cell: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), KeyFault> {
        let (ty, kind, wire) = (self.key_types[i], self.key_kinds[i], self.key_wires[i]);
        let Some(bytes) = cell else {
            return Err(KeyFault::Empty);
        };
        match (wire, ty) {
            (Wire::Int8, KeyType::Integer) => {
                key_bytes::push_int(out, binary::int8(bytes).map_err(KeyFault::Bad)?);
            }
            (Wire::Text, KeyType::Text) => {
                let text = std::str::from_utf8(bytes).map_err(|_| KeyFault::Bad("not UTF-8 text".into()))?;
                if text.is_empty() {
                    return Err(KeyFault::Empty);
                }
                key_bytes::push_text(out, text);
            }
            _ => {
                let value = key_value(bytes, kind, ty, wire).map_err(KeyFault::Bad)?;
                match KeyPart::from_value(&value, ty) {
                    Ok(part) => key_bytes::push_part(out, &part),
                    Err(_) if value == Value::Text(String::new()) => return Err(KeyFault::Empty),
                    Err(e) => return Err(KeyFault::Bad(e)),
                }
            }
        }
        Ok(())
    }
}

impl RowCodec for Decoder {
    fn value(&self, cell: Option<&[u8]>, col: usize, key: &dyn Fn() -> String) -> Result<Value, SourceError> {
        match cell {
            None => Ok(Value::Null),
            Some(bytes) => wire_value(bytes, self.kinds[col], self.wires[col]).map_err(|e| {
                SourceError::Read(format!(
                    "column `{}` in row with key {}: {e}",
                    self.columns[col],
                    key()
                ))
            }),
        }
    }

    fn encoding(&self, col: usize) -> CellEncoding {
        CellEncoding(((self.kinds[col] as u32) << 8) | self.wires[col] as u32)
    }

    fn identical_cells_equal(&self, col: usize, cell: &[u8], ty: FieldType) -> bool {
        match (self.wires[col], ty) {
            (Wire::TimestampTz, FieldType::Timestamp) => binary::timestamptz_is_plain(cell),
            _ => false,
        }
    }
}

#[cfg(test)]
impl Decoder {
    /// A decoder for key columns `(name, type, kind, wire)` then columns `(name, kind,
    /// wire)`, as [`ServerSource`] prepares one.
    pub(super) fn for_test(key: &[(&str, KeyType, Kind, Wire)], columns: &[(&str, Kind, Wire)]) -> Decoder {
        Decoder {
            key: key.iter().map(|k| k.0.to_owned()).collect(),
            key_types: key.iter().map(|k| k.1).collect(),
            key_kinds: key.iter().map(|k| k.2).collect(),
            key_wires: key.iter().map(|k| k.3).collect(),
            columns: columns.iter().map(|c| c.0.to_owned()).collect(),
            kinds: columns.iter().map(|c| c.1).collect(),
            wires: columns.iter().map(|c| c.2).collect(),
        }
    }
}

/// A key cell as the value its key part is made from: what the column's text would be.
fn key_value(bytes: &[u8], kind: Kind, ty: KeyType, wire: Wire) -> Result<Value, String> {
    let utf8 = |b: Vec<u8>| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string());
    Ok(match wire {
        Wire::Int8 => Value::Int(binary::int8(bytes)?),
        // A binary key keys by the text its bytes spell; a binary UUID key keeps its hex
        // (a UUID key parses 32 hex digits).
        Wire::Bytea if ty == KeyType::Text => Value::Text(utf8(bytes.to_vec())?),
        Wire::Bytea => Value::Text(binary::hex_lower(bytes)),
        Wire::Numeric => Value::Text(binary::numeric(bytes)?),
        Wire::Uuid => Value::Text(binary::uuid(bytes)?),
        Wire::TimestampTz => Value::Text(binary::timestamptz(bytes)?),
        Wire::Hex if kind == Kind::Bytes && ty == KeyType::Text => Value::Text(utf8(unhex(bytes)?)?),
        _ => Value::Text(utf8(bytes.to_vec())?),
    })
}

/// A value cell as the value its kind says it is.
fn wire_value(bytes: &[u8], kind: Kind, wire: Wire) -> Result<Value, String> {
    Ok(match wire {
        Wire::Text | Wire::Hex => return value_of(bytes.to_vec(), kind),
        Wire::Int8 => Value::Int(binary::int8(bytes)?),
        Wire::Float8 => Value::Float(binary::float8(bytes)?),
        Wire::Float4 => {
            let f = binary::float4(bytes)?;
            Value::Float(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
        }
        Wire::Bool => Value::Bool(binary::boolean(bytes)?),
        Wire::Numeric => Value::Decimal(binary::numeric(bytes)?),
        Wire::Uuid => Value::Text(binary::uuid(bytes)?),
        Wire::TimestampTz => Value::Text(binary::timestamptz(bytes)?),
        Wire::Bytea => Value::Bytes(bytes.to_vec()),
    })
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
    /// [`MAX_STREAM_PAGES`], or fewer to test how statements follow one another.
    max_stream_pages: usize,
}

/// Pages the first streamed statement of a scan reads at most. A scan is a series of
/// statements, each streamed as it arrives, so that no statement runs into the
/// statement timeout however large the table. Each statement that completes within
/// [`GROW_WITHIN`] asks for twice as many rows as the one before, up to
/// [`MAX_STREAM_PAGES`] pages: the server plans and starts an index scan once per
/// statement, and the client waits a few round trips between two, which at 1M rows and
/// 8 pages a statement was an eighth of the wall time.
pub const STREAM_PAGES: usize = 8;

/// The most pages one streamed statement reads.
pub const MAX_STREAM_PAGES: usize = 1024;

/// A statement that took longer than this is not followed by a longer one.
const GROW_WITHIN: Duration = Duration::from_secs(30);

/// Decoded batches a streamed statement may have ready ahead of the scan. Measured at
/// 1M rows: 8 was faster run alone but not against the COPY floor in a full benchmark,
/// and it raised peak memory from about 41 to 51 MiB, so the scan stays this lean.
pub const STREAM_AHEAD: usize = 2;

/// Which statement a streamed scan runs next.
#[derive(Debug)]
enum Next {
    /// Rows after the last key handed out, up to the chunk size.
    Page,
    /// The whole run of rows sharing this key (and its bytes), which filled a statement
    /// by itself.
    Equal(Key, Vec<u8>),
}

/// A streamed scan in progress.
///
/// Rows are handed out only once the run of their key is known to be complete: the
/// rows of the last key seen are held back until a row with another key arrives, or
/// the statement that read them ends having returned fewer rows than it asked for.
/// Every row handed out thus has a key at or before `after`, and every row with such a
/// key has been handed out; a statement that fails (or stops at its limit) is resumed
/// with `key > after`, and the rows it held back are read again, whole. A run that fills
/// a statement by itself is read by `key = ?` with no limit. Duplicates are never
/// dropped nor yielded twice, wherever a connection breaks.
struct Scan<D> {
    query: KeysetQuery<D>,
    decoder: Arc<Decoder>,
    page_size: usize,
    /// Rows the current statement asks for, and the most a statement may ask for.
    chunk: usize,
    max_chunk: usize,
    /// When the current statement started.
    started: std::time::Instant,
    /// Rows a streamed batch holds at most (a page; [`BATCH_BYTES`] also bounds it).
    /// Measured at 1M rows: batches of a whole 5,000-row page took about 8% off the wall
    /// time of 1,024-row ones (fewer hand-overs between tasks) for 8 MiB more peak RSS.
    batch: usize,
    /// The bytes of the last key handed out (in `ready` or in a page already yielded).
    after: Option<Vec<u8>>,
    next: Next,
    stream: Option<mpsc::Receiver<Streamed>>,
    /// Rows the current statement has delivered.
    received: usize,
    /// Whether the current statement has completed a run of keys.
    advanced: bool,
    /// The rows of the last key seen, not yet known to be complete.
    held: RowBatch,
    /// Pages ready to be handed out, in key order.
    ready: VecDeque<RowBatch>,
    /// Failed attempts since the scan last made progress.
    failures: u32,
    jitter: Jitter,
    done: bool,
}

/// A key's bytes as a key, for messages.
fn shown(bytes: &[u8]) -> String {
    key_bytes::decode(bytes).map_or_else(|e| format!("(unreadable: {e})"), |k| k.to_string())
}

/// A page that could not take more rows (4 GiB), naming the key whose rows filled it.
fn overfull(key: &[u8]) -> impl FnOnce(String) -> SourceError + '_ {
    move |e| SourceError::Read(format!("{e}: the rows of key {}", shown(key)))
}

impl<D: Dialect> Scan<D> {
    /// The key bytes of the last row handed out or ready.
    fn last_out(&self) -> Option<&[u8]> {
        self.ready
            .back()
            .and_then(RowBatch::last_key)
            .or(self.after.as_deref())
    }

    /// [`Scan::last_out`] decoded, to resume from and for messages.
    fn last_out_key(&self) -> Result<Option<Key>, SourceError> {
        self.last_out()
            .map(|k| {
                key_bytes::decode(k).map_err(|e| SourceError::Read(format!("a packed key is corrupt: {e}")))
            })
            .transpose()
    }

    /// Takes a streamed batch: checks its order, hands on the runs of keys it completes
    /// and holds back the last run until it is known to be complete.
    fn accept(&mut self, mut batch: RowBatch) -> Result<(), SourceError> {
        let order = |later: &[u8], earlier: &[u8]| {
            SourceError::Order(format!("key {} came after key {}", shown(later), shown(earlier)))
        };
        if let Next::Equal(key, bytes) = &self.next {
            for row in 0..batch.len() {
                if batch.key(row) != bytes.as_slice() {
                    let found = shown(batch.key(row));
                    return Err(SourceError::Order(format!(
                        "reading key {key} returned key {found}"
                    )));
                }
                self.held.push_from(&batch, row).map_err(overfull(bytes))?;
            }
            return Ok(());
        }
        let Some(first) = (!batch.is_empty()).then(|| batch.key(0)) else {
            return Ok(());
        };
        match self.held.last_key() {
            Some(last) if first == last => {}
            Some(last) if first < last => return Err(order(first, last)),
            Some(_) => {}
            None => {
                if let Some(p) = self.last_out()
                    && first <= p
                {
                    return Err(order(first, p));
                }
            }
        }
        for row in 1..batch.len() {
            if batch.key(row) < batch.key(row - 1) {
                return Err(order(batch.key(row), batch.key(row - 1)));
            }
        }
        // Rows that continue the held run join it.
        let mut start = 0;
        while start < batch.len() && self.held.last_key() == Some(batch.key(start)) {
            self.held
                .push_from(&batch, start)
                .map_err(overfull(batch.key(start)))?;
            start += 1;
        }
        if start == batch.len() {
            return Ok(());
        }
        batch.skip_front(start);
        if !self.held.is_empty() {
            let complete = std::mem::replace(&mut self.held, batch.empty_like(0));
            self.ready.push_back(complete);
            self.advanced = true;
        }
        let len = batch.len();
        let mut tail = len - 1;
        while tail > 0 && batch.key(tail - 1) == batch.key(len - 1) {
            tail -= 1;
        }
        self.held = batch.split_off(tail).map_err(SourceError::Read)?;
        if !batch.is_empty() {
            self.advanced = true;
            self.ready.push_back(batch);
        }
        Ok(())
    }

    /// Hands on the held rows as complete.
    fn release_held(&mut self) {
        if !self.held.is_empty() {
            let empty = self.held.empty_like(0);
            self.ready.push_back(std::mem::replace(&mut self.held, empty));
        }
    }

    /// The current statement ended after delivering all its rows.
    fn statement_done(&mut self) -> Result<(), SourceError> {
        self.stream = None;
        let filled = matches!(self.next, Next::Page) && self.received >= self.chunk;
        match std::mem::replace(&mut self.next, Next::Page) {
            Next::Equal(..) => self.release_held(),
            Next::Page if self.received < self.chunk => {
                self.release_held();
                self.done = true;
            }
            Next::Page if self.advanced => self.held.clear(),
            Next::Page => {
                if !self.held.is_empty() {
                    let bytes = self.held.key(0).to_vec();
                    self.next = Next::Equal(self.held.decoded_key(0)?, bytes);
                }
                self.held.clear();
            }
        }
        if filled && self.started.elapsed() < GROW_WITHIN {
            self.chunk = self.chunk.saturating_mul(2).min(self.max_chunk);
        }
        Ok(())
    }

    /// The next ready page, of at most `page_size` rows.
    fn take_page(&mut self) -> Result<Option<RowBatch>, SourceError> {
        let Some(front) = self.ready.front_mut() else {
            return Ok(None);
        };
        let page = if front.len() > self.page_size {
            // A long run of one key, held back whole: handed out a page at a time.
            front.take_front(self.page_size).map_err(SourceError::Read)?
        } else {
            match self.ready.pop_front() {
                Some(page) => page,
                None => return Ok(None),
            }
        };
        if let Some(last) = page.last_key() {
            let after = self.after.get_or_insert_with(Vec::new);
            after.clear();
            after.extend_from_slice(last);
        }
        Ok(Some(page))
    }
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
            max_stream_pages: MAX_STREAM_PAGES,
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

    /// Checks the spec against the columns and builds its statements (in the stream
    /// dialect: scans and re-reads by key alike are streamed) and decoder.
    fn prepare(&self, spec: &ScanSpec) -> Result<(KeysetQuery<E::Dialect>, Decoder), SourceError> {
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
        let is_key = |name: &String| spec.key.contains(name);
        let key_wires = key_kinds.iter().map(|k| self.engine.wire(*k, true)).collect();
        let wires = kinds
            .iter()
            .zip(&spec.columns)
            .map(|(k, name)| self.engine.wire(*k, is_key(name)))
            .collect();
        let dialect = self
            .engine
            .stream_dialect(&self.server_columns, nullable_keys, &spec.key);
        let query = KeysetQuery::new(
            dialect,
            &self.target,
            self.filter.as_deref(),
            &key,
            &spec.columns,
            &spec.tiebreak,
        );
        let decoder = Decoder {
            key: spec.key.clone(),
            key_types: spec.key_types.clone(),
            key_kinds,
            key_wires,
            columns: spec.columns.clone(),
            kinds,
            wires,
        };
        Ok((query, decoder))
    }

    /// The statement a scan with `spec` runs for the rows after `after` (from the start
    /// when `None`), exactly as [`Source::next_page`] would send it: for inspecting the
    /// server's plan (`EXPLAIN`). PostgreSQL runs it inside a `COPY`, its parameters
    /// passed as session settings (see [`super::postgres::session_settings`]). Fails
    /// like [`Source::scan`] on an unknown column.
    pub fn page_statement(&self, spec: &ScanSpec, after: Option<&Key>) -> Result<Statement, SourceError> {
        let (query, _) = self.prepare(spec)?;
        Ok(query.page(after, spec.page_size.max(1).saturating_mul(STREAM_PAGES)))
    }

    fn place(after: Option<&Key>) -> String {
        match after {
            Some(k) => format!("after key {k}"),
            None => "from the start".into(),
        }
    }

    /// Warns of a retry of the statement reading `place` (as [`Self::place`] says it).
    fn warn_retry(&self, place: &str, attempt: u32, delay: Duration, error: &RunError) {
        tracing::warn!(
            source = %self.url,
            at = %place,
            attempt,
            max_attempts = MAX_ATTEMPTS,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %self.url.scrub(&error.message),
            "Statement failed on a lost connection; retrying."
        );
    }

    fn exhausted(&self, place: &str, error: &RunError, attempts: u32) -> SourceError {
        let message = self.url.scrub(&error.message);
        SourceError::Read(if error.transient {
            format!("reading {place} failed after {attempts} attempts: {message}")
        } else {
            format!("reading {place} failed: {message}")
        })
    }

    /// Streams a statement (in the stream dialect) to its end and converts its rows: the
    /// recheck reads rows by key the way the scan reads them, in the server's fastest
    /// form. A statement whose connection fails is read again from its start (see
    /// [`retry`]); the rows it had delivered are dropped.
    async fn read_streamed(
        &self,
        statement: &Statement,
        decoder: &Arc<Decoder>,
    ) -> Result<Vec<Row>, SourceError> {
        retry(
            || async {
                let mut stream = self
                    .engine
                    .stream(statement.clone(), decoder.clone(), FETCH_BATCH, None);
                let mut rows = Vec::new();
                loop {
                    match stream.recv().await {
                        Some(Streamed::Rows(batch)) => match batch.rows(0..batch.len()) {
                            Ok(batch) => rows.extend(batch),
                            Err(e) => return Ok(Err(e)),
                        },
                        Some(Streamed::End) => return Ok(Ok(rows)),
                        Some(Streamed::Bad(e)) => return Ok(Err(e)),
                        Some(Streamed::Failed(error)) => return Err(error),
                        None => return Err(RunError::permanent("the reader stopped unexpectedly")),
                    }
                }
            },
            tokio::time::sleep,
            |attempt, delay, error| self.warn_retry(REREAD_PLACE, attempt, delay, error),
        )
        .await
        .map_err(|Exhausted { error, attempts }| self.exhausted(REREAD_PLACE, &error, attempts))?
    }

    /// Drives a streamed scan until a page is ready or the scan ends.
    async fn stream_page(&self, scan: &mut Scan<E::Dialect>) -> Result<Option<RowBatch>, SourceError> {
        loop {
            if let Some(page) = scan.take_page()? {
                return Ok(Some(page));
            }
            if scan.done {
                return Ok(None);
            }
            if scan.stream.is_none() {
                let after = scan.last_out_key()?;
                let statement = match &scan.next {
                    Next::Page => scan.query.page(after.as_ref(), scan.chunk),
                    Next::Equal(key, _) => scan.query.equal(key),
                };
                scan.stream = Some(
                    self.engine
                        .stream(statement, scan.decoder.clone(), scan.batch, after),
                );
                scan.started = std::time::Instant::now();
                scan.received = 0;
                scan.advanced = false;
            }
            let item = match scan.stream.as_mut() {
                Some(stream) => stream.recv().await,
                None => None,
            };
            match item {
                Some(Streamed::Rows(rows)) => {
                    scan.received += rows.len();
                    scan.accept(rows)?;
                    if scan.advanced {
                        scan.failures = 0;
                    }
                }
                Some(Streamed::End) => {
                    scan.failures = 0;
                    scan.statement_done()?;
                }
                Some(Streamed::Bad(e)) => return Err(e),
                Some(Streamed::Failed(error)) => {
                    scan.stream = None;
                    // What this statement held back is read again by the next one.
                    scan.held.clear();
                    scan.failures += 1;
                    let after = scan.last_out_key()?;
                    if !error.transient || scan.failures >= MAX_ATTEMPTS {
                        return Err(self.exhausted(&Self::place(after.as_ref()), &error, scan.failures));
                    }
                    let delay = scan.jitter.below(backoff_ceiling(scan.failures));
                    self.warn_retry(&Self::place(after.as_ref()), scan.failures, delay, &error);
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(SourceError::Read(format!(
                        "reading {} failed: the reader stopped unexpectedly",
                        Self::place(scan.last_out_key()?.as_ref())
                    )));
                }
            }
        }
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

    fn enforces_types(&self) -> bool {
        true
    }

    async fn scan(&mut self, spec: &ScanSpec) -> Result<(), SourceError> {
        self.scan = None;
        let (query, decoder) = self.prepare(spec)?;
        let decoder = Arc::new(decoder);
        let page_size = spec.page_size.max(1);
        self.scan = Some(Scan {
            query,
            held: RowBatch::new(decoder.clone(), decoder.columns.len()),
            decoder,
            page_size,
            chunk: page_size.saturating_mul(STREAM_PAGES),
            max_chunk: page_size.saturating_mul(self.max_stream_pages),
            started: std::time::Instant::now(),
            batch: page_size,
            after: None,
            next: Next::Page,
            stream: None,
            received: 0,
            advanced: false,
            ready: VecDeque::new(),
            failures: 0,
            jitter: Jitter::seeded(),
            done: false,
        });
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        match self.next_batch().await? {
            Some(batch) => batch.rows(0..batch.len()).map(Some),
            None => Ok(None),
        }
    }

    async fn next_batch(&mut self) -> Result<Option<RowBatch>, SourceError> {
        let Some(mut scan) = self.scan.take() else {
            return Err(SourceError::Read("no scan was started".into()));
        };
        let result = self.stream_page(&mut scan).await;
        self.scan = Some(scan);
        result
    }

    fn packs_rows(&self) -> bool {
        true
    }

    async fn fetch(&mut self, spec: &ScanSpec, keys: &[Key]) -> Result<Vec<Row>, SourceError> {
        let (query, decoder) = self.prepare(spec)?;
        let decoder = Arc::new(decoder);
        let mut keys: Vec<&Key> = keys.iter().collect();
        if let Some(k) = keys.iter().find(|k| k.0.len() != decoder.key.len()) {
            return Err(SourceError::Read(format!(
                "key {k} has {} parts, the key has {} columns",
                k.0.len(),
                decoder.key.len()
            )));
        }
        keys.sort();
        keys.dedup();
        let mut rows = Vec::new();
        let statement = |keys: &[&Key]| query.any_of(keys);
        // Two statements at a time, one per pooled connection: the server reads the next
        // keys while the rows of the last arrive.
        for pair in keys.chunks(2 * FETCH_BATCH) {
            let (first, second) = pair.split_at(pair.len().min(FETCH_BATCH));
            let (first, second) = (statement(first), (!second.is_empty()).then(|| statement(second)));
            let (a, b) = tokio::join!(self.read_streamed(&first, &decoder), async {
                match &second {
                    Some(second) => self.read_streamed(second, &decoder).await,
                    None => Ok(Vec::new()),
                }
            });
            rows.extend(a?);
            rows.extend(b?);
        }
        // Stable: rows sharing a key keep the database's (tiebreak) order.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    async fn probe(&mut self, spec: &ScanSpec) -> Result<(), SourceError> {
        let statement = self.page_statement(spec, None)?;
        self.engine.prepare(&statement).await.map_err(|e| {
            SourceError::Schema(format!(
                "the {} does not run: {}",
                match &self.target {
                    SqlTarget::Table(_) => "`where` filter",
                    SqlTarget::Query(_) => "query or its `where` filter",
                },
                self.url.scrub(&e.message)
            ))
        })
    }

    fn can_fetch(&self) -> bool {
        true
    }
}

/// Feeds the rows of a driver's row stream to a scan in batches of up to `batch`
/// rows, decoding each as it arrives, and ends with [`Streamed::End`] or the failure;
/// stops early when the scan drops its receiver. Engines spawn it on a task that owns
/// the statement and the connection.
pub async fn pump<R, E, S>(
    mut rows: S,
    classify: fn(&E) -> RunError,
    decoder: Arc<Decoder>,
    batch: usize,
    after: Option<Key>,
    tx: mpsc::Sender<Streamed>,
) where
    R: RawRow,
    S: futures_core::Stream<Item = Result<R, E>> + Unpin,
{
    let mut out = BatchBuilder::new(decoder, batch, after);
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut rows).poll_next(cx)).await;
        match next {
            Some(Ok(raw)) => {
                if let Err(e) = out.push(&raw) {
                    let _ = tx.send(Streamed::Bad(e)).await;
                    return;
                }
                if out.is_full() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return;
                }
            }
            Some(Err(error)) => {
                if !out.is_empty() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return;
                }
                let _ = tx.send(Streamed::Failed(classify(&error))).await;
                return;
            }
            None => {
                if !out.is_empty() && tx.send(Streamed::Rows(out.take())).await.is_err() {
                    return;
                }
                let _ = tx.send(Streamed::End).await;
                return;
            }
        }
    }
}

/// Bytes of row data after which a streamed batch is sent, whatever its row count, so
/// that wide rows keep batches (and memory) small.
const BATCH_BYTES: usize = 4 << 20;

/// Packs a streamed statement's rows into batches of about `rows` rows.
pub struct BatchBuilder {
    decoder: Arc<Decoder>,
    rows: usize,
    batch: RowBatch,
    /// The last key of the batch sent before, for messages.
    after: Option<Key>,
    key: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for `decoder`'s rows, the first of them after `after`.
    pub fn new(decoder: Arc<Decoder>, rows: usize, after: Option<Key>) -> BatchBuilder {
        let rows = rows.max(1);
        BatchBuilder {
            batch: RowBatch::new(decoder.clone(), decoder.columns.len()),
            decoder,
            rows,
            after,
            key: Vec::new(),
        }
    }

    /// Packs one row.
    pub fn push<R: RawRow + ?Sized>(&mut self, raw: &R) -> Result<(), SourceError> {
        self.decoder
            .pack(raw, &mut self.batch, self.after.as_ref(), &mut self.key)
    }

    /// Whether the batch should be sent.
    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.rows || self.batch.data_len() >= BATCH_BYTES
    }

    /// Whether no row waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The batch so far, leaving an empty one.
    pub fn take(&mut self) -> RowBatch {
        if let Some(Ok(last)) = self.batch.last_key().map(key_bytes::decode) {
            self.after = Some(last);
        }
        let next = self.batch.empty_like(self.rows);
        std::mem::replace(&mut self.batch, next)
    }
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

/// A catalog error naming the server it came from: `table `t` not found on db:5432`.
pub fn on_server(e: SourceError, url: &RedactedUrl, default_port: u16) -> SourceError {
    match e {
        SourceError::Schema(m) => SourceError::Schema(format!("{m} on {}", url.host_port(default_port))),
        other => other,
    }
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

/// Why a statement failed, as an [`Engine`] reports it.
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
            ("timestamp with time zone", "", Some(Kind::TimestampTz)),
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
    use std::collections::BTreeSet;
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

    /// A server holding `(id, tag)` rows sorted by id, answering the keyset statements.
    /// It breaks a statement with a lost connection just before it would deliver a row
    /// whose id is in `break_at`, once per entry.
    struct Flaky {
        table: Vec<(i64, String)>,
        break_at: Mutex<Vec<i64>>,
        failures: Mutex<usize>,
        streams: Mutex<Vec<String>>,
    }

    impl Flaky {
        fn answer(&self, statement: &Statement) -> Vec<(i64, String)> {
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
            rows.into_iter().cloned().collect()
        }
    }

    fn cells((id, tag): (i64, String)) -> Vec<Option<Vec<u8>>> {
        vec![Some(id.to_string().into_bytes()), Some(tag.into_bytes())]
    }

    /// A stream over prepared items.
    struct Items(std::vec::IntoIter<Result<Vec<Option<Vec<u8>>>, RunError>>);

    impl futures_core::Stream for Items {
        type Item = Result<Vec<Option<Vec<u8>>>, RunError>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }

    #[async_trait]
    impl Engine for Flaky {
        type Dialect = Plain;
        const NAME: &'static str = "flaky";

        fn dialect(&self, _columns: &[ServerColumn], _nullable_keys: bool) -> Plain {
            Plain
        }

        async fn prepare(&self, _statement: &Statement) -> Result<(), RunError> {
            Ok(())
        }

        fn stream(
            &self,
            statement: Statement,
            decoder: Arc<Decoder>,
            batch: usize,
            after: Option<Key>,
        ) -> mpsc::Receiver<Streamed> {
            self.streams.lock().unwrap().push(statement.sql.clone());
            let mut items = Vec::new();
            for row in self.answer(&statement) {
                let mut break_at = self.break_at.lock().unwrap();
                if let Some(i) = break_at.iter().position(|id| *id == row.0) {
                    break_at.remove(i);
                    *self.failures.lock().unwrap() += 1;
                    items.push(Err(transient("server closed the connection unexpectedly")));
                    break;
                }
                items.push(Ok(cells(row)));
            }
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(pump(
                Items(items.into_iter()),
                RunError::clone,
                decoder,
                batch,
                after,
                tx,
            ));
            rx
        }
    }

    /// A source whose statements all ask for [`STREAM_PAGES`] pages.
    fn flaky_stream(table: &[(i64, &str)], break_at: Vec<i64>) -> ServerSource<Flaky> {
        let engine = Flaky {
            table: table.iter().map(|(id, tag)| (*id, (*tag).to_owned())).collect(),
            break_at: Mutex::new(break_at),
            failures: Mutex::new(0),
            streams: Mutex::new(Vec::new()),
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
        let mut source = ServerSource::new(engine, &config, columns);
        source.max_stream_pages = STREAM_PAGES;
        source
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
        // Page size 1: each statement asks for 8 rows. The first stops inside the run of
        // 4s (held back and read again by the next); the run of 5s fills a statement by
        // itself and is read by `key = ?`.
        let mut table = vec![(1, "a"), (2, "b"), (3, "c")];
        table.extend([(4, "d1"), (4, "d2"), (4, "d3"), (4, "d4"), (4, "d5"), (4, "d6")]);
        let fives = ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10"];
        table.extend(fives.iter().map(|t| (5, *t)));
        table.extend([(6, "f"), (7, "g1"), (7, "g2")]);
        let expected: Vec<(i64, String)> = table.iter().map(|(i, t)| (*i, (*t).to_owned())).collect();
        for page_size in [1, 2, 3, 100] {
            let mut source = flaky_stream(&table, vec![]);
            let clean = scan_all(&mut source, page_size).await.unwrap();
            assert_eq!(clean, expected, "page size {page_size}");
            if page_size == 1 {
                let streams = source.engine.streams.lock().unwrap().clone();
                assert!(streams.iter().any(|s| !s.contains("LIMIT")), "{streams:?}");
            }
            // A break before every row in turn, and before several at once.
            let ids: BTreeSet<i64> = table.iter().map(|(id, _)| *id).collect();
            let mut plans: Vec<Vec<i64>> = ids.iter().map(|id| vec![*id]).collect();
            plans.push(vec![1, 4, 5, 5, 7]);
            plans.push(vec![4, 4, 5, 6, 7, 7]);
            for plan in plans {
                let mut source = flaky_stream(&table, plan.clone());
                let rows = scan_all(&mut source, page_size).await.unwrap();
                assert_eq!(rows, expected, "page size {page_size}, breaks {plan:?}");
                assert_eq!(*source.engine.failures.lock().unwrap(), plan.len());
                assert!(source.engine.break_at.lock().unwrap().is_empty());
            }
        }
    }

    #[tokio::test]
    async fn statements_ask_for_more_rows_as_they_go_and_read_every_row() {
        let table: Vec<(i64, String)> = (1..=200).map(|id| (id / 3, format!("t{id}"))).collect();
        let table_ref: Vec<(i64, &str)> = table.iter().map(|(id, t)| (*id, t.as_str())).collect();
        let mut source = flaky_stream(&table_ref, vec![13, 14, 60]);
        source.max_stream_pages = MAX_STREAM_PAGES;
        let rows = scan_all(&mut source, 2).await.unwrap();
        assert_eq!(rows, table);
        // 16 rows, then 32, 64, 128...: far fewer statements than 200 / 16, breaks and all.
        let streams = source.engine.streams.lock().unwrap().len();
        assert!(streams <= 8, "{streams} statements");
    }

    #[tokio::test]
    async fn a_connection_that_stays_lost_fails_the_scan_naming_the_key_and_the_attempts() {
        let table = [(1, "a"), (2, "b"), (3, "c"), (4, "d")];
        // Every statement breaks before key 4: keys 1 and 2 are out, 3 waits for its run.
        let mut source = flaky_stream(&table, vec![4; MAX_ATTEMPTS as usize]);
        let err = scan_all(&mut source, 2).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading after key 2 failed after 5 attempts: server closed the connection unexpectedly"
        );
    }

    #[tokio::test]
    async fn a_recheck_fetch_is_retried_from_its_start_too() {
        let table = [(1, "a"), (2, "b"), (3, "c")];
        // The first statement delivers key 1, then breaks before key 3.
        let mut source = flaky_stream(&table, vec![3]);
        let keys = [Key(vec![KeyPart::Int(3)]), Key(vec![KeyPart::Int(1)])];
        let rows = source.fetch(&spec(10), &keys).await.unwrap();
        let ids: Vec<&Key> = rows.iter().map(|r| &r.key).collect();
        assert_eq!(ids, vec![&keys[1], &keys[0]], "no row twice, none lost");
        assert_eq!(*source.engine.failures.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_recheck_fetch_that_stays_lost_fails_naming_the_attempts() {
        let table = [(1, "a"), (2, "b")];
        let mut source = flaky_stream(&table, vec![2; MAX_ATTEMPTS as usize]);
        let err = source
            .fetch(&spec(10), &[Key(vec![KeyPart::Int(2)])])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading rows again by key failed after 5 attempts: server closed the connection unexpectedly"
        );
    }
}
