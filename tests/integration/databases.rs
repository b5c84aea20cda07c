//! PostgreSQL and MySQL/MariaDB sources against live servers.
//!
//! The servers come from `RECON_TEST_POSTGRES_URL` and `RECON_TEST_MYSQL_URL`; without
//! them each test prints "skipped: ..." and passes, unless `RECON_REQUIRE_DATABASES=1`
//! (set by `.ci/run`), which turns every skip into a failure. Each test works in its own
//! uniquely named PostgreSQL schema and MySQL database, dropped when it ends, so tests
//! run in parallel.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::Connection;

use crate::support::db::*;
use crate::support::*;

const PG_TYPES: &str = "CREATE TABLE t (id integer PRIMARY KEY, amount numeric(12,2), \
     at timestamptz, flag boolean, ref uuid, doc jsonb, label text, code char(6), \
     raw bytea, day date, clock time, ratio double precision, big bigint)";

const MY_TYPES: &str = "CREATE TABLE t (id int PRIMARY KEY, amount DECIMAL(12,2), \
     at DATETIME(6), flag tinyint(1), ref char(36), doc JSON, \
     label varchar(100) CHARACTER SET utf8mb4, code char(6), raw varbinary(20), day date, \
     clock time(6), ratio double, big bigint)";

/// The same rows in each engine's spelling: timestamps as one UTC instant (PostgreSQL
/// given in +02:00), JSON with other key order and spacing, 4-byte emoji, accents, CJK.
const PG_ROWS: &str = "INSERT INTO t VALUES \
     (1, 1.50, '2024-03-01 14:30:00.123456+02', true, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', \
      '{\"a\": 1, \"b\": [1, 2], \"c\": {\"x\": null}}', 'héllo 😀 中文', 'ab', '\\x00ff10', \
      '2024-02-29', '23:59:59.5', 0.1, 9007199254740993), \
     (2, NULL, NULL, false, NULL, NULL, '', NULL, NULL, NULL, NULL, -0.0, NULL), \
     (3, 12345678.90, '1999-12-31 23:59:59+00', true, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', \
      '[1, 2.0, \"x\"]', 'Ωmega ñandú 日本語', 'xyz', '', '1999-12-31', '00:00:00', 1e300, -1), \
     (4, -0.01, '2024-01-01 00:00:00+00', false, 'c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', \
      '\"text\"', 'tail', 'x', '\\x41', '2000-01-01', '12:00:00', 2.5, 0)";

const MY_ROWS: &str = "INSERT INTO t VALUES \
     (1, 1.5, '2024-03-01 12:30:00.123456', 1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', \
      '{\"c\":{\"x\":null},\"b\":[1,2],\"a\":1.0}', 'héllo 😀 中文', 'ab', 0x00ff10, \
      '2024-02-29', '23:59:59.500000', 0.1, 9007199254740993), \
     (2, NULL, NULL, 0, NULL, NULL, '', NULL, NULL, NULL, NULL, 0, NULL), \
     (3, 12345678.9, '1999-12-31 23:59:59', 1, 'B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', \
      '[1,2,\"x\"]', 'Ωmega ñandú 日本語', 'xyz', '', '1999-12-31', '00:00:00', 1e300, -1), \
     (4, -0.01, '2024-01-01 00:00:00', 0, 'c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', \
      '\"text\"', 'tail', 'x', 0x41, '2000-01-01', '12:00:00', 2.5, 0)";

/// Sets up the typed table on both servers; returns them with the job's sources.
fn typed_tables(pg_url: &str, my_url: &str, tag: &str) -> (PgSchema, MyDatabase) {
    let pg = PgSchema::new(pg_url, tag);
    pg.exec(&[PG_TYPES, PG_ROWS]);
    let my = MyDatabase::new(my_url, tag);
    my.exec(&[MY_TYPES, MY_ROWS]);
    (pg, my)
}

#[test]
fn postgres_owner_and_mysql_replica_with_equal_data_are_consistent() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let (pg, my) = typed_tables(&pg_url, &my_url, "eq");
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("t", "[\"id\"]"), &my.source("t", "[\"id\"]"), ""),
    );
    let out = w.run_job("job.toml");
    assert_consistent(&w, &out);
    assert_eq!(w.summary("db")["owner_rows"], json!(4));
    assert_eq!(w.summary("db")["replica_rows"], json!(4));
}

