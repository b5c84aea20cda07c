//! The digest-first compare of two files (CSV or JSON Lines on both sides): each file is
//! indexed by key, row digest and byte offset, and only rows whose digests cannot vouch
//! for them are read again by offset and compared field by field. These tests check that
//! the findings are exactly those of the row-by-row compare, including the cases where a
//! row must be found again in the file (a byte-order mark, blank lines, quoted fields that
//! span lines), and against the same job with an SQLite replica, which still streams rows.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

/// A job named `case` with the given `[owner]` and `[replica]` bodies and more TOML after.
fn job_toml(owner: &str, replica: &str, extra: &str) -> String {
    format!("version = 1\nname = \"case\"\n\n[owner]\n{owner}\n\n[replica]\n{replica}\n\n{extra}\n")
}

/// Runs a job `case` comparing `owner.csv` with `replica.csv`, both read with `options`
/// (the key among them), with `extra` TOML after the sources.
fn run_csv_pair(w: &Workdir, options: &str, extra: &str) -> std::process::Output {
    let source = |path: &str| format!("type = \"csv\"\npath = \"{path}\"\n{options}");
    w.write(
        "job.toml",
        job_toml(&source("owner.csv"), &source("replica.csv"), extra),
    );
    w.run_job("job.toml")
}

/// Parses a JSON record as the report writes it.
fn record(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad expected record {text}: {e}"))
}

/// Asserts each named summary member has the value given.
fn assert_summary(summary: &Value, expected: &[(&str, Value)]) {
    for (name, value) in expected {
        assert_eq!(&summary[*name], value, "summary.{name}: {summary:#}");
    }
}

// --- CSV against CSV ------------------------------------------------------------------

const U1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const U2: &str = "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12";

/// Every kind of finding and every normalization that must not be a finding, with both
/// files in different orders: only the differing keys are read again, and what they
/// report is what a row-by-row compare reports.
#[test]
fn csv_against_csv_reports_exactly_the_differences() {
    let w = Workdir::new();
    let upper = U1.to_uppercase();
    w.write(
        "owner.csv",
        format!(
            "id,name,amount,ref,note,qty,price\n\
             9,iota,1,{U2},x,9,2.00\n\
             1,alpha,10.5,{U1},x,1,1.00\n\
             5,eps-first,5,{U2},x,5,5.00\n\
             3,gamma,3,{U2},x,3,3.00\n\
             7,eta,7,{U2},x,7,7.00\n\
             2,b,2,{U2},x,2,2.00\n\
             5,eps-second,5,{U2},x,5,5.00\n\
             11,kappa,3,{U1},y,11,11.00\n\
             6,zeta,6,{U2},,6,6.00\n\
             10,theta,10,{U2},x,10,10.00\n\
             8,theta8,8,{U2},x,8,2.00\n\
             12,mu,12,{U2},x,12,12.00\n"
        ),
    );
    w.write(
        "replica.csv",
        format!(
            "id,name,amount,ref,note,qty,price\n\
             8,theta8,8.0,{U2},x,8,2.04\n\
             12,mu,12,{U2},x,12,12.00\n\
             4,delta,4,{U2},x,4,4.00\n\
             11,kappa,3.000,{upper},y,11,11\n\
             6,zeta,6,{U2},n,6,6.00\n\
             2,B,2,{U2},x,2,2.00\n\
             10,theta,10,{U2},x,10,10.00\n\
             5,eps-replica,50,{U1},z,55,0\n\
             1,alpha,10.50,{upper},x,1,1.00\n\
             7,eta,7,{U2},x,x7,7.00\n\
             9,iota,1,{U2},x,9,2.10\n\
             12,mu,12,{U2},x,12,12.00\n"
        ),
    );
    let out = run_csv_pair(
        &w,
        "key = [\"id\"]",
        "[[fields]]\nname = \"name\"\n\n\
             [[fields]]\nname = \"amount\"\ntype = \"decimal\"\n\n\
             [[fields]]\nname = \"ref\"\ntype = \"uuid\"\n\n\
             [[fields]]\nname = \"note\"\n\n\
             [[fields]]\nname = \"qty\"\ntype = \"integer\"\n\n\
             [[fields]]\nname = \"price\"\ntolerance = { absolute = 0.05 }\n",
    );
    assert_exit(&out, EXIT_INCONSISTENT);

    // CSV keys compare as text, so records come in byte-wise key order. Key 12 is in
    // the replica twice, both copies equal to the owner's row: still a duplicate.
    let expected = [
        r#"{"kind":"duplicate_key","key":{"id":"12"},"side":"replica","count":2}"#,
        r#"{"kind":"mismatch","key":{"id":"2"},"field":"name","owner":"b","replica":"B"}"#,
        r#"{"kind":"missing_in_replica","key":{"id":"3"}}"#,
        r#"{"kind":"missing_in_owner","key":{"id":"4"}}"#,
        r#"{"kind":"duplicate_key","key":{"id":"5"},"side":"owner","count":2}"#,
        r#"{"kind":"mismatch","key":{"id":"6"},"field":"note","owner":null,"replica":"n"}"#,
        r#"{"kind":"mismatch","key":{"id":"7"},"field":"qty","owner":"7","replica":"x7","reason":"replica value \"x7\" is not an integer"}"#,
        r#"{"kind":"mismatch","key":{"id":"9"},"field":"price","owner":"2.00","replica":"2.10"}"#,
    ];
    assert_eq!(w.jsonl("case"), expected.map(record).to_vec());
    assert_summary(
        &w.summary("case"),
        &[
            ("status", json!("inconsistent")),
            ("owner_rows", json!(12)),
            ("replica_rows", json!(12)),
            ("missing_in_replica", json!(1)),
            ("missing_in_owner", json!(1)),
            ("mismatched_rows", json!(4)),
            ("duplicate_keys", json!(2)),
            ("dangling_references", json!(0)),
            ("skipped_recent", json!(0)),
            ("resolved_in_flight", json!(0)),
            ("truncated", json!(false)),
            ("records_written", json!(8)),
            (
                "field_mismatches",
                json!({"name": 1, "note": 1, "qty": 1, "price": 1}),
            ),
        ],
    );
}

