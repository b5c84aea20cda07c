//! MySQL and MariaDB, through a small read-only pool, with the shared keyset
//! statements: `?` placeholders, backtick quoting, and text keys ordered and compared as
//! `CAST(.. AS BINARY)`, byte-wise and without the PAD SPACE rule that makes `'a '`
//! equal `'a'` in most collations. Every column is read as text (`CAST(.. AS CHAR)`,
//! bytes as `HEX()`, single-precision FLOAT widened to a double first, since MariaDB
//! prints a FLOAT with six significant digits).
//!
//! Key order and indexes: `CAST(.. AS BINARY)` cannot use an index, so every page
//! would be a full scan and sort. A key column whose own collation already is byte
//! order without PAD SPACE (a binary string: BINARY, VARBINARY, BLOB; or a VARCHAR/TEXT
//! in `utf8mb4_nopad_bin` or MySQL 8's `utf8mb4_0900_bin`) is ordered by the bare
//! column, which its index serves. A PAD SPACE `_bin` collation (`utf8mb4_bin`) keeps
//! the cast: it orders `'a\t'` before `'a'` and finds `'a'` equal to `'a '`, so the bare
//! column would skip rows. Composite keys resume with `k1 > ? OR (k1 = ? AND k2 > ?)`,
//! which the server seeks as a range, where a row-value comparison reads the whole index.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Column as _, ConnectOptions, Connection, Executor, Row as _, TypeInfo};

use super::server::{
    Decoder, Engine, Kind, MAX_CONNECTIONS, OUTPUT_PREFIX, RawRow, RunError, STATEMENT_TIMEOUT_SECS,
    ServerColumn, ServerSource, Streamed, connect_error, error_message, map_columns, on_server, pump,
    run_error,
};
use super::{Dialect, KeyColumn, QUERY_ALIAS, Statement, trim_query};
use crate::job::{SqlServerConfig, SqlTarget};
use crate::source::{Key, KeyType, SourceError};
use tokio::sync::mpsc;

const DEFAULT_PORT: u16 = 3306;

/// A MySQL or MariaDB source.
pub type MysqlSource = ServerSource<Mysql>;

/// Quotes one MySQL identifier in backticks, doubling any embedded backtick.
pub fn quote_backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// MySQL's spelling of the shared statements.
#[derive(Clone, Debug)]
pub struct MysqlDialect {
    kinds: HashMap<String, Kind>,
    bare_keys: HashSet<String>,
}

impl MysqlDialect {
    /// A dialect for columns of the given kinds; `bare_keys` are the text-keyed columns
    /// whose collation already is byte order without PAD SPACE (see
    /// [`bytewise_collation`]). (The engine builds it from the catalog; this is for
    /// inspecting the statements recon writes.)
    pub fn new(kinds: HashMap<String, Kind>, bare_keys: HashSet<String>) -> MysqlDialect {
        MysqlDialect { kinds, bare_keys }
    }
}

/// Whether a column of this type (information_schema's DATA_TYPE, lower case) and
/// collation orders and compares exactly like recon's byte-wise text keys, so that it
/// can be ordered by the bare column: binary strings (all bytes significant, no pad),
/// and VARCHAR/TEXT in a NO PAD binary utf8mb4 collation. CHAR is excluded (its pad
/// spaces are stripped on reading), as is every PAD SPACE collation.
pub fn bytewise_collation(data_type: &str, collation: &str) -> bool {
    match data_type {
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            collation.is_empty() || collation == "binary"
        }
        "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            matches!(collation, "utf8mb4_nopad_bin" | "utf8mb4_0900_bin")
        }
        _ => false,
    }
}

impl Dialect for MysqlDialect {
    fn placeholder(&self, _index: usize) -> String {
        "?".into()
    }

    fn key_expr(&self, column: &str, ty: KeyType, cast: bool) -> String {
        match (ty, cast) {
            (KeyType::Integer, false) => column.to_owned(),
            (KeyType::Integer, true) => format!("CAST({column} AS SIGNED)"),
            (KeyType::Text, _) => format!("CAST({column} AS BINARY)"),
            (KeyType::Uuid, _) => format!("CAST(LOWER({column}) AS BINARY)"),
        }
    }