#[test]
fn mysql_owner_and_postgres_replica_with_equal_data_are_consistent() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let (pg, my) = typed_tables(&pg_url, &my_url, "rev");
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &my.source("t", "[\"id\"]"),
            &pg.source("t", "[\"id\"]"),
            "[compare]\npage_size = 2\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_consistent(&w, &out);
}

#[test]
fn injected_differences_across_engines_are_found_exactly() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let (pg, my) = typed_tables(&pg_url, &my_url, "diff");
    my.exec(&[
        "UPDATE t SET label = 'tail ' WHERE id = 4",
        "UPDATE t SET amount = 1.51 WHERE id = 1",
        "UPDATE t SET at = '1999-12-31 23:59:59.000001' WHERE id = 3",
        "UPDATE t SET flag = 0 WHERE id = 3",
        "UPDATE t SET doc = '{\"a\": 1, \"b\": [2, 1], \"c\": {\"x\": null}}' WHERE id = 1",
        "UPDATE t SET ref = 'c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14' WHERE id = 4",
        "UPDATE t SET raw = 0x42 WHERE id = 4",
        "UPDATE t SET label = 'Ωmega ñandu 日本語' WHERE id = 3",
        "DELETE FROM t WHERE id = 2",
        "INSERT INTO t (id, label) VALUES (5, 'extra')",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("t", "[\"id\"]"), &my.source("t", "[\"id\"]"), ""),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let m = |id: i64, field: &str| finding("mismatch", json!({"id": id}), Some(field));
    let expected: BTreeSet<Finding> = [
        m(4, "label"),
        m(1, "amount"),
        m(3, "at"),
        m(1, "doc"),
        m(4, "ref"),
        m(4, "raw"),
        m(3, "label"),
        m(3, "flag"),
        finding("missing_in_replica", json!({"id": 2}), None),
        finding("missing_in_owner", json!({"id": 5}), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("db"), expected);
}

/// The differences planted in a replica of the typed table, as both engines spell them,
/// and what a job must find: a change in every kind of column, a value become NULL, a
/// row missing on each side.
fn planted(bytes: &str, flag: &str) -> (Vec<String>, BTreeSet<Finding>) {
    let updates = [
        "UPDATE t SET label = 'tail ' WHERE id = 4".to_string(),
        "UPDATE t SET amount = 1.51 WHERE id = 1".into(),
        "UPDATE t SET at = '1999-12-31 23:59:59.000001+00' WHERE id = 3".into(),
        format!("UPDATE t SET flag = {flag} WHERE id = 3"),
        "UPDATE t SET doc = '{\"a\": 1, \"b\": [2, 1], \"c\": {\"x\": null}}' WHERE id = 1".into(),
        "UPDATE t SET ref = 'c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14' WHERE id = 4".into(),
        format!("UPDATE t SET raw = {bytes} WHERE id = 4"),
        "UPDATE t SET label = 'Ωmega ñandu 日本語' WHERE id = 3".into(),
        "UPDATE t SET big = NULL WHERE id = 1".into(),
        "UPDATE t SET clock = '12:00:01' WHERE id = 4".into(),
        "DELETE FROM t WHERE id = 2".into(),
        "INSERT INTO t (id, label) VALUES (5, 'extra')".into(),
    ];
    let m = |id: i64, field: &str| finding("mismatch", json!({"id": id}), Some(field));
    let expected = [
        m(4, "label"),
        m(1, "amount"),
        m(3, "at"),
        m(3, "flag"),
        m(1, "doc"),
        m(4, "ref"),
        m(4, "raw"),
        m(3, "label"),
        m(1, "big"),
        m(4, "clock"),
        finding("missing_in_replica", json!({"id": 2}), None),
        finding("missing_in_owner", json!({"id": 5}), None),
    ];
    (updates.to_vec(), expected.into_iter().collect())
}

#[test]
fn postgres_to_postgres_finds_exactly_the_planted_differences() {
    // Both sides stream the same binary encodings: rows are judged by their bytes, and
    // only the ones that differ are decoded.
    let Some(pg_url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let (owner, replica) = (PgSchema::new(&pg_url, "same_o"), PgSchema::new(&pg_url, "same_r"));
    owner.exec(&[PG_TYPES, PG_ROWS]);
    replica.exec(&[PG_TYPES, PG_ROWS]);
    let (updates, expected) = planted("'\\x42'", "false");
    let updates: Vec<&str> = updates.iter().map(String::as_str).collect();
    replica.exec(&updates);
    finds_exactly(
        &owner.source("t", "[\"id\"]"),
        &replica.source("t", "[\"id\"]"),
        &expected,
    );
}

#[test]
fn mysql_to_mysql_finds_exactly_the_planted_differences() {
    let Some(my_url) = server_url("RECON_TEST_MYSQL_URL") else {
        return;
    };
    let (owner, replica) = (
        MyDatabase::new(&my_url, "same_o"),
        MyDatabase::new(&my_url, "same_r"),
    );
    owner.exec(&[MY_TYPES, MY_ROWS]);
    replica.exec(&[MY_TYPES, MY_ROWS]);
    let (updates, expected) = planted("0x42", "0");
    let updates: Vec<String> = updates.into_iter().map(|u| u.replace("+00'", "'")).collect();
    let updates: Vec<&str> = updates.iter().map(String::as_str).collect();
    replica.exec(&updates);
    finds_exactly(
        &owner.source("t", "[\"id\"]"),
        &replica.source("t", "[\"id\"]"),
        &expected,
    );
}

/// Runs a job over the two sources, with the default page size and with pages of one
/// row, and checks it finds exactly `expected` in 4 owner rows.
fn finds_exactly(owner: &str, replica: &str, expected: &BTreeSet<Finding>) {
    for compare in ["", "[compare]\npage_size = 1\n"] {
        let w = Workdir::new();
        w.write("job.toml", job(owner, replica, compare));
        let out = w.run_job("job.toml");
        assert_exit(&out, EXIT_INCONSISTENT);
        assert_eq!(&w.findings("db"), expected, "{compare}");
        assert_eq!(w.summary("db")["owner_rows"], json!(4));
    }
}

#[test]
fn composite_text_keys_with_mixed_case_and_non_ascii_merge_across_engines() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "ckey");
    let my = MyDatabase::new(&my_url, "ckey");
    let rows = "('us', 'zebra', 5), ('eu', 'Äpfel', 1), ('EU', 'äpfel', 2), ('us', 'Ωmega', 6), \
                ('eu', 'apfel', 3), ('us', 'Zebra', 4), ('us', 'ñandú', 7), ('eu', '日本', 8), \
                ('eu', 'z😀', 9), ('eu', 'zz', 10), ('us', 'k ', 11), ('US', 'a', 12)";
    pg.exec(&[
        "CREATE TABLE t (region text, code text, qty integer, PRIMARY KEY (region, code))",
        &format!("INSERT INTO t VALUES {rows}"),
    ]);
    my.exec(&[
        "CREATE TABLE t (region varchar(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, \
         code varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, qty int, PRIMARY KEY (region, code))",
        &format!("INSERT INTO t VALUES {rows}"),
        "UPDATE t SET qty = 20 WHERE region = 'EU' AND code = 'äpfel'",
        "DELETE FROM t WHERE region = 'us' AND code = 'Ωmega'",
        "INSERT INTO t VALUES ('eu', 'Apfel', 9)",
    ]);
    let key = "[\"region\", \"code\"]";
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &pg.source("t", key),
            &my.source("t", key),
            "[compare]\npage_size = 2\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected: BTreeSet<Finding> = [
        finding("mismatch", json!({"region": "EU", "code": "äpfel"}), Some("qty")),
        finding(
            "missing_in_replica",
            json!({"region": "us", "code": "Ωmega"}),
            None,
        ),
        finding("missing_in_owner", json!({"region": "eu", "code": "Apfel"}), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("db"), expected);
    assert_eq!(w.summary("db")["owner_rows"], json!(12));
}