/// Two files holding the same data written differently (trailing zeros, UUID case, the
/// same rows in another order) are consistent.
#[test]
fn csv_files_with_equal_data_written_differently_are_consistent() {
    let w = Workdir::new();
    let upper = U1.to_uppercase();
    w.write(
        "owner.csv",
        format!("id,amount,ref,note\n1,10.5,{U1},\n2,3,{U2},x\n3,0.10,{U1},y\n"),
    );
    w.write(
        "replica.csv",
        format!("id,amount,ref,note\n3,0.1,{U1},y\n1,10.50,{upper},\n2,3.000,{U2},x\n"),
    );
    let out = run_csv_pair(
        &w,
        "key = [\"id\"]",
        "[[fields]]\nname = \"amount\"\ntype = \"decimal\"\n\n\
             [[fields]]\nname = \"ref\"\ntype = \"uuid\"\n\n\
             [[fields]]\nname = \"note\"\n",
    );
    assert_exit(&out, EXIT_CONSISTENT);
    assert_eq!(w.jsonl("case"), Vec::<Value>::new());
    assert_summary(
        &w.summary("case"),
        &[
            ("status", json!("consistent")),
            ("owner_rows", json!(3)),
            ("replica_rows", json!(3)),
            ("mismatched_rows", json!(0)),
            ("records_written", json!(0)),
            ("field_mismatches", json!({})),
        ],
    );
}

