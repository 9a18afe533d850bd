"""The database alone, no worker and no Python in the loop: pgbench runs claim and completion
statements written into PL/pgSQL functions, 500 tasks a batch, each batch its own transaction.

- `sql-ceiling`: pgsched's own claim and completion, against the least a queue can do per job
  (one `DELETE ... SKIP LOCKED` of 500) and 1,000-row INSERTs;
- `storage-split`: pgsched's claim and completion as shipped (since revision 0015 the
  completion moves each finished task to pgsched.finished_tasks) against prototypes of the
  same claim on a copy of the hot table, with each finished task moved to a history table and
  its attempt folded into the history row or kept in an attempt row of its own (these without
  the shipped statement's CTEs for retries and keyed tasks, its alert trigger or its
  dependency edges). Rows per second, WAL bytes and Postgres CPU per task.
"""

from __future__ import annotations

import re
import subprocess
import time

import psycopg
from harness import ROOT, TICK, Probe, child_pids, cpu_seconds

from pgsched import migrate
from pgsched.server import EphemeralServer
from pgsched.sql import Q

# sql-ceiling: pgsched's statements run by PL/pgSQL functions that pgbench calls, with the values
# the worker would send written in. The claim keeps its plan for the session (generic, as on the
# worker's claim connection), the completion is planned per call (as on the completers').
_CEILING_BATCH = 500
_CLAIM_VALUES = {
    "worker": "'w' || cid",
    "queues": "'{default}'",
    "task_types": "'{noop}'",
    "slots": str(_CEILING_BATCH),
    "weighted": "false",
    "cpu_ceiling": "95",
    "memory_ceiling": "95",
    "now": "NULL",
}
_COMPLETE_VALUES = {
    "worker": "'w' || cid",
    "now": "NULL",
    "ids": "ids",
    "versions": "vers",
    "statuses": "array_fill('succeeded'::text, ARRAY[n])",
    "outcomes": "array_fill('success'::text, ARRAY[n])",
    "results": "array_fill(NULL::jsonb, ARRAY[n])",
    "errors": "array_fill(NULL::text, ARRAY[n])",
    "delays": "array_fill(0::float8, ARRAY[n])",
    "durations": "array_fill(0.01::float8, ARRAY[n])",
}


def _written_in(query: str, values: dict[str, str]) -> str:
    text = re.sub(r"--[^\n]*", "", query).rstrip().rstrip(";")
    return re.sub(r"%\((\w+)\)[sbt]", lambda m: f"({values[m[1]]})", text).replace("%%", "%")


def _claim_function(name: str, claim: str) -> str:
    """A function that runs `claim` and keeps the ids and versions it claimed in the session
    for the completion that follows."""
    return f"""CREATE FUNCTION {name}(cid int) RETURNS int LANGUAGE plpgsql AS $f$
DECLARE ids bigint[]; vers bigint[];
BEGIN
    WITH c AS ({claim}) SELECT array_agg(c.id), array_agg(c.version) INTO ids, vers FROM c;
    PERFORM set_config('probe.ids', coalesce(ids, '{{}}')::text, false),
            set_config('probe.vers', coalesce(vers, '{{}}')::text, false);
    RETURN coalesce(cardinality(ids), 0);
END $f$;"""


def _ceiling_functions() -> str:
    claim = _written_in(Q.claim_tasks.sql, _CLAIM_VALUES)
    complete = _written_in(Q.complete_tasks.sql, _COMPLETE_VALUES).replace(
        "SELECT id FROM done", "SELECT count(*) INTO k FROM done"
    )
    return f"""
{_claim_function("probe_claim", claim)}
CREATE FUNCTION probe_complete(cid int) RETURNS int LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $f$
DECLARE ids bigint[] := current_setting('probe.ids')::bigint[];
        vers bigint[] := current_setting('probe.vers')::bigint[];
        n int := cardinality(ids); k int;
BEGIN
    IF n = 0 THEN RETURN 0; END IF;
    {complete};
    RETURN k;
END $f$;
"""


