//! Every common column type on PostgreSQL and MySQL/MariaDB, compared across engines:
//! the catalog's (and the driver's) types mapped to compared types, values decoded and
//! normalized so that equal data is consistent and every injected difference is found
//! exactly; the shared `Source` contract on both servers; page statements that the key
//! index serves; a 100k-row table paged across engines; and a property test.
//!
//! Like `databases`, each test works in a schema and a database of its own, and skips
//! (or fails, with `RECON_REQUIRE_DATABASES=1`) without the servers.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use recon::job::{RedactedUrl, SourceConfig, SourceDef, SqlServerConfig, SqlTarget};
use recon::source::sql::mysql::MysqlSource;
use recon::source::sql::postgres::{self, PostgresSource};
use recon::source::sql::{Statement, bound};
use recon::source::{FieldType, Key, KeyPart, KeyType, ScanSpec, Value};
use serde_json::json;
use sqlx::{Connection, Row as _};

use crate::support::contract::{KEY, NOTE, ROWS, assert_source_contract};
use crate::support::db::*;
use crate::support::*;

// --- helpers ----------------------------------------------------------------------------

/// A `[owner]`/`[replica]` body reading a custom query.
fn pg_query(query: &str, key: &str) -> String {
    format!(
        "type = \"postgres\"\nurl = \"${{RECON_TEST_POSTGRES_URL}}\"\nquery = \"\"\"{query}\"\"\"\nkey = {key}"
    )
}

fn my_query(query: &str, key: &str) -> String {
    format!("type = \"mysql\"\nurl = \"${{RECON_TEST_MYSQL_URL}}\"\nquery = \"\"\"{query}\"\"\"\nkey = {key}")
}

fn server_config(url: &str, target: SqlTarget) -> SqlServerConfig {
    SqlServerConfig {
        url: RedactedUrl::new(url),
        target,
        filter: None,
    }
}

fn def(config: SourceConfig, key: &[&str]) -> SourceDef {
    SourceDef {
        config,
        key: key.iter().map(|k| k.to_string()).collect(),
        row_key: Vec::new(),
    }
}

/// The columns a source offers and the types it declares.
fn declared(def: &SourceDef) -> Vec<(String, Option<FieldType>)> {
    block_on(async {
        let source = recon::source::open(def)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        source
            .columns()
            .iter()
            .map(|c| (c.name.clone(), c.declared))
            .collect()
    })
}

/// `(name, type)` pairs as [`declared`] returns them.
fn columns(expected: &[(&str, FieldType)]) -> Vec<(String, Option<FieldType>)> {
    expected.iter().map(|(n, t)| (n.to_string(), Some(*t))).collect()
}

/// Every row of a scan, read with `page_size`.
fn scan_all(
    def: &SourceDef,
    key_types: &[KeyType],
    cols: &[&str],
    page_size: usize,
) -> Vec<(Key, Vec<Value>)> {
    block_on(async {
        let mut source = recon::source::open(def)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        source
            .scan(&spec(def, key_types, cols, page_size))
            .await
            .unwrap_or_else(|e| panic!("scan: {e}"));
        let mut rows = Vec::new();
        while let Some(page) = source.next_page().await.unwrap_or_else(|e| panic!("page: {e}")) {
            rows.extend(page.into_iter().map(|r| (r.key, r.values)));
        }
        rows
    })
}

fn spec(def: &SourceDef, key_types: &[KeyType], cols: &[&str], page_size: usize) -> ScanSpec {
    ScanSpec {
        key: def.key.clone(),
        key_types: key_types.to_vec(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        tiebreak: Vec::new(),
        page_size,
        memory_budget: 1 << 20,
    }
}

/// Asserts the findings, and that none of them is a value that failed to parse.
fn assert_findings(w: &Workdir, out: &std::process::Output, expected: &[Finding]) {
    assert_exit(out, EXIT_INCONSISTENT);
    let expected: BTreeSet<Finding> = expected.iter().cloned().collect();
    assert_eq!(w.findings("db"), expected);
    for record in w.jsonl("db") {
        assert!(record.get("reason").is_none(), "a value did not parse: {record}");
    }
}

fn m(id: i64, field: &str) -> Finding {
    finding("mismatch", json!({ "id": id }), Some(field))
}

/// Runs a job with `owner` and `replica` in both directions (each side once the owner)
/// and asserts both are consistent.
fn assert_consistent_both_ways(owner: &str, replica: &str, extra: &str) {
    for (o, r) in [(owner, replica), (replica, owner)] {
        let w = Workdir::new();
        w.write("job.toml", job(o, r, extra));
        let out = w.run_job("job.toml");
        assert_consistent(&w, &out);
    }
}

// --- type mapping -------------------------------------------------------------------------

const PG_TYPES: &[&str] = &[
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN positive AS integer CHECK (VALUE > 0)",
    "CREATE TABLE types (id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, \
     dom positive, num numeric(12,2), num_any numeric, f4 real, f8 double precision, \
     b boolean, ch char(6), vc varchar(20), tx text, cc text COLLATE \"C\", raw bytea, \
     d date, t time, t6 time(6), ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb, \
     e mood)",
];

fn pg_type_expectations() -> Vec<(&'static str, FieldType)> {
    use FieldType::*;
    vec![
        ("id", Integer),
        ("i2", Integer),
        ("i4", Integer),
        ("i8", Integer),
        ("dom", Integer),
        ("num", Decimal),
        ("num_any", Decimal),
        ("f4", Float),
        ("f8", Float),
        ("b", Bool),
        ("ch", Text),
        ("vc", Text),
        ("tx", Text),
        ("cc", Text),
        ("raw", Bytes),
        ("d", Date),
        ("t", Time),
        ("t6", Time),
        ("ts", Timestamp),
        ("tstz", Timestamp),
        ("u", Uuid),
        ("j", Json),
        ("jb", Json),
        ("e", Text),
    ]
}

const MY_TYPES: &str = "CREATE TABLE types (id int PRIMARY KEY, ti tinyint, ti4 tinyint(4), \
     ut tinyint unsigned, b tinyint(1), bo boolean, si smallint, mi mediumint, i int, bi bigint, \
     ubi bigint unsigned, y year, dec1 decimal(12,2), dec0 decimal(38,0), f float, dbl double, \
     ch char(6), vc varchar(20), vcb varchar(20) COLLATE utf8mb4_bin, \
     vcn varchar(20) COLLATE utf8mb4_nopad_bin, tx text, lt longtext, bn binary(4), \
     vb varbinary(10), bl blob, d date, t time(6), dt datetime(6), ts timestamp(6) NULL, \
     u char(36), j json, e enum('sad','ok','happy'), st set('a','b'))";

/// What MySQL/MariaDB columns compare as; `json_by_query` is what the JSON column
/// declares when read through a custom query.
fn my_type_expectations(json_by_query: FieldType) -> Vec<(&'static str, FieldType)> {
    use FieldType::*;
    vec![
        ("id", Integer),
        ("ti", Integer),
        ("ti4", Integer),
        ("ut", Integer),
        ("b", Bool),
        ("bo", Bool),
        ("si", Integer),
        ("mi", Integer),
        ("i", Integer),
        ("bi", Integer),
        ("ubi", Integer),
        ("y", Integer),
        ("dec1", Decimal),
        ("dec0", Decimal),
        ("f", Float),
        ("dbl", Float),
        ("ch", Text),
        ("vc", Text),
        ("vcb", Text),
        ("vcn", Text),
        ("tx", Text),
        ("lt", Text),
        ("bn", Bytes),
        ("vb", Bytes),
        ("bl", Bytes),
        ("d", Date),
        ("t", Time),
        ("dt", Timestamp),
        ("ts", Timestamp),
        ("u", Text),
        ("j", json_by_query),
        ("e", Text),
        ("st", Text),
    ]
}

#[test]
fn postgres_column_types_map_to_compared_types_by_table_and_by_query() {
    let Some((pg_url, _)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "pgtypes");
    pg.exec(PG_TYPES);
    let expected = columns(&pg_type_expectations());
    let table = format!("{}.types", pg.name);
    for target in [
        SqlTarget::Table(table.clone()),
        // Through the driver's describe: the enum and the domain must still map.
        SqlTarget::Query(format!("SELECT * FROM {table}")),
    ] {
        let got = declared(&def(
            SourceConfig::Postgres(server_config(&pg_url, target.clone())),
            &["id"],
        ));
        assert_eq!(got, expected, "{target:?}");
    }
}

#[test]
fn mysql_column_types_map_to_compared_types_by_table_and_by_query() {
    let Some((_, my_url)) = both_servers() else {
        return;
    };
    let my = MyDatabase::new(&my_url, "mytypes");
    my.exec(&[MY_TYPES]);
    let table = format!("{}.types", my.name);
    let by_table = declared(&def(
        SourceConfig::Mysql(server_config(&my_url, SqlTarget::Table(table.clone()))),
        &["id"],
    ));
    assert_eq!(by_table, columns(&my_type_expectations(FieldType::Json)));
    // MariaDB's JSON is a `utf8mb4_bin` LONGTEXT, and a `_bin` VARCHAR is flagged binary:
    // the driver calls them BLOB and VARBINARY. Through a query they are text (the JSON
    // check constraint is not visible there: it compares as JSON against a JSON column or
    // with `type = "json"`). MySQL 8's JSON is a type of its own.
    let is_mariadb = server_version(&my_url).contains("MariaDB");
    let json_by_query = if is_mariadb {
        FieldType::Text
    } else {
        FieldType::Json
    };
    let by_query = declared(&def(
        SourceConfig::Mysql(server_config(
            &my_url,
            SqlTarget::Query(format!("SELECT * FROM {table}")),
        )),
        &["id"],
    ));
    assert_eq!(by_query, columns(&my_type_expectations(json_by_query)));
}

fn server_version(my_url: &str) -> String {
    block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(my_url).await.expect("connect");
        let row = sqlx::query("SELECT VERSION()")
            .fetch_one(&mut conn)
            .await
            .expect("version");
        row.try_get::<String, _>(0).expect("version text")
    })
}