/// Declared column types type a file's key and its untyped fields: with `id` an integer,
/// `007` and `7` are one key and keys order numerically; without, they are two keys. A
/// type for a column the file lacks is an error naming it.
#[test]
fn declared_column_types_type_the_key_and_the_fields() {
    let w = Workdir::new();
    w.write("owner.csv", "id,amount\n007,1.50\n10,2\n9,3\n");
    w.write("replica.csv", "id,amount\n9,3.0\n7,1.5\n10,2.00\n");
    let typed = "key = [\"id\"]\ntypes = { id = \"integer\", amount = \"decimal\" }";
    let out = run_csv_pair(&w, typed, "");
    assert_exit(&out, EXIT_CONSISTENT);
    assert_summary(
        &w.summary("case"),
        &[("owner_rows", json!(3)), ("mismatched_rows", json!(0))],
    );

    let out = run_csv_pair(&w, "key = [\"id\"]\ntypes = { id = \"integer\" }", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_summary(&w.summary("case"), &[("mismatched_rows", json!(3))]);

    let out = run_csv_pair(&w, "key = [\"id\"]", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_summary(
        &w.summary("case"),
        &[("missing_in_replica", json!(1)), ("missing_in_owner", json!(1))],
    );

    // JSON Lines: a declared type wins over the sampled one (ids as strings, then numbers).
    w.write(
        "owner.jsonl",
        "{\"id\": \"007\", \"amount\": \"1.50\"}\n{\"id\": \"10\", \"amount\": \"2\"}\n",
    );
    w.write(
        "replica.jsonl",
        "{\"id\": 10, \"amount\": 2.00}\n{\"id\": 7, \"amount\": 1.5}\n",
    );
    let source = |path: &str| {
        format!(
            "type = \"jsonl\"\npath = \"{path}\"\nkey = [\"id\"]\ntypes = {{ id = \"integer\", amount = \"decimal\" }}"
        )
    };
    w.write(
        "jsonl.toml",
        job_toml(&source("owner.jsonl"), &source("replica.jsonl"), ""),
    );
    assert_exit(&w.run_job("jsonl.toml"), EXIT_CONSISTENT);

    let out = run_csv_pair(&w, "key = [\"id\"]\ntypes = { idx = \"integer\" }", "");
    assert_exit(&out, EXIT_FAILED);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`types`: column `idx` not found (columns: id, amount)"),
        "{stderr}"
    );
}

// --- the staleness window -------------------------------------------------------------

/// Rows changed within the window are skipped whether or not they differ (and whichever
/// side changed, as a timestamp or as epoch seconds); rows changed before it are compared.
#[test]
fn rows_changed_within_the_staleness_window_are_skipped() {
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let recent = stamp(now - chrono::Duration::seconds(60));
    let recent_epoch = (now - chrono::Duration::seconds(90)).timestamp().to_string();
    let before_window = stamp(now - chrono::Duration::hours(2));
    let old = "2020-01-01T00:00:00Z";

    let w = Workdir::new();
    w.write(
        "owner.csv",
        format!(
            "id,v,changed_at\n\
             1,a,{recent}\n\
             2,a,{old}\n\
             3,same,{recent}\n\
             4,a,{recent_epoch}\n\
             6,a,{old}\n\
             7,same,{old}\n\
             8,a,{before_window}\n\
             9,a,{old}\n"
        ),
    );
    w.write(
        "replica.csv",
        format!(
            "id,v,changed_at\n\
             8,b,{before_window}\n\
             5,x,{recent}\n\
             1,b,{recent}\n\
             7,same,{old}\n\
             6,b,{recent_epoch}\n\
             3,same,{recent}\n\
             2,b,{old}\n\
             10,x,{old}\n"
        ),
    );
    let out = run_csv_pair(
        &w,
        "key = [\"id\"]",
        "[[fields]]\nname = \"v\"\n\n\
             [compare]\nchanged_at = { owner = \"changed_at\", replica = \"changed_at\" }\nstaleness = \"1h\"\n",
    );
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected = [
        r#"{"kind":"missing_in_owner","key":{"id":"10"}}"#,
        r#"{"kind":"mismatch","key":{"id":"2"},"field":"v","owner":"a","replica":"b"}"#,
        r#"{"kind":"mismatch","key":{"id":"8"},"field":"v","owner":"a","replica":"b"}"#,
        r#"{"kind":"missing_in_replica","key":{"id":"9"}}"#,
    ];
    assert_eq!(w.jsonl("case"), expected.map(record).to_vec());
    // Skipped: 1 (owner changed, differs), 3 (changed, equal), 4 (owner changed, epoch
    // seconds, missing in the replica), 5 (replica changed, missing in the owner) and 6
    // (replica changed, epoch seconds, differs).
    assert_summary(
        &w.summary("case"),
        &[
            ("status", json!("inconsistent")),
            ("owner_rows", json!(8)),
            ("replica_rows", json!(8)),
            ("skipped_recent", json!(5)),
            ("missing_in_replica", json!(1)),
            ("missing_in_owner", json!(1)),
            ("mismatched_rows", json!(2)),
            ("duplicate_keys", json!(0)),
            ("records_written", json!(4)),
            ("field_mismatches", json!({"v": 2})),
        ],
    );
}

// --- JSON Lines against JSON Lines ----------------------------------------------------

/// The first line of each file starts with a UTF-8 byte-order mark and holds a row that
/// must be read again (at offset 0); other rows that are read again follow blank lines,
/// whitespace-only lines or `\r\n` endings, and the last line has no line break.
#[test]
fn jsonl_rows_after_a_bom_or_blank_lines_are_read_again_correctly() {
    let w = Workdir::new();
    w.write(
        "owner.jsonl",
        "\u{feff}{\"id\": 1, \"name\": \"alpha\", \"price\": {\"amount\": 10.5, \"currency\": \"EUR\"}}\n\
         {\"id\": 2, \"name\": \"beta\", \"price\": {\"amount\": 3}}\r\n\
         \n   \n\
         {\"id\": 3, \"name\": \"gamma\", \"price\": {\"amount\": 7.25}}\n\
         {\"id\": 4, \"name\": \"delta\", \"price\": {\"amount\": 1}}",
    );
    w.write(
        "replica.jsonl",
        "\u{feff}{\"id\": 5, \"name\": \"epsilon\", \"price\": 9}\n\
         {\"id\": 4, \"name\": \"delta\", \"price\": 1.0}\n\
         \n\n\
         {\"id\": 3, \"name\": \"Gamma\", \"price\": 7.250}\r\n\
         \r\n\
         {\"id\": 1, \"name\": \"Alpha\", \"price\": 10.4}\n\
         {\"id\": 2, \"name\": \"beta\", \"price\": 3.00}\n",
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"jsonl\"\npath = \"owner.jsonl\"\nkey = [\"id\"]\ncolumns = { price = \"/price/amount\" }",
            "type = \"jsonl\"\npath = \"replica.jsonl\"\nkey = [\"id\"]",
            "",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    // JSON integers make integer keys; fields are every common column: name, price.
    let expected = [
        r#"{"kind":"mismatch","key":{"id":1},"field":"name","owner":"alpha","replica":"Alpha"}"#,
        r#"{"kind":"mismatch","key":{"id":1},"field":"price","owner":10.5,"replica":10.4}"#,
        r#"{"kind":"mismatch","key":{"id":3},"field":"name","owner":"gamma","replica":"Gamma"}"#,
        r#"{"kind":"missing_in_owner","key":{"id":5}}"#,
    ];
    assert_eq!(w.jsonl("case"), expected.map(record).to_vec());
    assert_summary(
        &w.summary("case"),
        &[
            ("status", json!("inconsistent")),
            ("owner_rows", json!(4)),
            ("replica_rows", json!(5)),
            ("missing_in_replica", json!(0)),
            ("missing_in_owner", json!(1)),
            ("mismatched_rows", json!(2)),
            ("duplicate_keys", json!(0)),
            ("records_written", json!(4)),
            ("field_mismatches", json!({"name": 2, "price": 1})),
        ],
    );
}

// --- CSV records that span lines ------------------------------------------------------

/// Quoted fields holding line breaks, delimiters and escaped quotes: a differing row is
/// found again by its offset and read whole, with the right values.
#[test]
fn csv_quoted_fields_spanning_lines_are_read_again_by_offset() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id,desc,qty\n\
         1,\"line one\nline two, with comma\",5\n\
         2,plain,6\n\
         3,\"say \"\"hi\"\",\nthen leave\",7\n\
         4,\"tail\n\",8\n",
    );
    w.write(
        "replica.csv",
        "id,desc,qty\n\
         3,\"say \"\"hi\"\",\nthen leave\",70\n\
         2,plain,6\n\
         4,\"tail\n\",8\n\
         1,\"line one\nline TWO, with comma\",5\n",
    );
    let out = run_csv_pair(&w, "key = [\"id\"]", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected = vec![
        json!({"kind": "mismatch", "key": {"id": "1"}, "field": "desc",
               "owner": "line one\nline two, with comma", "replica": "line one\nline TWO, with comma"}),
        json!({"kind": "mismatch", "key": {"id": "3"}, "field": "qty", "owner": "7", "replica": "70"}),
    ];
    assert_eq!(w.jsonl("case"), expected);
    assert_summary(
        &w.summary("case"),
        &[
            ("owner_rows", json!(4)),
            ("replica_rows", json!(4)),
            ("mismatched_rows", json!(2)),
            ("records_written", json!(2)),
            ("field_mismatches", json!({"desc": 1, "qty": 1})),
        ],
    );
}

/// The same with `;` as the delimiter, `\r\n` line endings (also inside a quoted field)
/// and a blank line before a differing record.
#[test]
fn csv_crlf_records_with_embedded_delimiters_are_read_again_by_offset() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id;desc;qty\r\n1;\"a;b\r\nc\";5\r\n2;x;6\r\n3;\"q;\r\n\";7\r\n",
    );
    w.write(
        "replica.csv",
        "id;desc;qty\r\n3;\"q;\r\n\";8\r\n2;x;6\r\n\r\n1;\"a;b\r\nC\";5\r\n",
    );
    let out = run_csv_pair(&w, "delimiter = \";\"\nkey = [\"id\"]", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected = vec![
        json!({"kind": "mismatch", "key": {"id": "1"}, "field": "desc",
               "owner": "a;b\r\nc", "replica": "a;b\r\nC"}),
        json!({"kind": "mismatch", "key": {"id": "3"}, "field": "qty", "owner": "7", "replica": "8"}),
    ];
    assert_eq!(w.jsonl("case"), expected);
    assert_summary(
        &w.summary("case"),
        &[
            ("owner_rows", json!(3)),
            ("replica_rows", json!(3)),
            ("mismatched_rows", json!(2)),
        ],
    );
}