#[test]
fn connection_failures_name_host_and_port_and_never_the_password() {
    let Some((_pg_url, my_url)) = both_servers() else {
        return;
    };
    let secret = "Sup3rS3cretPw";
    let w = Workdir::new();
    // Nothing listens on port 1; the MySQL server refuses the wrong password.
    let wrong_password = my_url.replacen("://root@", &format!("://root:{secret}@"), 1);
    w.write(
        "job.toml",
        job(
            &format!(
                "type = \"postgres\"\nurl = \"postgres://app:{secret}@127.0.0.1:1/db\"\ntable = \"t\"\nkey = [\"id\"]"
            ),
            &format!("type = \"mysql\"\nurl = \"{wrong_password}\"\ntable = \"t\"\nkey = [\"id\"]"),
            "",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_FAILED);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("cannot connect to 127.0.0.1:1"), "{text}");
    assert!(text.contains("postgres://app:****@127.0.0.1:1/db"), "{text}");
    let mut everything = text.clone();
    for entry in walk(&w.join("out")) {
        everything.push_str(&std::fs::read_to_string(entry).unwrap_or_default());
    }
    assert!(!everything.contains(secret), "the password leaked: {everything}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn example_jobs_find_exactly_their_planted_drift() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read setup script");
    pg_exec(&pg_url, &[read("jobs/postgres/setup.sql")]);
    my_exec(&my_url, &[read("jobs/mysql/setup.sql")]);
    let w = Workdir::new();
    let jobs = [root.join("jobs/postgres"), root.join("jobs/mysql")];
    let env = [
        ("ORDERS_DATABASE_URL", pg_url.as_str()),
        ("REPORTING_DATABASE_URL", my_url.as_str()),
    ];
    let args = |cmd: &'static str| -> Vec<String> {
        let mut a = vec![cmd.to_owned()];
        a.extend(jobs.iter().map(|j| j.display().to_string()));
        a
    };
    let check: Vec<String> = [args("check"), vec!["--connect".into()]].concat();
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    let out = w.run_with_env(&check, &env);
    assert_exit(&out, EXIT_CONSISTENT);

    let run: Vec<String> = [args("run"), vec!["--out".into(), "out".into()]].concat();
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let out = w.run_with_env(&run, &env);
    assert_exit(&out, EXIT_INCONSISTENT);
    let id = |n: i64| json!({ "id": n });
    let m = |n: i64, f: &str| finding("mismatch", id(n), Some(f));
    let expected: BTreeSet<Finding> = [
        finding("missing_in_replica", id(17), None),
        m(42, "status"),
        m(512, "amount"),
        m(777, "attributes"),
        finding("missing_in_owner", id(1001), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("pg-orders-mirror"), expected);
    let expected: BTreeSet<Finding> = [
        m(250, "amount"),
        m(333, "updated_at"),
        finding("missing_in_replica", id(600), None),
        m(901, "currency"),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("mysql-orders-read-model"), expected);
    let key = |w: &str, s: &str| json!({ "warehouse": w, "sku": s });
    let expected: BTreeSet<Finding> = [
        finding("mismatch", key("BER", "sku-100"), Some("on_hand")),
        finding("mismatch", key("MAD", "SKU-300"), Some("counted")),
        finding("missing_in_replica", key("LIS", "SKU-100"), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("mysql-inventory-snapshot"), expected);
}

#[test]
fn check_connect_lists_every_problem_without_reading_rows() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "chk");
    pg.exec(&["CREATE TABLE t (id integer PRIMARY KEY, ref uuid, day date, label text)"]);
    let my = MyDatabase::new(&my_url, "chk");
    my.exec(&["CREATE TABLE t (id int PRIMARY KEY, ref int, day date)"]);
    let w = Workdir::new();
    let fields = "[[fields]]\nname = \"ref\"\n[[fields]]\nname = \"day\"\n[[fields]]\nname = \"label\"\n\
                  [[fields]]\nname = \"gone\"\n";
    w.write(
        "job.toml",
        job(&pg.source("t", "[\"id\"]"), &my.source("t", "[\"id\"]"), fields),
    );
    let out = w.run(&["check", "--connect", "job.toml"]);
    assert_exit(&out, EXIT_USAGE);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("owner postgres") && l.contains("field `gone`: column `gone` not found")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("replica mysql") && l.contains("field `label`: column `label` not found")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("field `ref`: the owner column is uuid and the replica column `ref` is integer")),
        "{err}"
    );
    assert_eq!(lines.len(), 4, "one line per problem: {err}");
    assert!(lines.iter().all(|l| l.starts_with("error: job db: ")), "{err}");

    // The `where` filter is prepared on the server, so a wrong one is found too, and
    // a missing table is named with its server.
    w.write(
        "where.toml",
        job(
            &format!("{}\nwhere = \"nosuchcol = 1\"", pg.source("t", "[\"id\"]")),
            &my.source("t", "[\"id\"]"),
            "[[fields]]\nname = \"day\"\n",
        ),
    );
    w.write(
        "missing.toml",
        job(&pg.source("t", "[\"id\"]"), &my.source("nosuch", "[\"id\"]"), "")
            .replace("name = \"db\"", "name = \"missing\""),
    );
    let out = w.run(&["check", "--connect", "where.toml", "missing.toml"]);
    assert_exit(&out, EXIT_USAGE);
    let err = stderr(&out);
    assert!(
        err.contains("owner postgres")
            && err.contains("the `where` filter does not run")
            && err.contains("nosuchcol"),
        "{err}"
    );
    assert!(
        err.contains("table `") && err.contains("nosuch` not found on 127.0.0.1:3306"),
        "{err}"
    );

    // A source nobody answers for is a run-time failure, named by host and port.
    w.write(
        "down.toml",
        job(
            &pg.source("t", "[\"id\"]"),
            "type = \"mysql\"\nurl = \"mysql://root:pw@127.0.0.1:1/test\"\ntable = \"t\"\nkey = [\"id\"]",
            "",
        ),
    );
    let out = w.run(&["check", "--connect", "down.toml"]);
    assert_exit(&out, EXIT_FAILED);
    assert!(
        stderr(&out).contains("cannot connect to 127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(":pw@"), "{}", stderr(&out));
    // Without --connect nothing is touched: the same job is valid.
    assert_exit(&w.run(&["check", "down.toml"]), EXIT_CONSISTENT);
}

/// Runs `recon -v run job.toml --out out` in `w`; once the scan is over and the recheck
/// waits, runs `converge`; returns the finished output.
fn run_converging_during_recheck(w: &Workdir, converge: impl FnOnce()) -> std::process::Output {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recon"))
        .args(["-v", "--log-format", "json", "run", "job.toml", "--out", "out"])
        .current_dir(w.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start recon");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Rechecking inconsistent keys.") {
            break;
        }
    }
    assert!(seen.contains("Rechecking"), "the recheck never started:\n{seen}");
    converge();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut out = child.wait_with_output().expect("wait for recon");
    out.stderr = format!("{seen}{}", rest.join("\n")).into_bytes();
    out
}