#[test]
fn unsupported_types_are_refused_only_where_a_job_uses_them() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "unsup");
    pg.exec(&[
        "CREATE TYPE pair AS (a integer, b integer)",
        "CREATE TABLE t (id integer PRIMARY KEY, span interval, tags text[], \
               ids int[], clock timetz, couple pair, ok text)",
    ]);
    let my = MyDatabase::new(&my_url, "unsup");
    my.exec(&["CREATE TABLE t (id int PRIMARY KEY, flags bit(3), ok text)"]);

    // Fields omitted on one table against itself: every column is compared, and
    // `check --connect` names each unsupported one with its type.
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("t", "[\"id\"]"), &pg.source("t", "[\"id\"]"), ""),
    );
    let out = w.run(&["check", "--connect", "job.toml"]);
    assert_exit(&out, EXIT_USAGE);
    let err = stderr(&out);
    for (column, ty) in [
        ("span", "interval"),
        ("tags", "text[]"),
        ("ids", "int4[]"),
        ("clock", "time with time zone"),
        ("couple", "pair"),
    ] {
        assert!(
            err.contains(&format!(
                "field `{column}`: column `{column}` has type `{ty}`, which recon cannot compare \
                 (cast it in a `query`, or leave it out of `fields`)"
            )),
            "{column}: {err}"
        );
    }
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_FAILED);
    assert!(
        stderr(&out).contains("field `span`: column `span` has type `interval`"),
        "{}",
        stderr(&out)
    );

    // Fields that leave them out compare as usual: PostgreSQL against MySQL by name
    // shares only `ok`, and MySQL's bit(3) is never read.
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("t", "[\"id\"]"), &my.source("t", "[\"id\"]"), ""),
    );
    assert_consistent(&w, &w.run_job("job.toml"));
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &my.source("t", "[\"id\"]"),
            &my.source("t", "[\"id\"]"),
            "[[fields]]\nname = \"flags\"\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_FAILED);
    assert!(
        stderr(&out).contains("field `flags`: column `flags` has type `bit(3)`"),
        "{}",
        stderr(&out)
    );

    // Cast in a query, the same columns compare.
    let w = Workdir::new();
    let query = format!(
        "SELECT id, CAST(span AS text) AS span, array_to_string(tags, ',') AS tags FROM {}.t",
        pg.name
    );
    w.write(
        "job.toml",
        job(&pg_query(&query, "[\"id\"]"), &pg_query(&query, "[\"id\"]"), ""),
    );
    assert_consistent(&w, &w.run_job("job.toml"));
}

#[test]
fn sessions_read_utc_and_shortest_float_text_and_values_decode_exactly() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    // What recon's PostgreSQL session is set to, and how values arrive through it.
    let pg_query = "SELECT 1 AS id, current_setting('TimeZone') AS zone, \
         current_setting('extra_float_digits') AS digits, \
         current_setting('default_transaction_read_only') AS read_only, \
         current_setting('statement_timeout') AS timeout, \
         CAST(0.1 AS double precision) AS d, CAST(0.1 AS real) AS r, \
         CAST(0.30000000000000004 AS double precision) AS d17, CAST(1.50 AS numeric(12,2)) AS n, \
         CAST('NaN' AS numeric) AS nan, CAST(E'\\\\x00ff' AS bytea) AS b, \
         timestamptz '2024-01-01 12:00:00.5+02' AS at, CAST('ab' AS char(5)) AS ch, \
         CAST('{\"b\": 1, \"a\": 2}' AS jsonb) AS j, true AS flag";
    let def_pg = def(
        SourceConfig::Postgres(server_config(&pg_url, SqlTarget::Query(pg_query.into()))),
        &["id"],
    );
    let cols = [
        "zone",
        "digits",
        "read_only",
        "timeout",
        "d",
        "r",
        "d17",
        "n",
        "nan",
        "b",
        "at",
        "ch",
        "j",
        "flag",
    ];
    let rows = scan_all(&def_pg, &[KeyType::Integer], &cols, 10);
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        rows,
        vec![(
            int_key(1),
            vec![
                text("UTC"),
                text("3"),
                text("on"),
                text("5min"),
                Value::Float(0.1),
                Value::Float(0.1),
                Value::Float(0.30000000000000004),
                Value::Decimal("1.50".into()),
                Value::Decimal("NaN".into()),
                Value::Bytes(vec![0, 255]),
                text("2024-01-01 10:00:00.5+00"),
                text("ab"),
                Value::Json("{\"a\": 2, \"b\": 1}".into()),
                Value::Bool(true),
            ]
        )]
    );

    // MySQL's session is at +00:00, whatever the server's zone, and a TIMESTAMP written
    // at +02:00 reads back in UTC.
    let my = MyDatabase::new(&my_url, "session");
    my.exec(&[
        "CREATE TABLE t (id int PRIMARY KEY, f float, d double, u bigint unsigned, b tinyint(1), \
         ti tinyint, ts timestamp(6) NULL, j json, vb varbinary(4), vc varchar(4) COLLATE utf8mb4_bin)",
        "SET time_zone = '+02:00'",
        "INSERT INTO t VALUES (1, 16777217, 0.1, 18446744073709551615, 1, 1, \
         '2024-01-01 12:00:00.5', '{\"b\": 1}', 0x00ff, 'Ab ')",
    ]);
    let my_query = format!("SELECT t.*, @@session.time_zone AS zone FROM {}.t", my.name);
    let cols = ["zone", "f", "d", "u", "b", "ti", "ts", "j", "vb", "vc"];
    let expected = |json: Value| {
        vec![(
            int_key(1),
            vec![
                text("+00:00"),
                Value::Float(16_777_216.0),
                Value::Float(0.1),
                Value::Decimal("18446744073709551615".into()),
                Value::Bool(true),
                Value::Int(1),
                text("2024-01-01 10:00:00.500000"),
                json,
                Value::Bytes(vec![0, 255]),
                text("Ab "),
            ],
        )]
    };
    let by_query = def(
        SourceConfig::Mysql(server_config(&my_url, SqlTarget::Query(my_query))),
        &["id"],
    );
    let json_text = "{\"b\": 1}".to_string();
    let is_mariadb = server_version(&my_url).contains("MariaDB");
    let json_by_query = if is_mariadb {
        Value::Text(json_text.clone())
    } else {
        Value::Json(json_text.clone())
    };
    assert_eq!(
        scan_all(&by_query, &[KeyType::Integer], &cols, 10),
        expected(json_by_query)
    );
}

// --- every type across engines ------------------------------------------------------------

/// One table per engine, same column names, equal data in each engine's spelling.
const PG_WIDE: &str = "CREATE TABLE w (id integer PRIMARY KEY, i2 smallint, i8 bigint, \
     ub numeric(20,0), n1 numeric(12,2), big numeric(38,18), f4 real, f4d real, f4n numeric, \
     f8 double precision, f8z double precision, f8d double precision, bo boolean, ch char(6), \
     chv char(6), tx text, bt bytea, bb bytea, d date, t time(6), t24 time, ts timestamp(6), \
     tz timestamptz(6), tzd timestamptz, u uuid, j json, jb jsonb, jn jsonb, e mood, vb text)";

