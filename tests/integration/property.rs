//! Property tests through the library: random owner data, random inserts, deletes and
//! field changes to make a replica; the report must hold exactly those changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use recon::pipeline::{RunOptions, run_job};
use recon::report::{Format, Status};

use crate::support::{create_sqlite, read_jsonl};

/// One owner row: a text field and a decimal field in cents, either possibly NULL.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    name: Option<String>,
    cents: Option<i64>,
}

/// What happens to an owner row in the replica, and how its decimal is written.
#[derive(Clone, Debug)]
struct Planned {
    row: Row,
    /// 0: deleted; 1: name changed; 2: amount changed; 3: both; otherwise kept.
    op: u8,
    new: Row,
    owner_zeros: usize,
    replica_zeros: usize,
}

#[derive(Clone, Copy, Debug)]
enum ReplicaKind {
    Csv,
    Jsonl,
    Sqlite,
}

#[derive(Clone, Debug)]
struct Case {
    owner: BTreeMap<i64, Planned>,
    inserts: BTreeMap<i64, (Row, usize)>,
    replica: ReplicaKind,
    shuffle_seed: u64,
    page_size: Option<usize>,
}

fn row(max_cents: i64) -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(0.9, "[a-zA-Z0-9 ,é]{1,8}"),
        prop::option::weighted(0.9, -max_cents..max_cents),
    )
        .prop_map(|(name, cents)| Row { name, cents })
}

fn planned() -> impl Strategy<Value = Planned> {
    (row(100_000), 0u8..10, row(100_000), 0usize..3, 0usize..3).prop_map(
        |(row, op, new, owner_zeros, replica_zeros)| Planned {
            row,
            op,
            new,
            owner_zeros,
            replica_zeros,
        },
    )
}

fn case(
    rows: std::ops::Range<usize>,
    id_range: i64,
    inserts: usize,
    paged: bool,
) -> impl Strategy<Value = Case> {
    (
        prop::collection::btree_map(0..id_range, planned(), rows),
        prop::collection::btree_map(0..id_range, (row(100_000), 0usize..3), 0..inserts),
        prop_oneof![
            Just(ReplicaKind::Csv),
            Just(ReplicaKind::Jsonl),
            Just(ReplicaKind::Sqlite)
        ],
        any::<u64>(),
        if paged {
            prop::option::of(1usize..64).boxed()
        } else {
            Just(None).boxed()
        },
    )
        .prop_map(|(owner, mut inserts, replica, shuffle_seed, page_size)| {
            inserts.retain(|id, _| !owner.contains_key(id));
            Case {
                owner,
                inserts,
                replica,
                shuffle_seed,
                page_size,
            }
        })
}

/// Cents as decimal text with `zeros` extra trailing zeros; whole amounts sometimes
/// without a fraction.
fn decimal(cents: i64, zeros: usize) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    if frac == 0 && zeros == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac:02}{}", "0".repeat(zeros))
    }
}

/// The replica's rows: kept and changed owner rows plus inserts, with their zeros.
fn replica_rows(case: &Case) -> BTreeMap<i64, (Row, usize)> {
    let mut rows = BTreeMap::new();
    for (id, p) in &case.owner {
        let row = match p.op {
            0 => continue,
            1 => Row {
                name: p.new.name.clone(),
                ..p.row.clone()
            },
            2 => Row {
                cents: p.new.cents,
                ..p.row.clone()
            },
            3 => p.new.clone(),
            _ => p.row.clone(),
        };
        rows.insert(*id, (row, p.replica_zeros));
    }
    for (id, (row, zeros)) in &case.inserts {
        rows.insert(*id, (row.clone(), *zeros));
    }
    rows
}

/// The findings the final data implies, by normalized value.
fn expected(case: &Case, replica: &BTreeMap<i64, (Row, usize)>) -> BTreeSet<(String, i64, Option<String>)> {
    let mut out = BTreeSet::new();
    for (id, p) in &case.owner {
        match replica.get(id) {
            None => {
                out.insert(("missing_in_replica".to_string(), *id, None));
            }
            Some((r, _)) => {
                if r.name != p.row.name {
                    out.insert(("mismatch".to_string(), *id, Some("name".to_string())));
                }
                if r.cents != p.row.cents {
                    out.insert(("mismatch".to_string(), *id, Some("amount".to_string())));
                }
            }
        }
    }
    for id in replica.keys() {
        if !case.owner.contains_key(id) {
            out.insert(("missing_in_owner".to_string(), *id, None));
        }
    }
    out
}

