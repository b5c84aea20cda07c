//! `recon run` end to end: the real binary in a fresh folder; assertions on the exit
//! status, the report files and stderr.

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::{
    EXIT_CONSISTENT, EXIT_FAILED, EXIT_INCONSISTENT, EXIT_USAGE, Finding, Workdir, assert_exit, finding,
    stderr, stdout,
};

fn set(findings: impl IntoIterator<Item = Finding>) -> BTreeSet<Finding> {
    findings.into_iter().collect()
}

/// A CSV-owner job over `owner.csv` against `replica`'s TOML body, comparing `fields`.
fn job_toml(owner: &str, replica: &str, extra: &str) -> String {
    format!("version = 1\nname = \"case\"\n\n[owner]\n{owner}\n\n[replica]\n{replica}\n\n{extra}\n")
}

/// Asserts the job's summary has these counts (and nothing else found).
fn assert_counts(w: &Workdir, job: &str, expected: &[(&str, u64)]) {
    let summary = w.summary(job);
    for (name, value) in expected {
        assert_eq!(
            summary[*name],
            json!(*value),
            "summary.{name} of {job}: {summary:#}"
        );
    }
}

// --- the demo -------------------------------------------------------------------------

#[test]
fn demo_jobs_find_exactly_the_planted_inconsistencies() {
    let w = Workdir::new();
    let jobs = format!("{}/jobs", env!("CARGO_MANIFEST_DIR"));
    let out = w.run(&["run", &jobs, "--out", "out"]);
    assert_exit(&out, EXIT_INCONSISTENT);

    // The model of fixtures/demo/build.py's planted inconsistencies.
    let orders = set([
        finding("mismatch", json!({"id": 6}), Some("amount")),
        finding("mismatch", json!({"id": 7}), Some("status")),
        finding("missing_in_replica", json!({"id": 8}), None),
        finding("mismatch", json!({"id": 10}), Some("currency")),
        finding("missing_in_owner", json!({"id": 13}), None),
    ]);
    let items = set([
        finding("mismatch", json!({"sku": "SKU-200"}), Some("price")),
        finding("mismatch", json!({"sku": "SKU-300"}), Some("name")),
        finding("dangling_reference", json!({"sku": "SKU-999"}), None),
    ]);
    let inventory = set([
        finding(
            "mismatch",
            json!({"warehouse": "BER", "sku": "SKU-200"}),
            Some("on_hand"),
        ),
        finding(
            "duplicate_key",
            json!({"warehouse": "BER", "sku": "SKU-300"}),
            None,
        ),
        finding(
            "missing_in_replica",
            json!({"warehouse": "LIS", "sku": "SKU-400"}),
            None,
        ),
    ]);
    assert_eq!(w.findings("orders-mirror"), orders);
    assert_eq!(w.findings("order-items-prices"), items);
    assert_eq!(w.findings("inventory-snapshot"), inventory);

    assert_counts(
        &w,
        "orders-mirror",
        &[
            ("owner_rows", 12),
            ("replica_rows", 12),
            ("missing_in_replica", 1),
            ("missing_in_owner", 1),
            ("mismatched_rows", 3),
            ("duplicate_keys", 0),
            ("dangling_references", 0),
            ("skipped_recent", 1),
            ("records_written", 5),
        ],
    );
    assert_eq!(
        w.summary("orders-mirror")["field_mismatches"],
        json!({"status": 1, "amount": 1, "currency": 1})
    );
    assert_counts(
        &w,
        "order-items-prices",
        &[
            ("owner_rows", 5),
            ("replica_rows", 8),
            ("missing_in_replica", 0),
            ("missing_in_owner", 0),
            ("mismatched_rows", 2),
            ("dangling_references", 1),
            ("records_written", 3),
        ],
    );
    assert_eq!(
        w.summary("order-items-prices")["field_mismatches"],
        json!({"name": 1, "price": 1})
    );
    assert_counts(
        &w,
        "inventory-snapshot",
        &[
            ("owner_rows", 6),
            ("replica_rows", 6),
            ("missing_in_replica", 1),
            ("missing_in_owner", 0),
            ("mismatched_rows", 1),
            ("duplicate_keys", 1),
            ("records_written", 3),
        ],
    );
    for job in ["orders-mirror", "order-items-prices", "inventory-snapshot"] {
        assert_eq!(w.summary(job)["status"], "inconsistent", "{job}");
        assert_eq!(w.summary(job)["truncated"], false, "{job}");
    }
    let dup = w
        .jsonl("inventory-snapshot")
        .into_iter()
        .find(|r| r["kind"] == "duplicate_key")
        .expect("duplicate record");
    assert_eq!(dup["side"], "replica");
    assert_eq!(dup["count"], 2);
}