const PG_WIDE_ROWS: &str = "INSERT INTO w VALUES \
     (1, 5, 9007199254740993, 18446744073709551615, 1.50, \
      12345678901234567890.123456789012345678, 0.1, 0.1, 16777216, 0.30000000000000004, \
      '-0', 0.1, true, 'ab', 'ab', 'héllo 😀 中文', 'abc', '\\x00ff10', '2024-02-29', \
      '23:59:59.5', '24:00:00', '2024-03-01 12:30:00.123456', '2024-03-01 14:30:00.123456+02', \
      '2024-03-01 12:30:00+00', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', \
      '{\"b\": 1, \"a\": [1, 2.0], \"c\": {\"x\": null}}', '{\"k\": \"v\", \"n\": 1e2}', 'null', \
      'ok', 'k'), \
     (2, -32768, -9223372036854775808, 0, -0.01, -0.000000000000000001, -3.4e38, 2.5, \
      0.33333334, 1e300, 5e-324, -2.5, false, 'x', 'x', '', '', '', '1999-12-31', \
      '00:00:00', '00:00:01', '1999-12-31 23:59:59', '1999-12-31 23:59:59.999999+00', \
      '2000-01-01 00:00:00+00', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '[]', '[1, \"x\", false]', \
      '{}', 'sad', 'K'), \
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

const MY_WIDE: &str = "CREATE TABLE w (id int PRIMARY KEY, i2 tinyint(4), i8 bigint, \
     ub bigint unsigned, n1 decimal(14,4), big decimal(38,18), f4 float, f4d decimal(10,2), \
     f4n float, f8 double, f8z double, f8d decimal(5,1), bo tinyint(1), ch char(6), \
     chv varchar(6), tx text, bt varchar(10), bb varbinary(10), d date, t time(6), t24 time, \
     ts datetime(6), tz timestamp(6) NULL, tzd datetime, u char(36), j json, jb json, jn json, \
     e enum('sad','ok','happy'), vb varchar(10) COLLATE utf8mb4_bin)";

/// MySQL's rows: the same values, with TIMESTAMP given in the session's +02:00 (MySQL
/// stores it as UTC), a FLOAT that MariaDB would print as `16777200`, JSON with other key
/// order and spacing, an upper-case UUID.
const MY_WIDE_ROWS: &[&str] = &[
    "SET time_zone = '+02:00'",
    "INSERT INTO w VALUES \
     (1, 5, 9007199254740993, 18446744073709551615, 1.5000, \
      12345678901234567890.123456789012345678, 0.1, 0.10, 16777217, 0.30000000000000004, \
      0, 0.1, 1, 'ab', 'ab', 'héllo 😀 中文', 'abc', 0x00ff10, '2024-02-29', \
      '23:59:59.500000', '24:00:00', '2024-03-01 12:30:00.123456', '2024-03-01 14:30:00.123456', \
      '2024-03-01 12:30:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', \
      '{\"c\":{\"x\":null},\"a\":[1,2],\"b\":1.0}', '{\"n\": 100, \"k\": \"v\"}', 'null', \
      'ok', 'k'), \
     (2, -128, -9223372036854775808, 0, -0.0100, -0.000000000000000001, -3.4e38, 2.50, \
      0.33333334, 1e300, 5e-324, -2.5, 0, 'x', 'x', '', '', '', '1999-12-31', \
      '00:00:00', '00:00:01', '1999-12-31 23:59:59', '2000-01-01 01:59:59.999999', \
      '2000-01-01 00:00:00', 'B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', '[]', '[1,\"x\",false]', \
      '{}', 'sad', 'K'), \
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
];

fn wide_tables(pg_url: &str, my_url: &str, tag: &str) -> (PgSchema, MyDatabase) {
    let pg = PgSchema::new(pg_url, tag);
    pg.exec(&[
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        PG_WIDE,
        // -32768 does not fit a MySQL tinyint: row 2 holds -128 on both sides.
        &PG_WIDE_ROWS.replace("(2, -32768,", "(2, -128,"),
    ]);
    let my = MyDatabase::new(my_url, tag);
    let mut statements = vec![MY_WIDE];
    statements.extend_from_slice(MY_WIDE_ROWS);
    my.exec(&statements);
    (pg, my)
}

#[test]
fn every_common_type_compares_equal_across_engines_both_ways() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let (pg, my) = wide_tables(&pg_url, &my_url, "wideq");
    assert_consistent_both_ways(
        &pg.source("w", "[\"id\"]"),
        &my.source("w", "[\"id\"]"),
        "[compare]\npage_size = 2\n",
    );
    // The same through custom queries, where types come from the driver.
    assert_consistent_both_ways(
        &pg_query(&format!("SELECT * FROM {}.w", pg.name), "[\"id\"]"),
        &my_query(&format!("SELECT * FROM {}.w", my.name), "[\"id\"]"),
        "",
    );
}

#[test]
fn a_near_miss_in_every_type_is_found_exactly() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let (pg, my) = wide_tables(&pg_url, &my_url, "wided");
    my.exec(&[
        "UPDATE w SET i2 = 6, i8 = 9007199254740992, ub = 18446744073709551614, n1 = 1.5001, \
         big = 12345678901234567890.123456789012345677, f4 = 0.2, f4d = 0.11, f4n = 16777218, \
         f8 = 0.3, f8z = 5e-324, f8d = 0.2, bo = 0, chv = 'ab ', tx = 'héllo 😀 中', bt = 'abd', \
         bb = 0x00ff11, d = '2024-02-28', t = '23:59:59.499999', t24 = '23:59:59', \
         ts = '2024-03-01 12:30:00.123457', tz = '2024-03-01 12:30:00.123455', \
         tzd = '2024-03-01 12:30:01', u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a10', \
         j = '{\"a\":[2,1],\"b\":1,\"c\":{\"x\":null}}', jb = '{\"k\": \"v\", \"n\": 100.5}', \
         jn = NULL, e = 'happy', vb = 'K' WHERE id = 1",
        // (jn: SQL NULL against the owner's JSON null.)
        // NULL against the empty string, a JSON null against an object.
        "UPDATE w SET tx = NULL, bt = NULL, jn = 'null' WHERE id = 2",
        "UPDATE w SET tx = '', i8 = 0 WHERE id = 3",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("w", "[\"id\"]"), &my.source("w", "[\"id\"]"), ""),
    );
    let out = w.run_job("job.toml");
    let mut expected: Vec<Finding> = [
        "i2", "i8", "ub", "n1", "big", "f4", "f4d", "f4n", "f8", "f8z", "f8d", "bo", "chv", "tx", "bt", "bb",
        "d", "t", "t24", "ts", "tz", "tzd", "u", "j", "jb", "jn", "e", "vb",
    ]
    .iter()
    .map(|f| m(1, f))
    .collect();
    expected.extend([m(2, "tx"), m(2, "bt"), m(2, "jn"), m(3, "tx"), m(3, "i8")]);
    assert_findings(&w, &out, &expected);
}

#[test]
fn timestamps_and_times_compare_to_the_microsecond_whatever_the_declared_precision() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "prec");
    pg.exec(&[
        "CREATE TABLE p (id integer PRIMARY KEY, ts timestamp(6), tz timestamptz, tm time(6))",
        "INSERT INTO p VALUES (1, '2024-01-01 10:00:00.123456', '2024-01-01 10:00:00.123456+00', \
         '10:00:00.123456'), (2, '2024-01-01 10:00:00.5', '2024-01-01 12:00:00.5+02', '10:00:00.5'), \
         (3, '2024-01-01 10:00:00', '2024-01-01 10:00:00+00', '10:00:00')",
    ]);
    let my = MyDatabase::new(&my_url, "prec");
    // The replica keeps milliseconds (given explicitly: MySQL rounds, MariaDB truncates).
    my.exec(&[
        "CREATE TABLE p (id int PRIMARY KEY, ts datetime(3), tz timestamp(3) NULL, tm time(3))",
        "INSERT INTO p VALUES (1, '2024-01-01 10:00:00.123', '2024-01-01 10:00:00.123', \
         '10:00:00.123'), (2, '2024-01-01 10:00:00.500', '2024-01-01 10:00:00.5', '10:00:00.500'), \
         (3, '2024-01-01 10:00:00', '2024-01-01 10:00:00', '10:00:00')",
    ]);
    let sources = (pg.source("p", "[\"id\"]"), my.source("p", "[\"id\"]"));
    let w = Workdir::new();
    w.write("job.toml", job(&sources.0, &sources.1, ""));
    let out = w.run_job("job.toml");
    // Less precision is a finding.
    assert_findings(&w, &out, &[m(1, "ts"), m(1, "tz"), m(1, "tm")]);

    // Unless the field allows it.
    let tolerant = |seconds: &str| {
        ["ts", "tz", "tm"]
            .iter()
            .map(|f| format!("[[fields]]\nname = \"{f}\"\ntolerance = {{ seconds = {seconds} }}\n"))
            .collect::<String>()
    };
    let w = Workdir::new();
    w.write("job.toml", job(&sources.0, &sources.1, &tolerant("0.001")));
    assert_consistent(&w, &w.run_job("job.toml"));
    let w = Workdir::new();
    w.write("job.toml", job(&sources.0, &sources.1, &tolerant("0.0004")));
    let out = w.run_job("job.toml");
    assert_findings(&w, &out, &[m(1, "ts"), m(1, "tz"), m(1, "tm")]);
}

