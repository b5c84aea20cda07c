//! Live database servers for tests: URLs from the environment (skipped without them,
//! unless `RECON_REQUIRE_DATABASES=1`), and a PostgreSQL schema or MySQL database of
//! each test's own, dropped when the test ends.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;

/// The server URL in `var`, or `None` after printing why the test is skipped.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("RECON_REQUIRE_DATABASES").as_deref() == Ok("1") {
                panic!("{var} is not set, and RECON_REQUIRE_DATABASES=1 forbids skipping");
            }
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

/// Both server URLs, or `None` (skipped) when either is missing.
pub fn both_servers() -> Option<(String, String)> {
    let pg = server_url("RECON_TEST_POSTGRES_URL");
    let my = server_url("RECON_TEST_MYSQL_URL");
    Some((pg?, my?))
}

/// A name no other test (or test run) uses: `recon_<tag>_<pid>_<n>`.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "recon_{tag}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Runs statements on PostgreSQL, in order.
pub fn pg_exec(url: &str, statements: &[String]) {
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to PostgreSQL");
        for s in statements {
            sqlx::raw_sql(s)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL statement failed: {s}: {e}"));
        }
        let _ = conn.close().await;
    });
}

/// Runs statements on MySQL, in order.
pub fn my_exec(url: &str, statements: &[String]) {
    block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(url)
            .await
            .expect("connect to MySQL");
        for s in statements {
            sqlx::raw_sql(s)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("MySQL statement failed: {s}: {e}"));
        }
        let _ = conn.close().await;
    });
}

/// A PostgreSQL schema of its own, dropped when the test ends.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(url: &str, tag: &str) -> PgSchema {
        let name = unique(tag);
        pg_exec(url, &[format!("CREATE SCHEMA {name}")]);
        PgSchema {
            url: url.to_owned(),
            name,
        }
    }

    pub fn exec(&self, statements: &[&str]) {
        let all: Vec<String> = std::iter::once(format!("SET search_path TO {}", self.name))
            .chain(statements.iter().map(|s| (*s).to_owned()))
            .collect();
        pg_exec(&self.url, &all);
    }

    /// The `[owner]`/`[replica]` body for `table` keyed by `key`.
    pub fn source(&self, table: &str, key: &str) -> String {
        format!(
            "type = \"postgres\"\nurl = \"${{RECON_TEST_POSTGRES_URL}}\"\nschema = \"{}\"\ntable = \"{table}\"\nkey = {key}",
            self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        pg_exec(
            &self.url,
            &[format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)],
        );
    }
}

/// A MySQL database of its own, dropped when the test ends.
pub struct MyDatabase {
    pub url: String,
    pub name: String,
}

impl MyDatabase {
    pub fn new(url: &str, tag: &str) -> MyDatabase {
        let name = unique(tag);
        my_exec(
            url,
            &[format!(
                "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )],
        );
        MyDatabase {
            url: url.to_owned(),
            name,
        }
    }

    pub fn exec(&self, statements: &[&str]) {
        let all: Vec<String> = std::iter::once(format!("USE {}", self.name))
            .chain(statements.iter().map(|s| (*s).to_owned()))
            .collect();
        my_exec(&self.url, &all);
    }

    pub fn source(&self, table: &str, key: &str) -> String {
        format!(
            "type = \"mysql\"\nurl = \"${{RECON_TEST_MYSQL_URL}}\"\nschema = \"{}\"\ntable = \"{table}\"\nkey = {key}",
            self.name
        )
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        my_exec(&self.url, &[format!("DROP DATABASE IF EXISTS {}", self.name)]);
    }
}

/// A job named `db` over two source bodies, with `extra` sections after them.
pub fn job(owner: &str, replica: &str, extra: &str) -> String {
    format!("name = \"db\"\n\n[owner]\n{owner}\n\n[replica]\n{replica}\n\n{extra}")
}

/// Asserts that job `db` exited consistent and reported nothing.
pub fn assert_consistent(w: &crate::support::Workdir, out: &std::process::Output) {
    crate::support::assert_exit(out, crate::support::EXIT_CONSISTENT);
    assert_eq!(w.findings("db"), std::collections::BTreeSet::new());
}
