//! `Workdir`: a unique temporary folder per test that holds a job and its data, runs the
//! built `recon` binary in it and reads back the reports.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod contract;
pub mod db;

use serde_json::Value;

/// Exit statuses, as the README documents them.
pub const EXIT_CONSISTENT: i32 = 0;
pub const EXIT_INCONSISTENT: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILED: i32 = 3;

/// One finding as the model describes it: `(kind, key as compact JSON, field)`.
pub type Finding = (String, String, Option<String>);

/// A fresh folder for one test; removed when dropped.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A new, empty folder.
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::Builder::new()
                .prefix("recon-it-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path` inside the folder.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(path)
    }

    /// Writes `contents` to `path` (relative to the folder), creating parent folders.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let full = self.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).expect("create parent folder");
        }
        fs::write(&full, contents).expect("write file");
        full
    }

    /// Creates the SQLite database `path` and runs each statement in it, in order.
    pub fn sqlite(&self, path: &str, statements: &[&str]) -> PathBuf {
        let full = self.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).expect("create parent folder");
        }
        create_sqlite(&full, statements);
        full
    }

    /// Runs `recon` with `args` in the folder, with logging at its default.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_recon"))
            .args(args)
            .current_dir(self.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("start recon")
    }

    /// `recon` with `args` in this folder, with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_recon"));
        command.args(args).current_dir(self.path()).env_remove("RUST_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("start recon")
    }

    /// `recon run <job> --out out`.
    pub fn run_job(&self, job_file: &str) -> Output {
        self.run(&["run", job_file, "--out", "out"])
    }

    /// The report folder of `job` under `out/`.
    pub fn report_dir(&self, job: &str) -> PathBuf {
        self.join("out").join(job)
    }

    /// The records of `job`'s `inconsistencies.jsonl` under `out/`.
    pub fn jsonl(&self, job: &str) -> Vec<Value> {
        read_jsonl(&self.report_dir(job).join("inconsistencies.jsonl"))
    }

    /// `job`'s `summary.json` under `out/`.
    pub fn summary(&self, job: &str) -> Value {
        read_json(&self.report_dir(job).join("summary.json"))
    }

    /// `job`'s findings as `(kind, key, field)`.
    pub fn findings(&self, job: &str) -> BTreeSet<Finding> {
        findings_of(&self.jsonl(job))
    }
}

/// Creates an SQLite database file and runs `statements` in it.
pub fn create_sqlite(path: &Path, statements: &[&str]) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open sqlite database");
        for statement in statements {
            sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("sqlite statement failed: {statement}: {e}"));
        }
        conn.close().await.expect("close sqlite database");
    });
}

/// Reads a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSONL line {line:?}: {e}")))
        .collect()
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// The `(kind, key, field)` of each record.
pub fn findings_of(records: &[Value]) -> BTreeSet<Finding> {
    records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().expect("kind").to_string(),
                serde_json::to_string(&r["key"]).expect("key"),
                r.get("field").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

/// A model finding; `key` is JSON such as `{"id": 6}`.
pub fn finding(kind: &str, key: Value, field: Option<&str>) -> Finding {
    (
        kind.to_string(),
        serde_json::to_string(&key).expect("key"),
        field.map(str::to_string),
    )
}

/// Asserts the process exited with `code`, showing its output otherwise; also asserts
/// nothing panicked.
pub fn assert_exit(output: &Output, code: i32) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}, got {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status.code()
    );
    assert!(
        !stdout.contains("panicked") && !stderr.contains("panicked"),
        "recon panicked\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// The process's stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The process's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