// --- equal data and normalization -----------------------------------------------------

const NORMALIZED_FIELDS: &str = r#"
[[fields]]
name = "amount"
type = "decimal"

[[fields]]
name = "changed"
type = "timestamp"

[[fields]]
name = "active"
type = "bool"

[[fields]]
name = "note"
"#;

const NORMALIZED_OWNER_CSV: &str = "\
id,amount,changed,active,note
1,10.5,2024-05-01T10:00:00Z,t,hello
2,3,2024-05-01T12:00:00+02:00,true,
3,0.10,2024-05-01T10:00:00.000Z,1,x y
";

fn assert_consistent(w: &Workdir) {
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_CONSISTENT);
    let summary = w.summary("case");
    assert_eq!(summary["status"], "consistent", "{summary:#}");
    assert_eq!(summary["records_written"], 0);
    assert!(w.jsonl("case").is_empty(), "{:?}", w.jsonl("case"));
}

#[test]
fn equal_data_csv_against_sqlite_is_consistent() {
    let w = Workdir::new();
    w.write("owner.csv", NORMALIZED_OWNER_CSV);
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, amount TEXT, changed TEXT, active, note TEXT)",
            "INSERT INTO t VALUES (3, '0.1', '2024-05-01T12:00:00+02:00', 1, 'x y')",
            "INSERT INTO t VALUES (1, '10.50', '2024-05-01T12:00:00+02:00', 'true', 'hello')",
            "INSERT INTO t VALUES (2, '3.000', '2024-05-01T10:00:00Z', 1, NULL)",
        ],
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            NORMALIZED_FIELDS,
        ),
    );
    assert_consistent(&w);
}

#[test]
fn equal_data_csv_against_jsonl_is_consistent() {
    let w = Workdir::new();
    w.write("owner.csv", NORMALIZED_OWNER_CSV);
    w.write(
        "replica.jsonl",
        concat!(
            r#"{"id": 2, "amount": 3.00, "changed": "2024-05-01T06:00:00-04:00", "active": "1", "note": null}"#,
            "\n",
            r#"{"id": 1, "amount": 10.50, "changed": "2024-05-01T10:00:00+00:00", "active": true, "note": "hello"}"#,
            "\n",
            r#"{"id": 3, "amount": "0.100", "changed": "2024-05-01T10:00:00Z", "active": "t", "note": "x y"}"#,
            "\n",
        ),
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"jsonl\"\npath = \"replica.jsonl\"\nkey = [\"id\"]",
            NORMALIZED_FIELDS,
        ),
    );
    assert_consistent(&w);
}

#[test]
fn null_and_empty_string_differ() {
    let w = Workdir::new();
    w.write(
        "owner.jsonl",
        "{\"id\": 1, \"note\": null}\n{\"id\": 2, \"note\": \"\"}\n{\"id\": 3, \"note\": null}\n",
    );
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)",
            "INSERT INTO t VALUES (1, ''), (2, NULL), (3, NULL)",
        ],
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"jsonl\"\npath = \"owner.jsonl\"\nkey = [\"id\"]",
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            "[[fields]]\nname = \"note\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let records = w.jsonl("case");
    assert_eq!(
        w.findings("case"),
        set([
            finding("mismatch", json!({"id": 1}), Some("note")),
            finding("mismatch", json!({"id": 2}), Some("note")),
        ])
    );
    let one = records.iter().find(|r| r["key"]["id"] == 1).unwrap();
    assert_eq!(one["owner"], json!(null));
    assert_eq!(one["replica"], json!(""));
    let two = records.iter().find(|r| r["key"]["id"] == 2).unwrap();
    assert_eq!(two["owner"], json!(""));
    assert_eq!(two["replica"], json!(null));
}

// --- keys -----------------------------------------------------------------------------