#[test]
fn non_finite_and_out_of_range_values_compare_as_themselves() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    // PostgreSQL against PostgreSQL, each value in another type on the replica side.
    let owner = PgSchema::new(&pg_url, "specials_o");
    owner.exec(&[
        "CREATE TABLE s (id integer PRIMARY KEY, n numeric, f double precision, r real, \
         ts timestamp, tz timestamptz, d date, t time)",
        "INSERT INTO s VALUES \
         (1, 'NaN', 'NaN', 'NaN', 'infinity', '-infinity', 'infinity', '24:00:00'), \
         (2, 'Infinity', 'Infinity', '-Infinity', '0044-03-15 10:00:00 BC', \
          '0044-03-15 10:00:00+00 BC', '0044-03-15 BC', '00:00:00'), \
         (3, '-Infinity', '-0', '-0', '-infinity', 'infinity', '-infinity', '23:59:59.999999'), \
         (4, 0.1, 0.1, 0.1, '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', '2024-01-01', '12:00:00')",
    ]);
    let replica = PgSchema::new(&pg_url, "specials_r");
    replica.exec(&[
        "CREATE TABLE s (id integer PRIMARY KEY, n double precision, f numeric, r double precision, \
         ts timestamptz, tz timestamp, d date, t time(3))",
        "INSERT INTO s VALUES \
         (1, 'NaN', 'NaN', 'NaN', 'infinity', '-infinity', 'infinity', '24:00:00'), \
         (2, 'Infinity', 'Infinity', '-Infinity', '0044-03-15 10:00:00+00 BC', \
          '0044-03-15 10:00:00 BC', '0044-03-15 BC', '00:00:00'), \
         (3, '-Infinity', '0', '0', '-infinity', 'infinity', '-infinity', '23:59:59.999999'), \
         (4, 0.1, 0.1, 0.1, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '2024-01-01', '12:00:00')",
    ]);
    let (o, r) = (owner.source("s", "[\"id\"]"), replica.source("s", "[\"id\"]"));
    let w = Workdir::new();
    w.write("job.toml", job(&o, &r, ""));
    let out = w.run_job("job.toml");
    // time(3) rounds 23:59:59.999999 up to 24:00:00; everything else is equal.
    assert_findings(&w, &out, &[m(3, "t")]);

    replica.exec(&[
        "UPDATE s SET n = 'Infinity', ts = '-infinity', d = '0044-03-15' WHERE id = 1",
        "UPDATE s SET f = '-Infinity', tz = '0043-03-15 10:00:00 BC' WHERE id = 2",
        "UPDATE s SET r = 'NaN' WHERE id = 3",
    ]);
    let w = Workdir::new();
    w.write("job.toml", job(&o, &r, ""));
    let out = w.run_job("job.toml");
    assert_findings(
        &w,
        &out,
        &[
            m(1, "n"),
            m(1, "ts"),
            m(1, "d"),
            m(2, "f"),
            m(2, "tz"),
            m(3, "r"),
            m(3, "t"),
        ],
    );

    // MySQL's zero date and its TIME beyond a day, against themselves.
    let my = MyDatabase::new(&my_url, "specials");
    my.exec(&[
        "SET SESSION sql_mode = ''",
        "CREATE TABLE z (id int PRIMARY KEY, d date, dt datetime, t time(1))",
        "INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '838:59:59.5'), \
         (2, '2024-01-01', '2024-01-01 00:00:00', '-12:30:00')",
    ]);
    let other = MyDatabase::new(&my_url, "specials2");
    other.exec(&[
        "SET SESSION sql_mode = ''",
        "CREATE TABLE z (id int PRIMARY KEY, d date, dt datetime(6), t time(6))",
        "INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '838:59:59.500000'), \
         (2, '2024-01-01', '0000-00-00 00:00:00', '12:30:00')",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&my.source("z", "[\"id\"]"), &other.source("z", "[\"id\"]"), ""),
    );
    let out = w.run_job("job.toml");
    assert_findings(&w, &out, &[m(2, "dt"), m(2, "t")]);
}

#[test]
fn uuid_keys_match_a_char36_column_whatever_its_case() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let ids = [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "0aeebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
        "f0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13",
        "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14",
        "10eebc99-9c0b-4ef8-bb6d-6bb9bd380a15",
    ];
    let pg = PgSchema::new(&pg_url, "uuidk");
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, u)| format!("('{u}', {i}, '{u}')"))
        .collect();
    pg.exec(&[
        "CREATE TABLE u (id uuid PRIMARY KEY, v integer, other uuid)",
        &format!("INSERT INTO u VALUES {}", rows.join(", ")),
    ]);
    let my = MyDatabase::new(&my_url, "uuidk");
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(i, u)| {
            let shown = if i % 2 == 0 {
                u.to_uppercase()
            } else {
                u.to_string()
            };
            format!("('{shown}', {i}, '{}')", u.to_uppercase())
        })
        .collect();
    my.exec(&[
        "CREATE TABLE u (id char(36) PRIMARY KEY, v int, other char(36))",
        &format!("INSERT INTO u VALUES {}", rows.join(", ")),
        "INSERT INTO u VALUES ('C0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A16', 9, NULL)",
        "UPDATE u SET v = 40 WHERE id = 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14'",
        "UPDATE u SET other = 'not-a-uuid' WHERE id = '10eebc99-9c0b-4ef8-bb6d-6bb9bd380a15'",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &pg.source("u", "[\"id\"]"),
            &my.source("u", "[\"id\"]"),
            "[compare]\npage_size = 1\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_exit(&out, EXIT_INCONSISTENT);
    let key = |u: &str| json!({ "id": u });
    let expected: BTreeSet<Finding> = [
        finding("missing_in_replica", key(ids[2]), None),
        finding(
            "missing_in_owner",
            key("c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a16"),
            None,
        ),
        finding("mismatch", key(ids[3]), Some("v")),
        finding("mismatch", key(ids[4]), Some("other")),
    ]
    .into_iter()
    .collect();
    assert_eq!(w.findings("db"), expected);
    // The text that is no UUID is reported as such.
    let reasons: Vec<String> = w
        .jsonl("db")
        .iter()
        .filter_map(|r| r.get("reason").and_then(|v| v.as_str()).map(str::to_owned))
        .collect();
    assert_eq!(
        reasons,
        vec!["replica value \"not-a-uuid\" is not a UUID".to_string()]
    );

    // UUIDs kept in BINARY(16), keys and values.
    my.exec(&[
        "CREATE TABLE ub (id binary(16) PRIMARY KEY, v int, other binary(16))",
        "INSERT INTO ub SELECT UNHEX(REPLACE(id, '-', '')), v, UNHEX(REPLACE(other, '-', '')) FROM u \
         WHERE other IS NOT NULL AND other <> 'not-a-uuid'",
        "INSERT INTO ub VALUES (UNHEX('10eebc999c0b4ef8bb6d6bb9bd380a15'), 4, \
         UNHEX('10EEBC999C0B4EF8BB6D6BB9BD380A15'))",
    ]);
    for page_size in [1, 2, 10] {
        let w = Workdir::new();
        w.write(
            "job.toml",
            job(
                &pg.source("u", "[\"id\"]"),
                &my.source("ub", "[\"id\"]"),
                &format!("[compare]\npage_size = {page_size}\n"),
            ),
        );
        let out = w.run_job("job.toml");
        assert_findings(
            &w,
            &out,
            &[
                finding("missing_in_replica", key(ids[2]), None),
                finding("mismatch", key(ids[3]), Some("v")),
            ],
        );
    }
}

#[test]
fn binary_and_text_keys_and_values_compare_by_bytes_across_engines() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let keys = ["B", "a", "a ", "a\t", "ab", "é", "z😀", "中文"];
    let values: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("('{}', {i}, '{}')", k, k.repeat(2)))
        .collect();
    let pg = PgSchema::new(&pg_url, "bytesk");
    pg.exec(&[
        "CREATE TABLE t (k text PRIMARY KEY, n integer, v text)",
        &format!("INSERT INTO t VALUES {}", values.join(", ")),
        "CREATE TABLE b (k bytea PRIMARY KEY, n integer, v bytea)",
        "INSERT INTO b SELECT convert_to(k, 'UTF8'), n, convert_to(v, 'UTF8') FROM t",
    ]);
    let my = MyDatabase::new(&my_url, "bytesk");
    my.exec(&[
        "CREATE TABLE b (k varbinary(20) PRIMARY KEY, n int, v blob)",
        &format!("INSERT INTO b VALUES {}", values.join(", ")),
        "UPDATE b SET n = 10 WHERE k = 'a '",
        "UPDATE b SET v = 'é' WHERE k = 'é'",
        "DELETE FROM b WHERE k = 'a\t'",
        "INSERT INTO b VALUES ('A', 11, 'AA')",
    ]);
    let expected = |w: &Workdir, out: &std::process::Output| {
        assert_findings(
            w,
            out,
            &[
                finding("mismatch", json!({"k": "a "}), Some("n")),
                finding("mismatch", json!({"k": "é"}), Some("v")),
                finding("missing_in_replica", json!({"k": "a\t"}), None),
                finding("missing_in_owner", json!({"k": "A"}), None),
            ],
        );
    };
    for owner in ["t", "b"] {
        for page_size in [1, 3] {
            let w = Workdir::new();
            w.write(
                "job.toml",
                job(
                    &pg.source(owner, "[\"k\"]"),
                    &my.source("b", "[\"k\"]"),
                    &format!("[compare]\npage_size = {page_size}\n"),
                ),
            );
            let out = w.run_job("job.toml");
            expected(&w, &out);
        }
    }
}

