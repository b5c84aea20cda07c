//! Regressions found in review, each named after what went wrong.

use serde_json::json;

use crate::support::*;

fn job(extra: &str) -> String {
    format!(
        "version = 1\nname = \"case\"\n\n[owner]\ntype = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]\n\n\
         [replica]\ntype = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]\n\n{extra}\n"
    )
}

/// A tolerance must hold even when the replica declares the column as text (SQLite
/// keeps timestamps and often amounts in TEXT columns).
#[test]
fn tolerance_applies_to_columns_declared_as_text() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id,ts,amt\n1,2024-01-01T00:00:00Z,10.00\n2,2024-01-01T00:00:00Z,10.00\n",
    );
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER, ts TEXT, amt VARCHAR(20))",
            "INSERT INTO t VALUES (1, '2024-01-01T00:00:00.5Z', '10.004')",
            "INSERT INTO t VALUES (2, '2024-01-01T00:00:02Z', '10.02')",
        ],
    );
    w.write(
        "job.toml",
        job("[[fields]]\nname = \"ts\"\ntolerance = { seconds = 1 }\n\n\
             [[fields]]\nname = \"amt\"\ntolerance = { absolute = 0.01 }\n"),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.findings("case"),
        [
            finding("mismatch", json!({"id": 2}), Some("ts")),
            finding("mismatch", json!({"id": 2}), Some("amt")),
        ]
        .into_iter()
        .collect()
    );
}

/// With recheck on and more findings than `max_records`, the records written are the
/// first ones in key order, and the counts stay exact.
#[test]
fn truncated_reports_keep_key_order_with_recheck() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,a\n3,a\n4,a\n");
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t VALUES (1, 'b'), (2, 'b'), (3, 'b'), (4, 'b')",
        ],
    );
    w.write(
        "job.toml",
        job("[compare]\nrecheck = true\n\n[report]\nmax_records = 2\n"),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let keys: Vec<_> = w.jsonl("case").iter().map(|r| r["key"]["id"].clone()).collect();
    assert_eq!(keys, vec![json!(1), json!(2)]);
    let summary = w.summary("case");
    assert_eq!(summary["mismatched_rows"], json!(4));
    assert_eq!(summary["truncated"], json!(true));
}

/// Which declared type wins must not depend on which side is the owner: an epoch number
/// against a DATETIME compares as a timestamp both ways.
#[test]
fn declared_types_resolve_the_same_whichever_side_declares_them() {
    let w = Workdir::new();
    w.write("owner.jsonl", "{\"id\": 1, \"u\": 1704067200}\n");
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER, u DATETIME)",
            "INSERT INTO t VALUES (1, '2024-01-01 00:00:00')",
        ],
    );
    w.write(
        "job.toml",
        "[owner]\ntype = \"jsonl\"\npath = \"owner.jsonl\"\nkey = [\"id\"]\n\n\
         [replica]\ntype = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]\n",
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_CONSISTENT);
}

/// A decimal whose exponent overflows is a mismatch with a reason, never a panic.
#[test]
fn overflowing_decimal_exponent_is_a_reasoned_mismatch() {
    let w = Workdir::new();
    w.write("owner.csv", "id,amt\n1,10e9223372036854775807\n");
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER, amt NUMERIC)",
            "INSERT INTO t VALUES (1, 1)",
        ],
    );
    w.write(
        "job.toml",
        job("[[fields]]\nname = \"amt\"\ntype = \"decimal\"\n"),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let records = w.jsonl("case");
    assert_eq!(records.len(), 1);
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not a decimal")
    );
}

/// UUID keys stored without hyphens or in upper case are found again by key at the
/// recheck, and duplicates of them across a page boundary are duplicates, not an order
/// failure.
#[test]
fn uuid_keys_stored_in_other_forms_page_and_recheck() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id,v\nb0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,z\nc0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,y\n",
    );
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id UUID, v TEXT)",
            "INSERT INTO t VALUES ('b0eebc999c0b4ef8bb6d6bb9bd380a11', 'y')",
            "INSERT INTO t VALUES ('C0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'y')",
            "INSERT INTO t VALUES ('{c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'y')",
        ],
    );
    w.write("job.toml", job("[compare]\nrecheck = true\npage_size = 1\n"));
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let b = "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let c = "c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(
        w.findings("case"),
        [
            finding("mismatch", json!({ "id": b }), Some("v")),
            finding("duplicate_key", json!({ "id": c }), None),
        ]
        .into_iter()
        .collect()
    );
}