#[test]
fn unsorted_integer_keys_in_csv_against_sqlite() {
    let w = Workdir::new();
    // Sorted as text, as exports often are: 1, 10, 100, 11, 2, ..., 9.
    let mut ids: Vec<i64> = (1..=12).chain([100, 1000]).collect();
    ids.sort_by_key(|i| i.to_string());
    let mut csv = String::from("id,name\n");
    for id in &ids {
        csv.push_str(&format!("{id},n{id}\n"));
    }
    w.write("owner.csv", csv);
    let mut inserts = vec!["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)".to_string()];
    for id in &ids {
        let name = if *id == 10 {
            "changed".to_string()
        } else {
            format!("n{id}")
        };
        inserts.push(format!("INSERT INTO t VALUES ({id}, '{name}')"));
    }
    let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
    w.sqlite("replica.db", &inserts);
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            "[[fields]]\nname = \"name\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.findings("case"),
        set([finding("mismatch", json!({"id": 10}), Some("name"))])
    );
    assert_counts(
        &w,
        "case",
        &[("owner_rows", 14), ("replica_rows", 14), ("mismatched_rows", 1)],
    );
}

#[test]
fn composite_text_keys_with_mixed_case_and_non_ascii() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "region,code,qty\n\
         us,zebra,5\n\
         eu,Äpfel,1\n\
         EU,äpfel,2\n\
         us,Ωmega,6\n\
         eu,apfel,3\n\
         us,Zebra,4\n\
         us,ñandú,7\n\
         eu,日本,8\n",
    );
    w.sqlite(
        "replica.db",
        &[
            "CREATE TABLE t (region TEXT, code TEXT, qty INTEGER, PRIMARY KEY (region, code))",
            "INSERT INTO t VALUES ('eu', 'Äpfel', 1), ('EU', 'äpfel', 20), ('eu', 'apfel', 3)",
            "INSERT INTO t VALUES ('us', 'Zebra', 4), ('us', 'zebra', 5), ('us', 'ñandú', 7)",
            "INSERT INTO t VALUES ('eu', '日本', 8), ('eu', 'Apfel', 9)",
        ],
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"region\", \"code\"]",
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"region\", \"code\"]",
            "[[fields]]\nname = \"qty\"\ntype = \"integer\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.findings("case"),
        set([
            finding("mismatch", json!({"region": "EU", "code": "äpfel"}), Some("qty")),
            finding(
                "missing_in_replica",
                json!({"region": "us", "code": "Ωmega"}),
                None
            ),
            finding("missing_in_owner", json!({"region": "eu", "code": "Apfel"}), None),
        ])
    );
    // Key columns keep their order in the record.
    let text = std::fs::read_to_string(w.report_dir("case").join("inconsistencies.jsonl")).unwrap();
    assert!(text.contains(r#""key":{"region":"EU","code":"äpfel"}"#), "{text}");
}

#[test]
fn duplicate_key_names_side_and_count() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n2,b\n1,a\n2,b\n3,c\n2,b\n");
    w.write("replica.csv", "id,v\n1,a\n2,b\n3,c\n3,c\n");
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let records = w.jsonl("case");
    let dups: BTreeSet<(String, String, u64)> = records
        .iter()
        .filter(|r| r["kind"] == "duplicate_key")
        .map(|r| {
            (
                r["key"]["id"].as_str().unwrap().to_string(),
                r["side"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dups,
        BTreeSet::from([("2".into(), "owner".into(), 3), ("3".into(), "replica".into(), 2)])
    );
    assert_eq!(records.len(), 2, "only the duplicates: {records:?}");
    assert_counts(
        &w,
        "case",
        &[("duplicate_keys", 2), ("owner_rows", 5), ("replica_rows", 4)],
    );
}

// --- reference relation ---------------------------------------------------------------

#[test]
fn reference_relation_reports_dangling_and_mismatch_with_replica_key() {
    let w = Workdir::new();
    w.write(
        "products.jsonl",
        "{\"sku\": \"B\", \"name\": \"Bee\", \"price\": {\"amount\": 20.00}}\n\
         {\"sku\": \"A\", \"name\": \"Ant\", \"price\": {\"amount\": 10}}\n",
    );
    w.write(
        "items.csv",
        "order_id,line_no,product_id,product_name,unit_price\n\
         2,1,B,Bee,20\n\
         1,1,A,Ant,10.0\n\
         1,2,B,Bee,25\n\
         3,1,Z,Zed,1\n\
         3,2,A,ant,10\n",
    );
    w.write(
        "job.toml",
        "name = \"case\"\nrelation = \"reference\"\n\n\
         [owner]\ntype = \"jsonl\"\npath = \"products.jsonl\"\nkey = [\"sku\"]\n\
         columns = { price = \"/price/amount\" }\n\n\
         [replica]\ntype = \"csv\"\npath = \"items.csv\"\nkey = [\"product_id\"]\n\
         row_key = [\"order_id\", \"line_no\"]\n\n\
         [[fields]]\nowner = \"name\"\nreplica = \"product_name\"\n\n\
         [[fields]]\nowner = \"price\"\nreplica = \"unit_price\"\ntype = \"decimal\"\n",
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let mut got: Vec<(String, String, Option<String>, String)> = w
        .jsonl("case")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                serde_json::to_string(&r["key"]).unwrap(),
                r.get("field").and_then(|f| f.as_str()).map(str::to_string),
                serde_json::to_string(&r["replica_key"]).unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut expected = vec![
        (
            "dangling_reference".to_string(),
            r#"{"sku":"Z"}"#.to_string(),
            None,
            r#"{"line_no":"1","order_id":"3"}"#.to_string(),
        ),
        (
            "mismatch".to_string(),
            r#"{"sku":"A"}"#.to_string(),
            Some("name".to_string()),
            r#"{"line_no":"2","order_id":"3"}"#.to_string(),
        ),
        (
            "mismatch".to_string(),
            r#"{"sku":"B"}"#.to_string(),
            Some("price".to_string()),
            r#"{"line_no":"2","order_id":"1"}"#.to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(got, expected);
    assert_counts(&w, "case", &[("dangling_references", 1), ("mismatched_rows", 2)]);
}

// --- values -----------------------------------------------------------------------------

#[test]
fn tolerances_hold_at_the_boundary_and_fail_beyond() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id,v,w\n1,10,100\n2,10,100\n3,10,100\n4,10,100\n5,10,100\n",
    );
    w.write(
        "replica.csv",
        "id,v,w\n1,10.5,101\n2,9.5,99\n3,10.51,100\n4,9.49,101.01\n5,10,98.99\n",
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "[[fields]]\nname = \"v\"\ntype = \"decimal\"\ntolerance = { absolute = 0.5 }\n\n\
             [[fields]]\nname = \"w\"\ntype = \"decimal\"\ntolerance = { relative = 0.01 }\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.findings("case"),
        set([
            finding("mismatch", json!({"id": "3"}), Some("v")),
            finding("mismatch", json!({"id": "4"}), Some("v")),
            finding("mismatch", json!({"id": "4"}), Some("w")),
            finding("mismatch", json!({"id": "5"}), Some("w")),
        ])
    );
    assert_counts(&w, "case", &[("mismatched_rows", 3)]);
    assert_eq!(w.summary("case")["field_mismatches"], json!({"v": 2, "w": 2}));
}

#[test]
fn unparseable_typed_value_is_a_mismatch_with_reason() {
    let w = Workdir::new();
    w.write("owner.csv", "id,amount\n1,10.00\n2,5\n");
    w.write("replica.csv", "id,amount\n1,ten\n2,5.0\n");
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "[[fields]]\nname = \"amount\"\ntype = \"decimal\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let records = w.jsonl("case");
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["kind"], "mismatch");
    assert_eq!(r["key"], json!({"id": "1"}));
    assert_eq!(r["field"], "amount");
    assert_eq!(r["replica"], "ten");
    let reason = r["reason"].as_str().expect("a reason");
    assert!(!reason.is_empty());
}

// --- reports ----------------------------------------------------------------------------

#[test]
fn max_records_truncates_records_but_not_counts() {
    let w = Workdir::new();
    let mut owner = String::from("id,v\n");
    for id in 1..=10 {
        owner.push_str(&format!("{id},x\n"));
    }
    w.write("owner.csv", owner);
    w.write("replica.csv", "id,v\n");
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "[report]\nmax_records = 3\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_counts(
        &w,
        "case",
        &[
            ("owner_rows", 10),
            ("replica_rows", 0),
            ("missing_in_replica", 10),
            ("records_written", 3),
        ],
    );
    assert_eq!(w.summary("case")["truncated"], true);
    assert_eq!(w.jsonl("case").len(), 3);
    let csv = std::fs::read_to_string(w.report_dir("case").join("inconsistencies.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and 3 rows: {csv}");
}

#[test]
fn format_jsonl_writes_no_csv() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n");
    w.write("replica.csv", "id,v\n1,b\n");
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "",
        ),
    );
    let out = w.run(&["run", "job.toml", "--out", "out", "--format", "jsonl"]);
    assert_exit(&out, EXIT_INCONSISTENT);
    assert!(w.report_dir("case").join("summary.json").is_file());
    assert_eq!(w.jsonl("case").len(), 1);
    assert!(!w.report_dir("case").join("inconsistencies.csv").exists());
}