/// A CSV file without a header whose first record (at offset 0, after a byte-order mark)
/// differs: it is read again with the same key and values as when it was indexed.
#[test]
fn csv_without_header_rereads_a_first_record_after_a_bom() {
    let w = Workdir::new();
    w.write("owner.csv", "\u{feff}1,a\n2,b\n3,c\n");
    w.write("replica.csv", "\u{feff}3,C\n2,b\n1,A\n");
    let out = run_csv_pair(&w, "header = false\nkey = [\"1\"]", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected = vec![
        json!({"kind": "mismatch", "key": {"1": "1"}, "field": "2", "owner": "a", "replica": "A"}),
        json!({"kind": "mismatch", "key": {"1": "3"}, "field": "2", "owner": "c", "replica": "C"}),
    ];
    assert_eq!(w.jsonl("case"), expected);
    assert_summary(
        &w.summary("case"),
        &[("owner_rows", json!(3)), ("replica_rows", json!(3))],
    );
}

/// A CSV record in the middle of the file whose first field starts with U+FEFF (as in
/// files concatenated from exports that each begin with a byte-order mark) keeps that
/// character when it is read again; the row-by-row compare against the same replica in
/// SQLite is the reference.
#[test]
fn csv_value_starting_with_a_bom_mid_file_is_read_again_unchanged() {
    let w = Workdir::new();
    w.write("owner.csv", "v,id\nfirst,1\n\u{feff}x,2\n");
    w.write("replica.csv", "v,id\nfirst,1\nx,2\n");
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (v TEXT, id TEXT)",
            "INSERT INTO t VALUES ('first', '1'), ('x', '2')",
        ],
    );
    let owner = "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]";
    let fields = "[[fields]]\nname = \"v\"\n";
    w.write(
        "oracle.toml",
        job_toml(
            owner,
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            fields,
        )
        .replace("name = \"case\"", "name = \"oracle\""),
    );
    w.write(
        "job.toml",
        job_toml(
            owner,
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            fields,
        ),
    );
    let expected = vec![
        json!({"kind": "mismatch", "key": {"id": "2"}, "field": "v", "owner": "\u{feff}x", "replica": "x"}),
    ];
    assert_exit(&w.run_job("oracle.toml"), EXIT_INCONSISTENT);
    assert_eq!(w.jsonl("oracle"), expected, "row by row");
    assert_exit(&w.run_job("job.toml"), EXIT_INCONSISTENT);
    assert_eq!(w.jsonl("case"), expected, "digest-first");
}

