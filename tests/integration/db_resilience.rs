//! Database sources that lose their connection mid-run: retried, resumed, or failed cleanly.
//!
//! recon runs as a child process while the test watches the server's list of sessions
//! and cuts connections under it: `pg_terminate_backend`, MySQL's `KILL`, or a TCP proxy
//! that goes away for good. Every read sleeps a little in its `where` condition, so that
//! a statement is reliably in flight when the test strikes; the test waits until a few
//! statements have run, so that the strike lands mid-scan, and asserts that it struck.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::db::*;
use crate::support::*;

/// Rows in the owner table; the replica differs by [`expected`].
const ROWS: i64 = 20_000;

/// Statements the test sees start before it strikes (again): a strike lands mid-scan.
const STATEMENTS_BEFORE_A_STRIKE: usize = 3;

/// A safety bound on watching a run; never an expected duration.
const WATCH_LIMIT: Duration = Duration::from_secs(180);

/// The differences planted in the replica, including a run of duplicate keys (501)
/// that the first page (`page_size` 500, 501 rows asked for) cuts.
fn expected() -> BTreeSet<Finding> {
    [
        finding("missing_in_replica", json!({"id": 777}), None),
        finding("mismatch", json!({"id": 5000}), Some("v")),
        finding("missing_in_owner", json!({"id": 30001}), None),
        finding("duplicate_key", json!({"id": 501}), None),
        finding("duplicate_key", json!({"id": 12000}), None),
    ]
    .into_iter()
    .collect()
}

/// The statements that make `r` the replica of `t` with [`expected`]'s differences.
fn plant_differences() -> Vec<String> {
    [
        "DELETE FROM r WHERE id = 777",
        "UPDATE r SET v = 'changed' WHERE id = 5000",
        "INSERT INTO r VALUES (30001, 'extra')",
        "INSERT INTO r VALUES (501, 'v501')",
        "INSERT INTO r VALUES (12000, 'v12000')",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn job(owner: &str, replica: &str) -> String {
    format!("name = \"db\"\n\n[owner]\n{owner}\n\n[replica]\n{replica}\n\n[compare]\npage_size = 500\n")
}

/// Runs `recon run job.toml --out out -v --log-format json` in `w` on a thread of its own.
fn spawn_recon(w: &Workdir, env: &[(&str, &str)]) -> JoinHandle<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_recon"));
    command
        .args(["run", "job.toml", "--out", "out", "-v", "--log-format", "json"])
        .current_dir(w.path())
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    thread::spawn(move || command.output().expect("start recon"))
}

/// The retry events recon logged.
fn retries(out: &Output) -> Vec<Value> {
    stderr(out)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["level"] == "WARN"
                && event["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("retrying"))
        })
        .collect()
}

/// Asserts that recon retried, each retry event carrying the attempt, the wait and the
/// error, and that no retry met a dead connection again: each strike cuts one session,
/// so more failed attempts than strikes would mean a retry reused a broken connection.
fn assert_retried_on_fresh_connections(out: &Output, strikes: usize) {
    let retries = retries(out);
    assert!(!retries.is_empty(), "no retry was logged\n{}", stderr(out));
    assert!(
        retries.len() <= strikes,
        "{} retries for {strikes} strikes\n{}",
        retries.len(),
        stderr(out)
    );
    for event in &retries {
        let fields = &event["fields"];
        assert!(
            fields["attempt"].as_u64().is_some_and(|a| (1..5).contains(&a)),
            "{event}"
        );
        assert!(fields["delay_ms"].as_u64().is_some(), "{event}");
        assert!(fields["error"].as_str().is_some_and(|e| !e.is_empty()), "{event}");
    }
}

/// A server's view of recon's statements in flight, and a way to cut one.
trait Watch {
    type Id: Copy + Eq + Hash;

    /// The sessions running a recon statement on the test's tables right now.
    async fn active(&mut self) -> Vec<Self::Id>;

    /// Cuts the session; true when it was cut.
    async fn strike(&mut self, id: Self::Id) -> bool;
}