#[test]
fn recheck_reads_inconsistent_keys_again_on_both_engines() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "rchk");
    pg.exec(&[
        "CREATE TABLE t (id integer PRIMARY KEY, status text)",
        "INSERT INTO t SELECT n, 'paid' FROM generate_series(1, 50) AS n",
    ]);
    let my = MyDatabase::new(&my_url, "rchk");
    let rows: Vec<String> = (1..=50).map(|n| format!("({n}, 'paid')")).collect();
    my.exec(&[
        "CREATE TABLE t (id int PRIMARY KEY, status varchar(20))",
        &format!("INSERT INTO t VALUES {}", rows.join(", ")),
        // In flight: replication will deliver these two while recon waits...
        "UPDATE t SET status = 'pending' WHERE id = 7",
        "DELETE FROM t WHERE id = 8",
        // ...and these two are real drift.
        "UPDATE t SET status = 'lost' WHERE id = 20",
        "DELETE FROM t WHERE id = 21",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &pg.source("t", "[\"id\"]"),
            &my.source("t", "[\"id\"]"),
            "[compare]\npage_size = 10\nrecheck_after = \"2s\"\n",
        ),
    );
    let out = run_converging_during_recheck(&w, || {
        my.exec(&[
            "UPDATE t SET status = 'paid' WHERE id = 7",
            "INSERT INTO t VALUES (8, 'paid')",
        ]);
    });
    assert_exit(&out, EXIT_INCONSISTENT);
    let expected: BTreeSet<Finding> = [
        finding("mismatch", json!({"id": 20}), Some("status")),
        finding("missing_in_replica", json!({"id": 21}), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("db"), expected);
    let summary = w.summary("db");
    assert_eq!(summary["resolved_in_flight"], json!(2));
    assert_eq!(summary["missing_in_replica"], json!(1));
    assert_eq!(summary["mismatched_rows"], json!(1));

    // And the other way round, drift on the PostgreSQL side converging.
    pg.exec(&["UPDATE t SET status = 'void' WHERE id = 30"]);
    let w2 = Workdir::new();
    w2.write(
        "job.toml",
        job(
            &my.source("t", "[\"id\"]"),
            &pg.source("t", "[\"id\"]"),
            "[compare]\nrecheck_after = \"2s\"\n",
        ),
    );
    let out = run_converging_during_recheck(&w2, || {
        pg.exec(&["UPDATE t SET status = 'paid' WHERE id = 30"]);
    });
    assert_exit(&out, EXIT_INCONSISTENT);
    let summary = w2.summary("db");
    assert_eq!(summary["resolved_in_flight"], json!(1), "{summary}");
    let expected: BTreeSet<Finding> = [
        finding("mismatch", json!({"id": 20}), Some("status")),
        finding("missing_in_owner", json!({"id": 21}), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(w2.findings("db"), expected);
}

#[test]
fn postgres_tls_is_used_as_the_url_asks() {
    let Some(pg_url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let ssl: String = block_on(async {
        let mut conn = sqlx::PgConnection::connect(&pg_url).await.expect("connect");
        sqlx::query_scalar("SHOW ssl")
            .fetch_one(&mut conn)
            .await
            .expect("SHOW ssl")
    });
    if ssl != "on" {
        eprintln!("skipped: the PostgreSQL server has ssl = {ssl}");
        return;
    }
    let pg = PgSchema::new(&pg_url, "tls");
    pg.exec(&[
        "CREATE TABLE t (id integer PRIMARY KEY, v text)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
    ]);
    let with = |mode: &str| {
        let sep = if pg_url.contains('?') { '&' } else { '?' };
        pg.source("t", "[\"id\"]").replace(
            "${RECON_TEST_POSTGRES_URL}",
            &format!("{pg_url}{sep}sslmode={mode}"),
        )
    };
    let w = Workdir::new();
    w.write("job.toml", job(&with("require"), &with("require"), ""));
    assert_consistent(&w, &w.run_job("job.toml"));
    // verify-full checks the certificate, which a test server's self-signed one fails.
    w.write("job.toml", job(&with("require"), &with("verify-full"), ""));
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_FAILED);
    assert!(
        stderr(&out).contains("cannot connect to 127.0.0.1:5432"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
}

#[test]
fn job_sql_runs_as_one_select_and_may_end_in_a_comment() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "one");
    pg.exec(&[
        "CREATE TABLE t (id integer PRIMARY KEY, status text)",
        "CREATE TABLE keep (id integer)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'a')",
    ]);
    let my = MyDatabase::new(&my_url, "one");
    my.exec(&[
        "CREATE TABLE t (id int PRIMARY KEY, status varchar(10))",
        "CREATE TABLE keep (id int)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'a')",
    ]);
    // A filter smuggling in more statements is refused by both servers, and the table it
    // tries to drop is still there.
    let escape = |table: &str| {
        format!("where = \"true)) TO STDOUT; DROP TABLE {table}; COPY (SELECT 1 AS id WHERE (true\"")
    };
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &format!(
                "{}\n{}",
                pg.source("t", "[\"id\"]"),
                escape(&format!("{}.keep", pg.name))
            ),
            &format!(
                "{}\n{}",
                my.source("t", "[\"id\"]"),
                escape(&format!("{}.keep", my.name))
            ),
            "",
        ),
    );
    assert_exit(&w.run_job("job.toml"), EXIT_FAILED);
    pg.exec(&["SELECT count(*) FROM keep"]);
    my.exec(&["SELECT count(*) FROM keep"]);

    // A `--` comment at the end of a query or a filter ends at its line.
    let w = Workdir::new();
    let commented = |engine: &str, var: &str, schema: &str| {
        format!(
            "type = \"{engine}\"\nurl = \"${{{var}}}\"\nkey = [\"id\"]\n\
             query = \"SELECT id, status FROM {schema}.t -- every row\"\n\
             where = \"status = 'a' -- only a\""
        )
    };
    w.write(
        "job.toml",
        job(
            &commented("postgres", "RECON_TEST_POSTGRES_URL", &pg.name),
            &commented("mysql", "RECON_TEST_MYSQL_URL", &my.name),
            "",
        ),
    );
    let out = w.run_job("job.toml");
    assert_consistent(&w, &out);
    assert_eq!(w.summary("db")["owner_rows"], json!(2));
}