/// The same with the character in a key: the record read again must still have the key
/// it was indexed with, and the job reports the difference instead of failing.
#[test]
fn csv_key_starting_with_a_bom_mid_file_is_read_again_unchanged() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n\u{feff}2,b\n");
    w.write("replica.csv", "id,v\n1,a\n\u{feff}2,B\n");
    let out = run_csv_pair(&w, "key = [\"id\"]", "");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.jsonl("case"),
        vec![
            json!({"kind": "mismatch", "key": {"id": "\u{feff}2"}, "field": "v", "owner": "b", "replica": "B"})
        ]
    );
}

// --- equivalence with the row-by-row compare ------------------------------------------

/// Column order of the generated data.
const COLUMNS: [&str; 8] = [
    "id",
    "name",
    "amount",
    "ref",
    "note",
    "qty",
    "price",
    "changed_at",
];

type DataRow = [String; 8];

const NAME: usize = 1;
const AMOUNT: usize = 2;
const REF: usize = 3;
const NOTE: usize = 4;
const QTY: usize = 5;
const PRICE: usize = 6;
const CHANGED_AT: usize = 7;

/// Owner keys generated.
const ROWS: u64 = 3000;

// The planted differences, by owner row number; the sets are disjoint.
const MISSING_IN_REPLICA: &[u64] = &[11, 500, 1234, 2000, 2999];
const MISSING_IN_OWNER: &[u64] = &[3000, 3001, 3100, 4000, 9999];
const NAME_CHANGED: &[u64] = &[7, 77, 777, 1777, 2777];
const AMOUNT_CHANGED: &[u64] = &[13, 1313, 2313];
/// The replica's note is NULL (the owner's is not: n % 5 != 0).
const NOTE_NULLED: &[u64] = &[21, 1021];
/// The owner's note is NULL (n % 5 == 0), the replica's is not.
const NOTE_FILLED: &[u64] = &[25];
const QTY_UNPARSABLE_REPLICA: &[u64] = &[33, 1033, 2033];
const QTY_UNPARSABLE_OWNER: &[u64] = &[43];
const PRICE_WITHIN_TOLERANCE: &[u64] = &[51, 52, 53, 54, 55];
const PRICE_BEYOND_TOLERANCE: &[u64] = &[61, 62, 63];
const DUPLICATE_IN_OWNER: &[u64] = &[71, 1071];
const DUPLICATE_IN_REPLICA: &[u64] = &[81, 1081];
const TRIPLE_IN_REPLICA: &[u64] = &[91];
const DUPLICATE_ON_BOTH: &[u64] = &[101];
/// The owner changed recently and the name differs.
const RECENT_OWNER_CHANGE: &[u64] = &[111, 1111];
/// The replica changed recently (epoch seconds) and the quantity differs.
const RECENT_REPLICA_CHANGE: &[u64] = &[121];
/// The owner changed recently; the rows are equal.
const RECENT_EQUAL: &[u64] = &[131, 1131];
/// The owner changed recently; the replica lacks the row.
const RECENT_MISSING: &[u64] = &[141];
/// Name and quantity both differ.
const TWO_FIELDS_CHANGED: &[u64] = &[151, 1151];