#[test]
fn a_bin_collated_key_and_mariadb_json_read_through_a_query_compare_as_text_and_json() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "binq");
    pg.exec(&[
        "CREATE TABLE k (code text COLLATE \"C\" PRIMARY KEY, doc jsonb, qty integer, tag text)",
        "INSERT INTO k VALUES ('A', '{\"a\": 1, \"b\": [1, 2]}', 1, 'x'), \
         ('a', '{\"z\": null}', 2, 'y'), ('b', '[1, 2.5]', 3, 'z'), ('é', '\"s\"', 4, 'w')",
    ]);
    let my = MyDatabase::new(&my_url, "binq");
    my.exec(&[
        "CREATE TABLE k (code varchar(20) COLLATE utf8mb4_bin PRIMARY KEY, doc JSON, qty int, \
         tag varchar(10) COLLATE utf8mb4_bin)",
        "INSERT INTO k VALUES ('A', '{\"b\":[1,2],\"a\":1.0}', 1, 'x'), ('a', '{ \"z\" : null }', 2, 'y'), \
         ('b', '[1,2.50]', 3, 'z'), ('é', '\"s\"', 4, 'w')",
    ]);
    let query = format!("SELECT code, doc, qty, tag FROM {}.k", my.name);
    for page_size in [1, 2, 10] {
        let extra = format!("[compare]\npage_size = {page_size}\n");
        assert_consistent_both_ways(
            &pg.source("k", "[\"code\"]"),
            &my_query(&query, "[\"code\"]"),
            &extra,
        );
    }
    my.exec(&[
        "UPDATE k SET doc = '{\"b\":[2,1],\"a\":1}' WHERE code = 'A'",
        "UPDATE k SET tag = 'Y' WHERE code = 'a'",
    ]);
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&pg.source("k", "[\"code\"]"), &my_query(&query, "[\"code\"]"), ""),
    );
    let out = w.run_job("job.toml");
    assert_findings(
        &w,
        &out,
        &[
            finding("mismatch", json!({"code": "A"}), Some("doc")),
            finding("mismatch", json!({"code": "a"}), Some("tag")),
        ],
    );
    // Text, not hex, in the report.
    let record = w
        .jsonl("db")
        .into_iter()
        .find(|r| r["field"] == "tag")
        .expect("tag record");
    assert_eq!((&record["owner"], &record["replica"]), (&json!("y"), &json!("Y")));
}

#[test]
fn enum_keys_order_by_label_on_both_engines() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "enumk");
    let rows = "('sad', 1, 'a'), ('ok', 1, 'b'), ('happy', 1, 'c'), ('happy', 2, 'd'), ('sad', 2, 'e')";
    pg.exec(&[
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE TABLE e (status mood, id integer, v text, PRIMARY KEY (status, id))",
        &format!("INSERT INTO e VALUES {rows}"),
    ]);
    let my = MyDatabase::new(&my_url, "enumk");
    my.exec(&[
        "CREATE TABLE e (status enum('sad','ok','happy'), id int, v text, PRIMARY KEY (status, id))",
        &format!("INSERT INTO e VALUES {rows}"),
        "UPDATE e SET v = 'x' WHERE status = 'ok'",
    ]);
    let key = "[\"status\", \"id\"]";
    let expected = [finding("mismatch", json!({"status": "ok", "id": 1}), Some("v"))];
    for (o, r) in [
        (pg.source("e", key), my.source("e", key)),
        (
            pg_query(&format!("SELECT * FROM {}.e", pg.name), key),
            my.source("e", key),
        ),
    ] {
        let w = Workdir::new();
        w.write("job.toml", job(&o, &r, "[compare]\npage_size = 2\n"));
        let out = w.run_job("job.toml");
        assert_findings(&w, &out, &expected);
    }
}

#[test]
fn composite_keys_in_a_no_pad_binary_collation_page_by_index_and_keep_pad_spaces() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let keys = ["a", "a ", "a\t", "a\u{1}", "B", "ab", "é", "z😀", "Z"];
    let mut rows = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        for n in 1..=3 {
            rows.push(format!("('{k}', {n}, {})", i * 10 + n));
        }
    }
    let pg = PgSchema::new(&pg_url, "nopad");
    pg.exec(&[
        "CREATE TABLE c (a text COLLATE \"C\", n integer, v integer, PRIMARY KEY (a, n))",
        &format!("INSERT INTO c VALUES {}", rows.join(", ")),
    ]);
    let my = MyDatabase::new(&my_url, "nopad");
    my.exec(&[
        "CREATE TABLE c (a varchar(10) COLLATE utf8mb4_nopad_bin, n int, v int, PRIMARY KEY (a, n))",
        &format!("INSERT INTO c VALUES {}", rows.join(", ")),
        "UPDATE c SET v = 0 WHERE a = 'a ' AND n = 2",
        "DELETE FROM c WHERE a = 'a' AND n = 3",
        "INSERT INTO c VALUES ('a\t', 4, 0)",
    ]);
    let key = "[\"a\", \"n\"]";
    for page_size in [1, 2, 4] {
        let w = Workdir::new();
        w.write(
            "job.toml",
            job(
                &pg.source("c", key),
                &my.source("c", key),
                &format!("[compare]\npage_size = {page_size}\n"),
            ),
        );
        let out = w.run_job("job.toml");
        assert_findings(
            &w,
            &out,
            &[
                finding("mismatch", json!({"a": "a ", "n": 2}), Some("v")),
                finding("missing_in_replica", json!({"a": "a", "n": 3}), None),
                finding("missing_in_owner", json!({"a": "a\t", "n": 4}), None),
            ],
        );
        assert_eq!(w.summary("db")["owner_rows"], json!(keys.len() * 3));
    }
}

// --- the Source contract on both servers -------------------------------------------------

/// `CREATE TABLE` and `INSERT`s of the contract's rows, `region` declared `region_type`.
fn contract_statements(region_type: &str, region: impl Fn(&str) -> String) -> Vec<String> {
    let mut statements = vec![format!(
        "CREATE TABLE t ({} {region_type}, {} integer, {NOTE} text)",
        KEY[0], KEY[1]
    )];
    for (r, id, note) in ROWS {
        let note = note.map_or("NULL".to_string(), |n| format!("'{n}'"));
        statements.push(format!("INSERT INTO t VALUES ({}, {id}, {note})", region(r)));
    }
    statements
}

#[test]
fn postgres_honors_the_source_contract() {
    let Some((pg_url, _)) = both_servers() else {
        return;
    };
    let quoted = |r: &str| format!("'{r}'");
    let bytes = |r: &str| format!("convert_to('{r}', 'UTF8')");
    type Literal<'a> = &'a dyn Fn(&str) -> String;
    let variants: [(&str, Literal); 3] = [
        ("text", &quoted),
        ("text COLLATE \"C\"", &quoted),
        ("bytea", &bytes),
    ];
    for (region_type, region) in variants {
        let pg = PgSchema::new(&pg_url, "contract");
        let statements = contract_statements(region_type, region);
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        pg.exec(&refs);
        let table = format!("{}.t", pg.name);
        for target in [
            SqlTarget::Table(table.clone()),
            SqlTarget::Query(format!("SELECT * FROM {table}")),
        ] {
            let config = SourceConfig::Postgres(server_config(&pg_url, target));
            assert_source_contract(&def(config, &KEY));
        }
    }
}

#[test]
fn mysql_honors_the_source_contract() {
    let Some((_, my_url)) = both_servers() else {
        return;
    };
    let quoted = |r: &str| format!("'{r}'");
    for region_type in [
        "varchar(10)",
        "varchar(10) COLLATE utf8mb4_bin",
        "varchar(10) COLLATE utf8mb4_nopad_bin",
        "varbinary(10)",
    ] {
        let my = MyDatabase::new(&my_url, "contract");
        let statements = contract_statements(region_type, quoted);
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        my.exec(&refs);
        let table = format!("{}.t", my.name);
        for target in [
            SqlTarget::Table(table.clone()),
            SqlTarget::Query(format!("SELECT * FROM {table}")),
        ] {
            let config = SourceConfig::Mysql(server_config(&my_url, target));
            assert_source_contract(&def(config, &KEY));
        }
    }
}