def pgbench(server: EphemeralServer, url: str, script: str, clients: int, seconds: int) -> float:
    path = ROOT / "bench" / ".work" / "probe-pgbench.sql"
    path.parent.mkdir(exist_ok=True)
    path.write_text(script)
    out = subprocess.run(
        [
            str(server.bin_dir / "pgbench"),
            "-n",
            "-f",
            str(path),
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "postgres",
            url.rsplit("/", 1)[1],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"tps = ([\d.]+)", out.stdout)
    if m is None:
        raise RuntimeError(f"pgbench: {out.stdout}{out.stderr}")
    return float(m[1])


def sql_ceiling(p: Probe) -> None:
    ctx, server = p.ctx, p.server
    with ctx.admin() as c:
        c.execute("CREATE DATABASE ceiling_seed")
    seed = server.url("ceiling_seed")
    migrate.upgrade(seed)
    with psycopg.connect(seed, autocommit=True) as c:
        c.execute(_ceiling_functions())
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, max_task_capacity)"
            " VALUES ('w0', 'h', 1, 500), ('w1', 'h', 2, 500)"
        )
        c.execute(
            "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 600000)"
        )
        c.execute(
            "CREATE TABLE q (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " payload jsonb NOT NULL DEFAULT '{}')"
        )
        c.execute("INSERT INTO q (payload) SELECT '{}' FROM generate_series(1, 2000000)")
        c.execute(
            "CREATE TABLE bare (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " task_type text NOT NULL, payload jsonb NOT NULL DEFAULT '{}')"
        )
        c.execute("VACUUM ANALYZE")
    drain_sql = "SELECT probe_claim(:client_id);\nSELECT probe_complete(:client_id);\n"
    delete_sql = (
        "DELETE FROM q WHERE id = ANY(ARRAY(SELECT id FROM q ORDER BY id"
        f" LIMIT {_CEILING_BATCH} FOR UPDATE SKIP LOCKED));\n"
    )
    insert_sql = (
        "INSERT INTO {} (task_type, payload) SELECT 'noop', jsonb_build_object('k', g)"
        " FROM generate_series(1, 1000) g;\n"
    )
    cells = {  # name: (script, connections, rows per pgbench transaction)
        "pgsched claim + completion, 1 connection": (drain_sql, 1, _CEILING_BATCH),
        "pgsched claim + completion, 2 connections": (drain_sql, 2, _CEILING_BATCH),
        "claim by DELETE, 1 connection": (delete_sql, 1, _CEILING_BATCH),
        "claim by DELETE, 2 connections": (delete_sql, 2, _CEILING_BATCH),
        "INSERT of 1,000 rows, pgsched.tasks": (insert_sql.format("pgsched.tasks"), 1, 1000),
        "INSERT of 1,000 rows, bare table": (insert_sql.format("bare"), 1, 1000),
    }
    rates: dict[str, list[float]] = {name: [] for name in cells}
    for rep in range(3):
        for name in list(cells) if rep % 2 == 0 else list(cells)[::-1]:
            script, clients, rows = cells[name]
            url = ctx.copy_db("ceiling_seed", "run")
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CHECKPOINT")
            rates[name].append(pgbench(server, url, script, clients, 3) * rows)
            ctx.drop_db(url)
    for name, r in rates.items():
        p.spread(name, r, "rows/s")


# storage-split: the claim as pgsched runs it, on proto.hot, a copy of pgsched.tasks (same
# columns, CHECKs and indexes); the completion moves each finished row out of it in one
# statement (DELETE ... RETURNING into INSERTs), to proto.hist: the task's columns plus the
# attempt's (worker, outcome, duration), or the task's columns and an attempt row in
# proto.execs, a copy of pgsched.task_executions. The attempt counters' trigger is off for all
# three (either design would run it: `attempt-counters` measures it).
_SPLIT_FINAL = {
    "status": "u.status",
    "result": "coalesce(u.result, t.result)",
    "last_error": "coalesce(u.error, t.last_error)",
    "progress": "1",
    "finished_at": "now()",
    "version": "t.version + 1",
}


def _split_functions(columns: list[str]) -> str:
    claim = _written_in(Q.claim_tasks.sql, _CLAIM_VALUES).replace("pgsched.tasks", "proto.hot")
    unnest = _written_in(Q.complete_tasks.sql, _COMPLETE_VALUES)
    unnest = unnest[: unnest.index("), done AS (")] + ")"  # WITH u AS (... unnest ...)
    cols = ", ".join(columns)
    final = ", ".join(f"{_SPLIT_FINAL.get(c, 't.' + c)} AS {c}" for c in columns)
    gone = (
        f"{unnest}, gone AS (DELETE FROM proto.hot t USING u"
        " WHERE t.id = ANY(ids) AND t.id = u.id AND t.version = u.version"
        f" RETURNING {final}, u.outcome, u.duration_ms, u.error AS attempt_error)"
    )
    folded = (
        f"{gone} INSERT INTO proto.hist ({cols}, worker, outcome, duration_ms)"
        f" SELECT {cols}, 'w' || cid, outcome, duration_ms FROM gone"
    )
    apart = (
        f"{gone}, h AS (INSERT INTO proto.hist ({cols}) SELECT {cols} FROM gone)"
        " INSERT INTO proto.execs (task_id, attempt, worker, started_at, finished_at, outcome,"
        " duration_ms, error) SELECT id, attempts, 'w' || cid, started_at, now(), outcome,"
        " duration_ms, attempt_error FROM gone"
    )
    body = """
DECLARE ids bigint[] := current_setting('probe.ids')::bigint[];
        vers bigint[] := current_setting('probe.vers')::bigint[];
        n int := cardinality(ids);
BEGIN
    IF n = 0 THEN RETURN 0; END IF;
    {};
    RETURN n;
END"""
    return f"""
{_claim_function("probe_claim_hot", claim)}
CREATE FUNCTION probe_move_folded(cid int) RETURNS int LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $f${body.format(folded)} $f$;
CREATE FUNCTION probe_move_apart(cid int) RETURNS int LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $f${body.format(apart)} $f$;
"""


