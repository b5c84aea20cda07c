#!/usr/bin/env python3
"""Speed and memory of recon's streaming path, side by side with reladiff and DuckDB.

    python3 bench/bench.py [--rows N] [--diffs 30,30000] [--repeat N] [--only pg,csv,jsonl]

`make bench` runs it at 1,000,000 rows, `make bench-large` at 10,000,000. It

1. builds recon (`cargo build --release`) and the CSV parse floor
   (`cargo build --release --example csv_floor`), and installs reladiff and DuckDB into
   a throwaway venv (bench/.venv);
2. generates the data, server-side in the local PostgreSQL (an owner database and one
   replica database per difference count) and as CSV and JSON Lines files exported from
   them in seeded random orders (bench/.data); generated data is kept and reused while
   its parameters are unchanged;
3. runs every tool on every case several times, alternating, each under
   `/usr/bin/time -v`, and checks every answer against the known set of differences;
4. prints a table and whether each target of the issue is met, and writes the same into
   BENCHMARKS.md (between markers, one section per row count) and bench/results/.

Timings are never asserted on: this is a benchmark, not a test. Standard library only;
the peers live in the venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
DATA = BENCH / ".data"
RESULTS = BENCH / "results"
MARKDOWN = ROOT / "BENCHMARKS.md"
RECON = ROOT / "target" / "release" / "recon"
CSV_FLOOR = ROOT / "target" / "release" / "examples" / "csv_floor"

# Pinned peers: the versions the figures in BENCHMARKS.md were taken with.
PEER_REQUIREMENTS = ["reladiff[postgresql]==0.6.0", "psycopg2-binary==2.9.13", "duckdb==2.0.1"]

# Bump when the generated data changes meaning, so cached data is rebuilt.
DATA_VERSION = 1

COLUMNS = ["id", "customer_id", "status", "amount", "currency", "quantity", "updated_at", "note"]
FIELDS = COLUMNS[1:]

# Every value is a pure function of `id` (the same expressions build the owner rows and
# the rows inserted into a replica).
ROW_SQL = """
    id,
    md5('customer-' || (id % 50000)::text)::uuid,
    (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + (id % 5)::int],
    (((id * 7919) % 1000000) / 100.0)::numeric(12, 2),
    (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + ((id / 7) % 4)::int],
    (1 + (id * 31) % 20)::int,
    timestamptz '2024-01-01 00:00:00+00'
        + (id * 30000000 + (id * 7919) % 1000000) * interval '1 microsecond',
    CASE WHEN id % 10 = 0 THEN NULL ELSE 'note ' || id::text END
"""

CREATE_TABLE = """
CREATE TABLE orders (
    id          bigint NOT NULL,
    customer_id uuid,
    status      text,
    amount      numeric(12, 2),
    currency    text,
    quantity    int,
    updated_at  timestamptz,
    note        text
);
"""

# ---------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a command that must succeed (setup, not measured)."""
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def fmt_cmd(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


@dataclass
class Pg:
    """The local PostgreSQL: a base URL without the database."""

    base: str  # e.g. postgres://postgres@127.0.0.1:5432

    def url(self, db: str) -> str:
        return f"{self.base}/{db}"

    def psql(self, db: str, sql: str, capture: bool = False) -> str:
        env = dict(os.environ, PGOPTIONS="-c TimeZone=UTC")
        p = sh(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", self.url(db)],
            input=sql,
            text=True,
            env=env,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        )
        return p.stdout.strip() if capture else ""

    def exists(self, db: str) -> bool:
        q = f"SELECT 1 FROM pg_database WHERE datname = '{db}'"
        return self.psql("postgres", q, capture=True) == "1"

    def marker(self, db: str) -> str | None:
        if not self.exists(db):
            return None
        q = "SELECT params FROM bench_meta" if self.table_exists(db, "bench_meta") else ""
        return self.psql(db, q, capture=True) if q else None

    def table_exists(self, db: str, table: str) -> bool:
        q = f"SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'"
        return self.psql(db, q, capture=True) == "1"

    def set_marker(self, db: str, params: str) -> None:
        quoted = params.replace("'", "''")
        self.psql(
            db,
            "DROP TABLE IF EXISTS bench_meta; CREATE TABLE bench_meta (params text);"
            f"INSERT INTO bench_meta VALUES ('{quoted}');",
        )

    def copy_out(self, db: str, query: str, path: Path, fmt: str) -> None:
        env = dict(os.environ, PGOPTIONS="-c TimeZone=UTC")
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as out:
            sh(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(db),
                 "-c", f"COPY ({query}) TO STDOUT {fmt}"],
                env=env,
                stdout=out,
            )
        tmp.replace(path)


# ---------------------------------------------------------------------------------------
# the data and the expected answer


