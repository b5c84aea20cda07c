"""DuckDB peer for bench/bench.py: a typed FULL OUTER JOIN of two CSV files (or two JSON
Lines files, by their `.jsonl` extension) on `id`.

    python duckdb_diff.py OWNER.csv REPLICA.csv OUT.jsonl [MEMORY_LIMIT]
    python duckdb_diff.py OWNER.jsonl REPLICA.jsonl OUT.jsonl [MEMORY_LIMIT]

Writes one JSON object per difference to OUT.jsonl:
{"kind": "missing_in_replica" | "missing_in_owner" | "mismatch", "id": N, "fields": [...]}
(`fields` lists, for a mismatch, the columns whose values are DISTINCT). Run as its own
process so that its wall time, CPU and peak RSS are measured like every other tool's.
DuckDB runs with its default settings (all cores), plus `memory_limit` when given.
"""

import json
import sys

import duckdb

COLUMNS = {
    "id": "BIGINT",
    "customer_id": "UUID",
    "status": "VARCHAR",
    "amount": "DECIMAL(12,2)",
    "currency": "VARCHAR",
    "quantity": "INTEGER",
    "updated_at": "TIMESTAMPTZ",
    "note": "VARCHAR",
}
FIELDS = [c for c in COLUMNS if c != "id"]


def read_file(path: str) -> str:
    columns = ", ".join(f"'{name}': '{ty}'" for name, ty in COLUMNS.items())
    quoted = path.replace("'", "''")
    if path.endswith(".jsonl"):
        return f"read_json('{quoted}', format = 'newline_delimited', columns = {{{columns}}})"
    return f"read_csv('{quoted}', header = true, delim = ',', quote = '\"', columns = {{{columns}}})"


def main() -> int:
    owner, replica, out = sys.argv[1:4]
    memory_limit = sys.argv[4] if len(sys.argv) > 4 else ""
    con = duckdb.connect()
    # Timestamps in the files carry their offset; compare instants, print nothing.
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    differs = " OR ".join(f"o.{f} IS DISTINCT FROM r.{f}" for f in FIELDS)
    field_list = ", ".join(
        f"CASE WHEN o.{f} IS DISTINCT FROM r.{f} THEN '{f}' END" for f in FIELDS
    )
    sql = f"""
        SELECT coalesce(o.id, r.id) AS id,
               CASE WHEN r.id IS NULL THEN 'missing_in_replica'
                    WHEN o.id IS NULL THEN 'missing_in_owner'
                    ELSE 'mismatch' END AS kind,
               CASE WHEN o.id IS NOT NULL AND r.id IS NOT NULL
                    THEN list_filter([{field_list}], lambda x: x IS NOT NULL)
                    ELSE [] END AS fields
        FROM {read_file(owner)} AS o
        FULL OUTER JOIN {read_file(replica)} AS r ON o.id = r.id
        WHERE o.id IS NULL OR r.id IS NULL OR {differs}
    """
    rows = con.execute(sql).fetchall()
    with open(out, "w", encoding="utf-8") as f:
        for id_, kind, fields in rows:
            f.write(json.dumps({"kind": kind, "id": id_, "fields": list(fields)}) + "\n")
    print(f"{len(rows)} differences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