def _postgres_cpu(server: EphemeralServer) -> float:
    """CPU seconds of the postmaster, its live children and the children it has reaped (the
    backends of finished connections)."""
    assert server.proc is not None
    pid = server.proc.pid
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / TICK  # cutime + cstime
    return reaped + cpu_seconds(child_pids(pid))


def storage_split(p: Probe) -> None:
    ctx, server = p.ctx, p.server
    with ctx.admin() as c:
        c.execute("CREATE DATABASE split_seed")
    seed = server.url("split_seed")
    migrate.upgrade(seed)
    with psycopg.connect(seed, autocommit=True) as c:
        columns = [
            r[0]
            for r in c.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'pgsched.tasks'::regclass"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]
        c.execute(
            "CREATE SCHEMA proto;"
            " CREATE TABLE proto.hot (LIKE pgsched.tasks INCLUDING ALL);"
            " CREATE TABLE proto.hist (LIKE pgsched.tasks INCLUDING DEFAULTS, worker text,"
            "   outcome text, duration_ms float8, PRIMARY KEY (id));"
            " CREATE INDEX ON proto.hist USING brin (finished_at);"
            " CREATE TABLE proto.execs (LIKE pgsched.task_executions INCLUDING ALL);"
        )
        c.execute(_ceiling_functions())
        c.execute(_split_functions(columns))
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, max_task_capacity)"
            " VALUES ('w0', 'h', 1, 500), ('w1', 'h', 2, 500)"
        )
        c.execute(
            "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 600000)"
        )
        c.execute("INSERT INTO proto.hot SELECT * FROM pgsched.tasks")
        # The attempt counters' trigger apart: either design would run it on its attempts.
        c.execute("ALTER TABLE pgsched.task_executions DISABLE TRIGGER task_executions_count")
        c.execute("VACUUM ANALYZE")
    designs = {  # name: (pgbench script, the table whose new rows count the finished tasks)
        "as shipped (claim updates the row, completion moves it, attempt row)": (
            "SELECT probe_claim(:client_id);\nSELECT probe_complete(:client_id);\n",
            "pgsched.task_executions",
        ),
        "split, attempt folded into the history row": (
            "SELECT probe_claim_hot(:client_id);\nSELECT probe_move_folded(:client_id);\n",
            "proto.hist",
        ),
        "split, attempt row of its own": (
            "SELECT probe_claim_hot(:client_id);\nSELECT probe_move_apart(:client_id);\n",
            "proto.hist",
        ),
    }
    cells = [(name, clients) for clients in (1, 2) for name in designs]
    figures: dict[str, list[float]] = {}
    for rep in range(3):
        for name, clients in cells if rep % 2 == 0 else cells[::-1]:
            script, done_table = designs[name]
            url = ctx.copy_db("split_seed", "split")
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CHECKPOINT")
                lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                cpu = _postgres_cpu(server)
                t0 = time.monotonic()
                pgbench(server, url, script, clients, 3)
                seconds = time.monotonic() - t0
                # pgbench's backends count once the postmaster has reaped them
                while c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()[0]:
                    time.sleep(0.01)
                time.sleep(0.1)
                cpu = _postgres_cpu(server) - cpu
                wal, done = c.execute(
                    f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s), count(*) FROM {done_table}",
                    (lsn,),
                ).fetchone()
            ctx.drop_db(url)
            label = f"{name}, {clients} connection{'s' if clients > 1 else ''}"
            figures.setdefault(f"{label}: rate", []).append(done / seconds)
            figures.setdefault(f"{label}: WAL per task", []).append(float(wal) / done)
            figures.setdefault(f"{label}: Postgres CPU per task", []).append(cpu / done * 1e6)
    units = {"rate": "rows/s", "WAL per task": "B", "Postgres CPU per task": "µs"}
    for metric, values in figures.items():
        p.spread(metric, values, units[metric.rsplit(": ", 1)[1]])