/// PostgreSQL reads inconsistent keys again as one JSON array parameter: text keys with
/// quotes, commas, backslashes and non-ASCII characters, and more keys than one
/// statement takes, must all be found again, or real drift would pass as converged.
#[test]
fn postgres_recheck_finds_text_keys_of_any_form_in_large_batches() {
    let Some(pg_url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let owner = PgSchema::new(&pg_url, "rchk_o");
    let replica = PgSchema::new(&pg_url, "rchk_r");
    let odd = ["a\"b", "c,d", "e\\f", "g'h", "ünï", "[1]", "{\"k\": 1}", " sp "];
    let create = "CREATE TABLE t (code text PRIMARY KEY, v text)";
    let fill = "INSERT INTO t SELECT 'k' || n, 'v' FROM generate_series(1, 4500) AS n";
    let odd_rows: Vec<String> = odd
        .iter()
        .map(|k| format!("INSERT INTO t VALUES ('{}', 'v')", k.replace('\'', "''")))
        .collect();
    let mut statements: Vec<&str> = vec![create, fill];
    statements.extend(odd_rows.iter().map(String::as_str));
    owner.exec(&statements);
    replica.exec(&statements);
    // Every odd key and 2,500 plain ones differ: more than one recheck statement's worth.
    replica.exec(&[
        "UPDATE t SET v = 'drift' WHERE CASE WHEN code LIKE 'k%' THEN substr(code, 2)::int <= 2500 ELSE true END",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &owner.source("t", "[\"code\"]"),
            &replica.source("t", "[\"code\"]"),
            "",
        ),
    );
    let out = w.run(&["run", "job.toml", "--out", "out"]);
    assert_exit(&out, EXIT_INCONSISTENT);
    let summary = w.summary("db");
    assert_eq!(summary["mismatched_rows"], json!(2500 + odd.len()), "{summary}");
    assert_eq!(summary["resolved_in_flight"], json!(0), "{summary}");
    let found = w.findings("db");
    for key in odd {
        assert!(
            found.contains(&finding("mismatch", json!({"code": key}), Some("v"))),
            "{key:?} missing from {} findings",
            found.len()
        );
    }
}

/// A typed column whose value recon cannot parse (PostgreSQL's year 10000) is a mismatch
/// with a reason even when both sides hold it: identical values skip normalizing only
/// for types whose every stored value parses.
#[test]
fn unparsable_typed_values_are_reported_even_when_identical() {
    let Some(pg_url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let owner = PgSchema::new(&pg_url, "unp_o");
    let replica = PgSchema::new(&pg_url, "unp_r");
    for side in [&owner, &replica] {
        side.exec(&[
            "CREATE TABLE t (id int PRIMARY KEY, ts timestamp, name text)",
            "INSERT INTO t VALUES (1, '10000-01-01 00:00:00', 'a'), (2, '2024-01-01 00:00:00', 'b')",
        ]);
    }
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &owner.source("t", "[\"id\"]"),
            &replica.source("t", "[\"id\"]"),
            "",
        ),
    );
    let out = w.run(&["run", "job.toml", "--out", "out"]);
    assert_exit(&out, EXIT_INCONSISTENT);
    let records = w.jsonl("db");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["key"], json!({"id": 1}));
    assert_eq!(records[0]["field"], json!("ts"));
    assert!(
        records[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a timestamp")),
        "{records:?}"
    );
}
