//! Every embedded backend against the shared `Source` contract.

use std::path::PathBuf;

use recon::job::{CsvConfig, JsonlConfig, SourceConfig, SourceDef, SqlTarget, SqliteConfig};

use crate::support::Workdir;
use crate::support::contract::{KEY, NOTE, ROWS, assert_source_contract};

fn def(config: SourceConfig) -> SourceDef {
    SourceDef {
        config,
        key: KEY.iter().map(|s| s.to_string()).collect(),
        row_key: Vec::new(),
    }
}

#[test]
fn csv_honors_the_source_contract() {
    let w = Workdir::new();
    let mut text = format!("{},{},{NOTE}\n", KEY[0], KEY[1]);
    for (region, id, note) in ROWS {
        text.push_str(&format!("{region},{id},{}\n", note.unwrap_or("\\N")));
    }
    let path = w.write("rows.csv", text);
    let config = CsvConfig {
        path,
        delimiter: b',',
        header: true,
        null: Some("\\N".into()),
        types: Vec::new(),
    };
    assert_source_contract(&def(SourceConfig::Csv(config)));
}

#[test]
fn jsonl_honors_the_source_contract() {
    let w = Workdir::new();
    let mut text = String::new();
    for (region, id, note) in ROWS {
        let line = serde_json::json!({ KEY[0]: region, KEY[1]: id, NOTE: note });
        text.push_str(&format!("{line}\n"));
    }
    let path = w.write("rows.jsonl", text);
    let config = JsonlConfig {
        path,
        columns: Vec::new(),
        types: Vec::new(),
    };
    assert_source_contract(&def(SourceConfig::Jsonl(config)));
}

#[test]
fn sqlite_honors_the_source_contract() {
    let w = Workdir::new();
    let mut statements = vec!["CREATE TABLE t (region TEXT, id INTEGER, note TEXT)".to_string()];
    for (region, id, note) in ROWS {
        let note = note.map_or("NULL".to_string(), |n| format!("'{n}'"));
        statements.push(format!("INSERT INTO t VALUES ('{region}', {id}, {note})"));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    let path: PathBuf = w.sqlite("rows.db", &statements);
    for target in [
        SqlTarget::Table("t".into()),
        SqlTarget::Query("SELECT * FROM t".into()),
    ] {
        let config = SqliteConfig {
            path: path.clone(),
            url: "sqlite://rows.db".into(),
            target,
            filter: None,
        };
        assert_source_contract(&def(SourceConfig::Sqlite(config)));
    }
}