#[test]
fn csv_report_has_the_exact_header_and_rows() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,b\n");
    w.write("replica.csv", "id,v\n1,A\n");
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let csv = std::fs::read_to_string(w.report_dir("case").join("inconsistencies.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "kind,key,field,owner_value,replica_value");
    let mut rows = lines[1..].to_vec();
    rows.sort();
    assert_eq!(rows, vec!["mismatch,1,v,a,A", "missing_in_replica,2,,,"]);
}

#[test]
fn rows_changed_within_staleness_are_skipped() {
    let w = Workdir::new();
    w.write(
        "owner.csv",
        "id,v,changed_at\n1,a,2024-01-01T00:00:00Z\n2,b,2999-01-01T00:00:00Z\n3,c,2024-01-01T00:00:00Z\n",
    );
    w.write(
        "replica.csv",
        "id,v,changed_at\n1,a,2024-01-01T00:00:00Z\n2,B,2024-01-01T00:00:00Z\n3,C,2024-01-01T00:00:00Z\n",
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            "[[fields]]\nname = \"v\"\n\n\
             [compare]\nchanged_at = { owner = \"changed_at\", replica = \"changed_at\" }\nstaleness = \"5m\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(
        w.findings("case"),
        set([finding("mismatch", json!({"id": "3"}), Some("v"))])
    );
    assert_counts(&w, "case", &[("skipped_recent", 1), ("mismatched_rows", 1)]);
}

// --- run-time failures ------------------------------------------------------------------

/// Runs the job, expects exit 3 with one error line naming the job, `side` and `source`,
/// a failed summary and no records file.
fn assert_fails(w: &Workdir, side: &str, source: &str, also: &str) {
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_FAILED);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one stderr line expected:\n{err}");
    let line = lines[0];
    assert!(line.contains("case"), "names the job: {line}");
    assert!(line.contains(side), "names the side {side}: {line}");
    assert!(line.contains(source), "names the source {source}: {line}");
    assert!(
        line.to_lowercase().contains(&also.to_lowercase()),
        "mentions {also:?}: {line}"
    );
    let summary = w.summary("case");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    assert!(
        summary["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{summary:#}"
    );
    assert!(
        !w.report_dir("case").join("inconsistencies.jsonl").exists(),
        "a failed job leaves no records file"
    );
    assert!(!stdout(&out).contains("panicked"));
}

fn csv_pair_job(w: &Workdir, extra: &str) {
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"csv\"\npath = \"replica.csv\"\nkey = [\"id\"]",
            extra,
        ),
    );
}