    fn key_column_expr(&self, column: &str, key: &KeyColumn) -> String {
        let kind = self.kinds.get(&key.name);
        match key.ty {
            KeyType::Text if self.bare_keys.contains(&key.name) => column.to_owned(),
            // A UUID in BINARY(16): its canonical text, which orders like its bytes.
            KeyType::Uuid if kind == Some(&Kind::Bytes) => format!(
                "CAST(LOWER(INSERT(INSERT(INSERT(INSERT(HEX({column}), 21, 0, '-'), 17, 0, '-'), \
                 13, 0, '-'), 9, 0, '-')) AS BINARY)"
            ),
            _ => self.key_expr(column, key.ty, key.cast),
        }
    }

    fn expand_row_comparison(&self) -> bool {
        true
    }

    fn select_expr(&self, column: &str, name: &str) -> String {
        let expr = match self.kinds.get(name) {
            Some(Kind::Bytes) => format!("HEX({column})"),
            // `+ 0e0` widens exactly; CAST(float AS CHAR) would round to six digits.
            Some(Kind::Float32) => format!("CAST({column} + 0e0 AS CHAR)"),
            _ => format!("CAST({column} AS CHAR)"),
        };
        // An alias of its own: `ORDER BY `id`` must mean the column, not this text.
        format!("{expr} AS {}", quote_backtick(&format!("{OUTPUT_PREFIX}{name}")))
    }

    fn quote_name(&self, name: &str) -> String {
        quote_backtick(name)
    }

    fn row_list(&self, rows: &[String]) -> String {
        // `VALUES ROW(..)` is MySQL 8 only; a plain list works on MySQL and MariaDB.
        format!("({})", rows.join(", "))
    }
}

/// An open MySQL pool.
pub struct Mysql {
    pool: MySqlPool,
    /// Columns a text key is ordered by bare (see [`bytewise_collation`]).
    bare_keys: HashSet<String>,
}

#[async_trait]
impl Engine for Mysql {
    type Dialect = MysqlDialect;
    const NAME: &'static str = "mysql";