/// While `recon` runs, strikes up to `wanted` sessions, each once a few statements have
/// started since the last strike; returns the strikes that landed.
async fn strike_mid_run<W: Watch>(watch: &mut W, recon: &JoinHandle<Output>, wanted: usize) -> usize {
    let limit = Instant::now() + WATCH_LIMIT;
    let mut before: HashSet<W::Id> = HashSet::new();
    let mut struck: HashSet<W::Id> = HashSet::new();
    let mut started = 0;
    let mut strikes = 0;
    while strikes < wanted && !recon.is_finished() && Instant::now() < limit {
        let now: HashSet<W::Id> = watch.active().await.into_iter().collect();
        // A session absent at the last look and present now started a statement.
        started += now.difference(&before).count();
        let target = now.iter().find(|id| !struck.contains(id)).copied();
        if let (true, Some(id)) = (started >= STATEMENTS_BEFORE_A_STRIKE, target) {
            struck.insert(id);
            if watch.strike(id).await {
                strikes += 1;
                started = 0;
            }
        }
        before = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    strikes
}

/// PostgreSQL sessions named `recon` whose statement names `pattern`.
struct PgWatch {
    conn: sqlx::PgConnection,
    pattern: String,
}

impl PgWatch {
    async fn new(url: &str, pattern: &str) -> PgWatch {
        PgWatch {
            conn: sqlx::PgConnection::connect(url)
                .await
                .expect("connect to PostgreSQL"),
            pattern: format!("%{pattern}%"),
        }
    }
}

impl Watch for PgWatch {
    type Id = i32;

    async fn active(&mut self) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'recon' \
             AND state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
        )
        .bind(&self.pattern)
        .fetch_all(&mut self.conn)
        .await
        .expect("read pg_stat_activity")
    }

    async fn strike(&mut self, pid: i32) -> bool {
        sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut self.conn)
            .await
            .expect("pg_terminate_backend")
    }
}

/// MySQL sessions whose statement names `pattern`.
struct MyWatch {
    conn: sqlx::MySqlConnection,
    pattern: String,
}

impl Watch for MyWatch {
    type Id = i64;

    async fn active(&mut self) -> Vec<i64> {
        // MySQL's ID is unsigned, MariaDB's signed: one type for both.
        sqlx::query_scalar(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE ? AND ID <> CONNECTION_ID() AND COMMAND IN ('Query', 'Execute')",
        )
        .bind(&self.pattern)
        .fetch_all(&mut self.conn)
        .await
        .expect("read the process list")
    }

    async fn strike(&mut self, id: i64) -> bool {
        // The whole connection, not just its statement (`KILL QUERY`).
        sqlx::raw_sql(&format!("KILL {id}"))
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}

#[test]
fn postgres_connections_terminated_mid_run_are_retried_and_resumed() {
    let Some(url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let pg = PgSchema::new(&url, "res");
    let mut setup = vec![
        "CREATE TABLE t (id integer PRIMARY KEY, v text)".to_owned(),
        format!("INSERT INTO t SELECT n, 'v' || n FROM generate_series(1, {ROWS}) AS n"),
        "CREATE TABLE r (id integer, v text)".to_owned(),
        "INSERT INTO r SELECT id, v FROM t".to_owned(),
    ];
    setup.extend(plant_differences());
    pg.exec(&setup.iter().map(String::as_str).collect::<Vec<_>>());
    // Evaluated once per statement: every page takes a tenth of a second.
    let slow = "\nwhere = \"(SELECT pg_sleep(0.1)) IS NOT NULL\"";
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &(pg.source("t", "[\"id\"]") + slow),
            &(pg.source("r", "[\"id\"]") + slow),
        ),
    );
    let recon = spawn_recon(&w, &[]);
    let strikes = block_on(async {
        let mut watch = PgWatch::new(&url, &pg.name).await;
        strike_mid_run(&mut watch, &recon, 2).await
    });
    let out = recon.join().expect("recon thread");
    assert!(strikes >= 1, "no connection was terminated\n{}", stderr(&out));
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(w.findings("db"), expected());
    assert_eq!(w.summary("db")["owner_rows"], json!(ROWS));
    assert_eq!(w.summary("db")["replica_rows"], json!(ROWS + 2));
    assert_retried_on_fresh_connections(&out, strikes);
}

#[test]
fn mysql_connections_killed_mid_run_are_retried_and_resumed() {
    let Some(url) = server_url("RECON_TEST_MYSQL_URL") else {
        return;
    };
    let my = MyDatabase::new(&url, "res");
    let mut setup = vec![
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20))".to_owned(),
        "CREATE TABLE r (id int, v varchar(20))".to_owned(),
    ];
    for chunk in 0..ROWS / 1000 {
        let values: Vec<String> = (chunk * 1000 + 1..=chunk * 1000 + 1000)
            .map(|n| format!("({n}, 'v{n}')"))
            .collect();
        setup.push(format!("INSERT INTO t VALUES {}", values.join(", ")));
    }
    setup.push("INSERT INTO r SELECT id, v FROM t".to_owned());
    setup.extend(plant_differences());
    my.exec(&setup.iter().map(String::as_str).collect::<Vec<_>>());
    // A derived table is materialized once per statement (a bare SLEEP() would run per row).
    let slow = "\nwhere = \"(SELECT MAX(s) FROM (SELECT SLEEP(0.1) AS s) AS z) = 0\"";
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &(my.source("t", "[\"id\"]") + slow),
            &(my.source("r", "[\"id\"]") + slow),
        ),
    );
    let recon = spawn_recon(&w, &[]);
    let strikes = block_on(async {
        let mut watch = MyWatch {
            conn: sqlx::MySqlConnection::connect(&url)
                .await
                .expect("connect to MySQL"),
            pattern: format!("%{}%", my.name),
        };
        strike_mid_run(&mut watch, &recon, 2).await
    });
    let out = recon.join().expect("recon thread");
    assert!(strikes >= 1, "no connection was killed\n{}", stderr(&out));
    assert_exit(&out, EXIT_INCONSISTENT);
    assert_eq!(w.findings("db"), expected());
    assert_eq!(w.summary("db")["owner_rows"], json!(ROWS));
    assert_eq!(w.summary("db")["replica_rows"], json!(ROWS + 2));
    assert_retried_on_fresh_connections(&out, strikes);
}