@dataclass
class Layout:
    """Owner ids: `rows` ids from 1 upwards, skipping every multiple of `gap` (the holes
    where a replica's inserted rows go, so inserted keys are spread over the key range)."""

    rows: int
    gap: int

    def owner_id(self, k: int) -> int:  # k in 1..rows
        return k + (k - 1) // (self.gap - 1)

    @property
    def max_id(self) -> int:
        return self.owner_id(self.rows)

    @property
    def holes(self) -> int:
        return self.max_id // self.gap

    def is_owner_id(self, i: int) -> bool:
        return 1 <= i <= self.max_id and i % self.gap != 0

    @staticmethod
    def for_run(rows: int, most_inserts: int) -> "Layout":
        # room for 10,000 inserts whatever --diffs says, so the layout (and the cached
        # owner) does not change with it; a gap dividing 10 would make every NULL note
        # (every 10th id) a hole
        if rows >= 40000:
            most_inserts = max(most_inserts, 10000)
        gap = min(100, max(2, rows // max(most_inserts, 1))) + 1
        while gap in (5, 10):
            gap -= 1
        layout = Layout(rows, gap)
        while layout.holes < most_inserts and layout.gap > 3:
            layout = Layout(rows, layout.gap - 1 if layout.gap - 1 not in (5, 10) else layout.gap - 2)
        if layout.holes < most_inserts:
            raise SystemExit(f"--rows {rows} is too small for {most_inserts} inserted rows")
        return layout


@dataclass
class Expected:
    """The differences planted in one replica."""

    deleted: list[int]  # missing_in_replica
    inserted: list[int]  # missing_in_owner
    changed: dict[int, str]  # id -> the one field that differs

    @property
    def total(self) -> int:
        return len(self.deleted) + len(self.inserted) + len(self.changed)

    def as_sets(self) -> dict[str, set]:
        return {
            "missing_in_replica": set(self.deleted),
            "missing_in_owner": set(self.inserted),
            "mismatch": set(self.changed.items()),
        }


def plant(layout: Layout, diffs: int) -> Expected:
    """A third deleted, a third changed (cycling amount, status, note to/from NULL), a
    third inserted, each evenly spread over the key range."""
    n_del = diffs // 3
    n_chg = diffs // 3
    n_ins = diffs - n_del - n_chg
    n = layout.rows
    deleted = [layout.owner_id(1 + int((i + 0.2) * n / n_del)) for i in range(n_del)]
    used = set(deleted)
    changed: dict[int, str] = {}
    cycle = ["amount", "status", "note"]
    for i in range(n_chg):
        kind = cycle[i % 3]
        k = 1 + int((i + 0.6) * n / n_chg)
        k = min(k, n)
        cand = layout.owner_id(k)
        if kind == "note" and (i // 3) % 2 == 1:
            # from NULL: move to the next owner id whose note is NULL (every 10th id)
            cand = cand + (-cand) % 10
            while cand <= layout.max_id and (cand in used or cand in changed or not layout.is_owner_id(cand)):
                cand += 10
            if cand > layout.max_id:
                cand = layout.owner_id(k)
        while cand in used or cand in changed:
            cand += 1
            while not layout.is_owner_id(cand):
                cand += 1
        assert layout.is_owner_id(cand), cand
        changed[cand] = kind
    holes = layout.holes
    inserted = [layout.gap * (1 + int((i + 0.4) * holes / n_ins)) for i in range(n_ins)]
    assert len(set(deleted)) == n_del and len(set(inserted)) == n_ins
    assert not (set(deleted) & set(changed)), "deleted and changed keys overlap"
    assert all(layout.is_owner_id(i) for i in deleted)
    assert all(not layout.is_owner_id(i) and i <= layout.max_id for i in inserted)
    return Expected(sorted(deleted), sorted(inserted), dict(sorted(changed.items())))


def int_array(ids) -> str:
    return "'{" + ",".join(str(i) for i in ids) + "}'::bigint[]"


def replica_sql(exp: Expected) -> str:
    by_kind = {k: [i for i, f in exp.changed.items() if f == k] for k in ("amount", "status", "note")}
    return f"""
        DELETE FROM orders WHERE id = ANY({int_array(exp.deleted)});
        UPDATE orders SET amount = amount + 0.01 WHERE id = ANY({int_array(by_kind['amount'])});
        UPDATE orders SET status = CASE status WHEN 'refunded' THEN 'paid' ELSE 'refunded' END
            WHERE id = ANY({int_array(by_kind['status'])});
        UPDATE orders SET note = CASE WHEN note IS NULL THEN 'changed note' ELSE NULL END
            WHERE id = ANY({int_array(by_kind['note'])});
        INSERT INTO orders SELECT {ROW_SQL} FROM unnest({int_array(exp.inserted)}) AS id;
        VACUUM ANALYZE orders;
    """


@dataclass
class Dataset:
    pg: Pg
    layout: Layout
    diffs: list[int]
    owner_db: str = "recon_bench_owner"
    expected: dict[int, Expected] = field(default_factory=dict)

    def replica_db(self, d: int) -> str:
        return f"recon_bench_replica_{d}"

    @property
    def folder(self) -> Path:
        return DATA / f"rows{self.layout.rows}-gap{self.layout.gap}"

    def csv(self, side: str) -> Path:
        return self.folder / f"{side}.csv"

    def jsonl(self, side: str) -> Path:
        return self.folder / f"{side}.jsonl"

    def owner_params(self) -> str:
        return json.dumps({"version": DATA_VERSION, "rows": self.layout.rows, "gap": self.layout.gap})

    def replica_params(self, d: int) -> str:
        return json.dumps({"owner": json.loads(self.owner_params()), "diffs": d})

    def prepare(self, want_db: bool, want_files: bool, want_jsonl: bool) -> None:
        for d in self.diffs:
            self.expected[d] = plant(self.layout, d)
        # the databases are the source of the files too, so they are always built
        fresh_owner = self.prepare_owner()
        for d in self.diffs:
            self.prepare_replica(d, force=fresh_owner)
        if want_files or want_jsonl:
            self.prepare_files(want_files, want_jsonl)

    def prepare_owner(self) -> bool:
        params = self.owner_params()
        if self.pg.marker(self.owner_db) == params:
            log(f"owner database {self.owner_db} is up to date")
            return False
        log(f"generating owner database {self.owner_db}: {self.layout.rows:,} rows (gap {self.layout.gap})")
        t0 = time.perf_counter()
        self.pg.psql("postgres", f"DROP DATABASE IF EXISTS {self.owner_db} WITH (FORCE)")
        self.pg.psql("postgres", f"CREATE DATABASE {self.owner_db}")
        g = self.layout.gap
        self.pg.psql(
            self.owner_db,
            CREATE_TABLE
            + f"INSERT INTO orders SELECT {ROW_SQL} FROM "
            f"(SELECT k + (k - 1) / {g - 1} AS id FROM generate_series(1::bigint, {self.layout.rows}) AS k) s;"
            "ALTER TABLE orders ADD PRIMARY KEY (id); VACUUM ANALYZE orders;",
        )
        self.pg.set_marker(self.owner_db, params)
        log(f"  owner generated in {time.perf_counter() - t0:.1f}s")
        return True

    def prepare_replica(self, d: int, force: bool) -> None:
        db = self.replica_db(d)
        params = self.replica_params(d)
        if not force and self.pg.marker(db) == params:
            log(f"replica database {db} is up to date")
            return
        log(f"generating replica database {db} ({d} differences)")
        t0 = time.perf_counter()
        self.pg.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.pg.psql("postgres", f"CREATE DATABASE {db} TEMPLATE {self.owner_db}")
        self.pg.psql(db, replica_sql(self.expected[d]))
        self.pg.set_marker(db, params)
        log(f"  replica generated in {time.perf_counter() - t0:.1f}s")

    def prepare_files(self, want_csv: bool, want_jsonl: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / "params.json"
        done = json.loads(marker.read_text()) if marker.exists() else {}
        if done.get("owner") != json.loads(self.owner_params()):
            done = {"owner": json.loads(self.owner_params()), "files": []}
        cols = ", ".join(COLUMNS)
        # (name, db, seed, kind) for every file wanted
        wanted = []
        sides = [("owner", self.owner_db)] + [(f"replica-{d}", self.replica_db(d)) for d in self.diffs]
        for name, db in sides:
            if want_csv:
                wanted.append((self.csv(name), db, f"{name}-csv", "csv"))
            if want_jsonl:
                wanted.append((self.jsonl(name), db, f"{name}-jsonl", "jsonl"))
        for path, db, seed, kind in wanted:
            stamp = f"{path.name}:{self.pg.marker(db)}"
            if stamp in done["files"] and path.exists():
                continue
            log(f"exporting {path.relative_to(ROOT)} from {db} in a seeded random order")
            order = f"ORDER BY md5(id::text || ':{seed}')"
            if kind == "csv":
                self.pg.copy_out(db, f"SELECT {cols} FROM orders {order}", path, "WITH (FORMAT csv, HEADER)")
            else:
                self.pg.copy_out(db, f"SELECT row_to_json(o)::text FROM (SELECT {cols} FROM orders {order}) o", path, "")
            done["files"] = [f for f in done["files"] if not f.startswith(path.name + ":")] + [stamp]
            marker.write_text(json.dumps(done, indent=1))


# ---------------------------------------------------------------------------------------
# measuring


def server_cpu_ticks() -> int | None:
    """CPU ticks used so far by the local PostgreSQL: every postgres process, plus what
    the postmaster collected from backends that have exited."""
    total = 0
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm != "postgres":
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        # fields after comm: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        total += int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        found = True
    return total if found else None


@dataclass
class Measure:
    wall: float
    rss_kib: int
    cpu: float  # user + sys of the measured process tree
    server_cpu: float | None
    status: int
    stdout: str
    stderr: str


def measure(cmd: list[str], env: dict | None = None, server: bool = False, stdout_file: Path | None = None) -> Measure:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf, tempfile.TemporaryFile("w+") as err:
        out = open(stdout_file, "w") if stdout_file else tempfile.TemporaryFile("w+")
        with out:
            ticks0 = server_cpu_ticks() if server else None
            t0 = time.perf_counter()
            p = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name] + cmd, env=env, stdout=out, stderr=err)
            wall = time.perf_counter() - t0
            server_cpu = None
            if server and ticks0 is not None:
                time.sleep(0.3)  # let the tool's backends exit and be reaped
                ticks1 = server_cpu_ticks()
                server_cpu = (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK")
            out.seek(0) if not stdout_file else None
            stdout = "" if stdout_file else out.read()
        err.seek(0)
        stderr = err.read()
        report = tf.read()
    def num(label: str) -> float:
        m = re.search(rf"{re.escape(label)}: ([0-9.]+)", report)
        if not m:
            raise RuntimeError(f"no '{label}' in /usr/bin/time output:\n{report}\n{stderr}")
        return float(m.group(1))
    return Measure(
        wall=wall,
        rss_kib=int(num("Maximum resident set size (kbytes)")),
        cpu=num("User time (seconds)") + num("System time (seconds)"),
        server_cpu=server_cpu,
        status=p.returncode,
        stdout=stdout,
        stderr=stderr,
    )


# ---------------------------------------------------------------------------------------
# checking answers


def judge(expected: Expected, found: dict[str, set], note: str = "") -> tuple[bool, str]:
    exp = expected.as_sets()
    problems = []
    for kind in ("missing_in_replica", "missing_in_owner", "mismatch"):
        miss = exp[kind] - found.get(kind, set())
        extra = found.get(kind, set()) - exp[kind]
        if miss or extra:
            sample = sorted(miss)[:3] + sorted(extra)[:3]
            problems.append(f"{kind}: {len(exp[kind]) - len(miss)}/{len(exp[kind])} found, {len(extra)} extra (e.g. {sample})")
    for kind in found:
        if kind not in exp and found[kind]:
            problems.append(f"unexpected {kind}: {len(found[kind])}")
    if problems:
        return False, "WRONG: " + "; ".join(problems) + (f" [{note}]" if note else "")
    return True, f"ok {len(exp['missing_in_replica'])}/{len(exp['missing_in_owner'])}/{len(exp['mismatch'])}"


def recon_answer(out_dir: Path, job: str) -> dict[str, set]:
    found: dict[str, set] = {}
    with open(out_dir / job / "inconsistencies.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            kind = rec["kind"]
            key = int(rec["key"]["id"])
            item = (key, rec.get("field")) if kind == "mismatch" else key
            found.setdefault(kind, set()).add(item)
    return found


STATUSES = {"pending", "paid", "shipped", "delivered", "cancelled", "refunded"}
# How to tell reladiff's columns apart: it prints the key first and the other columns in
# an order of its own (it varies from run to run), so each position is named by the
# values it holds.
COLUMN_PATTERNS = {
    "customer_id": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "updated_at": re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"),
    "amount": re.compile(r"^-?\d+\.\d+$"),
    "currency": re.compile(r"^[A-Z]{3}$"),
    "quantity": re.compile(r"^\d+$"),
    "note": re.compile(r"^(note \d+|changed note)$"),
}


def classify(values: list) -> str | None:
    texts = [v for v in values if v is not None]
    if not texts:
        return None
    if all(v in STATUSES for v in texts):
        return "status"
    for name, pattern in COLUMN_PATTERNS.items():
        if all(pattern.match(str(v)) for v in texts):
            return name
    return None


def reladiff_answer(path: Path) -> dict[str, set]:
    """reladiff --json prints `["-", [values...]]` for a row only in the first table and
    `["+", [values...]]` for a row only in the second; a changed row is a - and a + line
    for the same key. The key comes first."""
    minus: dict[int, list] = {}
    plus: dict[int, list] = {}
    lines = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                sign, values = json.loads(line)
                if sign not in "+-" or len(values) != len(COLUMNS):
                    raise ValueError(f"unexpected reladiff line {line[:200]}")
                lines.append((sign, values))
    names: list[str | None] = ["id"]
    for pos in range(1, len(COLUMNS)):
        names.append(classify([v for _, values in lines for v in values[pos:pos + 1]]))
    for sign, values in lines:
        (minus if sign == "-" else plus).setdefault(int(values[0]), []).append(values)
    found: dict[str, set] = {"missing_in_replica": set(), "missing_in_owner": set(), "mismatch": set()}
    for key in minus.keys() - plus.keys():
        found["missing_in_replica"].add(key)
    for key in plus.keys() - minus.keys():
        found["missing_in_owner"].add(key)
    for key in minus.keys() & plus.keys():
        a, b = minus[key][0], plus[key][0]
        diff = [names[i] or f"column {i}" for i in range(1, len(COLUMNS)) if a[i] != b[i]]
        for fname in diff or ["<no column differs>"]:
            found["mismatch"].add((key, fname))
    return found


def duckdb_answer(path: Path) -> dict[str, set]:
    found: dict[str, set] = {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "mismatch":
                for fname in rec["fields"]:
                    found.setdefault("mismatch", set()).add((rec["id"], fname))
            else:
                found.setdefault(rec["kind"], set()).add(rec["id"])
    return found


# ---------------------------------------------------------------------------------------
# the tools


@dataclass
class Tool:
    name: str  # shown in the table
    role: str  # "recon", "peer" or "floor"
    cmd: list[str]
    env: dict | None = None
    server: bool = False  # measure PostgreSQL's CPU too
    check: object = None  # callable(Measure, workdir) -> (ok, text)
    stdout_file: Path | None = None
    display: str = ""  # the command as documented

    def doc(self) -> str:
        return self.display or fmt_cmd(self.cmd)


@dataclass
class Case:
    store: str  # pg | csv | jsonl
    diffs: int
    tools: list[Tool]
    runs: dict[str, list] = field(default_factory=dict)  # tool name -> [(Measure, ok, text)]

    @property
    def title(self) -> str:
        return {"pg": "PostgreSQL → PostgreSQL", "csv": "CSV → CSV (unsorted)", "jsonl": "JSON Lines → JSON Lines (unsorted)"}[self.store] + f", {self.diffs:,} differences"


def recon_job(name: str, owner: str, replica: str, fields: str, compare: str = "") -> str:
    return f"""# written by bench/bench.py
version = 1
name = "{name}"
{compare}
[owner]
{owner}
key = ["id"]

[replica]
{replica}
key = ["id"]
{fields}"""


PG_FIELDS = "".join(f'\n[[fields]]\nname = "{f}"\n' for f in FIELDS)
TYPES = {"customer_id": "uuid", "status": "text", "amount": "decimal", "currency": "text",
         "quantity": "integer", "updated_at": "timestamp", "note": "text"}
# CSV has no types: the key is declared an integer, as DuckDB reads it (`BIGINT`).
CSV_KEY_TYPE = 'types = { id = "integer" }'
FILE_FIELDS = "".join(f'\n[[fields]]\nname = "{f}"\ntype = "{TYPES[f]}"\n' for f in FIELDS)


class Bench:
    def __init__(self, args):
        self.args = args
        self.pg = Pg(args.pg)
        self.work = Path(tempfile.mkdtemp(prefix="recon-bench-"))
        self.jobs = self.work / "jobs"
        self.jobs.mkdir()
        self.job_texts: dict[str, str] = {}
        self.venv_python = VENV / "bin" / "python"

    # -- setup ---------------------------------------------------------------------------

    def setup_tools(self) -> None:
        if not Path("/usr/bin/time").exists():
            raise SystemExit("/usr/bin/time is missing: apt-get install -y time")
        before = build_info()
        if not self.args.no_build:
            log("cargo build --release; cargo build --release --example csv_floor")
            sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
            sh(["cargo", "build", "--release", "--quiet", "--example", "csv_floor"], cwd=ROOT)
        for exe in (RECON, CSV_FLOOR):
            if not exe.exists():
                raise SystemExit(f"{exe} is missing (run without --no-build)")
        # Run copies: others may rebuild target/release while the benchmark runs, and
        # every run of one benchmark must time the same binary, the one described.
        self.build = build_info()
        if self.build != before:
            self.build["recon commit"] += " (the work tree changed during the build: this is its state after)"
        bin_dir = self.work / "bin"
        bin_dir.mkdir()
        self.recon = bin_dir / "recon"
        self.csv_floor = bin_dir / "csv_floor"
        shutil.copy2(RECON, self.recon)
        shutil.copy2(CSV_FLOOR, self.csv_floor)
        self.build["recon binary (sha256)"] = sha256(self.recon)[:16]
        if self.args.no_build:
            self.build["recon commit"] += " (--no-build: the binary may predate this state)"
        stamp = VENV / ".bench-requirements"
        want = "\n".join(PEER_REQUIREMENTS)
        if not (stamp.exists() and stamp.read_text() == want and self.venv_python.exists()):
            log(f"installing {', '.join(PEER_REQUIREMENTS)} into {VENV.relative_to(ROOT)}")
            shutil.rmtree(VENV, ignore_errors=True)
            sh([sys.executable, "-m", "venv", str(VENV)])
            sh([str(self.venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + PEER_REQUIREMENTS)
            stamp.write_text(want)

    # -- cases -----------------------------------------------------------------------------

    def write_job(self, name: str, text: str) -> Path:
        path = self.jobs / f"{name}.toml"
        path.write_text(text)
        self.job_texts[name] = text
        return path

    def recon_tool(self, name: str, job: Path, expected: Expected, label: str, server: bool) -> Tool:
        out = self.work / "out" / name
        def check(m: Measure, out=out, name=name):
            if m.status != 1:
                return False, f"WRONG: exit status {m.status} (expected 1): {m.stderr.strip()[-300:]}"
            ok, text = judge(expected, recon_answer(out, name))
            summary = json.loads((out / name / "summary.json").read_text())
            if summary.get("truncated"):
                ok, text = False, text + " (report truncated)"
            shutil.rmtree(out, ignore_errors=True)
            return ok, text
        cmd = [str(self.recon), "run", str(job), "--out", str(out), "--quiet"]
        display = f"target/release/recon run $JOBS/{job.name} --out $OUT --quiet"
        return Tool(label, "recon", cmd, server=server, check=check, display=display)

    def build_cases(self, ds: Dataset) -> list[Case]:
        cases = []
        only = self.args.only
        cols = ", ".join(COLUMNS)
        for d in ds.diffs:
            exp = ds.expected[d]
            rep_db = ds.replica_db(d)
            if "pg" in only:
                name = f"pg-{d}"
                job = self.write_job(name, recon_job(
                    name,
                    f'type = "postgres"\nurl = "{self.pg.url(ds.owner_db)}"\ntable = "orders"',
                    f'type = "postgres"\nurl = "{self.pg.url(rep_db)}"\ntable = "orders"',
                    PG_FIELDS))
                copy = lambda db: f'psql -X -q -d {self.pg.url(db)} -c "COPY (SELECT {cols} FROM orders ORDER BY id) TO STDOUT" > /dev/null'
                floor_sh = f"{copy(ds.owner_db)} & {copy(rep_db)} & wait"
                rd_out = self.work / f"reladiff-{d}.jsonl"
                def rd_check(m: Measure, exp=exp, rd_out=rd_out):
                    if m.status != 0 or "Traceback" in m.stderr:
                        return False, f"WRONG: exit {m.status}: {m.stderr.strip()[-300:]}"
                    return judge(exp, reladiff_answer(rd_out))
                rd_cmd = [str(VENV / "bin" / "reladiff"),
                          self.pg.url(ds.owner_db).replace("postgres://", "postgresql://"), "orders",
                          self.pg.url(rep_db).replace("postgres://", "postgresql://"), "orders",
                          "-k", "id"] + sum((["-c", f] for f in FIELDS), []) + ["--json", "--skip-sort-results"]
                # The same job without the recheck (which reads every inconsistent key
                # again from both sides): what writing the findings costs by itself.
                quick = f"{name}-no-recheck"
                quick_job = self.write_job(quick, recon_job(
                    quick,
                    f'type = "postgres"\nurl = "{self.pg.url(ds.owner_db)}"\ntable = "orders"',
                    f'type = "postgres"\nurl = "{self.pg.url(rep_db)}"\ntable = "orders"',
                    PG_FIELDS, compare="\n[compare]\nrecheck = false\n"))
                tools = [
                    Tool("COPY both sides (floor)", "floor", ["sh", "-c", floor_sh], server=True, display=floor_sh),
                    self.recon_tool(name, job, exp, "recon", server=True),
                    self.recon_tool(quick, quick_job, exp, "recon, recheck = false", server=True),
                    Tool("reladiff 0.6", "peer", rd_cmd, env=dict(os.environ, COLUMNS="1000000"), server=True,
                         check=rd_check, stdout_file=rd_out,
                         display="COLUMNS=1000000 " + fmt_cmd(["reladiff"] + rd_cmd[1:])),
                ]
                cases.append(Case("pg", d, tools))
            if "csv" in only:
                name = f"csv-{d}"
                o, r = ds.csv("owner"), ds.csv(f"replica-{d}")
                job = self.write_job(name, recon_job(
                    name, f'type = "csv"\npath = "{o}"\n{CSV_KEY_TYPE}', f'type = "csv"\npath = "{r}"\n{CSV_KEY_TYPE}',
                    FILE_FIELDS))
                tools = [
                    Tool("cat both files (floor)", "floor", ["sh", "-c", f"cat {o} {r} > /dev/null"],
                         display=f"cat owner.csv replica-{d}.csv > /dev/null"),
                    Tool("csv crate parse (floor)", "floor", [str(self.csv_floor), str(o), str(r)],
                         check=self.floor_check(ds, d), display=f"target/release/examples/csv_floor owner.csv replica-{d}.csv"),
                    self.recon_tool(name, job, exp, "recon", server=False),
                ]
                tools += self.duckdb_tools(exp, o, r, d, "csv")
                cases.append(Case("csv", d, tools))
            if "jsonl" in only:
                name = f"jsonl-{d}"
                o, r = ds.jsonl("owner"), ds.jsonl(f"replica-{d}")
                job = self.write_job(name, recon_job(
                    name, f'type = "jsonl"\npath = "{o}"', f'type = "jsonl"\npath = "{r}"', FILE_FIELDS))
                tools = [
                    Tool("cat both files (floor)", "floor", ["sh", "-c", f"cat {o} {r} > /dev/null"],
                         display=f"cat owner.jsonl replica-{d}.jsonl > /dev/null"),
                    self.recon_tool(name, job, exp, "recon", server=False),
                ]
                tools += self.duckdb_tools(exp, o, r, d, "jsonl")
                cases.append(Case("jsonl", d, tools))
        return cases

    def duckdb_tools(self, exp: Expected, o: Path, r: Path, d: int, ext: str) -> list[Tool]:
        """DuckDB's typed FULL OUTER JOIN of the two files, default and at 512MB."""
        tools = []
        for limit in ("", "512MB"):
            dd_out = self.work / f"duckdb-{ext}-{d}-{limit or 'default'}.jsonl"
            def dd_check(m: Measure, exp=exp, dd_out=dd_out):
                if m.status != 0:
                    return False, f"WRONG: exit {m.status}: {m.stderr.strip()[-300:]}"
                return judge(exp, duckdb_answer(dd_out))
            cmd = [str(self.venv_python), str(BENCH / "duckdb_diff.py"), str(o), str(r), str(dd_out)] + ([limit] if limit else [])
            label = "DuckDB " + ("memory_limit 512MB" if limit else "default settings")
            tools.append(Tool(label, "peer", cmd, check=dd_check,
                              display=f"python bench/duckdb_diff.py owner.{ext} replica-{d}.{ext} $OUT.jsonl {limit}".rstrip()))
        return tools

    def floor_check(self, ds: Dataset, d: int):
        exp = ds.expected[d]
        want = [ds.layout.rows, ds.layout.rows - len(exp.deleted) + len(exp.inserted)]
        def check(m: Measure):
            counts = [int(line.split()[1]) for line in m.stdout.splitlines()]
            if m.status != 0 or counts != want:
                return False, f"WRONG: counted {counts}, expected {want}"
            return True, f"{counts[0]:,} + {counts[1]:,} records"
        return check

    # -- running -----------------------------------------------------------------------------

    def run(self, cases: list[Case]) -> None:
        log("warm-up: every floor once (not recorded)")
        for case in cases:
            for tool in case.tools:
                if tool.role == "floor":
                    measure(tool.cmd, env=tool.env)
        for rep in range(self.args.repeat):
            for case in cases:
                # alternate: recon and its peers take turns, the order rotating each repetition
                order = case.tools[rep % len(case.tools):] + case.tools[: rep % len(case.tools)]
                for tool in order:
                    m = measure(tool.cmd, env=tool.env, server=tool.server, stdout_file=tool.stdout_file)
                    if tool.check:
                        ok, text = tool.check(m)
                    else:
                        ok, text = (m.status == 0, "exit 0" if m.status == 0 else f"WRONG: exit {m.status}")
                    case.runs.setdefault(tool.name, []).append((m, ok, text))
                    log(f"rep {rep + 1}/{self.args.repeat} {case.store}/{case.diffs} {tool.name}: "
                        f"{m.wall:.2f}s {m.rss_kib / 1024:.0f} MiB cpu {m.cpu:.2f}s"
                        + (f" server {m.server_cpu:.2f}s" if m.server_cpu is not None else "") + f" {text}")


# ---------------------------------------------------------------------------------------
# reporting


def med(xs):
    return statistics.median(xs)


def summarize(cases: list[Case]) -> list[dict]:
    out = []
    for case in cases:
        recon_runs = case.runs.get("recon", [])
        recon_med = med([m.wall for m, _, _ in recon_runs]) if recon_runs else None
        for tool in case.tools:
            runs = case.runs.get(tool.name, [])
            if not runs:
                continue
            walls = [m.wall for m, _, _ in runs]
            srv = [m.server_cpu for m, _, _ in runs if m.server_cpu is not None]
            bad = [text for _, ok, text in runs if not ok]
            out.append({
                "store": case.store, "diffs": case.diffs, "tool": tool.name, "role": tool.role,
                "runs": len(runs),
                "wall_min": min(walls), "wall_median": med(walls), "wall_max": max(walls),
                "rss_mib_max": max(m.rss_kib for m, _, _ in runs) / 1024,
                "rss_mib_median": med([m.rss_kib for m, _, _ in runs]) / 1024,
                "cpu_median": med([m.cpu for m, _, _ in runs]),
                "server_cpu_median": med(srv) if srv else None,
                "ratio_to_recon": med(walls) / recon_med if recon_med else None,
                "correct": not bad,
                "answer": bad[0] if bad else runs[0][2],
                "wrong_runs": len(bad),
                "command": tool.doc(),
            })
    return out


def table(rows: list[dict], markdown: bool) -> str:
    head = ["case", "tool", "wall s min / median / max", "peak RSS MiB (max)", "CPU s (user+sys)",
            "server CPU s", "time ÷ recon", "answer"]
    lines = []
    body = []
    for r in rows:
        case = f"{r['store']} {r['diffs']:,}"
        srv = f"{r['server_cpu_median']:.2f}" if r["server_cpu_median"] is not None else "–"
        ratio = f"{r['ratio_to_recon']:.2f}" if r["ratio_to_recon"] is not None else "–"
        answer = " ".join(r["answer"].split())
        if len(answer) > 160:
            answer = answer[:157] + "..."
        if not r["correct"]:
            answer += f" ({r['wrong_runs']}/{r['runs']} runs)"
        body.append([case, r["tool"], f"{r['wall_min']:.2f} / {r['wall_median']:.2f} / {r['wall_max']:.2f}",
                     f"{r['rss_mib_max']:.0f}", f"{r['cpu_median']:.2f}", srv, ratio, answer])
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        for b in body:
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in b) + " |")
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        widths[-1] = len(head[-1])
        fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        lines.append(fmt(head))
        lines.append(fmt(["-" * w for w in widths]))
        prev = None
        for b in body:
            if prev is not None and b[0] != prev:
                lines.append("")
            prev = b[0]
            lines.append(fmt(b))
    return "\n".join(lines)


def find(rows, store, diffs, tool):
    for r in rows:
        if r["store"] == store and r["diffs"] == diffs and r["tool"] == tool:
            return r
    return None


def targets(rows: list[dict], diffs: list[int], n_rows: int) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target of the issue that this run measures."""
    out = []
    def verdict(ok: bool, *answers) -> str:
        if any(a is not None and not a["correct"] for a in answers):
            return "NOT MET (a wrong answer)"
        return "met" if ok else "NOT MET"
    for d in diffs:
        rc, fl = find(rows, "pg", d, "recon"), find(rows, "pg", d, "COPY both sides (floor)")
        if rc and fl:
            x = rc["wall_median"] / fl["wall_median"]
            out.append((f"PG→PG {d:,} diffs: recon ≤ 1.2× the both-sides COPY floor",
                        f"{x:.2f}× ({rc['wall_median']:.2f}s vs {fl['wall_median']:.2f}s)", verdict(x <= 1.2, rc)))
    for d in diffs:
        rc, rd = find(rows, "pg", d, "recon"), find(rows, "pg", d, "reladiff 0.6")
        if rc and rd:
            want = 4 if d <= 30 else 10
            x = rd["wall_median"] / rc["wall_median"]
            out.append((f"PG→PG {d:,} diffs: recon ≥ {want}× faster than reladiff",
                        f"{x:.2f}× ({rc['wall_median']:.2f}s vs {rd['wall_median']:.2f}s)", verdict(x >= want, rc)))
    for store, title in (("csv", "CSV"), ("jsonl", "JSON Lines")):
        for d in diffs:
            rc = find(rows, store, d, "recon")
            for label in ("DuckDB default settings", "DuckDB memory_limit 512MB"):
                dd = find(rows, store, d, label)
                if rc and dd:
                    x = dd["wall_median"] / rc["wall_median"]
                    out.append((f"{title} unsorted {d:,} diffs: recon ≥ 2× faster than {label}",
                                f"{x:.2f}× ({rc['wall_median']:.2f}s vs {dd['wall_median']:.2f}s)", verdict(x >= 2, rc)))
    for d in diffs:
        rc, rd = find(rows, "pg", d, "recon"), find(rows, "pg", d, "reladiff 0.6")
        if rc and rd:
            out.append((f"PG→PG {d:,} diffs: recon's peak RSS below reladiff's",
                        f"{rc['rss_mib_max']:.0f} MiB vs {rd['rss_mib_max']:.0f} MiB",
                        verdict(rc["rss_mib_max"] < rd["rss_mib_max"], rc)))
    # flat from 1M to 10M: compare with the other size's recorded results
    other_size = 10_000_000 if n_rows == 1_000_000 else 1_000_000 if n_rows == 10_000_000 else None
    other = RESULTS / f"rows-{other_size}.json" if other_size else None
    if other and other.exists():
        theirs = json.loads(other.read_text())["rows"]
        small, large = (rows, theirs) if n_rows < other_size else (theirs, rows)
        for d in diffs:
            a, b = find(small, "pg", d, "recon"), find(large, "pg", d, "recon")
            if a and b:
                x = b["rss_mib_max"] / a["rss_mib_max"]
                out.append((f"PG→PG {d:,} diffs: recon's peak RSS flat from 1M to 10M rows (≤ 1.25×)",
                            f"{a['rss_mib_max']:.0f} MiB → {b['rss_mib_max']:.0f} MiB ({x:.2f}×)", verdict(x <= 1.25, a, b)))
    elif other_size:
        out.append(("recon's peak RSS flat from 1M to 10M rows",
                    f"needs both runs: bench/results/rows-{other_size}.json is missing (make bench / make bench-large)", "not measured"))
    few, many = min(diffs), max(diffs)
    if few != many:
        for store, tool in (("pg", "recon"), ("pg", "recon, recheck = false"), ("csv", "recon"), ("jsonl", "recon")):
            a, b = find(rows, store, few, tool), find(rows, store, many, tool)
            if a and b:
                x = b["wall_median"] / a["wall_median"] - 1
                how = "" if tool == "recon" else f" ({tool.removeprefix('recon, ')})"
                out.append((f"{store}: {many:,} findings cost < 10% over {few:,}{how}",
                            f"{x * 100:+.1f}% ({a['wall_median']:.2f}s → {b['wall_median']:.2f}s)", verdict(x < 0.10, a, b)))
    return out


LOAD_AT_START = os.getloadavg()
STARTED = dt.datetime.now(dt.timezone.utc)


def sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_info() -> dict[str, str]:
    """What was built, taken right after the build: the commit and, when the work tree
    differs from it, which files and a digest of the difference."""
    import hashlib
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    paths = ["--", "src", "Cargo.toml", "Cargo.lock", "examples"]
    dirty = subprocess.run(["git", "status", "--porcelain", *paths], cwd=ROOT, capture_output=True,
                           text=True).stdout.rstrip("\n")
    commit = git("rev-parse", "HEAD")
    if dirty:
        diff = subprocess.run(["git", "diff", "HEAD", *paths], cwd=ROOT, capture_output=True).stdout
        untracked = sorted(line[3:] for line in dirty.splitlines() if line.startswith("??"))
        for name in untracked:
            p = ROOT / name
            for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
                if f.is_file():
                    diff += f.read_bytes()
        changed = sorted(line[3:] for line in dirty.splitlines())
        commit += (f" plus uncommitted changes (digest {hashlib.sha256(diff).hexdigest()[:12]}) in "
                   + ", ".join(changed))
    return {"recon commit": commit,
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}


def machine(pg: Pg, build: dict[str, str]) -> dict[str, str]:
    def read(path):
        try:
            return Path(path).read_text()
        except OSError:
            return ""
    cpu = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+) kB", read("/proc/meminfo"))
    venv_version = lambda mod: subprocess.run(
        [str(VENV / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"],
        capture_output=True, text=True).stdout.strip()
    return {
        "date": STARTED.strftime("%Y-%m-%d %H:%M UTC") + " (start) to "
            + dt.datetime.now(dt.timezone.utc).strftime("%H:%M UTC"),
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": cpu.group(1).strip() if cpu else "?",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "os": platform.platform(),
        "postgresql": pg.psql("postgres", "SELECT version()", capture=True),
        **build,
        "reladiff": venv_version("reladiff"),
        "duckdb": venv_version("duckdb"),
        "load average (1/5/15 min) at start → end": " / ".join(f"{x:.2f}" for x in LOAD_AT_START)
            + " → " + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python (peers)": subprocess.run([str(VENV / "bin" / "python"), "--version"], capture_output=True, text=True).stdout.strip(),
    }


def markdown_section(args, ds: Dataset, rows, tgts, info, cases: list[Case], bench: Bench) -> str:
    cmdline = "python3 bench/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = [f"### {ds.layout.rows:,} rows", ""]
    out.append(f"Generated by `{cmdline.strip()}`; {args.repeat} runs of every tool per case, alternating. "
               "Wall time min / median / max; peak RSS is the largest of the runs; CPU is the median "
               "user+sys of the tool's own processes; server CPU is the median CPU the local "
               "PostgreSQL spent meanwhile; `time ÷ recon` is the tool's median wall time over recon's "
               "(above 1: recon is faster). `answer` is checked against the planted differences "
               "(missing in replica / missing in owner / mismatched fields).")
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k, v in info.items():
        out.append(f"| {k} | {v} |")
    out.append("")
    out.append(table(rows, markdown=True))
    out.append("")
    out.append("**Targets**")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for t, m, v in tgts:
        out.append(f"| {t} | {m} | {v} |")
    out.append("")
    out.append("<details><summary>Exact commands and job files</summary>")
    out.append("")
    few = min(ds.diffs)
    out.append(f"For {few:,} differences; the other counts differ only in the replica's "
               f"database or file name (`..._{few}`, `replica-{few}.*`). `$JOBS` is the temporary "
               "folder with the job files, `$OUT` a fresh report folder per run, the files are "
               f"in `{ds.folder.relative_to(ROOT)}/`.")
    out.append("")
    out.append("```sh")
    for case in cases:
        if case.diffs != few:
            continue
        for tool in case.tools:
            out.append(f"# {case.store}: {tool.name}")
            out.append(tool.doc())
    out.append("```")
    out.append("")
    for name, text in bench.job_texts.items():
        if not name.endswith(f"-{few}"):
            continue
        shown = text.replace(str(ds.folder) + "/", "")
        out.append(f"`$JOBS/{name}.toml`:")
        out.append("")
        out.append("```toml")
        out.append(shown.rstrip())
        out.append("```")
        out.append("")
    out.append("</details>")
    return "\n".join(out)


def update_markdown(rows_count: int, section: str) -> None:
    begin = f"<!-- BEGIN GENERATED rows={rows_count} (bench/bench.py writes this section) -->"
    end = f"<!-- END GENERATED rows={rows_count} -->"
    text = MARKDOWN.read_text() if MARKDOWN.exists() else "# Benchmarks\n"
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    MARKDOWN.write_text(text)


# ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the owner table (default 1,000,000)")
    ap.add_argument("--diffs", default="30,30000", help="difference counts, comma-separated (default 30,30000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every tool per case (default 3)")
    ap.add_argument("--only", default="pg,csv,jsonl", help="stores to run: pg, csv, jsonl, comma-separated (default all)")
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"),
                    help="PostgreSQL base URL without database (default postgres://postgres@127.0.0.1:5432, or $BENCH_PG)")
    ap.add_argument("--skip", default="", help="tools to leave out, comma-separated: reladiff, duckdb (e.g. for quick runs at 10M rows)")
    ap.add_argument("--no-build", action="store_true", help="use the recon and csv_floor binaries already built")
    ap.add_argument("--no-write", action="store_true", help="print only: leave BENCHMARKS.md and bench/results/ alone")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the job files and reports")
    args = ap.parse_args()
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only <= {"pg", "csv", "jsonl"}:
        ap.error("--only takes pg, csv, jsonl")
    diffs = sorted({int(x) for x in args.diffs.split(",") if x.strip()})
    if any(d < 3 for d in diffs):
        ap.error("--diffs: every count must be at least 3 (a third of each kind)")

    bench = Bench(args)
    try:
        bench.setup_tools()
        layout = Layout.for_run(args.rows, max(d - 2 * (d // 3) for d in diffs))
        ds = Dataset(bench.pg, layout, diffs)
        ds.prepare(want_db=True, want_files="csv" in args.only, want_jsonl="jsonl" in args.only)
        cases = bench.build_cases(ds)
        skip = [x.strip().lower() for x in args.skip.split(",") if x.strip()]
        for case in cases:
            case.tools = [t for t in case.tools if not any(t.name.lower().startswith(x) for x in skip)]
        bench.run(cases)
        rows = summarize(cases)
        tgts = targets(rows, diffs, args.rows)
        print()
        print(f"recon benchmark: {args.rows:,} rows, {args.repeat} runs each")
        print(table(rows, markdown=False))
        print()
        print("targets (stated for 1,000,000 rows):")
        for t, m, v in tgts:
            print(f"  [{v}] {t}: {m}")
        wrong = [r for r in rows if not r["correct"]]
        for r in wrong:
            print(f"WRONG ANSWER: {r['store']} {r['diffs']} {r['tool']}: {r['answer']}")
        if not args.no_write:
            info = machine(bench.pg, bench.build)
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"rows-{args.rows}.json").write_text(json.dumps(
                {"machine": info, "args": sys.argv[1:], "rows": rows, "targets": tgts}, indent=1) + "\n")
            update_markdown(args.rows, markdown_section(args, ds, rows, tgts, info, cases, bench))
            log(f"wrote {MARKDOWN.relative_to(ROOT)} and bench/results/rows-{args.rows}.json")
        return 1 if any(r["role"] == "recon" and not r["correct"] for r in rows) else 0
    finally:
        if args.keep:
            log(f"kept {bench.work}")
        else:
            shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