// --- page statements use the key index -----------------------------------------------------

/// Rows in the tables whose plans are inspected: enough for the planner to prefer an
/// index over a scan and sort.
const PLAN_ROWS: i64 = 20_000;

/// PostgreSQL's plan for a scan statement, as EXPLAIN prints it. The statement is the
/// query a scan runs inside its `COPY`: its parameters are set as recon sets them
/// (session settings), then the query itself is explained.
fn pg_explain(url: &str, statement: &Statement) -> String {
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        if !statement.params.is_empty() {
            let settings = postgres::session_settings(&statement.params);
            bound(&settings.sql, &settings.params)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", settings.sql));
        }
        let sql = format!("EXPLAIN {}", statement.sql);
        let rows = sqlx::query(&sql)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        rows.iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// MySQL's plan for a statement: `(type, key, Extra)` of each row of EXPLAIN.
fn my_explain(url: &str, statement: &Statement) -> Vec<(String, String, String)> {
    block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
        let sql = format!("EXPLAIN {}", statement.sql);
        let rows = bound(&sql, &statement.params)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        let get = |r: &sqlx::mysql::MySqlRow, c: &str| {
            r.try_get_unchecked::<Option<String>, _>(c)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        rows.iter()
            .map(|r| (get(r, "type"), get(r, "key"), get(r, "Extra")))
            .collect()
    })
}

/// The page statements recon sends for a scan of `table` keyed by `key`: the first
/// page and the page after `after`.
fn pg_pages(url: &str, table: &str, key: &[&str], key_types: &[KeyType], after: Key) -> [Statement; 2] {
    pg_target_pages(url, SqlTarget::Table(table.to_owned()), key, key_types, after)
}

fn pg_target_pages(
    url: &str,
    target: SqlTarget,
    key: &[&str],
    key_types: &[KeyType],
    after: Key,
) -> [Statement; 2] {
    block_on(async {
        let config = server_config(url, target);
        let source = PostgresSource::open(&config)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let spec = spec(&def(SourceConfig::Postgres(config), key), key_types, &["v"], 500);
        [
            source.page_statement(&spec, None).expect("first page"),
            source.page_statement(&spec, Some(&after)).expect("next page"),
        ]
    })
}

fn my_pages(url: &str, table: &str, key: &[&str], key_types: &[KeyType], after: Key) -> [Statement; 2] {
    my_target_pages(url, SqlTarget::Table(table.to_owned()), key, key_types, after)
}

fn my_target_pages(
    url: &str,
    target: SqlTarget,
    key: &[&str],
    key_types: &[KeyType],
    after: Key,
) -> [Statement; 2] {
    block_on(async {
        let config = server_config(url, target);
        let source = MysqlSource::open(&config)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let spec = spec(&def(SourceConfig::Mysql(config), key), key_types, &["v"], 500);
        [
            source.page_statement(&spec, None).expect("first page"),
            source.page_statement(&spec, Some(&after)).expect("next page"),
        ]
    })
}

fn assert_pg_index_scan(plan: &str, index: &str, sql: &str) {
    assert!(
        plan.contains(&format!("Index Scan using {index}"))
            || plan.contains(&format!("Index Only Scan using {index}")),
        "not served by {index}: {sql}\n{plan}"
    );
    assert!(!plan.contains("Sort"), "sorted: {sql}\n{plan}");
    assert!(!plan.contains("Seq Scan"), "scanned: {sql}\n{plan}");
}

fn int_key(i: i64) -> Key {
    Key(vec![KeyPart::Int(i)])
}

fn text_int_key(s: &str, i: i64) -> Key {
    Key(vec![KeyPart::Text(s.into()), KeyPart::Int(i)])
}

fn text_text_key(a: &str, b: &str) -> Key {
    Key(vec![KeyPart::Text(a.into()), KeyPart::Text(b.into())])
}

/// The statements creating the PostgreSQL tables whose plans are inspected, `n` rows
/// each: an integer key, a composite text key collated "C", and one in the database's
/// default collation.
fn pg_plan_tables(n: i64) -> Vec<String> {
    vec![
        "CREATE TABLE i (id integer PRIMARY KEY, v text)".to_owned(),
        format!("INSERT INTO i SELECT g, 'v' || g FROM generate_series(1, {n}) AS g"),
        "CREATE TABLE c (a text COLLATE \"C\", b text COLLATE \"C\", v integer, PRIMARY KEY (a, b))"
            .to_owned(),
        format!("INSERT INTO c SELECT 'k' || (g % 100), 'b' || g, g FROM generate_series(1, {n}) AS g"),
        "CREATE TABLE d (a text, b text, v integer, PRIMARY KEY (a, b))".to_owned(),
        "INSERT INTO d SELECT a, b, v FROM c".to_owned(),
        "ANALYZE i".to_owned(),
        "ANALYZE c".to_owned(),
        "ANALYZE d".to_owned(),
    ]
}

#[test]
fn postgres_page_statements_are_served_by_the_key_index() {
    let Some((pg_url, _)) = both_servers() else {
        return;
    };
    let pg = PgSchema::new(&pg_url, "plan");
    let statements = pg_plan_tables(PLAN_ROWS);
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    pg.exec(&refs);
    let table = |t: &str| format!("{}.{t}", pg.name);

    for s in pg_pages(&pg_url, &table("i"), &["id"], &[KeyType::Integer], int_key(5000)) {
        assert_pg_index_scan(&pg_explain(&pg_url, &s), "i_pkey", &s.sql);
    }
    // The same through a custom query, which the server flattens into the page statement.
    let query = SqlTarget::Query(format!("SELECT id, v FROM {} WHERE id <> 7", table("i")));
    for s in pg_target_pages(&pg_url, query, &["id"], &[KeyType::Integer], int_key(5000)) {
        assert_pg_index_scan(&pg_explain(&pg_url, &s), "i_pkey", &s.sql);
    }
    // `ORDER BY a COLLATE "C"` matches an index on columns collated "C".
    let text = [KeyType::Text, KeyType::Text];
    for s in pg_pages(
        &pg_url,
        &table("c"),
        &["a", "b"],
        &text,
        text_text_key("k5", "b105"),
    ) {
        assert_pg_index_scan(&pg_explain(&pg_url, &s), "c_pkey", &s.sql);
    }
    // In the database's default collation the index only serves byte order when that
    // collation is byte order; otherwise every page is sorted (give such a key column
    // COLLATE "C", or an index ON d (a COLLATE "C", b COLLATE "C")).
    let bytewise = pg_default_collation_is_bytewise(&pg_url);
    for s in pg_pages(
        &pg_url,
        &table("d"),
        &["a", "b"],
        &text,
        text_text_key("k5", "b105"),
    ) {
        let plan = pg_explain(&pg_url, &s);
        if bytewise {
            assert_pg_index_scan(&plan, "d_pkey", &s.sql);
        } else {
            assert!(plan.contains("Sort"), "expected a sort: {}\n{plan}", s.sql);
        }
    }
    // An index declared COLLATE "C" serves such a column.
    pg.exec(&[
        "CREATE UNIQUE INDEX d_c ON d (a COLLATE \"C\", b COLLATE \"C\")",
        "ANALYZE d",
    ]);
    for s in pg_pages(
        &pg_url,
        &table("d"),
        &["a", "b"],
        &text,
        text_text_key("k5", "b105"),
    ) {
        let plan = pg_explain(&pg_url, &s);
        if !bytewise {
            assert_pg_index_scan(&plan, "d_c", &s.sql);
        }
    }
}

fn pg_default_collation_is_bytewise(url: &str) -> bool {
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let row = sqlx::query(
            "SELECT CAST(datcollate AS text), to_jsonb(d) ->> 'datlocprovider' FROM pg_database AS d \
             WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await
        .expect("datcollate");
        let collate: String = row.get(0);
        let provider: Option<String> = row.get(1);
        matches!(collate.as_str(), "C" | "POSIX") && provider.is_none_or(|p| p == "c")
    })
}

/// A PostgreSQL database of its own with byte-order (`C`) collation, dropped at the end.
struct PgCDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgCDatabase {
    fn new(admin_url: &str) -> PgCDatabase {
        let name = unique("cdb");
        pg_exec(
            admin_url,
            &[format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            )],
        );
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url, String::new()),
        };
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        PgCDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}{query}"),
            name,
        }
    }
}

impl Drop for PgCDatabase {
    fn drop(&mut self) {
        pg_exec(
            &self.admin_url,
            &[format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)],
        );
    }
}