/// A TCP proxy on 127.0.0.1 in front of a server, which the test can take away: it then
/// cuts every forwarded connection and drops each new one as soon as it is accepted, as
/// a load balancer without a healthy backend does. (A closed port would do as well, but
/// the pool then keeps retrying the refused connect until its timeout on each attempt.)
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, o, s) = (down.clone(), open.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = o.lock().expect("proxy lock");
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        open.push(clone);
                    }
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Proxy {
            port,
            down,
            open,
            stop,
        }
    }

    /// From now on nothing gets through, and nothing that got through stays.
    fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for stream in self.open.lock().expect("proxy lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.take_down();
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` on a thread until either end closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Takes the proxy down (once) when the replica has run a few statements.
struct ProxyWatch<'a> {
    pg: PgWatch,
    proxy: &'a Proxy,
}

impl Watch for ProxyWatch<'_> {
    type Id = i32;

    async fn active(&mut self) -> Vec<i32> {
        self.pg.active().await
    }

    async fn strike(&mut self, _pid: i32) -> bool {
        self.proxy.take_down();
        true
    }
}

/// `(user[:password], host:port, the rest from the path on)` of a `scheme://` URL.
fn url_parts(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (userinfo.to_owned(), host, tail.to_owned())
}

#[test]
fn a_server_that_stays_gone_fails_the_job_after_the_last_attempt() {
    let Some(url) = server_url("RECON_TEST_POSTGRES_URL") else {
        return;
    };
    let pg = PgSchema::new(&url, "gone");
    pg.exec(&[
        "CREATE TABLE t (id integer PRIMARY KEY, v text)",
        &format!("INSERT INTO t SELECT n, 'v' || n FROM generate_series(1, {ROWS}) AS n"),
        "CREATE TABLE r (id integer, v text)",
        "INSERT INTO r SELECT id, v FROM t",
    ]);
    let (userinfo, upstream, tail) = url_parts(&url);
    // The server's own password when the URL has one; else one that trust ignores.
    let (user, secret) = match userinfo.split_once(':') {
        Some((user, password)) => (user.to_owned(), password.to_owned()),
        None => (userinfo.clone(), "Pr0xyS3cretPw".to_owned()),
    };
    let proxy = Proxy::start(upstream);
    let proxied = format!("postgres://{user}:{secret}@127.0.0.1:{}{tail}", proxy.port);
    let slow = "\nwhere = \"(SELECT pg_sleep(0.1)) IS NOT NULL\"";
    let w = Workdir::new();
    w.write(
        "job.toml",
        job(
            &(pg.source("t", "[\"id\"]") + slow),
            &format!(
                "type = \"postgres\"\nurl = \"${{PROXIED_URL}}\"\nschema = \"{}\"\ntable = \"r\"\nkey = [\"id\"]{slow}",
                pg.name
            ),
        ),
    );
    let recon = spawn_recon(&w, &[("PROXIED_URL", &proxied)]);
    let strikes = block_on(async {
        let mut watch = ProxyWatch {
            pg: PgWatch::new(&url, &format!("{}\".\"r\"", pg.name)).await,
            proxy: &proxy,
        };
        strike_mid_run(&mut watch, &recon, 1).await
    });
    let out = recon.join().expect("recon thread");
    assert_eq!(strikes, 1, "the proxy was never taken down\n{}", stderr(&out));
    assert_exit(&out, EXIT_FAILED);

    let summary = w.summary("db");
    assert_eq!(summary["status"], "failed");
    let error = summary["error"].as_str().expect("an error in the summary");
    assert!(error.contains("reading after key "), "{error}");
    assert!(error.contains(" failed after 5 attempts: "), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{}", proxy.port)), "{error}");
    let mut files: Vec<String> = std::fs::read_dir(w.report_dir("db"))
        .expect("report folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["summary.json"]);

    // Four retries (the fifth attempt is the last), and the password nowhere.
    assert_eq!(retries(&out).len(), 4, "{}", stderr(&out));
    let text = format!(
        "{}{}{}",
        stdout(&out),
        stderr(&out),
        std::fs::read_to_string(w.report_dir("db").join("summary.json")).unwrap_or_default()
    );
    assert!(!text.contains(&secret), "the password leaked: {text}");
}