/// A deterministic shuffle (xorshift), so that neither file is in key order.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn base_row(n: u64) -> DataRow {
    [
        n.to_string(),
        format!("name-{n}"),
        format!("{}.{:02}", n, n % 97),
        format!("{:08x}-0000-4000-8000-{:012x}", n, n * 7919),
        if n % 5 == 0 {
            String::new()
        } else {
            format!("n{n}")
        },
        (n % 50).to_string(),
        format!("{}.{:02}", n % 20, n % 100),
        "2020-01-01T00:00:00Z".to_string(),
    ]
}

/// `price` plus `thousandths` thousandths, exactly, as text.
fn price_plus(price: &str, thousandths: u64) -> String {
    let (units, cents) = price.split_once('.').expect("price has a point");
    let total = units.parse::<u64>().unwrap() * 1000 + cents.parse::<u64>().unwrap() * 10 + thousandths;
    format!("{}.{:03}", total / 1000, total % 1000)
}

/// The generated owner and replica rows (shuffled), and the findings and counts a correct
/// compare reports for them.
struct DataSet {
    owner: Vec<DataRow>,
    replica: Vec<DataRow>,
    findings: BTreeSet<Finding>,
}

fn generate() -> DataSet {
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::seconds(60))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let recent_epoch = (now - chrono::Duration::seconds(90)).timestamp().to_string();
    let is = |set: &[u64], n: u64| set.contains(&n);
    let key = |n: u64| json!({ "id": n.to_string() });
    let mut owner = Vec::new();
    let mut replica = Vec::new();
    let mut findings = BTreeSet::new();
    let mut mismatch = |n: u64, field: &str| findings.insert(finding("mismatch", key(n), Some(field)));

    for n in 0..ROWS {
        let o = base_row(n);
        // The replica writes equal values differently: trailing zeros, upper-case UUIDs.
        let mut r = o.clone();
        if n % 2 == 0 {
            r[AMOUNT].push('0');
        } else {
            r[REF] = r[REF].to_uppercase();
        }
        let mut o = o;
        if is(NAME_CHANGED, n) {
            r[NAME] = format!("renamed-{n}");
            mismatch(n, "name");
        }
        if is(AMOUNT_CHANGED, n) {
            r[AMOUNT] = format!("{}.{:02}", n + 1, n % 97);
            mismatch(n, "amount");
        }
        if is(NOTE_NULLED, n) {
            r[NOTE] = String::new();
            mismatch(n, "note");
        }
        if is(NOTE_FILLED, n) {
            r[NOTE] = "filled".into();
            mismatch(n, "note");
        }
        if is(QTY_UNPARSABLE_REPLICA, n) {
            r[QTY] = format!("q{n}");
            mismatch(n, "qty");
        }
        if is(QTY_UNPARSABLE_OWNER, n) {
            o[QTY] = "4x3".into();
            mismatch(n, "qty");
        }
        if is(PRICE_WITHIN_TOLERANCE, n) {
            r[PRICE] = price_plus(&o[PRICE], 5);
        }
        if is(PRICE_BEYOND_TOLERANCE, n) {
            r[PRICE] = price_plus(&o[PRICE], 20);
            mismatch(n, "price");
        }
        if is(RECENT_OWNER_CHANGE, n) {
            o[CHANGED_AT] = recent.clone();
            r[NAME] = format!("in-flight-{n}");
        }
        if is(RECENT_REPLICA_CHANGE, n) {
            r[CHANGED_AT] = recent_epoch.clone();
            r[QTY] = "49".into();
            assert_ne!(o[QTY], "49");
        }
        if is(RECENT_EQUAL, n) || is(RECENT_MISSING, n) {
            o[CHANGED_AT] = recent.clone();
        }
        if is(TWO_FIELDS_CHANGED, n) {
            r[NAME] = format!("both-{n}");
            r[QTY] = "999".into();
            mismatch(n, "name");
            mismatch(n, "qty");
        }
        let in_owner = if is(DUPLICATE_IN_OWNER, n) || is(DUPLICATE_ON_BOTH, n) {
            let mut second = o.clone();
            second[NAME] = format!("second-{n}");
            vec![o, second]
        } else {
            vec![o]
        };
        let copies = if is(MISSING_IN_REPLICA, n) || is(RECENT_MISSING, n) {
            0
        } else if is(DUPLICATE_IN_REPLICA, n) || is(DUPLICATE_ON_BOTH, n) {
            2
        } else if is(TRIPLE_IN_REPLICA, n) {
            3
        } else {
            1
        };
        owner.extend(in_owner);
        replica.extend(std::iter::repeat_n(r, copies));
    }
    for &n in MISSING_IN_OWNER {
        replica.push(base_row(n));
    }
    for &n in MISSING_IN_REPLICA {
        findings.insert(finding("missing_in_replica", key(n), None));
    }
    for &n in MISSING_IN_OWNER {
        findings.insert(finding("missing_in_owner", key(n), None));
    }
    for &n in [
        DUPLICATE_IN_OWNER,
        DUPLICATE_IN_REPLICA,
        TRIPLE_IN_REPLICA,
        DUPLICATE_ON_BOTH,
    ]
    .concat()
    .iter()
    {
        findings.insert(finding("duplicate_key", key(n), None));
    }
    shuffle(&mut owner, 0x9E37_79B9_7F4A_7C15);
    shuffle(&mut replica, 0xD1B5_4A32_D192_ED03);
    DataSet {
        owner,
        replica,
        findings,
    }
}