#[test]
fn missing_csv_file_fails_the_job() {
    let w = Workdir::new();
    w.write("replica.csv", "id,v\n1,a\n");
    csv_pair_job(&w, "");
    assert_fails(&w, "owner", "owner.csv", "");
}

#[test]
fn ragged_csv_row_fails_naming_the_line() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,b\n3,c\n");
    w.write("replica.csv", "id,v\n1,a\n2,b,extra\n3,c\n");
    csv_pair_job(&w, "");
    assert_fails(&w, "replica", "replica.csv", "line 3");
}

#[test]
fn invalid_utf8_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,b\n");
    w.write("replica.csv", b"id,v\n1,a\n2,b\xff\xfe\n".as_slice());
    csv_pair_job(&w, "");
    assert_fails(&w, "replica", "replica.csv", "utf");
}

#[test]
fn malformed_json_line_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,b\n");
    w.write(
        "replica.jsonl",
        "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \n",
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"jsonl\"\npath = \"replica.jsonl\"\nkey = [\"id\"]",
            "",
        ),
    );
    assert_fails(&w, "replica", "replica.jsonl", "line 2");
}

#[test]
fn empty_key_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n2,b\n");
    w.write("replica.csv", "id,v\n1,a\n,b\n");
    csv_pair_job(&w, "");
    assert_fails(&w, "replica", "replica.csv", "key");
}