#[test]
fn postgres_text_keys_in_a_byte_order_database_are_ordered_by_the_bare_column() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    let db = PgCDatabase::new(&pg_url);
    let statements = pg_plan_tables(PLAN_ROWS);
    pg_exec(&db.url, &statements);
    let text = [KeyType::Text, KeyType::Text];
    for s in pg_pages(&db.url, "d", &["a", "b"], &text, text_text_key("k5", "b105")) {
        assert!(!s.sql.contains("COLLATE"), "{}", s.sql);
        assert_pg_index_scan(&pg_explain(&db.url, &s), "d_pkey", &s.sql);
    }
    // And it pages correctly: the same keys as a "C"-collated table elsewhere.
    pg_exec(
        &db.url,
        &[
            "CREATE TABLE k (a text PRIMARY KEY, v integer)".to_owned(),
            "INSERT INTO k VALUES ('a', 1), ('a ', 2), ('a\t', 3), ('B', 4), ('é', 5), ('z😀', 6), ('Z', 7)"
                .to_owned(),
        ],
    );
    let my = MyDatabase::new(&my_url, "cdb");
    my.exec(&[
        "CREATE TABLE k (a varchar(10) COLLATE utf8mb4_nopad_bin PRIMARY KEY, v int)",
        "INSERT INTO k VALUES ('a', 1), ('a ', 2), ('a\t', 3), ('B', 4), ('é', 50), ('z😀', 6)",
    ]);
    let owner = format!(
        "type = \"postgres\"\nurl = \"{}\"\ntable = \"k\"\nkey = [\"a\"]",
        db.url
    );
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(&owner, &my.source("k", "[\"a\"]"), "[compare]\npage_size = 1\n"),
    );
    let out = w.run_job("job.toml");
    assert_findings(
        &w,
        &out,
        &[
            finding("mismatch", json!({"a": "é"}), Some("v")),
            finding("missing_in_replica", json!({"a": "Z"}), None),
        ],
    );
}

/// `INSERT .. SELECT` of `n` numbered rows (1..=n) without a sequence engine or a
/// recursive CTE: `number` is the row's number in the SELECT.
fn my_numbers(table: &str, n: i64, select: &str) -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS digits (x int)".to_owned(),
        "DELETE FROM digits".to_owned(),
        "INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)".to_owned(),
        format!(
            "INSERT INTO {table} SELECT {select} FROM (SELECT 1 + a.x + 10 * b.x + 100 * c.x + 1000 * d.x \
             + 10000 * e.x + 100000 * f.x AS number FROM digits a, digits b, digits c, digits d, \
             digits e, digits f) AS numbers WHERE number <= {n}"
        ),
    ]
}

#[test]
fn mysql_page_statements_are_served_by_the_key_index() {
    let Some((_, my_url)) = both_servers() else {
        return;
    };
    let my = MyDatabase::new(&my_url, "plan");
    let mut statements = vec![
        "CREATE TABLE i (id int PRIMARY KEY, v varchar(20))".to_owned(),
        "CREATE TABLE n (a varchar(20) COLLATE utf8mb4_nopad_bin, b int, v int, PRIMARY KEY (a, b))"
            .to_owned(),
        "CREATE TABLE vb (a varbinary(20), b int, v int, PRIMARY KEY (a, b))".to_owned(),
        "CREATE TABLE ci (a varchar(20), b int, v int, PRIMARY KEY (a, b))".to_owned(),
        "CREATE TABLE bin (a varchar(20) COLLATE utf8mb4_bin, b int, v int, PRIMARY KEY (a, b))".to_owned(),
    ];
    statements.extend(my_numbers("i", PLAN_ROWS, "number, CONCAT('v', number)"));
    statements.extend(my_numbers(
        "n",
        PLAN_ROWS,
        "CONCAT('k', number % 100), number, number",
    ));
    for t in ["vb", "ci", "bin"] {
        statements.push(format!("INSERT INTO {t} SELECT * FROM n"));
    }
    statements.push("ANALYZE TABLE i, n, vb, ci, bin".to_owned());
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    my.exec(&refs);
    let table = |t: &str| format!("{}.{t}", my.name);
    let text_int = [KeyType::Text, KeyType::Integer];

    let mut served = vec![my_pages(
        &my_url,
        &table("i"),
        &["id"],
        &[KeyType::Integer],
        int_key(5000),
    )];
    for t in ["n", "vb"] {
        served.push(my_pages(
            &my_url,
            &table(t),
            &["a", "b"],
            &text_int,
            text_int_key("k5", 105),
        ));
    }
    for t in ["i", "n"] {
        let (key, types, after): (&[&str], &[KeyType], Key) = if t == "i" {
            (&["id"], &[KeyType::Integer], int_key(5000))
        } else {
            (&["a", "b"], &text_int, text_int_key("k5", 105))
        };
        let query = SqlTarget::Query(format!("SELECT * FROM {}", table(t)));
        served.push(my_target_pages(&my_url, query, key, types, after));
    }
    for [first, next] in served {
        for (s, seek) in [(first, false), (next, true)] {
            let plan = my_explain(&my_url, &s);
            assert_eq!(plan.len(), 1, "{}: {plan:?}", s.sql);
            let (access, key, extra) = &plan[0];
            assert_eq!(key, "PRIMARY", "{}: {plan:?}", s.sql);
            assert!(!extra.contains("filesort"), "{}: {plan:?}", s.sql);
            if seek {
                assert_eq!(access, "range", "{}: {plan:?}", s.sql);
            }
        }
    }
    // A case-insensitive or PAD SPACE collation does not order byte-wise: the key is
    // cast to BINARY, and every page is sorted.
    for t in ["ci", "bin"] {
        for s in my_pages(
            &my_url,
            &table(t),
            &["a", "b"],
            &text_int,
            text_int_key("k5", 105),
        ) {
            assert!(s.sql.contains("CAST(`a` AS BINARY)"), "{}", s.sql);
            let plan = my_explain(&my_url, &s);
            assert!(plan[0].2.contains("Using filesort"), "{}: {plan:?}", s.sql);
        }
    }
}

// --- a 100k-row table across engines -------------------------------------------------------

#[test]
fn a_100k_row_table_pages_across_engines_with_small_pages() {
    let Some((pg_url, my_url)) = both_servers() else {
        return;
    };
    const N: i64 = 100_000;
    let pg = PgSchema::new(&pg_url, "big100k");
    pg.exec(&[
        "CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(14,4), \
         at timestamptz, flag boolean, ratio double precision)",
        &format!(
            "INSERT INTO t SELECT g, 'name ' || g, round(g / 7.0, 4), \
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second', g % 3 = 0, \
             g / 8.0 FROM generate_series(1, {N}) AS g"
        ),
    ]);
    let my = MyDatabase::new(&my_url, "big100k");
    let mut statements = vec![
        "CREATE TABLE t (id bigint PRIMARY KEY, name varchar(40), amount decimal(20,6), \
         at datetime(6), flag tinyint(1), ratio double)"
            .to_owned(),
    ];
    statements.extend(my_numbers(
        "t",
        N,
        "number, CONCAT('name ', number), ROUND(number / 7.0, 4), \
         TIMESTAMPADD(MICROSECOND, number * 1000001, '2024-01-01 00:00:00'), number % 3 = 0, \
         number / 8e0",
    ));
    statements.extend(
        [
            "UPDATE t SET name = 'changed' WHERE id IN (1, 50000, 99999)",
            "UPDATE t SET amount = amount + 0.0001 WHERE id = 777",
            "UPDATE t SET at = TIMESTAMPADD(MICROSECOND, 1, at) WHERE id = 31337",
            "UPDATE t SET flag = NOT flag WHERE id = 42",
            "DELETE FROM t WHERE id IN (2, 60001, 100000)",
            "INSERT INTO t VALUES (100001, 'extra', 1, NULL, 0, 0), (0, 'zero', 0, NULL, 0, 0)",
        ]
        .map(str::to_owned),
    );
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    my.exec(&refs);

    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &pg.source("t", "[\"id\"]"),
            &my.source("t", "[\"id\"]"),
            "[compare]\npage_size = 500\n",
        ),
    );
    let out = w.run_job("job.toml");
    assert_findings(
        &w,
        &out,
        &[
            m(1, "name"),
            m(50000, "name"),
            m(99999, "name"),
            m(777, "amount"),
            m(31337, "at"),
            m(42, "flag"),
            finding("missing_in_replica", json!({"id": 2}), None),
            finding("missing_in_replica", json!({"id": 60001}), None),
            finding("missing_in_replica", json!({"id": 100000}), None),
            finding("missing_in_owner", json!({"id": 100001}), None),
            finding("missing_in_owner", json!({"id": 0}), None),
        ],
    );
    let summary = w.summary("db");
    assert_eq!(summary["owner_rows"], json!(N));
    assert_eq!(summary["replica_rows"], json!(N - 1));
}

// --- property: random data and changes across engines -------------------------------------

/// One row's values; every one may be NULL.
#[derive(Clone, Debug, PartialEq)]
struct PropRow {
    name: Option<String>,
    cents: Option<i64>,
    flag: Option<bool>,
    micros: Option<i64>,
    ratio: Option<f64>,
}