    fn dialect(&self, columns: &[ServerColumn], _nullable_keys: bool) -> MysqlDialect {
        MysqlDialect {
            kinds: columns.iter().map(|c| (c.name.clone(), c.kind)).collect(),
            bare_keys: self.bare_keys.clone(),
        }
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
            let q = super::bound(&statement.sql, &statement.params);
            // One statement, its rows read as the server sends them.
            pump(q.fetch(&pool), run_error, decoder, batch, after, tx).await;
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

impl RawRow for MySqlRow {
    fn width(&self) -> usize {
        self.len()
    }

    fn cell(&self, index: usize) -> Result<Option<&[u8]>, String> {
        self.try_get_unchecked::<Option<&[u8]>, _>(index)
            .map_err(|e| e.to_string())
    }
}

fn text(row: &MySqlRow, i: usize) -> String {
    let bytes = row
        .try_get_unchecked::<Option<Vec<u8>>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl ServerSource<Mysql> {
    /// Connects and learns the table's or query's columns, so that an unreachable
    /// server, a wrong password, a missing table or an unsupported type fails here.
    pub async fn open(config: &SqlServerConfig) -> Result<MysqlSource, SourceError> {
        let url = &config.url;
        let raw = url.expose();
        let raw = match raw.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => raw.to_owned(),
        };
        let options = MySqlConnectOptions::from_str(&raw)
            .map_err(|e| connect_error(url, DEFAULT_PORT, &e))?
            .timezone(Some("+00:00".to_owned()))
            // A streamed statement reads many pages and may take seconds by design: the
            // driver's "slow statement" warnings would only be noise.
            .disable_statement_logging();
        // One direct connection first: a pool retries a refused connection until its
        // acquire timeout, which would hide the reason.
        let probe = options
            .connect()
            .await
            .map_err(|e| connect_error(url, DEFAULT_PORT, &e))?;
        let _ = probe.close().await;
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // MariaDB and MySQL name the timeout differently; each ignores the
                    // other's, and an old server may know neither.
                    let statements = [
                        format!("SET SESSION max_statement_time = {STATEMENT_TIMEOUT_SECS}"),
                        format!(
                            "SET SESSION max_execution_time = {}",
                            STATEMENT_TIMEOUT_SECS * 1000
                        ),
                        "SET SESSION TRANSACTION READ ONLY".to_owned(),
                    ];
                    for statement in statements {
                        let _ = conn.execute(statement.as_str()).await;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let (described, bare_keys) = match &config.target {
            SqlTarget::Table(table) => table_columns(&pool, table)
                .await
                .map_err(|e| on_server(e, url, DEFAULT_PORT))?,
            SqlTarget::Query(query) => query_columns(&pool, query).await?,
        };
        let columns = map_columns(described);
        Ok(ServerSource::new(Mysql { pool, bare_keys }, config, columns))
    }
}

/// Catalog rows `(name, data_type, column_type, nullable)`, and the columns whose
/// collation lets a text key be ordered by the bare column.
type Described = (Vec<(String, String, String, bool)>, HashSet<String>);

/// A table's columns from information_schema: `(name, data_type, column_type,
/// nullable)`. MariaDB's JSON is a LONGTEXT with a `json_valid` check: such columns are
/// reported as `json`.
async fn table_columns(pool: &MySqlPool, table: &str) -> Result<Described, SourceError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let rows = sqlx::query(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
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
    // MySQL 8's CHECK_CONSTRAINTS has no TABLE_NAME: the query fails there, and MySQL's
    // JSON is a real type anyway.
    let checks: Vec<String> = sqlx::query(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(pool)
    .await
    .map(|rows| rows.iter().map(|r| text(r, 0)).collect())
    .unwrap_or_default();
    let mut columns = Vec::with_capacity(rows.len());
    let mut bare = HashSet::new();
    for r in &rows {
        let name = text(r, 0);
        let mut data_type = text(r, 1).to_ascii_lowercase();
        let column_type = text(r, 2);
        let json_check = format!("json_valid({})", quote_backtick(&name));
        if data_type == "longtext" && checks.iter().any(|c| c.contains(&json_check)) {
            data_type = "json".into();
        }
        if bytewise_collation(&data_type, &text(r, 4).to_ascii_lowercase()) {
            bare.insert(name.clone());
        }
        columns.push((name, data_type, column_type, text(r, 3) != "NO"));
    }
    Ok((columns, bare))
}

/// A custom query's columns, as the server describes `SELECT * FROM (<query>) AS recon_q`.
///
/// The driver names a column by its protocol type and binary flag, and the server
/// flags every `_bin`-collated text column binary: a `utf8mb4_bin` VARCHAR arrives as
/// VARBINARY and MariaDB's JSON (a `utf8mb4_bin` LONGTEXT) as BLOB. So each such
/// column's collation is asked for (`COLLATION()` over no rows, which reads no data):
/// only `binary` ones are bytes, the rest are the text types they stand for.
async fn query_columns(pool: &MySqlPool, query: &str) -> Result<Described, SourceError> {
    let sql = format!("SELECT * FROM (\n{}\n) AS {QUERY_ALIAS}", trim_query(query));
    let described = pool
        .describe(&sql)
        .await
        .map_err(|e| SourceError::Schema(format!("query failed: {}", error_message(&e))))?;
    let mut columns: Vec<(String, String, String, bool)> = described
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.type_info().name().to_ascii_lowercase();
            // sqlx names tinyint(1) BOOLEAN; keep that as the full type too.
            let full = if name == "boolean" {
                "tinyint(1)".to_owned()
            } else {
                String::new()
            };
            (
                c.name().to_owned(),
                name,
                full,
                described.nullable(i).unwrap_or(true),
            )
        })
        .collect();
    let binary: Vec<usize> = (0..columns.len())
        .filter(|&i| text_type_of_binary(&columns[i].1).is_some())
        .collect();
    let collations = if binary.is_empty() {
        Vec::new()
    } else {
        let probes: Vec<String> = binary
            .iter()
            .map(|&i| format!("COLLATION(MAX({}))", quote_backtick(&columns[i].0)))
            .collect();
        let probe = format!(
            "SELECT {} FROM (SELECT * FROM (\n{}\n) AS {QUERY_ALIAS} LIMIT 0) AS recon_d",
            probes.join(", "),
            trim_query(query)
        );
        // Without an answer the columns stay bytes: compared by bytes all the same.
        match sqlx::query(&probe).fetch_optional(pool).await {
            Ok(Some(row)) => (0..binary.len())
                .map(|j| text(&row, j).to_ascii_lowercase())
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut bare = HashSet::new();
    for (j, &i) in binary.iter().enumerate() {
        let Some(collation) = collations.get(j) else {
            continue;
        };
        let column = &mut columns[i];
        if collation != "binary" {
            if let Some(text_type) = text_type_of_binary(&column.1) {
                column.1 = text_type.to_owned();
            }
        }
        if bytewise_collation(&column.1, collation) {
            bare.insert(column.0.clone());
        }
    }
    Ok((columns, bare))
}

/// The text type a binary-flagged type name from the driver stands for when its
/// collation is not `binary`; `None` for a type that is never binary-flagged text.
fn text_type_of_binary(driver_name: &str) -> Option<&'static str> {
    Some(match driver_name {
        "varbinary" => "varchar",
        "binary" => "char",
        "tinyblob" => "tinytext",
        "blob" => "text",
        "mediumblob" => "mediumtext",
        "longblob" => "longtext",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sql::{KeyColumn, KeysetQuery};

    fn key(name: &str, ty: KeyType) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            ty,
            cast: false,
        }
    }

    #[test]
    fn statements_use_backticks_binary_keys_and_text_casts() {
        let dialect = MysqlDialect::new(
            [
                ("blob".to_owned(), Kind::Bytes),
                ("ratio".to_owned(), Kind::Float32),
            ]
            .into_iter()
            .collect(),
            HashSet::new(),
        );
        let q = KeysetQuery::new(
            dialect,
            &SqlTarget::Table("db.t`x".into()),
            None,
            &[key("code", KeyType::Text), key("n", KeyType::Integer)],
            &["blob".into(), "ratio".into()],
            &[],
        );
        let after = crate::source::Key(vec![
            crate::source::KeyPart::Text("a ".into()),
            crate::source::KeyPart::Int(1),
        ]);
        let s = q.page(Some(&after), 10);
        assert_eq!(
            s.sql,
            "SELECT CAST(`code` AS CHAR) AS `recon_out_code`, CAST(`n` AS CHAR) AS `recon_out_n`, \
             HEX(`blob`) AS `recon_out_blob`, CAST(`ratio` + 0e0 AS CHAR) AS `recon_out_ratio` \
             FROM `db`.`t``x` \
             WHERE (CAST(`code` AS BINARY) > ? OR (CAST(`code` AS BINARY) = ? AND `n` > ?)) \
             ORDER BY CAST(`code` AS BINARY), `n` LIMIT ?"
        );
        let s = q.any_of(&[&after, &after]);
        assert!(s.sql.contains("IN ((?, ?), (?, ?))"), "{}", s.sql);
    }

    #[test]
    fn byte_order_collations_key_by_the_bare_column() {
        let dialect = MysqlDialect::new(
            [("code".to_owned(), Kind::Text), ("raw".to_owned(), Kind::Bytes)]
                .into_iter()
                .collect(),
            ["code".to_owned(), "raw".to_owned()].into_iter().collect(),
        );
        let q = KeysetQuery::new(
            dialect,
            &SqlTarget::Table("t".into()),
            None,
            &[key("code", KeyType::Text), key("raw", KeyType::Text)],
            &[],
            &[],
        );
        let s = q.page(None, 10);
        assert!(s.sql.ends_with("ORDER BY `code`, `raw` LIMIT ?"), "{}", s.sql);

        for (data_type, collation, bare) in [
            ("varbinary", "", true),
            ("blob", "binary", true),
            ("varchar", "utf8mb4_nopad_bin", true),
            ("text", "utf8mb4_0900_bin", true),
            ("varchar", "utf8mb4_bin", false),
            ("char", "utf8mb4_nopad_bin", false),
            ("varchar", "utf8mb4_general_ci", false),
            ("varchar", "latin1_nopad_bin", false),
            ("int", "", false),
        ] {
            assert_eq!(
                bytewise_collation(data_type, collation),
                bare,
                "{data_type} {collation}"
            );
        }
        assert_eq!(text_type_of_binary("varbinary"), Some("varchar"));
        assert_eq!(text_type_of_binary("blob"), Some("text"));
        assert_eq!(text_type_of_binary("varchar"), None);
    }
}
