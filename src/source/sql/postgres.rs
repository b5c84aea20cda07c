//! PostgreSQL, through a small read-only pool, with the shared keyset statements:
//! `$n` placeholders, text keys ordered `COLLATE "C"` (byte order), every column read as
//! text (`CAST(.. AS text)`, which also drops `char(n)` pad spaces; bytes as hex).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column as _, ConnectOptions, Connection, Executor, Row as _, TypeInfo};

use super::server::{
    Engine, Kind, MAX_CONNECTIONS, OUTPUT_PREFIX, STATEMENT_TIMEOUT_SECS, ServerColumn, ServerSource,
    connect_error, error_message, map_columns,
};
use super::{Dialect, Param, QUERY_ALIAS, Statement, trim_query};
use crate::job::{SqlServerConfig, SqlTarget};
use crate::source::{KeyType, SourceError};

const DEFAULT_PORT: u16 = 5432;

/// A PostgreSQL source.
pub type PostgresSource = ServerSource<Postgres>;

/// PostgreSQL's spelling of the shared statements.
#[derive(Clone, Debug)]
pub struct PgDialect {
    kinds: HashMap<String, Kind>,
    nulls_first: bool,
}

impl Dialect for PgDialect {
    fn placeholder(&self, index: usize) -> String {
        format!("${index}")
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

    fn select_expr(&self, column: &str, name: &str) -> String {
        let expr = match self.kinds.get(name) {
            Some(Kind::Bytes) => format!("encode({column}, 'hex')"),
            _ => format!("CAST({column} AS text)"),
        };
        // An alias of its own: `ORDER BY "id"` must mean the column, not this text.
        format!(
            "{expr} AS {}",
            super::quote_name(&format!("{OUTPUT_PREFIX}{name}"))
        )
    }

    fn order_suffix(&self) -> &'static str {
        // NULLS FIRST would keep a plain index from serving the order: only when needed.
        if self.nulls_first { " NULLS FIRST" } else { "" }
    }
}

/// An open PostgreSQL pool.
pub struct Postgres {
    pool: PgPool,
}

#[async_trait]
impl Engine for Postgres {
    type Dialect = PgDialect;
    const NAME: &'static str = "postgres";

    fn dialect(&self, columns: &[ServerColumn], nullable_keys: bool) -> PgDialect {
        PgDialect {
            kinds: columns.iter().map(|c| (c.name.clone(), c.kind)).collect(),
            nulls_first: nullable_keys,
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

fn cells(row: &PgRow) -> Result<Vec<Option<Vec<u8>>>, String> {
    (0..row.len())
        .map(|i| {
            row.try_get_unchecked::<Option<String>, _>(i)
                .map(|v| v.map(String::into_bytes))
                .map_err(|e| e.to_string())
        })
        .collect()
}

impl ServerSource<Postgres> {
    /// Connects and learns the table's or query's columns, so that an unreachable
    /// server, a wrong password, a missing table or an unsupported type fails here.
    pub async fn open(config: &SqlServerConfig) -> Result<PostgresSource, SourceError> {
        let url = &config.url;
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| connect_error(url, DEFAULT_PORT, &e))?
            .application_name("recon")
            .options([
                ("statement_timeout", format!("{}s", STATEMENT_TIMEOUT_SECS)),
                ("default_transaction_read_only", "on".to_owned()),
                ("TimeZone", "UTC".to_owned()),
                ("DateStyle", "ISO".to_owned()),
                ("extra_float_digits", "1".to_owned()),
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
        let described = match &config.target {
            SqlTarget::Table(table) => table_columns(&pool, table).await?,
            SqlTarget::Query(query) => query_columns(&pool, query).await?,
        };
        let what = match &config.target {
            SqlTarget::Table(t) => format!("table `{t}`"),
            SqlTarget::Query(_) => "query".into(),
        };
        let columns = map_columns(described, &what)?;
        Ok(ServerSource::new(Postgres { pool }, config, columns))
    }
}

/// `(name, data_type, udt, nullable)` of a table's columns from information_schema.
async fn table_columns(
    pool: &PgPool,
    table: &str,
) -> Result<Vec<(String, String, String, bool)>, SourceError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let rows = sqlx::query(
        "SELECT CAST(column_name AS text), CAST(data_type AS text), CAST(udt_name AS text), \
         CAST(is_nullable AS text) FROM information_schema.columns \
         WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 \
         ORDER BY ordinal_position",
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
    rows.iter()
        .map(|r| {
            let get = |i: usize| {
                r.try_get_unchecked::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            let (name, data_type, udt) = (get(0), get(1), get(2));
            // A domain or array reports its own name; the element or base type decides.
            let data_type = if data_type == "ARRAY" {
                format!("{udt}[]")
            } else {
                data_type
            };
            Ok((name, data_type, String::new(), get(3) != "NO"))
        })
        .collect()
}

/// A custom query's columns, as the server describes `SELECT * FROM (<query>) AS recon_q`.
async fn query_columns(
    pool: &PgPool,
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
            (
                c.name().to_owned(),
                c.type_info().name().to_owned(),
                String::new(),
                described.nullable(i).unwrap_or(true),
            )
        })
        .collect())
}
