"""Focused measurements, each on its own throwaway durable server with the benchmark settings:
`python bench/probes.py NAME` (`--help` lists them). A probe prints its figures and writes
them, in the workloads' record format, to bench/raw/<time>-probe-<NAME>.jsonl;
`python bench/report.py` puts the newest record of each probe in docs/performance.md.

To compare two versions of pgsched, run a probe once on each:
`PYTHONPATH=<a checkout> python bench/probes.py NAME`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from b_drain import drain
from ceiling import pgbench, sql_ceiling, storage_split
from fleet import fleet_bouncer
from g_backlog import DUE_COUNT, DUE_LEFT, PENDING
from harness import (
    RAW,
    ROOT,
    SERVER_SETTINGS,
    Ctx,
    Probe,
    Proc,
    adapter,
    begin_raw,
    child_pids,
    cpu_seconds,
    end_raw,
    ready_time,
    wait_done,
    workers,
)
from profile_drain import drain_profile
from psycopg import sql as psql
from psycopg.types.json import Jsonb
from servers_ab import servers_ab

from pgsched import client as client_module
from pgsched import migrate
from pgsched.client import Client
from pgsched.config import Settings
from pgsched.registry import Registry, TaskType
from pgsched.server import EphemeralServer
from pgsched.sql import Q, to_positional
from pgsched.worker import Worker, heartbeat
from pgsched.worker import claim as claims
from pgsched.worker.runner import CLAIM_SESSION
from pgsched.worker.waker import Waker

# The workers row CLAIM's worker names (status active, no load): claim_limit reads it.
CLAIM_WORKER = "INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)"
CLAIM = {"worker": "w", "queues": ["default"], "task_types": ["noop", "dummy", "http"],
         "slots": 10, "weighted": True, "cpu_ceiling": 95.0, "memory_ceiling": 95.0,
         "now": None}  # fmt: skip


def pickup(p: Probe) -> None:
    marks: dict[int, dict[str, float]] = {}
    current: dict[str, int | None] = {"k": None}

    def body(payload: Any) -> None:
        marks.setdefault(payload["k"], {})["body"] = time.time()

    def mark(name: str) -> None:
        if current["k"] is not None:
            marks.setdefault(current["k"], {}).setdefault(name, time.time())

    heard, claim = Waker.heard, claims.claim

    def traced_heard(self: Waker, payload: str, *a: Any, **kw: Any) -> bool:
        mark("notify")
        return heard(self, payload, *a, **kw)

    def traced_claim(*a: Any, **kw: Any) -> Any:
        t0 = time.time()
        rows = claim(*a, **kw)
        if rows and current["k"] is not None:  # it may answer before the producer's mark
            marks.setdefault(current["k"], {}).update(claim_sent=t0, claim_answered=time.time())
        return rows

    Waker.heard = traced_heard  # type: ignore[method-assign]
    claims.claim = traced_claim
    reg = Registry()
    reg.register(TaskType("noop", body, inline=True))
    w = Worker(p.url, Settings(log_level="warning"), registry=reg)
    w.start()
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    time.sleep(1.0)
    with psycopg.connect(p.url, autocommit=True) as c:
        for k in range(150):
            current["k"] = k
            c.execute(
                "INSERT INTO pgsched.tasks (task_type, payload)"
                " VALUES ('noop', jsonb_build_object('k', %s::int))",
                (k,),
                prepare=True,
            )
            marks.setdefault(k, {})["commit"] = time.time()
            time.sleep(0.02)
    w.request_stop()
    th.join(10)
    steps = ["commit", "notify", "claim_sent", "claim_answered", "body"]
    ks = [k for k in marks if set(steps) <= marks[k].keys()][10:]
    for a, b in [*itertools.pairwise(steps), ("commit", "body")]:
        p.spread(f"{a} -> {b}", [(marks[k][b] - marks[k][a]) * 1000 for k in ks], "ms")


def attempt_counters(p: Probe) -> None:
    """The attempt counters' trigger (pgsched.count_attempts, run by every completion batch):
    500 attempt rows inserted in one statement with the trigger as migrated, with the function
    of the revision before (the bucket looked up in a numeric array), and with no trigger,
    taking turns; each insert rolled back."""
    from importlib import resources

    down = resources.files("pgsched.sql").joinpath("migrations/0014_bucket_case.down.sql")
    insert = (
        "INSERT INTO pgsched.task_executions (task_id, attempt, worker, started_at, outcome,"
        " duration_ms) SELECT g, 1, 'w', now(), 'success', (g % 200) * 0.1"
        " FROM generate_series(1, 500) g"
    )
    toggle = "ALTER TABLE pgsched.task_executions {} TRIGGER task_executions_count"
    per_row: dict[str, list[float]] = {}
    with psycopg.connect(p.url, autocommit=True) as c:
        shipped = c.execute(
            "SELECT pg_get_functiondef('pgsched.count_attempts'::regproc)"
        ).fetchone()[0]
        ways = {"as shipped": shipped, "numeric array (revision 0013)": down.read_text(),
                "no trigger": None}  # fmt: skip
        for turn in range(60):
            for name, body in ways.items() if turn % 2 == 0 else list(ways.items())[::-1]:
                c.execute(toggle.format("DISABLE" if body is None else "ENABLE"))
                if body is not None:
                    c.execute(body)
                with c.transaction(force_rollback=True):
                    t0 = time.perf_counter()
                    c.execute(insert)
                    took = (time.perf_counter() - t0) / 500 * 1e6
                if turn >= 10:
                    per_row.setdefault(name, []).append(took)
        c.execute(shipped)
        c.execute(toggle.format("ENABLE"))
    for name, us in per_row.items():
        p.spread(f"500 attempt rows, {name}: time per row", us, "µs")


def completion_arbiter(p: Probe) -> None:
    variants = {"as run": Q.complete_tasks, "arbitrated": Q.complete_tasks_arbitrated}
    took: dict[str, list[float]] = {k: [] for k in variants}
    inserted: dict[str, list[float]] = {k: [] for k in variants}
    batch = {"worker": "w", "now": None, "versions": [0] * 500, "statuses": ["succeeded"] * 500,
             "outcomes": ["success"] * 500, "results": [None] * 500, "errors": [None] * 500,
             "delays": [0.0] * 500, "durations": [0.01] * 500}  # fmt: skip
    with psycopg.connect(p.url, autocommit=True, options=CLAIM_SESSION) as c:
        c.execute(
            "INSERT INTO pgsched.tasks (task_type, status, attempts, started_at)"
            " SELECT 'noop', 'running', 1, now() FROM generate_series(1, 60000)"
        )
        c.execute("VACUUM ANALYZE")
        for i, q in enumerate(variants.values()):
            sql, names = to_positional(q.sql)  # the same names in both
            c.execute(f"PREPARE v{i} AS {sql}")
        first = 1
        for r in range(60):
            order = list(enumerate(variants)) if r % 2 == 0 else list(enumerate(variants))[::-1]
            for i, name in order:
                params = batch | {"ids": list(range(first, first + 500))}
                first += 500
                args = psql.SQL(", ").join(psql.Literal(params[n]) for n in names).as_string(c)
                plan = "\n".join(
                    row[0]
                    for row in c.execute(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE v{i}({args})")
                )
                took[name].append(float(re.search(r"Execution Time: ([\d.]+)", plan)[1]))
                m = re.search(r"Insert on task_executions \(actual time=[\d.]+\.\.([\d.]+)", plan)
                inserted[name].append(float(m[1]))
    for name in variants:  # the first 10 turns warm up
        p.spread(f"500-task completion, {name}: the statement", took[name][10:], "ms")
        p.spread(
            f"500-task completion, {name}: its attempt rows' INSERT", inserted[name][10:], "ms"
        )


def claim_plan(p: Probe) -> None:
    with psycopg.connect(
        p.url, autocommit=True, options="-c plan_cache_mode=force_custom_plan"
    ) as c:
        c.execute(CLAIM_WORKER)
        c.execute(
            "INSERT INTO pgsched.tasks (task_type, status, finished_at)"
            " SELECT 'noop', 'succeeded', now() FROM generate_series(1, 20000)"
        )
        c.execute("ANALYZE")
        plan, run = [], []
        for _ in range(100):
            c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
            text = "\n".join(
                r[0] for r in c.execute("EXPLAIN (ANALYZE, SUMMARY) " + Q.claim_tasks.sql, CLAIM)
            )
            plan.append(float(re.search(r"Planning Time: ([\d.]+)", text)[1]))
            run.append(float(re.search(r"Execution Time: ([\d.]+)", text)[1]))
        p.spread("one-row claim: planning", plan, "ms")
        p.spread("one-row claim: execution", run, "ms")
    # The round trip of a one-row claim made 20 ms after the last (an idle worker's pickup),
    # on a session planning it for each claim and on the worker's claim session (generic
    # plans), taking turns; 5 rounds of 60 claims each.
    sessions = {
        "custom plan per claim": "-c plan_cache_mode=force_custom_plan",
        "claim session (generic plan)": CLAIM_SESSION,
    }
    conns = {k: psycopg.connect(p.url, autocommit=True, options=o) for k, o in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in conns}
    with psycopg.connect(p.url, autocommit=True) as producer:
        for _ in range(5):
            for label, c in conns.items():
                for _ in range(60):
                    producer.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                    time.sleep(0.02)
                    t0 = time.perf_counter()
                    assert len(Q.claim_tasks.run(c, CLAIM)) == 1
                    times[label].append((time.perf_counter() - t0) * 1000)
    for label, c in conns.items():
        c.close()
        p.spread(f"one-row claim after 20 ms idle, {label}", times[label], "ms")


def claim_parts(p: Probe) -> None:
    full = Q.claim_tasks.sql
    one_queue = full.replace(
        """
    FROM unnest(%(queues)s::text[]) AS qn(queue)
    CROSS JOIN LATERAL (""",
        """
    FROM (""",
    ).replace("c.queue = qn.queue", "c.queue = (%(queues)s::text[])[1]")
    unweighted = (
        re.sub(r"WITH lim AS MATERIALIZED \(.*?\n\)\n", "", one_queue, flags=re.S)
        .replace("AND (SELECT k FROM lim) > 0\n", "")
        .replace("LIMIT (SELECT k FROM lim)", "LIMIT %(slots)s::int")
    )
    # the same claim, its commit not waiting for the WAL flush (as the heartbeat's does)
    no_flush = full.replace(
        "WITH lim AS MATERIALIZED (",
        "WITH async AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)),\n"
        "lim AS MATERIALIZED (",
    ).replace(
        "FROM unnest(%(queues)s::text[]) AS qn(queue)",
        "FROM async, unnest(%(queues)s::text[]) AS qn(queue)",
    )
    if not full != one_queue != unweighted or "lim)" in unweighted or no_flush.count("async") != 2:
        raise RuntimeError("the claim statement no longer has the shape this probe takes apart")
    bare = (
        "UPDATE pgsched.tasks t SET status = 'running', attempts = t.attempts + 1,"
        " version = t.version + 1, assigned_worker = 'w', started_at = now()"
        " WHERE t.id = (SELECT c.id FROM pgsched.tasks c"
        " WHERE c.status IN ('pending', 'retrying') AND c.queue = 'default'"
        " AND c.run_at <= now() ORDER BY c.priority DESC, c.run_at, c.id LIMIT 1"
        " FOR UPDATE SKIP LOCKED) RETURNING t.*"
    )
    variants = {
        "the claim as it is": (full, CLAIM),
        "the claim, its commit not waiting for the flush": (no_flush, CLAIM),
        "one queue, no LATERAL": (one_queue, CLAIM),
        "one queue, no weighted limit": (unweighted, CLAIM),
        "bare one-row UPDATE claim": (bare, None),
    }
    with (
        psycopg.connect(p.url, autocommit=True) as producer,
        psycopg.connect(p.url, autocommit=True, options=CLAIM_SESSION) as c,
    ):
        producer.execute(CLAIM_WORKER)
        for gap in (0.0, 0.02):
            times: dict[str, list[float]] = {k: [] for k in variants}
            for rnd in range(9):
                for label, (query, params) in variants.items():
                    for _ in range(40):
                        producer.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                        time.sleep(gap)
                        t0 = time.perf_counter()
                        assert len(c.execute(query, params, prepare=True).fetchall()) == 1
                        if rnd:  # the first round warms up (prepared statements)
                            times[label].append((time.perf_counter() - t0) * 1000)
                        producer.execute("DELETE FROM pgsched.tasks")
            for label, t in times.items():
                p.spread(f"{label}, {gap * 1000:.0f} ms idle before each", t, "ms")


def listen_claim(p: Probe) -> None:
    """After 20 ms idle, a task is inserted and its notification read on a listening
    connection; then SELECT 1, or a one-row claim, on that connection or on another (both
    with the worker's claim session settings), taking turns."""
    with psycopg.connect(p.url, autocommit=True) as producer:
        producer.execute(CLAIM_WORKER)
        listening = psycopg.connect(p.url, autocommit=True, options=CLAIM_SESSION)
        other = psycopg.connect(p.url, autocommit=True, options=CLAIM_SESSION)
        listening.execute("LISTEN pgsched")
        cells: dict[tuple[str, str], list[float]] = {
            (what, conn_label): []
            for what in ("SELECT 1", "one-row claim")
            for conn_label in ("listening connection", "another connection")
        }
        for _ in range(5):
            for (what, conn_label), times in cells.items():
                c = listening if conn_label == "listening connection" else other
                for _ in range(40):
                    time.sleep(0.02)
                    producer.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                    for _n in listening.notifies(timeout=1, stop_after=1):
                        pass
                    t0 = time.perf_counter()
                    if what == "SELECT 1":
                        c.execute("SELECT 1", prepare=True).fetchall()
                    else:
                        assert len(Q.claim_tasks.run(c, CLAIM)) == 1
                    times.append((time.perf_counter() - t0) * 1000)
                    producer.execute("DELETE FROM pgsched.tasks")
        for (what, conn_label), times in cells.items():
            p.spread(f"{what} right after a notification, on the {conn_label}", times, "ms")
        listening.close()
        other.close()


def workflow_10k(p: Probe) -> None:
    import io

    from rich.console import Console

    from pgsched import workflows
    from pgsched.cli import common, workflow

    n = 10_000
    shapes = {
        "chain": lambda i: [f"t{i - 1}"] if i else [],
        "fan-out": lambda i: ["t0"] if i else [],
        "independent": lambda i: [],
    }
    for shape, deps in shapes.items():
        show, cancel = [], []
        for _ in range(3):
            wf = {
                "name": f"{shape}-{n}",
                "tasks": [
                    {"name": f"t{i}", "task_type": "noop", "depends_on": deps(i)} for i in range(n)
                ],
            }
            wid = workflows.submit_workflow(p.url, wf)
            common.console = workflow.console = Console(file=io.StringIO(), width=200)
            common.state.reset({"dsn": p.url, "home": None}, None, None)
            t0 = time.perf_counter()
            workflow.show_workflow(wid, as_json=False)
            show.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            workflows.cancel_workflow(p.url, wid)
            cancel.append(time.perf_counter() - t0)
            with psycopg.connect(p.url, autocommit=True) as c:
                st = c.execute("SELECT status FROM pgsched.workflows WHERE id = %s", (wid,))
                assert st.fetchone()[0] == "cancelled"
        p.spread(f"{shape} of {n:,} tasks: status --workflow", show, "s")
        p.spread(f"{shape} of {n:,} tasks: cancel --workflow", cancel, "s")


def commit_idle(p: Probe) -> None:
    with psycopg.connect(p.url, autocommit=True) as c:
        c.execute("CREATE TABLE probe_x (id int PRIMARY KEY, v int)")
        c.execute("INSERT INTO probe_x VALUES (1, 0)")
        for gap in (0.0, 0.02):
            ts = []
            for _ in range(200):
                time.sleep(gap)
                t0 = time.perf_counter()
                c.execute("UPDATE probe_x SET v = v + 1 WHERE id = 1", prepare=True)
                ts.append((time.perf_counter() - t0) * 1000)
            p.spread(
                f"one-row UPDATE and its commit, {gap * 1000:.0f} ms idle before each", ts, "ms"
            )


def submit_call(p: Probe) -> None:
    client = Client(p.url)
    c = psycopg.connect(p.url, autocommit=True)
    ways = {
        "Client.submit": lambda k: client.submit("noop", {"k": k}),
        # An option outside the common ones (None: the same row) takes the TaskSpec path.
        "Client.submit via TaskSpec": lambda k: client.submit("noop", {"k": k}, timeout=None),
        "psycopg INSERT (task_type, payload)": lambda k: c.execute(
            "INSERT INTO pgsched.tasks (task_type, payload) VALUES (%s, %s) RETURNING id",
            ("noop", psycopg.types.json.Jsonb({"k": k})),
            prepare=True,
        ).fetchone(),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for rnd in range(13):
        # The order flips every round: the first chunk after another connection's ran slower.
        for name, call in (list if rnd % 2 else reversed)(list(ways.items())):
            t0, c0 = time.perf_counter(), cpu_seconds([os.getpid()])
            for k in range(300):
                call(k)
            if rnd:  # the first round warms up (prepared statements)
                rates[name].append(300 / (time.perf_counter() - t0))
                cpu[name].append((cpu_seconds([os.getpid()]) - c0) / 300 * 1e6)
    base = rates["Client.submit via TaskSpec"]
    for name, r in rates.items():
        p.spread(f"{name}: calls/s", r, "/s")
        p.spread(f"{name}: client CPU per call", cpu[name], "µs")
        ratio = statistics.median(a / b for a, b in zip(r, base, strict=True))
        p.record(f"{name}: calls/s over the TaskSpec path's (median per round)", ratio, "×")
    c.close()
    client.close()


def insert_cost(p: Probe) -> None:
    """One-row INSERTs (task_type only) into pgsched.tasks, into copies of it that lose one
    more thing each, and into a bare table: autocommit through psycopg (bench A's
    sql_insert and raw_insert), the tables taking turns; 50 to a transaction through pgbench
    (no commit per row, no Python); and the server's execution time per INSERT in the latter
    (pg_stat_statements)."""
    url = p.url
    ladder = {  # label: (table, what its setup removes from the one above)
        "pgsched.tasks": ("pgsched.tasks", None),
        "- insert trigger, foreign keys": (
            "probe_copy",
            "CREATE TABLE probe_copy (LIKE pgsched.tasks INCLUDING ALL)",
        ),
        "- CHECK constraints": (
            "probe_nochecks",
            "CREATE TABLE probe_nochecks (LIKE pgsched.tasks INCLUDING ALL)",
        ),
        "- every index but the key": (
            "probe_keyonly",
            "CREATE TABLE probe_keyonly (LIKE pgsched.tasks INCLUDING DEFAULTS INCLUDING IDENTITY)",
        ),
        "bare (id, task_type, payload)": (
            "probe_bare",
            "CREATE TABLE probe_bare (id bigint"
            " GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " task_type text NOT NULL,"
            " payload jsonb NOT NULL DEFAULT '{}')",
        ),
    }
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for _table, setup in ladder.values():
            if setup:
                c.execute(setup)
        c.execute("ALTER TABLE probe_keyonly ADD PRIMARY KEY (id)")
        for (name,) in c.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'c'"
            " AND conrelid = 'probe_nochecks'::regclass"
        ).fetchall():
            c.execute(f"ALTER TABLE probe_nochecks DROP CONSTRAINT {name}")
        # Autocommit, taking turns in chunks of 20 (the order flips every round) for 30 s: a
        # machine stall lands in one chunk, and every table sees the same flush times.
        auto: dict[str, list[float]] = {label: [] for label in ladder}  # calls/s per chunk
        labels = list(ladder)
        t0, rnd = time.perf_counter(), 0
        while time.perf_counter() - t0 < 30:
            for label in labels if rnd % 2 == 0 else labels[::-1]:
                sql = f"INSERT INTO {ladder[label][0]} (task_type) VALUES (%s)"
                s = time.perf_counter()
                for _ in range(20):
                    c.execute(sql, ("noop",), prepare=True)
                auto[label].append(20 / (time.perf_counter() - s))
            rnd += 1
        c.execute("SELECT pg_stat_statements_reset()")
        in_tx: dict[str, list[float]] = {label: [] for label in ladder}
        for rep in range(3):
            for label in list(ladder) if rep % 2 == 0 else list(ladder)[::-1]:
                insert = f"INSERT INTO {ladder[label][0]} (task_type) VALUES ('noop');\n"
                in_tx[label].append(
                    pgbench(p.server, url, "BEGIN;\n" + insert * 50 + "COMMIT;\n", 1, 2) * 50
                )
        exec_us = {
            table: ms * 1000
            for table, ms in c.execute(
                "SELECT split_part(query, ' ', 3), sum(total_exec_time) / sum(calls)"
                " FROM pg_stat_statements WHERE query LIKE 'INSERT INTO %' GROUP BY 1"
            )
        }
    bare = auto["bare (id, task_type, payload)"]
    for label, (table, _setup) in ladder.items():
        r = auto[label]
        p.record(
            f"{label}: autocommit inserts/s", len(r) * 20 / sum(20 / x for x in r), "/s", rounds=rnd
        )
        vs_bare = statistics.median(a / b for a, b in zip(r, bare, strict=True))
        p.record(f"{label}: autocommit, over the bare table's (median per round)", vs_bare, "×")
        p.record(
            f"{label}: 50 per transaction (pgbench)", 1e6 / statistics.median(in_tx[label]), "µs"
        )
        p.record(f"{label}: server execution per INSERT", exec_us[table], "µs")


def bulk(p: Probe) -> None:
    """Both submit_many paths at each batch size: one INSERT statement and COPY (forced by
    setting SMALL_BATCH above the size, or to 1), alternated, 2 s each. The TaskSpecs are built
    outside the timing."""
    with psycopg.connect(p.url, autocommit=True) as c, Client(p.url) as client:
        for size in (100, 1000, 5000, 20000, 100000):
            specs = [client.spec("noop", {"k": k}) for k in range(size)]
            rates: dict[str, list[float]] = {"INSERT": [], "COPY": []}
            for _ in range(3 if size >= 5000 else 5):
                for path, limit in (("INSERT", size + 1), ("COPY", 1)):
                    saved, client_module.SMALL_BATCH = client_module.SMALL_BATCH, limit
                    try:
                        t0, n = time.perf_counter(), 0
                        while time.perf_counter() - t0 < 2:
                            client.submit_many(specs, conn=c)
                            n += size
                    finally:
                        client_module.SMALL_BATCH = saved
                    rates[path].append(n / (time.perf_counter() - t0))
            for path, r in rates.items():
                p.spread(f"submit_many, {size:,} per call, by {path}", r, "rows/s")


def bulk_parts(p: Probe) -> None:
    """Where a bulk-submitted row's server time goes, and what the foreign keys cost a client.
    PostgreSQL queues a foreign key's check for every inserted row, NULL or not (only UPDATE
    and DELETE skip it by inspection), so the two of pgsched.tasks cost every bulk row."""
    server = p.server
    with psycopg.connect(server.url("postgres"), autocommit=True) as c:
        for d in ("bp_parts", "bp_fk", "bp_nofk"):
            c.execute(f"CREATE DATABASE {d}")
    for d in ("bp_parts", "bp_fk", "bp_nofk"):
        migrate.upgrade(server.url(d))
    cols = "task_type, payload, queue, priority, run_at, max_attempts"
    rows = "SELECT 'noop', p, 'default', 0, now(), 3 FROM notified, jsonb_array_elements(%s) p"
    steps = {  # label: (table, its setup)
        "pgsched.tasks (Client.submit_batch)": ("pgsched.tasks", ""),
        "- the insert trigger (its WHEN)": (
            "bp_fkeys",
            "CREATE TABLE bp_fkeys (LIKE pgsched.tasks INCLUDING ALL);"
            " ALTER TABLE bp_fkeys ADD FOREIGN KEY (workflow_id) REFERENCES pgsched.workflows,"
            " ADD FOREIGN KEY (schedule_id) REFERENCES pgsched.schedules",
        ),
        "- the two foreign keys": (
            "bp_copy",
            "CREATE TABLE bp_copy (LIKE pgsched.tasks INCLUDING ALL)",
        ),
        "- the CHECKs": (
            "bp_nochecks",
            "CREATE TABLE bp_nochecks (LIKE pgsched.tasks INCLUDING DEFAULTS INCLUDING IDENTITY"
            " INCLUDING INDEXES)",
        ),
        "- every index but the key": (
            "bp_keyonly",
            "CREATE TABLE bp_keyonly (LIKE pgsched.tasks INCLUDING DEFAULTS INCLUDING IDENTITY);"
            " ALTER TABLE bp_keyonly ADD PRIMARY KEY (id)",
        ),
    }
    payloads = Jsonb([{"k": k} for k in range(1000)])
    with psycopg.connect(server.url("bp_parts"), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for _table, setup in steps.values():
            for stmt in filter(None, setup.split(";")):
                c.execute(stmt)
        c.execute("SELECT pg_stat_statements_reset()")
        for rnd in range(60):
            for table, _setup in list(steps.values())[:: 1 if rnd % 2 else -1]:
                c.execute(
                    "WITH notified AS MATERIALIZED"
                    " (SELECT pgsched.notify_bulk(ARRAY['default']))"
                    f" INSERT INTO {table} ({cols}) {rows}",
                    (payloads,),
                )
            if rnd % 10 == 9:
                for table, _setup in steps.values():
                    c.execute(f"TRUNCATE {table} CASCADE")
        per_row = dict(
            c.execute(
                "SELECT substring(query FROM 'INSERT INTO ([a-z_.]+)'),"
                " sum(total_exec_time) / sum(calls) FROM pg_stat_statements"
                " WHERE query LIKE 'WITH notified%' GROUP BY 1"
            ).fetchall()
        )
    for label, (table, _setup) in steps.items():  # ms per 1,000 rows = µs per row
        p.record(f"1,000 rows in one statement into {label}: server execution per row",
                 per_row[table], "µs", n=60)  # fmt: skip
    with psycopg.connect(server.url("bp_nofk"), autocommit=True) as c:
        for (name,) in c.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f'"
            " AND conrelid = 'pgsched.tasks'::regclass"
        ).fetchall():
            c.execute(f"ALTER TABLE pgsched.tasks DROP CONSTRAINT {name}")
    clients = {d: Client(server.url(d)) for d in ("bp_fk", "bp_nofk")}
    rates: dict[str, list[float]] = {d: [] for d in clients}
    try:
        for client in clients.values():
            client.submit("noop", {"k": -1})
        for rnd in range(12):
            for d in list(clients)[:: 1 if rnd % 2 else -1]:
                t0 = time.perf_counter()
                for s in range(0, 20_000, 1000):
                    clients[d].submit_batch("noop", [{"k": k} for k in range(s, s + 1000)])
                rates[d].append(20_000 / (time.perf_counter() - t0))
                with psycopg.connect(server.url(d), autocommit=True) as c:
                    c.execute("TRUNCATE pgsched.tasks CASCADE")
    finally:
        for client in clients.values():
            client.close()
    fk, nofk = rates["bp_fk"], rates["bp_nofk"]
    p.spread("Client.submit_batch, 20 x 1,000 rows, as migrated", fk, "rows/s")
    p.spread("Client.submit_batch, 20 x 1,000 rows, without the two foreign keys", nofk, "rows/s")
    ratio = statistics.median(b / a for a, b in zip(fk, nofk, strict=True))
    p.record("without the foreign keys over as migrated (median per round)", ratio, "×")


VARIANTS = {
    "as migrated": "",
    "executions keyed on (task_id, attempt)": (
        "ALTER TABLE pgsched.task_executions DROP CONSTRAINT task_executions_attempt_unique;"
        " ALTER TABLE pgsched.task_executions DROP COLUMN id;"
        " ALTER TABLE pgsched.task_executions ADD CONSTRAINT task_executions_attempt_unique"
        " PRIMARY KEY (task_id, attempt)"),
    "no finished-rows index": "DROP INDEX pgsched.tasks_finished_idx",
    "no running-rows index": "DROP INDEX pgsched.tasks_running_idx",
}  # fmt: skip
VARIANTS["all three"] = "; ".join(v for v in list(VARIANTS.values())[1:])


def _drain_copy(ctx: Ctx, template: str, n: int, procs: int, *worker_args: str) -> float:
    """B's drain (tasks/s) of a fresh copy of the database `template`, after a CHECKPOINT."""
    url = ctx.copy_db(template, "run")
    try:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CHECKPOINT")
        return drain(ctx, "pgsched", url, n, procs, worker_args=worker_args)["rate"]
    finally:
        ctx.drop_db(url)


def schema_ab(p: Probe) -> None:
    ctx, n = p.ctx, 50_000
    seed = ctx.filled_db("pgsched", "seed", n).rsplit("/", 1)[1]
    variants = []  # database name of each variant, in VARIANTS order
    for sql in VARIANTS.values():
        url = ctx.copy_db(seed, "variant")
        with psycopg.connect(url, autocommit=True) as c:
            if sql:
                c.execute(sql)
            c.execute("VACUUM ANALYZE")
        variants.append(url.rsplit("/", 1)[1])
    rates: dict[int, list[float]] = {i: [] for i in range(len(VARIANTS))}
    for rep in range(4):
        order = list(rates) if rep % 2 == 0 else list(rates)[::-1]
        for i in order:
            rates[i].append(_drain_copy(ctx, variants[i], n, 1))
    for i, name in enumerate(VARIANTS):
        p.spread(f"one worker drains {n:,}, {name}", rates[i], "tasks/s")


def writers_ab(p: Probe) -> None:
    """B's drain of 100k no-op tasks with one and with two completion writers per worker, on
    copies of one filled database, one worker and then two; 8 rounds, the order flipping every
    round."""
    ctx, n = p.ctx, 100_000
    seed = ctx.filled_db("pgsched", "seed", n).rsplit("/", 1)[1]
    for procs in (1, 2):
        rates: dict[int, list[float]] = {1: [], 2: []}
        for rnd in range(8):
            for w in (1, 2) if rnd % 2 == 0 else (2, 1):
                rates[w].append(_drain_copy(ctx, seed, n, procs, "--writers", str(w)))
        for w, r in rates.items():
            p.spread(f"{procs} worker(s), {w} writer(s) each", r, "tasks/s")
        ratio = statistics.median(a / b for a, b in zip(rates[1], rates[2], strict=True))
        p.record(f"{procs} worker(s): 1 writer over 2 writers (median per round)", ratio, "×")


def _ready_index_scan(c: psycopg.Connection, args: str) -> tuple[int | None, float]:
    """Pages of the ready index and milliseconds of one prepared claim (EXPLAIN ANALYZE)."""
    c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
    text = "\n".join(r[0] for r in c.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE claim({args})"))
    pages = re.search(r"Index Scan using tasks_ready_idx.*?Buffers: shared hit=(\d+)", text, re.S)
    ms = re.search(r"Execution Time: ([\d.]+)", text)
    return (int(pages[1]) if pages else None), float(ms[1])


def _prepare_claim(c: psycopg.Connection) -> str:
    """PREPARE the claim as the worker's claim connection runs it (generic plan); returns the
    arguments to EXECUTE it with."""
    sql, names = to_positional(Q.claim_tasks.sql)
    params = CLAIM | {"task_types": ["noop"]}
    c.execute(CLAIM_WORKER)
    c.execute(f"PREPARE claim AS {sql}")
    return psql.SQL(", ").join(psql.Literal(params[k]) for k in names).as_string(c)


def claim_after_drain(p: Probe) -> None:
    ctx, n = p.ctx, 100_000
    for label, backlog in (("empty", None), ("1M rows due tomorrow", PENDING)):
        url = ctx.fresh_db("pgsched", "g")
        with psycopg.connect(url, autocommit=True) as c:
            if backlog:
                c.execute(backlog, (1_000_000,))
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        drain(ctx, "pgsched", url, n, 1, DUE_LEFT, DUE_COUNT)
        with psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c:
            args = _prepare_claim(c)
            for when in ("right after the drain", "after VACUUM"):
                if when == "after VACUUM":
                    c.execute("VACUUM pgsched.tasks")
                for _ in range(3):  # the first scan marks dead entries; report the third
                    pages, ms = _ready_index_scan(c, args)
                p.record(f"{label}, {when}: ready-index pages a claim reads", pages, "pages")
                p.record(f"{label}, {when}: the claim's execution", ms, "ms")
        ctx.drop_db(url)


AUTOVACUUM_KNOBS = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_threshold")


def vacuum_after_drain(p: Probe) -> None:
    """Beside 1M rows due tomorrow, one worker drains 100k tasks; then, every 5 s for 100 s,
    the ready-index pages a one-row claim reads and whether autovacuum has run on the table:
    with PostgreSQL's default thresholds (20% of the table dead) and as migrated."""
    ctx, n = p.ctx, 100_000
    for label in ("PostgreSQL's default thresholds", "as migrated"):
        url = ctx.fresh_db("pgsched", "g")
        with psycopg.connect(url, autocommit=True) as c:
            if label != "as migrated":
                c.execute(f"ALTER TABLE pgsched.tasks RESET ({', '.join(AUTOVACUUM_KNOBS)})")
            c.execute(PENDING, (1_000_000,))
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        drain(ctx, "pgsched", url, n, 1, DUE_LEFT, DUE_COUNT)
        t0 = time.monotonic()
        samples = []  # (seconds after the drain, pages, autovacuum runs so far)
        with psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c:
            args = _prepare_claim(c)
            while time.monotonic() - t0 < 100:
                pages, _ms = _ready_index_scan(c, args)
                vacuums = c.execute(
                    "SELECT autovacuum_count FROM pg_stat_user_tables"
                    " WHERE relid = 'pgsched.tasks'::regclass"
                ).fetchone()[0]
                samples.append((round(time.monotonic() - t0, 1), pages, vacuums))
                print(f"  {label}: {samples[-1][0]:5.1f} s, {pages} pages, {vacuums} autovacuum")
                time.sleep(5)
        first = next((t for t, _pages, v in samples if v), None)
        p.record(f"{label}: ready-index pages a claim reads right after the drain",
                 samples[0][1], "pages", samples=samples)  # fmt: skip
        p.record(f"{label}: the same {samples[-1][0]:.0f} s later", samples[-1][1], "pages")
        p.record(f"{label}: autovacuum runs on pgsched.tasks in that time", samples[-1][2], "")
        if first is not None:
            p.record(f"{label}: first seen after the drain", first, "s")
        ctx.drop_db(url)


def _cpu_by_kind(pids: list[int]) -> dict[str, float]:
    """CPU seconds so far per process kind: client backends together, the others by title."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline") as f:
                title = f.read().replace("\0", " ").strip()
        except OSError:
            continue
        kind = title.removeprefix("postgres: ") if title.startswith("postgres: ") else "postmaster"
        if "[local]" in kind or "127.0.0.1" in kind:
            kind = "client backends"
        out[kind] = out.get(kind, 0.0) + cpu_seconds([pid])
    return out


def trickle(p: Probe) -> None:
    ctx = p.ctx
    for gap, n in ((0.02, 300), (0.0, 3000)):
        runs = []
        for _ in range(4):
            url = ctx.fresh_db("pgsched", "trickle")
            with workers("pgsched", url, 1) as ws:
                ready_time(ws[0])
                time.sleep(0.5)
                spids = child_pids(p.server.proc.pid)  # the worker's backends are there now
                wpids = [ws[0].p.pid]
                with psycopg.connect(url, autocommit=True) as c:
                    s0, w0, t0 = cpu_seconds(spids), cpu_seconds(wpids), time.perf_counter()
                    for _ in range(n):
                        c.execute(
                            "INSERT INTO pgsched.tasks (task_type) VALUES ('noop')", prepare=True
                        )
                        if gap:
                            time.sleep(gap)
                    wait_done(url, "pgsched", 60)
                    dt = time.perf_counter() - t0
                    runs.append(
                        (
                            (cpu_seconds(spids) - s0) / n * 1e6,
                            (cpu_seconds(wpids) - w0) / n * 1e6,
                            n / dt,
                        )
                    )
            ctx.drop_db(url)
        how = f"{n:,} tasks {gap * 1000:.0f} ms apart"
        p.spread(f"{how}: Postgres CPU per task", [r[0] for r in runs], "µs")
        p.spread(f"{how}: worker CPU per task", [r[1] for r in runs], "µs")
        p.spread(f"{how}: tasks/s", [r[2] for r in runs], "tasks/s")


IDLE_PACES = {  # label: environment of the fleet's workers
    "default idle pace (heartbeat_timeout / 3)": {},
    "idle workers beating every heartbeat_interval (2 s)": {"PGSCHED_IDLE_HEARTBEAT_INTERVAL": "2"},
}


def idle_fleet(p: Probe) -> None:
    n = 100
    for pace, extra_env in IDLE_PACES.items():
        url = p.ctx.fresh_db("pgsched", "fleet")
        env = {"PGSCHED_DSN": url, "PGSCHED_LOG_LEVEL": "warning", **extra_env}
        exe = str(ROOT / ".venv" / "bin" / "pgsched")
        fleet = [Proc([exe, "worker"], env=env) for _ in range(n)]
        try:
            _idle_windows(p, url, n, pace)
        finally:
            for w in fleet:
                w.p.terminate()
            for w in fleet:
                w.p.wait()
            p.ctx.drop_db(url)


def _idle_windows(p: Probe, url: str, n: int, pace: str) -> None:
    """Postgres CPU in three 10 s windows once `n` workers are active, with the top process
    kinds and statements of each window in the raw record."""
    with psycopg.connect(url, autocommit=True) as c:
        end = time.monotonic() + 120
        while time.monotonic() < end and c.execute(
                "SELECT count(*) FROM pgsched.workers WHERE status = 'active'"
        ).fetchone()[0] < n:  # fmt: skip
            time.sleep(0.5)
        time.sleep(3)
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        windows, detail = [], []
        for _window in range(3):
            c.execute("SELECT pg_stat_statements_reset()")
            pids = child_pids(p.server.proc.pid)
            before, t0 = _cpu_by_kind(pids), time.monotonic()
            time.sleep(10)
            after, dt = _cpu_by_kind(pids), time.monotonic() - t0
            use = {k: (v - before.get(k, 0.0)) / dt * 100 for k, v in after.items()}
            windows.append(sum(use.values()))
            top = c.execute(
                "SELECT calls, round(total_exec_time::numeric, 1)::float8,"
                " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
                " FROM pg_stat_statements WHERE query NOT LIKE '%%pg_stat_statements%%'"
                " ORDER BY total_exec_time DESC LIMIT 3"
            ).fetchall()
            detail.append(
                {
                    "cpu_percent": round(windows[-1], 2),
                    "kinds": dict(sorted(use.items(), key=lambda kv: -kv[1])[:3]),
                    "statements": [list(r) for r in top],
                }
            )
        p.spread(f"{n} idle workers, {pace}: Postgres CPU", windows, "% of a core", windows=detail)


def commit_cost(p: Probe) -> None:
    with psycopg.connect(p.url, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid)"
            " SELECT 'w' || g, 'h', g FROM generate_series(1, 100) g"
        )
        ids = [r[0] for r in c.execute("SELECT id FROM pgsched.workers ORDER BY id")]
        backend = c.execute("SELECT pg_backend_pid()").fetchone()[0]

        def beat(i: int) -> None:
            heartbeat.beat(
                c,
                ids[i % 100],
                cpu=1.0,
                memory=2.0,
                running=0,
                capacity=1,
                queues=["default"],
                heartbeat_timeout=15.0,
            )

        def durable_beat(i: int) -> None:  # the heartbeat with its commit waiting for the flush
            with c.transaction():
                beat(i)
                c.execute("SET LOCAL synchronous_commit = on")

        runs = {
            "heartbeat (as shipped: no flush wait)": beat,
            "heartbeat, durable commit": durable_beat,
            "SELECT 1": lambda i: c.execute("SELECT 1"),
            "one-row UPDATE, durable commit": lambda i: c.execute(
                "UPDATE pgsched.workers SET cpu_usage = %s WHERE id = %s", (i % 7, ids[0])
            ),
        }
        per: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(3):
            for name, f in runs.items():
                c0, k = cpu_seconds([backend]), 0
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5:
                    f(k)
                    k += 1
                    time.sleep(0.02)
                per[name].append((cpu_seconds([backend]) - c0) / k * 1e6)
        for name, us in per.items():
            p.spread(f"{name}: backend CPU per statement, one every 20 ms", us, "µs")


def recovery_gate(p: Probe) -> None:
    from pgsched.db import ADVISORY_NAMESPACE, WORKER_LOCK_NAMESPACE

    table = Q.reap_dead_workers.sql
    advisory = table.replace(
        "SELECT pgsched.try_recovery_gate() AS ok",
        "SELECT pg_try_advisory_xact_lock(%(reaper_ns)s::int, 0) AS ok",
    )
    if advisory == table:
        raise RuntimeError("the recovery statement no longer calls pgsched.try_recovery_gate()")
    params = {
        "ns": ADVISORY_NAMESPACE,
        "reaper_ns": WORKER_LOCK_NAMESPACE,
        "heartbeat_timeout": 3600.0,
        "now": None,
    }
    with psycopg.connect(p.url, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status)"
            " SELECT 'w' || i, 'h', i, 'stopped' FROM generate_series(1, 100) i"
        )
    times: dict[str, list[float]] = {}
    for _ in range(20):
        for label, sql in (("table lock", table), ("advisory lock", advisory)):
            with psycopg.connect(p.url, autocommit=True) as c:
                for i in range(21):
                    t0 = time.perf_counter()
                    c.execute(sql, params).fetchall()
                    key = f"{label}, {'first call' if i == 0 else 'later calls'}"
                    times.setdefault(key, []).append((time.perf_counter() - t0) * 1000)
    for key, ts in times.items():
        p.spread(f"recovery statement, {key}", ts, "ms")


HOG_BODY = """import sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, "adapters")
from pgsched_worker import crunch, spin
body, arg = (spin, {"n": 4_000_000}) if sys.argv[1] == "spin" else (crunch, {"n": 400})
t = time.perf_counter()
with ThreadPoolExecutor(8) as ex:
    list(ex.map(body, [arg] * 8))
print(time.perf_counter() - t)"""


def hog_threads(p: Probe) -> None:
    cpu = str(max(os.sched_getaffinity(0)))
    times: dict[str, list[float]] = {}
    for rnd in range(3):
        for hogged in (False, True) if rnd % 2 == 0 else (True, False):
            hog = None
            if hogged:
                hog = subprocess.Popen(
                    ["taskset", "-c", cpu, sys.executable, "-c", "while True: pass"],
                    start_new_session=True,
                )
            try:
                for body in ("spin", "crunch"):
                    out = subprocess.run(
                        ["taskset", "-c", cpu, sys.executable, "-c", HOG_BODY, body],
                        cwd=Path(__file__).parent,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    times.setdefault(f"{body} {'hog' if hogged else 'alone'}", []).append(
                        float(out.stdout)
                    )
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    for body in ("spin", "crunch"):
        p.spread(f"8 x {body} on one CPU, alone", times[f"{body} alone"], "s")
        p.spread(f"8 x {body} on one CPU, beside a hog", times[f"{body} hog"], "s")
        ratio = statistics.median(times[f"{body} hog"]) / statistics.median(times[f"{body} alone"])
        p.record(f"{body}: beside the hog over alone (medians)", ratio, "×")


# name: (function, what the probe needs, what it measures). "db": a server whose `postgres`
# database is migrated (Probe.url); "server": a server to make databases on; "none": no server.
PROBES: dict[str, tuple[Callable[[Probe], None], str, str]] = {
    "pickup": (pickup, "db",
        "an idle in-process worker, one task every 20 ms by plain INSERT: commit -> NOTIFY seen"
        " -> claim sent -> claim answered -> body starts"),
    "claim-plan": (claim_plan, "db",
        "planning and execution time of a one-row claim (EXPLAIN ANALYZE, 100 claims); a"
        " one-row claim's round trip after 20 ms idle, planned per claim and on the worker's"
        " claim session (generic plans), taking turns"),
    "claim-parts": (claim_parts, "db",
        "a one-row claim's round trip back to back and after 20 ms idle, taking turns: the"
        " claim as it is; the same with synchronous_commit off for its transaction; without"
        " the LATERAL over the queues; without the load-weighted limit as well; a bare"
        " one-queue UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)"),
    "listen-claim": (listen_claim, "db",
        "right after a notification (20 ms apart): SELECT 1 and a one-row claim on the"
        " connection that received it and on another, taking turns"),
    "commit-idle": (commit_idle, "db",
        "a one-row UPDATE's round trip back to back, and after 20 ms idle"),
    "insert-cost": (insert_cost, "db",
        "one-row INSERTs into pgsched.tasks, into copies that lose one more thing each (trigger"
        " and foreign keys, CHECKs, indexes but the key) and into a bare (id, task_type, payload)"
        " table: autocommit, taking turns in chunks of 20 for 30 s; 50 to a transaction via"
        " pgbench; the server's execution time per INSERT"),
    "bulk": (bulk, "db",
        "Client.submit_many by one INSERT and by COPY, 100 to 100,000 rows a call, alternated"
        " 2 s runs"),
    "bulk-parts": (bulk_parts, "server",
        "Client.submit_batch's statement (1,000 rows) into pgsched.tasks and into copies that"
        " lose one more thing each: server execution per row; then 20 x 1,000 rows by"
        " Client.submit_batch as migrated and without the two foreign keys, 12 rounds"),
    "submit-call": (submit_call, "db",
        "one autocommit task per call on one connection, chunks of 300 taking turns:"
        " Client.submit, the same through the TaskSpec path, a bare psycopg INSERT; calls/s"
        " and the client's CPU per call"),
    "schema-ab": (schema_ab, "server",
        "one worker drains 50k tasks from copies of one database, as migrated and with one"
        " schema change each (and the three together), 4 alternated runs"),
    "writers-ab": (writers_ab, "server",
        "B's drain (100k) with one and with two completion writers per worker, one worker then"
        " two, 8 rounds alternated"),
    "claim-after-drain": (claim_after_drain, "server",
        "index pages a one-row claim reads (generic plan) right after one worker drained 100k"
        " tasks, on an empty table and beside 1M rows due tomorrow; then after VACUUM"),
    "vacuum-after-drain": (vacuum_after_drain, "server",
        "beside 1M rows due tomorrow, one worker drains 100k tasks; then for 100 s the"
        " ready-index pages a claim reads and autovacuum's runs, with PostgreSQL's default"
        " thresholds and as migrated"),
    "idle-fleet": (idle_fleet, "server",
        "100 idle `pgsched worker` processes: Postgres CPU in three 10 s windows, at the idle"
        " heartbeat pace and with idle workers beating every heartbeat_interval"),
    "commit-cost": (commit_cost, "db",
        "CPU a backend spends per statement, one every 20 ms: a heartbeat, the same with a"
        " durable commit, SELECT 1, a one-row UPDATE"),
    "attempt-counters": (attempt_counters, "db",
        "the attempt counters' trigger that every completion batch runs: 500 attempt rows"
        " inserted in one statement with the trigger as shipped, with the previous revision's"
        " function (the bucket looked up in a numeric array), and with no trigger, taking"
        " turns (60, the last 50 kept); per row"),
    "completion-arbiter": (completion_arbiter, "db",
        "a 500-task completion as the worker runs it (generic plan) and with ON CONFLICT on the"
        " attempt rows (complete_tasks_arbitrated), taking turns 60 times; the last 50"),
    "trickle": (trickle, "server",
        "one worker (bench D's) while tasks arrive one plain INSERT at a time, 20 ms apart (300)"
        " and back to back (3,000): Postgres and worker CPU per task, 4 runs each"),
    "hog-threads": (hog_threads, "none",
        "no database: 8 threads of bench F's task bodies (`spin`, a pure-Python loop; `crunch`,"
        " hashing outside the GIL) pinned to one CPU, with and without a CPU hog there, 3 rounds"),
    "sql-ceiling": (sql_ceiling, "server",
        "the database alone: pgbench runs pgsched's claim and completion statements (500 a"
        " batch, each its own transaction) on 1 and 2 connections; the least a queue can do per"
        " job (DELETE ... SKIP LOCKED of 500); 1,000-row INSERTs into pgsched.tasks and a bare"
        " table; 3 alternated runs of 3 s"),
    "servers-ab": (servers_ab, "none",
        "bench B's drain (one worker, 100,000 tasks) of pgsched and graphile-worker on the"
        " bundled PostgreSQL and on the system's, both servers up at once, taking turns (5,"
        " the order swapped each turn): each server's rate and the per-turn ratio"),
    "storage-split": (storage_split, "server",
        "pgbench runs pgsched's claim and completion (500 a batch) on 1 and 2 connections, and"
        " the same claim on a copy of pgsched.tasks whose completion moves each finished row to"
        " a history table (the attempt folded in, or in an attempt row of its own): rows/s, WAL"
        " bytes and Postgres CPU per task; 3 alternated runs of 3 s"),
    "workflow-10k": (workflow_10k, "db",
        "workflows of 10,000 tasks (a chain, a fan-out, independent tasks): the wall time of"
        " `status --workflow` and of `cancel --workflow`, 3 runs each"),
    "recovery-gate": (recovery_gate, "db",
        "the recovery statement (100 workers rows, none dead) with the table lock of"
        " pgsched.try_recovery_gate() and with an advisory lock instead, 20 turns: the first"
        " call on a new session and the 20 after it"),
    "fleet-bouncer": (fleet_bouncer, "db",
        "a fleet of busy `pgsched worker` processes (BENCH_FLEET, default 200; capacities 1-4)"
        " through PgBouncer in transaction mode: RSS and server connections, a drain of 20,000"
        " 20 ms tasks, pickup p50/p99 at 200 tasks/s, and 20 workers killed at once (SIGKILL):"
        " the time until their tasks are done by others"),
    "drain-profile": (drain_profile, "server",
        "one worker drains 100k no-op tasks: CPU of the worker and of Postgres per task, and"
        " pg_stat_statements by statement; then again with py-spy sampling the worker"),
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python bench/probes.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="probes:\n"
        + "\n".join(
            textwrap.fill(about, 100, initial_indent=f"  {name:19} ", subsequent_indent=" " * 22)
            for name, (_f, _k, about) in PROBES.items()
        ),
    )
    ap.add_argument("name", choices=PROBES, metavar="NAME", help="the probe to run")
    name = ap.parse_args().name
    fn, needs, about = PROBES[name]
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-probe-{name}"
    out = RAW / f"{run_id}.jsonl"
    with contextlib.ExitStack() as stack:
        server = None
        if needs != "none":
            server = stack.enter_context(EphemeralServer(durable=True, settings=SERVER_SETTINGS))
        ctx = Ctx(server, quick=False, run_id=run_id, systems=["pgsched"], out=out)  # type: ignore[arg-type]
        t0 = begin_raw(out, run_id, server, probe=name, about=about)
        if needs == "db":
            migrate.upgrade(ctx.server.url("postgres"))
        fn(Probe(name, ctx))
    end_raw(out, run_id, t0)
    print(f"raw records: {out}")


if __name__ == "__main__":
    main()