/// A small deterministic shuffle (the owner file is unsorted, as exports are).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn write_csv(path: &Path, rows: &[(i64, Row, usize)]) {
    let mut w = csv::Writer::from_path(path).expect("create csv");
    w.write_record(["id", "name", "amount"]).unwrap();
    for (id, row, zeros) in rows {
        w.write_record([
            id.to_string(),
            row.name.clone().unwrap_or_default(),
            row.cents.map(|c| decimal(c, *zeros)).unwrap_or_default(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

fn write_jsonl(path: &Path, rows: &[(i64, Row, usize)]) {
    let mut text = String::new();
    for (id, row, zeros) in rows {
        let name = serde_json::to_string(&row.name).unwrap();
        let amount = row
            .cents
            .map(|c| decimal(c, *zeros))
            .unwrap_or_else(|| "null".into());
        text.push_str(&format!(
            "{{\"id\": {id}, \"name\": {name}, \"amount\": {amount}}}\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn write_sqlite(path: &Path, rows: &[(i64, Row, usize)]) {
    let quote = |s: &Option<String>| match s {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    };
    let mut sql = String::from("BEGIN;\n");
    for (id, row, zeros) in rows {
        let amount = row.cents.map(|c| decimal(c, *zeros));
        sql.push_str(&format!(
            "INSERT INTO t VALUES ({id}, {}, {});\n",
            quote(&row.name),
            quote(&amount)
        ));
    }
    sql.push_str("COMMIT;\n");
    create_sqlite(
        path,
        &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount TEXT)",
            &sql,
        ],
    );
}

/// Writes the case, runs the job through the library, and checks the report.
fn check(case: &Case, memory_budget: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut owner: Vec<(i64, Row, usize)> = case
        .owner
        .iter()
        .map(|(id, p)| (*id, p.row.clone(), p.owner_zeros))
        .collect();
    shuffle(&mut owner, case.shuffle_seed);
    write_csv(&dir.path().join("owner.csv"), &owner);

    let replica = replica_rows(case);
    let mut replica_list: Vec<(i64, Row, usize)> =
        replica.iter().map(|(id, (r, z))| (*id, r.clone(), *z)).collect();
    shuffle(&mut replica_list, case.shuffle_seed.rotate_left(17));
    let replica_toml = match case.replica {
        ReplicaKind::Csv => {
            write_csv(&dir.path().join("replica.csv"), &replica_list);
            "type = \"csv\"\npath = \"replica.csv\""
        }
        ReplicaKind::Jsonl => {
            write_jsonl(&dir.path().join("replica.jsonl"), &replica_list);
            "type = \"jsonl\"\npath = \"replica.jsonl\""
        }
        ReplicaKind::Sqlite => {
            write_sqlite(&dir.path().join("replica.db"), &replica_list);
            "type = \"sqlite\"\nurl = \"sqlite://replica.db\"\ntable = \"t\""
        }
    };
    let compare = case
        .page_size
        .map(|n| format!("[compare]\npage_size = {n}\n"))
        .unwrap_or_default();
    let job_path = dir.path().join("prop.toml");
    std::fs::write(
        &job_path,
        format!(
            "name = \"prop\"\n[owner]\ntype = \"csv\"\npath = \"owner.csv\"\nkey = [\"id\"]\n\n\
             [replica]\n{replica_toml}\nkey = [\"id\"]\n\n\
             [[fields]]\nname = \"name\"\n\n[[fields]]\nname = \"amount\"\ntype = \"decimal\"\n\n{compare}"
        ),
    )
    .unwrap();

    let job = recon::job::load_job(&job_path).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let options = RunOptions {
        out_dir: dir.path().join("out"),
        formats: vec![Format::Jsonl],
        memory_budget,
        observer: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(run_job(&job, &options));
    let summary = &outcome.summary;
    prop_assert_ne!(summary.status, Status::Failed, "job failed: {:?}", summary.error);

    let records = read_jsonl(&outcome.report_dir.join("inconsistencies.jsonl"));
    let got: BTreeSet<(String, i64, Option<String>)> = records
        .iter()
        .map(|r| {
            let id = &r["key"]["id"];
            let id = id
                .as_i64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("bad key in {r}"));
            (
                r["kind"].as_str().unwrap().to_string(),
                id,
                r.get("field").and_then(|f| f.as_str()).map(str::to_string),
            )
        })
        .collect();
    let want = expected(case, &replica);
    prop_assert_eq!(records.len(), got.len(), "duplicate records: {:?}", records);
    prop_assert_eq!(&got, &want);

    let count = |kind: &str| want.iter().filter(|f| f.0 == kind).count() as u64;
    let mismatched: BTreeSet<i64> = want.iter().filter(|f| f.0 == "mismatch").map(|f| f.1).collect();
    prop_assert_eq!(summary.owner_rows, case.owner.len() as u64);
    prop_assert_eq!(summary.replica_rows, replica.len() as u64);
    prop_assert_eq!(summary.missing_in_replica, count("missing_in_replica"));
    prop_assert_eq!(summary.missing_in_owner, count("missing_in_owner"));
    prop_assert_eq!(summary.mismatched_rows, mismatched.len() as u64);
    prop_assert_eq!(summary.duplicate_keys, 0);
    prop_assert_eq!(summary.records_written, want.len() as u64);
    let expected_status = if want.is_empty() {
        Status::Consistent
    } else {
        Status::Inconsistent
    };
    prop_assert_eq!(summary.status, expected_status);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reports_exactly_the_injected_changes(case in case(0..300, 100_000, 30, true)) {
        check(&case, 64 << 20)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reports_exactly_the_injected_changes_when_spilling(case in case(3000..3001, 1_000_000, 100, false)) {
        check(&case, 8192)?;
    }
}