/// What happens to an owner row in the replica: 0 deleted, 1..=5 one field replaced by
/// `new`'s, 6 every field replaced, otherwise kept.
#[derive(Clone, Debug)]
struct PropPlanned {
    row: PropRow,
    op: u8,
    new: PropRow,
}

#[derive(Clone, Debug)]
struct PropCase {
    owner: BTreeMap<(String, i64), PropPlanned>,
    inserts: BTreeMap<(String, i64), PropRow>,
    postgres_owns: bool,
    page_size: usize,
}

const PROP_FIELDS: [&str; 5] = ["name", "amount", "flag", "at", "ratio"];

fn prop_row() -> impl Strategy<Value = PropRow> {
    let ratio = prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(0.1),
        Just(5e-324),
        Just(1.7976931348623157e308),
        -1e6..1e6f64,
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ];
    (
        prop::option::weighted(0.9, "[a-zA-Z0-9 ,é😀]{0,8}"),
        prop::option::weighted(0.9, -10_000_000_000i64..10_000_000_000),
        prop::option::weighted(0.9, any::<bool>()),
        prop::option::weighted(0.9, 0i64..4_000_000_000_000_000),
        prop::option::weighted(0.9, ratio),
    )
        .prop_map(|(name, cents, flag, micros, ratio)| PropRow {
            name,
            cents,
            flag,
            micros,
            ratio,
        })
}

fn prop_key() -> impl Strategy<Value = (String, i64)> {
    // Keys that differ only in case, pad spaces and control characters.
    ("[aAbé \t]{1,3}", -50i64..50)
}

fn prop_case() -> impl Strategy<Value = PropCase> {
    (
        prop::collection::btree_map(
            prop_key(),
            (prop_row(), 0u8..12, prop_row()).prop_map(|(row, op, new)| PropPlanned { row, op, new }),
            0..60,
        ),
        prop::collection::btree_map(prop_key(), prop_row(), 0..8),
        any::<bool>(),
        1usize..24,
    )
        .prop_map(|(owner, mut inserts, postgres_owns, page_size)| {
            inserts.retain(|k, _| !owner.contains_key(k));
            PropCase {
                owner,
                inserts,
                postgres_owns,
                page_size,
            }
        })
}

fn prop_replica(case: &PropCase) -> BTreeMap<(String, i64), PropRow> {
    let mut rows = BTreeMap::new();
    for (k, p) in &case.owner {
        let mut row = p.row.clone();
        match p.op {
            0 => continue,
            1 => row.name = p.new.name.clone(),
            2 => row.cents = p.new.cents,
            3 => row.flag = p.new.flag,
            4 => row.micros = p.new.micros,
            5 => row.ratio = p.new.ratio,
            6 => row = p.new.clone(),
            _ => {}
        }
        rows.insert(k.clone(), row);
    }
    rows.extend(case.inserts.clone());
    rows
}

/// The findings the data implies: `(kind, region, id, field)`.
fn prop_expected(
    case: &PropCase,
    replica: &BTreeMap<(String, i64), PropRow>,
) -> BTreeSet<(String, String, i64, Option<String>)> {
    let mut out = BTreeSet::new();
    for (k, p) in &case.owner {
        let Some(r) = replica.get(k) else {
            out.insert(("missing_in_replica".into(), k.0.clone(), k.1, None));
            continue;
        };
        let o = &p.row;
        // -0.0 == 0.0 in Rust as in recon.
        let differs = [
            o.name != r.name,
            o.cents != r.cents,
            o.flag != r.flag,
            o.micros != r.micros,
            o.ratio != r.ratio,
        ];
        for (field, differs) in PROP_FIELDS.iter().zip(differs) {
            if differs {
                out.insert(("mismatch".into(), k.0.clone(), k.1, Some(field.to_string())));
            }
        }
    }
    for k in replica.keys() {
        if !case.owner.contains_key(k) {
            out.insert(("missing_in_owner".into(), k.0.clone(), k.1, None));
        }
    }
    out
}

fn sql_text(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or("NULL".into(), |s| format!("'{}'", s.replace('\'', "''")))
}

/// `INSERT` statements for the rows; `postgres` picks each engine's spelling.
fn prop_inserts(rows: &BTreeMap<(String, i64), PropRow>, postgres: bool) -> Vec<String> {
    let values: Vec<String> = rows
        .iter()
        .map(|((region, id), r)| {
            let amount = r.cents.map_or("NULL".into(), |c| {
                let sign = if c < 0 { "-" } else { "" };
                format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
            });
            let flag = match (r.flag, postgres) {
                (None, _) => "NULL".to_string(),
                (Some(b), true) => b.to_string(),
                (Some(b), false) => u8::from(b).to_string(),
            };
            let at = r.micros.map_or("NULL".into(), |us| {
                let t = chrono::DateTime::from_timestamp_micros(us).expect("in range");
                let text = t.format("%Y-%m-%d %H:%M:%S%.6f");
                if postgres {
                    format!("'{text}+00'")
                } else {
                    format!("'{text}'")
                }
            });
            let ratio = r.ratio.map_or("NULL".into(), |f| format!("{f:e}"));
            format!(
                "({}, {id}, {}, {amount}, {flag}, {at}, {ratio})",
                sql_text(&Some(region.clone())),
                sql_text(&r.name)
            )
        })
        .collect();
    values
        .chunks(200)
        .map(|chunk| format!("INSERT INTO t VALUES {}", chunk.join(", ")))
        .collect()
}

fn prop_check(case: &PropCase, pg_url: &str, my_url: &str) -> Result<(), TestCaseError> {
    let pg = PgSchema::new(pg_url, "prop");
    let my = MyDatabase::new(my_url, "prop");
    let replica = prop_replica(case);
    let owner_rows: BTreeMap<(String, i64), PropRow> = case
        .owner
        .iter()
        .map(|(k, p)| (k.clone(), p.row.clone()))
        .collect();
    let (pg_rows, my_rows) = if case.postgres_owns {
        (&owner_rows, &replica)
    } else {
        (&replica, &owner_rows)
    };
    let mut pg_statements = vec![
        "CREATE TABLE t (region text COLLATE \"C\", id bigint, name text, amount numeric(12,2), \
         flag boolean, at timestamptz(6), ratio double precision, PRIMARY KEY (region, id))"
            .to_owned(),
    ];
    pg_statements.extend(prop_inserts(pg_rows, true));
    let refs: Vec<&str> = pg_statements.iter().map(String::as_str).collect();
    pg.exec(&refs);
    let mut my_statements = vec![
        "CREATE TABLE t (region varchar(8) COLLATE utf8mb4_nopad_bin, id bigint, name varchar(20), \
         amount decimal(16,4), flag tinyint(1), at datetime(6), ratio double, PRIMARY KEY (region, id))"
            .to_owned(),
    ];
    my_statements.extend(prop_inserts(my_rows, false));
    let refs: Vec<&str> = my_statements.iter().map(String::as_str).collect();
    my.exec(&refs);

    let key = "[\"region\", \"id\"]";
    let (pg_side, my_side) = (pg.source("t", key), my.source("t", key));
    let (owner, replica_side) = if case.postgres_owns {
        (&pg_side, &my_side)
    } else {
        (&my_side, &pg_side)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let job_path = dir.path().join("db.toml");
    std::fs::write(
        &job_path,
        job(
            owner,
            replica_side,
            &format!("[compare]\npage_size = {}\nrecheck = false\n", case.page_size),
        ),
    )
    .expect("write job");
    let job = recon::job::load_job(&job_path).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let options = recon::pipeline::RunOptions {
        out_dir: dir.path().join("out"),
        formats: vec![recon::report::Format::Jsonl],
        memory_budget: 64 << 20,
        observer: None,
    };
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(recon::pipeline::run_job(&job, &options));
    prop_assert_ne!(
        outcome.summary.status,
        recon::report::Status::Failed,
        "job failed: {:?}",
        outcome.summary.error
    );
    let records = read_jsonl(&outcome.report_dir.join("inconsistencies.jsonl"));
    let got: BTreeSet<(String, String, i64, Option<String>)> = records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or_default().to_string(),
                r["key"]["region"].as_str().unwrap_or_default().to_string(),
                r["key"]["id"].as_i64().unwrap_or(i64::MIN),
                r.get("field").and_then(|f| f.as_str()).map(str::to_string),
            )
        })
        .collect();
    prop_assert_eq!(records.len(), got.len(), "duplicate records: {:?}", records);
    for r in &records {
        prop_assert!(r.get("reason").is_none(), "a value did not parse: {}", r);
    }
    prop_assert_eq!(got, prop_expected(case, &replica));
    prop_assert_eq!(outcome.summary.owner_rows, case.owner.len() as u64);
    prop_assert_eq!(outcome.summary.replica_rows, prop_replica(case).len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_changes_across_engines_are_reported_exactly(case in prop_case()) {
        let Some((pg_url, my_url)) = both_servers() else {
            return Ok(());
        };
        prop_check(&case, &pg_url, &my_url)?;
    }
}
