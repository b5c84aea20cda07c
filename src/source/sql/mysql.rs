//! MySQL and MariaDB, through a small read-only pool, with the shared keyset
//! statements: `?` placeholders, backtick quoting, and text keys ordered and compared as
//! `CAST(.. AS BINARY)`, byte-wise and without the PAD SPACE rule that makes `'a '`
//! equal `'a'` in most collations. Every column is read as text (`CAST(.. AS CHAR)`,
//! bytes as `HEX()`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Column as _, ConnectOptions, Connection, Executor, Row as _, TypeInfo};

use super::server::{
    Engine, Kind, MAX_CONNECTIONS, OUTPUT_PREFIX, STATEMENT_TIMEOUT_SECS, ServerColumn, ServerSource,
    connect_error, error_message, map_columns,
};
use super::{Dialect, Param, QUERY_ALIAS, Statement, trim_query};
use crate::job::{SqlServerConfig, SqlTarget};
use crate::source::{KeyType, SourceError};

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

    fn select_expr(&self, column: &str, name: &str) -> String {
        let expr = match self.kinds.get(name) {
            Some(Kind::Bytes) => format!("HEX({column})"),
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
}

#[async_trait]
impl Engine for Mysql {
    type Dialect = MysqlDialect;
    const NAME: &'static str = "mysql";

    fn dialect(&self, columns: &[ServerColumn], _nullable_keys: bool) -> MysqlDialect {
        MysqlDialect {
            kinds: columns.iter().map(|c| (c.name.clone(), c.kind)).collect(),
        }
    }

    async fn run(&self, statement: &Statement) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut q = sqlx::query(&statement.sql);
        for param in &statement.params {
            q = match param {
                Param::Int(i) => q.bind(*i),
                Param::Text(s) => q.bind(s.clone()),
            };
        }
        let rows = q.fetch_all(&self.pool).await.map_err(|e| error_message(&e))?;
        rows.iter().map(cells).collect()
    }
}

fn cells(row: &MySqlRow) -> Result<Vec<Option<Vec<u8>>>, String> {
    (0..row.len())
        .map(|i| {
            row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
                .map_err(|e| e.to_string())
        })
        .collect()
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
            .timezone(Some("+00:00".to_owned()));
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
        let described = match &config.target {
            SqlTarget::Table(table) => table_columns(&pool, table).await?,
            SqlTarget::Query(query) => query_columns(&pool, query).await?,
        };
        let what = match &config.target {
            SqlTarget::Table(t) => format!("table `{t}`"),
            SqlTarget::Query(_) => "query".into(),
        };
        let columns = map_columns(described, &what)?;
        Ok(ServerSource::new(Mysql { pool }, config, columns))
    }
}

/// `(name, data_type, column_type, nullable)` of a table's columns from
/// information_schema. MariaDB's JSON is a LONGTEXT with a `json_valid` check: such
/// columns are reported as `json`.
async fn table_columns(
    pool: &MySqlPool,
    table: &str,
) -> Result<Vec<(String, String, String, bool)>, SourceError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let rows = sqlx::query(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
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
    Ok(rows
        .iter()
        .map(|r| {
            let name = text(r, 0);
            let mut data_type = text(r, 1);
            let column_type = text(r, 2);
            let json_check = format!("json_valid(`{name}`)");
            if data_type.eq_ignore_ascii_case("longtext") && checks.iter().any(|c| c.contains(&json_check)) {
                data_type = "json".into();
            }
            (name, data_type, column_type, text(r, 3) != "NO")
        })
        .collect())
}

/// A custom query's columns, as the server describes `SELECT * FROM (<query>) AS recon_q`.
async fn query_columns(
    pool: &MySqlPool,
    query: &str,
) -> Result<Vec<(String, String, String, bool)>, SourceError> {
    let sql = format!("SELECT * FROM ({}) AS {QUERY_ALIAS}", trim_query(query));
    let described = pool
        .describe(&sql)
        .await
        .map_err(|e| SourceError::Schema(format!("query failed: {}", error_message(&e))))?;
    Ok(described
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.type_info().name().to_owned();
            // sqlx names tinyint(1) BOOLEAN; keep that as the full type too.
            let full = if name == "BOOLEAN" {
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
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sql::{KeyColumn, KeysetQuery};

    #[test]
    fn statements_use_backticks_binary_keys_and_text_casts() {
        let dialect = MysqlDialect {
            kinds: [("blob".to_owned(), Kind::Bytes)].into_iter().collect(),
        };
        let q = KeysetQuery::new(
            dialect,
            &SqlTarget::Table("db.t`x".into()),
            None,
            &[
                KeyColumn {
                    name: "code".into(),
                    ty: KeyType::Text,
                    cast: false,
                },
                KeyColumn {
                    name: "n".into(),
                    ty: KeyType::Integer,
                    cast: false,
                },
            ],
            &["blob".into()],
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
             HEX(`blob`) AS `recon_out_blob` FROM `db`.`t``x` \
             WHERE (CAST(`code` AS BINARY), `n`) > (?, ?) ORDER BY CAST(`code` AS BINARY), `n` LIMIT ?"
        );
        let s = q.any_of(&[after.clone(), after]);
        assert!(s.sql.contains("IN ((?, ?), (?, ?))"), "{}", s.sql);
    }
}