#[test]
fn key_column_missing_from_a_source_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n");
    w.write("replica.csv", "ident,v\n1,a\n");
    csv_pair_job(&w, "");
    assert_fails(&w, "replica", "replica.csv", "id");
}

#[test]
fn field_mapped_to_a_missing_column_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v,nosuch\n1,a,x\n");
    w.write("replica.csv", "id,v\n1,a\n");
    csv_pair_job(&w, "[[fields]]\nname = \"nosuch\"\n");
    assert_fails(&w, "replica", "replica.csv", "nosuch");
}

#[test]
fn sqlite_file_that_is_not_a_database_fails_the_job() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n");
    w.write(
        "replica.db",
        "this is not an SQLite database, just some text that is long enough\n",
    );
    w.write(
        "job.toml",
        job_toml(
            "type = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]",
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\"\nkey = [\"id\"]",
            "",
        ),
    );
    assert_fails(&w, "replica", "replica.db", "");
}

#[test]
fn a_failing_job_does_not_stop_the_others() {
    let w = Workdir::new();
    w.write("good.csv", "id,v\n1,a\n");
    w.write(
        "jobs/a-bad.toml",
        "name = \"bad\"\n[owner]\ntype = \"csv\"\npath = \"../nope.csv\"\nkey = [\"id\"]\n\
         [replica]\ntype = \"csv\"\npath = \"../good.csv\"\nkey = [\"id\"]\n",
    );
    w.write(
        "jobs/b-good.toml",
        "name = \"good\"\n[owner]\ntype = \"csv\"\npath = \"../good.csv\"\nkey = [\"id\"]\n\
         [replica]\ntype = \"csv\"\npath = \"../good.csv\"\nkey = [\"id\"]\n",
    );
    let out = w.run(&["run", "jobs", "--out", "out"]);
    assert_exit(&out, EXIT_FAILED);
    assert_eq!(w.summary("bad")["status"], "failed");
    assert_eq!(w.summary("good")["status"], "consistent");
    assert!(w.jsonl("good").is_empty());
    assert!(stderr(&out).contains("bad"), "{}", stderr(&out));
}

// --- usage ------------------------------------------------------------------------------

#[test]
fn invalid_job_exits_2_and_writes_nothing() {
    let w = Workdir::new();
    w.write("owner.csv", "id,v\n1,a\n");
    w.write(
        "job.toml",
        "name = \"case\"\ncolour = \"blue\"\n[owner]\ntype = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]\n\
         [replica]\ntype = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]\n",
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_USAGE);
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));
    assert!(!w.join("out").exists(), "nothing written when a job is invalid");
}

#[test]
fn help_and_version_exit_0() {
    let w = Workdir::new();
    let help = w.run(&["--help"]);
    assert_exit(&help, EXIT_CONSISTENT);
    assert!(stdout(&help).contains("run"), "{}", stdout(&help));
    assert!(stdout(&help).contains("check"));
    let run_help = w.run(&["run", "--help"]);
    assert_exit(&run_help, EXIT_CONSISTENT);
    assert!(stdout(&run_help).contains("--memory-budget"));
    let version = w.run(&["--version"]);
    assert_exit(&version, EXIT_CONSISTENT);
    assert!(
        stdout(&version).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        stdout(&version)
    );
}

#[test]
fn no_arguments_is_a_usage_error() {
    let w = Workdir::new();
    assert_exit(&w.run(&["run"]), EXIT_USAGE);
    assert_exit(&w.run(&["run", "missing.toml", "--out", "out"]), EXIT_USAGE);
    assert!(!w.join("out").exists());
}