fn write_csv(path: &Path, rows: &[DataRow]) {
    let mut text = COLUMNS.join(",");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).expect("write CSV");
}

/// An SQLite table `t` holding the same text as the CSV file would, NULL for an empty
/// field: the same values, read by the row-by-row compare.
fn write_sqlite(path: &Path, rows: &[DataRow]) {
    let columns: Vec<String> = COLUMNS.iter().map(|c| format!("{c} TEXT")).collect();
    let mut statements = vec![format!("CREATE TABLE t ({})", columns.join(", "))];
    statements.push("BEGIN".into());
    for chunk in rows.chunks(400) {
        let values: Vec<String> = chunk
            .iter()
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .map(|v| {
                        if v.is_empty() {
                            "NULL".to_string()
                        } else {
                            format!("'{}'", v.replace('\'', "''"))
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        statements.push(format!("INSERT INTO t VALUES {}", values.join(", ")));
    }
    statements.push("COMMIT".into());
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    create_sqlite(path, &refs);
}

/// Runs the job file through the library with the given memory budget; its records and
/// summary.
fn run_library(job_path: &Path, out_dir: &Path, memory_budget: usize) -> (Vec<Value>, Value) {
    let job = recon::job::load_job(job_path).unwrap_or_else(|e| panic!("invalid job: {e:?}"));
    let options = recon::pipeline::RunOptions {
        out_dir: out_dir.to_path_buf(),
        formats: vec![recon::report::Format::Jsonl],
        memory_budget,
        observer: None,
    };
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(recon::pipeline::run_job(&job, &options));
    assert_ne!(
        outcome.summary.status,
        recon::report::Status::Failed,
        "job failed: {:?}",
        outcome.summary.error
    );
    let records = read_jsonl(&outcome.report_dir.join("inconsistencies.jsonl"));
    let summary = read_json(&outcome.report_dir.join("summary.json"));
    (records, summary)
}

/// The summary members that must not depend on how the rows were compared.
fn counts(summary: &Value) -> Value {
    let members = [
        "status",
        "owner_rows",
        "replica_rows",
        "missing_in_replica",
        "missing_in_owner",
        "mismatched_rows",
        "field_mismatches",
        "duplicate_keys",
        "dangling_references",
        "skipped_recent",
        "resolved_in_flight",
        "truncated",
        "records_written",
    ];
    members
        .iter()
        .map(|m| (m.to_string(), summary[*m].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A few thousand rows with a handful of planted differences of every kind: the
/// digest-first compare of two CSV files reports the same records and counts as the
/// row-by-row compare against the same replica in SQLite, and as the model; and so does
/// it with a memory budget far below the index's size, so that both indexes spill.
#[test]
fn digest_first_matches_the_row_by_row_compare_in_memory_and_spilled() {
    let data = generate();
    let dir = Workdir::new();
    write_csv(&dir.path().join("owner.csv"), &data.owner);
    write_csv(&dir.path().join("replica.csv"), &data.replica);
    write_sqlite(&dir.path().join("replica.db"), &data.replica);
    let fields = "[[fields]]\nname = \"name\"\n\n\
                  [[fields]]\nname = \"amount\"\ntype = \"decimal\"\n\n\
                  [[fields]]\nname = \"ref\"\ntype = \"uuid\"\n\n\
                  [[fields]]\nname = \"note\"\n\n\
                  [[fields]]\nname = \"qty\"\ntype = \"integer\"\n\n\
                  [[fields]]\nname = \"price\"\ntolerance = { absolute = 0.01 }\n\n\
                  [compare]\nchanged_at = { owner = \"changed_at\", replica = \"changed_at\" }\n\
                  staleness = \"1h\"\n";
    let owner = "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]";
    let files_job = dir.path().join("files.toml");
    std::fs::write(
        &files_job,
        job_toml(
            owner,
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            fields,
        ),
    )
    .expect("write job");
    let sqlite_job = dir.path().join("sqlite.toml");
    std::fs::write(
        &sqlite_job,
        job_toml(
            owner,
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            fields,
        ),
    )
    .expect("write job");

    let (file_records, file_summary) = run_library(&files_job, &dir.path().join("files"), 64 << 20);
    let (sqlite_records, sqlite_summary) = run_library(&sqlite_job, &dir.path().join("sqlite"), 64 << 20);
    // Each side gets half the budget: 4 KiB holds about a hundred index entries of the
    // three thousand, so both indexes are sorted in runs spilled to disk.
    let (spilled_records, spilled_summary) = run_library(&files_job, &dir.path().join("spilled"), 8192);
    // The same through the command line's documented option.
    let out = dir.run(&["run", "files.toml", "--out", "cli", "--memory-budget", "8192"]);
    assert_exit(&out, EXIT_INCONSISTENT);
    let cli_records = read_jsonl(&dir.join("cli/case/inconsistencies.jsonl"));
    let cli_summary = read_json(&dir.join("cli/case/summary.json"));

    assert_eq!(
        findings_of(&file_records),
        data.findings,
        "digest-first against the model"
    );
    // One record per finding, and two for the key duplicated on both sides.
    assert_eq!(file_records.len(), data.findings.len() + 1);
    assert_eq!(
        findings_of(&sqlite_records),
        data.findings,
        "row by row against the model"
    );
    assert_eq!(file_records, sqlite_records, "digest-first against row by row");
    assert_eq!(spilled_records, sqlite_records, "spilled against row by row");
    assert_eq!(
        cli_records, sqlite_records,
        "spilled from the command line against row by row"
    );

    let expected_counts = json!({
        "status": "inconsistent",
        "owner_rows": ROWS + 3,
        "replica_rows": ROWS - 6 + 5 + 5,
        "missing_in_replica": 5,
        "missing_in_owner": 5,
        "mismatched_rows": 20,
        "field_mismatches": {"name": 7, "amount": 3, "note": 3, "qty": 6, "price": 3},
        "duplicate_keys": 7,
        "dangling_references": 0,
        "skipped_recent": 6,
        "resolved_in_flight": 0,
        "truncated": false,
        "records_written": 39,
    });
    assert_eq!(counts(&sqlite_summary), expected_counts, "row by row");
    assert_eq!(counts(&file_summary), expected_counts, "digest-first");
    assert_eq!(counts(&spilled_summary), expected_counts, "digest-first, spilled");
    assert_eq!(
        counts(&cli_summary),
        expected_counts,
        "digest-first, spilled, command line"
    );
    assert_eq!(data.owner.len() as u64, ROWS + 3);
    assert_eq!(data.replica.len() as u64, ROWS - 6 + 5 + 5);
}

/// Files larger than the memory budget need a temporary folder: when it cannot be used,
/// the job fails with the folder and what to do, and says it failed in its summary.
#[test]
fn an_unusable_temporary_folder_fails_the_job_and_names_it() {
    let w = Workdir::new();
    let rows: String = (0..2000).map(|id| format!("{id},value {id}\n")).collect();
    w.write("owner.csv", format!("id,v\n{rows}"));
    w.write("replica.csv", format!("id,v\n{rows}"));
    let source = |path: &str| format!("type = \"csv\"\npath = \"{path}\"\nkey = [\"id\"]");
    w.write(
        "job.toml",
        job_toml(&source("owner.csv"), &source("replica.csv"), ""),
    );
    let missing = w.join("no-such-folder");
    let missing = missing.to_str().expect("a UTF-8 path");
    let out = w.run_with_env(
        &["run", "job.toml", "--out", "out", "--memory-budget", "8192"],
        &[("TMPDIR", missing)],
    );
    assert_exit(&out, EXIT_FAILED);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot spill the index to a temporary file in"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no-such-folder") && stderr.contains("TMPDIR"),
        "{stderr}"
    );
    let summary = read_json(&w.join("out/case/summary.json"));
    assert_eq!(summary["status"], "failed", "{summary}");
}
