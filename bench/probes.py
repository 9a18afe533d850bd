"""Focused measurements behind bench/NOTES.md, each on its own throwaway durable server with
the benchmark settings: `python bench/probes.py NAME`.

  pickup        an idle in-process worker, one task every 20 ms by plain INSERT: median of
                commit -> NOTIFY seen -> claim sent -> claim answered -> body starts
  claim-plan    planning and execution time of a one-row claim (EXPLAIN ANALYZE, median of 100);
                a one-row claim's round trip after 20 ms idle, planned per claim and on the
                worker's claim session (generic plans), taking turns
  claim-parts   a one-row claim's round trip back to back and after 20 ms idle, taking turns:
                the claim as it is; without the LATERAL over the queues; without the
                load-weighted limit as well (no claim_limit, no workers rows); a bare
                one-queue UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED)
  listen-claim  right after a notification (20 ms apart): SELECT 1 and a one-row claim on
                the connection that received it and on another, taking turns
  commit-idle   a one-row UPDATE's round trip back to back, and after 20 ms idle
  insert-cost   one-row INSERTs into pgsched.tasks, into copies that lose one more thing each
                (trigger and foreign keys, CHECKs, indexes but the key) and into a bare
                (id, task_type, payload) table: autocommit via psycopg, the tables taking
                turns in chunks of 20 for 30 s; 50 to a transaction via pgbench; and the
                server's execution time per INSERT
  bulk          Client.submit_many by one INSERT and by COPY, 100 to 100,000 rows a call
  bulk-parts    Client.submit_batch's statement (1,000 rows) into pgsched.tasks and into copies
                that lose one more thing each (its insert trigger's WHEN, the two foreign
                keys, the CHECKs, the indexes but the key): server execution per row; then
                20 x 1,000 rows by Client.submit_batch into a database as migrated and into
                one without the two foreign keys of pgsched.tasks, alternated 12 times
  submit-call   one autocommit task per call on one connection, interleaved chunks of 300
                in an order that flips every round:
                Client.submit (no TaskSpec for the common options), the same through the
                TaskSpec path, and a bare psycopg INSERT (task_type, payload) into the table;
                calls/s and the client's CPU per call (schedstat)
  schema-ab     one worker drains 50k tasks from copies of one database, as migrated and with
                one schema change each (and the three together), 4 alternated runs
  writers-ab    B's drain (100k) with one and with two completion writers per worker, one
                worker then two, 8 rounds alternated
  claim-after-drain
                index pages a one-row claim reads (prepared on the worker's claim session:
                generic plan) right after one worker drained 100k tasks, on an empty table
                and beside 1M rows due tomorrow; then after VACUUM
  vacuum-after-drain
                beside 1M rows due tomorrow, one worker drains 100k tasks; then every 5 s for
                100 s the ready-index pages a one-row claim reads, and autovacuum's runs:
                with PostgreSQL's default thresholds and as migrated
  idle-fleet    100 idle `pgsched worker` processes: Postgres CPU in three 10 s windows,
                backends and other processes apart, and the statements run meanwhile (to
                compare two versions: PYTHONPATH=<a checkout> python bench/probes.py ...)
  commit-cost   CPU a backend spends per statement, one every 20 ms: a heartbeat, the same
                with synchronous_commit off, SELECT 1, a one-row UPDATE
  completion-arbiter
                a 500-task completion as the worker runs it (generic plan) and the same with
                ON CONFLICT on the attempt rows (complete_tasks_arbitrated), taking turns 60
                times: EXPLAIN ANALYZE's execution time and the attempt rows' INSERT, medians
                of the last 50
  trickle       one worker (bench D's: the adapter, concurrency 500) while tasks arrive one
                plain INSERT at a time, 20 ms apart (300) and back to back (3,000): Postgres
                CPU (all backends) and worker CPU per task, 4 runs each (to compare two
                versions: PYTHONPATH=<a checkout> python bench/probes.py ...)
  hog-threads   no database: 8 threads of bench F's task bodies (`spin`, a pure-Python loop;
                `crunch`, hashing outside the GIL) in one process pinned to one CPU, with and
                without a CPU hog in its own session on that CPU, 3 rounds taking turns
  sql-ceiling   the database alone, no client work: pgbench runs pgsched's own claim and
                completion statements (500 a batch, each its own transaction, as the worker
                commits them) on 1 and 2 connections; the least a queue can do per job (one
                DELETE ... SKIP LOCKED of 500); 1,000-row INSERTs of server-made rows into
                pgsched.tasks and into a bare table; 3 alternated runs of 3 s
  workflow-10k  workflows of 10,000 tasks (a chain, a fan-out of one root, independent
                tasks): the wall time of `status --workflow` (pgsched.workflows.get_workflow
                and the table the CLI prints) and of `cancel --workflow`, 3 runs each; the
                target is under 1 s for both
  recovery-gate the recovery statement (100 workers rows, none dead) with the table lock of
                pgsched.try_recovery_gate() and with the advisory lock it replaced, taking
                turns 20 times: the first call on a new session (PL/pgSQL compiles then) and
                20 calls after it, medians
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from b_drain import drain
from g_backlog import DUE_COUNT, DUE_LEFT, PENDING
from harness import (
    ROOT,
    SERVER_SETTINGS,
    Ctx,
    Proc,
    adapter,
    child_pids,
    cpu_seconds,
    ready_time,
    wait_done,
    workers,
)
from psycopg import sql as psql
from psycopg.types.json import Jsonb

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


def pickup(url: str) -> None:
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
        if rows and current["k"] is not None:
            marks[current["k"]].update(claim_sent=t0, claim_answered=time.time())
        return rows

    Waker.heard = traced_heard  # type: ignore[method-assign]
    claims.claim = traced_claim
    reg = Registry()
    reg.register(TaskType("noop", body, inline=True))
    w = Worker(url, Settings(log_level="warning"), registry=reg)
    w.start()
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    time.sleep(1.0)
    with psycopg.connect(url, autocommit=True) as c:
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
    print(f"samples {len(ks)}; medians in ms:")
    for a, b in [*itertools.pairwise(steps), ("commit", "body")]:
        ms = statistics.median((marks[k][b] - marks[k][a]) * 1000 for k in ks)
        print(f"  {a} -> {b}: {ms:.3f}")


def completion_arbiter(url: str) -> None:
    variants = {"as run": Q.complete_tasks, "arbitrated": Q.complete_tasks_arbitrated}
    took: dict[str, list[float]] = {k: [] for k in variants}
    inserted: dict[str, list[float]] = {k: [] for k in variants}
    batch = {"worker": "w", "now": None, "versions": [0] * 500, "statuses": ["succeeded"] * 500,
             "outcomes": ["success"] * 500, "results": [None] * 500, "errors": [None] * 500,
             "delays": [0.0] * 500, "durations": [0.01] * 500}  # fmt: skip
    with psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c:
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
    print("500-task completion, ms (medians of the last 50 of 60 turns):")
    for name in variants:
        print(
            f"  {name:11} statement {statistics.median(took[name][10:]):6.3f}"
            f"   attempt rows' INSERT {statistics.median(inserted[name][10:]):6.3f}"
        )


def claim_plan(url: str) -> None:
    with psycopg.connect(url, autocommit=True, options="-c plan_cache_mode=force_custom_plan") as c:
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
        print(
            f"one-row claim: planning {statistics.median(plan):.3f} ms,"
            f" execution {statistics.median(run):.3f} ms"
        )
    # The round trip of a one-row claim made 20 ms after the last (an idle worker's pickup),
    # on a session planning it for each claim and on the worker's claim session (generic
    # plans), taking turns; 5 rounds of 60 claims each.
    sessions = {
        "custom plan per claim": "-c plan_cache_mode=force_custom_plan",
        "claim session (generic plan)": CLAIM_SESSION,
    }
    conns = {k: psycopg.connect(url, autocommit=True, options=o) for k, o in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in conns}
    with psycopg.connect(url, autocommit=True) as producer:
        for _ in range(5):
            for label, c in conns.items():
                for _ in range(60):
                    producer.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                    time.sleep(0.02)
                    t0 = time.perf_counter()
                    assert len(Q.claim_tasks.run(c, CLAIM)) == 1
                    times[label].append(time.perf_counter() - t0)
    for label, c in conns.items():
        c.close()
        print(
            f"one-row claim after 20 ms idle, {label}: median"
            f" {statistics.median(times[label]) * 1000:.3f} ms"
        )


def claim_parts(url: str) -> None:
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
    assert full != one_queue != unweighted and "lim)" not in unweighted
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
        "one queue, no LATERAL": (one_queue, CLAIM),
        "one queue, no weighted limit": (unweighted, CLAIM),
        "bare one-row UPDATE claim": (bare, None),
    }
    with (
        psycopg.connect(url, autocommit=True) as producer,
        psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c,
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
                            times[label].append(time.perf_counter() - t0)
                        producer.execute("DELETE FROM pgsched.tasks")
            for label, t in times.items():
                print(
                    f"{gap * 1000:2.0f} ms idle before each, {label:30} median"
                    f" {statistics.median(t) * 1000:.3f} ms"
                )


def listen_claim(url: str) -> None:
    """After 20 ms idle, a task is inserted and its notification read on a listening
    connection; then SELECT 1, or a one-row claim, on that connection or on another (both
    with the worker's claim session settings), taking turns."""
    with psycopg.connect(url, autocommit=True) as producer:
        producer.execute(CLAIM_WORKER)
        listening = psycopg.connect(url, autocommit=True, options=CLAIM_SESSION)
        other = psycopg.connect(url, autocommit=True, options=CLAIM_SESSION)
        listening.execute("LISTEN pgsched")
        cells = {
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
                    times.append(time.perf_counter() - t0)
                    producer.execute("DELETE FROM pgsched.tasks")
        for (what, conn_label), times in cells.items():
            print(
                f"{what} right after a notification, on the {conn_label}: median"
                f" {statistics.median(times) * 1000:.3f} ms"
            )
        listening.close()
        other.close()


def workflow_10k(url: str) -> None:
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
            wid = workflows.submit_workflow(url, wf)
            common.console = workflow.console = Console(file=io.StringIO(), width=200)
            common.state.reset({"dsn": url, "home": None}, None, None)
            t0 = time.perf_counter()
            workflow.show_workflow(wid, as_json=False)
            show.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            workflows.cancel_workflow(url, wid)
            cancel.append(time.perf_counter() - t0)
            with psycopg.connect(url, autocommit=True) as c:
                st = c.execute("SELECT status FROM pgsched.workflows WHERE id = %s", (wid,))
                assert st.fetchone()[0] == "cancelled"
        print(
            f"{shape:12s} {n} tasks: status --workflow median {statistics.median(show):.3f} s"
            f" (max {max(show):.3f}), cancel --workflow median {statistics.median(cancel):.3f} s"
            f" (max {max(cancel):.3f})"
        )


def commit_idle(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE probe_x (id int PRIMARY KEY, v int)")
        c.execute("INSERT INTO probe_x VALUES (1, 0)")
        for gap in (0.0, 0.02):
            ts = []
            for _ in range(200):
                time.sleep(gap)
                t0 = time.perf_counter()
                c.execute("UPDATE probe_x SET v = v + 1 WHERE id = 1", prepare=True)
                ts.append(time.perf_counter() - t0)
            print(
                f"one-row UPDATE commit, {gap * 1000:.0f} ms idle before each:"
                f" median {statistics.median(ts) * 1000:.3f} ms"
            )


def submit_call(url: str) -> None:
    client = Client(url)
    c = psycopg.connect(url, autocommit=True)
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
        ratio = statistics.median(a / b for a, b in zip(r, base, strict=True))
        print(
            f"{name:36} min/median/max {min(r):6.0f} {statistics.median(r):6.0f}"
            f" {max(r):6.0f} calls/s ({ratio:.3f}x the TaskSpec path, median of the rounds);"
            f" client CPU {statistics.median(cpu[name]):5.1f} µs/call"
        )
    c.close()
    client.close()


def insert_cost(server: EphemeralServer) -> None:
    """One-row INSERTs (task_type only) into pgsched.tasks, into copies of it that lose one
    more thing each, and into a bare table: autocommit through psycopg (bench A's
    sql_insert and raw_insert), the tables taking turns; 50 to a transaction through pgbench
    (no commit per row, no Python); and the server's execution time per INSERT in the latter
    (pg_stat_statements)."""
    url = server.url("postgres")
    migrate.upgrade(url)
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
                    _pgbench(server, url, "BEGIN;\n" + insert * 50 + "COMMIT;\n", 1, 2) * 50
                )
        exec_us = {
            table: ms * 1000
            for table, ms in c.execute(
                "SELECT split_part(query, ' ', 3), sum(total_exec_time) / sum(calls)"
                " FROM pg_stat_statements WHERE query LIKE 'INSERT INTO %' GROUP BY 1"
            )
        }
    bare = auto["bare (id, task_type, payload)"]
    print(
        f"one-row INSERT: autocommit via psycopg, {rnd} rounds (inserts/s over all chunks;"
        " median per-round rate / bare's) | 50 per transaction via pgbench (us per insert) |"
        " server execution (us)"
    )
    for label, (table, _setup) in ladder.items():
        r, t = auto[label], statistics.median(in_tx[label])
        rate = len(r) * 20 / sum(20 / x for x in r)
        vs_bare = statistics.median(a / b for a, b in zip(r, bare, strict=True))
        print(f"{label:32} {rate:5.0f} {vs_bare:5.2f}x | {1e6 / t:6.1f} | {exec_us[table]:5.1f}")


def bulk(url: str) -> None:
    """Both submit_many paths at each batch size: one INSERT statement and COPY (forced by
    setting SMALL_BATCH above the size, or to 1), alternated, 2 s each (client.py quotes this).
    The TaskSpecs are built outside the timing."""
    with psycopg.connect(url, autocommit=True) as c, Client(url) as client:
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
            print(
                f"submit_many, {size:,} per call, rows/s medians: "
                + ", ".join(f"{p} {statistics.median(r):,.0f}" for p, r in rates.items())
            )


def bulk_parts(server: EphemeralServer) -> None:
    """Where a bulk-submitted row's server time goes, and what the foreign keys cost a client.
    PostgreSQL queues a foreign key's check for every inserted row, NULL or not (only UPDATE
    and DELETE skip it by inspection), so the two of pgsched.tasks cost every bulk row."""
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
    print("1,000 rows in one statement, server execution per row (us, mean of 60):")
    for label, (table, _setup) in steps.items():
        print(f"  {label:40} {per_row[table]:5.2f}")
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
    print(
        "Client.submit_batch, 20 x 1,000 rows, 12 alternated rounds, rows/s min/median/max:"
        f" as migrated {min(fk):,.0f} / {statistics.median(fk):,.0f} / {max(fk):,.0f};"
        f" without the two foreign keys {min(nofk):,.0f} / {statistics.median(nofk):,.0f} /"
        f" {max(nofk):,.0f}; median per-round ratio"
        f" {statistics.median(b / a for a, b in zip(fk, nofk, strict=True)):.3f}"
    )


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


def _ctx(server: EphemeralServer) -> Ctx:
    return Ctx(
        server=server, quick=False, run_id="probe", systems=["pgsched"], out=Path("/dev/null")
    )


def _drain_copy(ctx: Ctx, template: str, n: int, procs: int, *worker_args: str) -> float:
    """B's drain (tasks/s) of a fresh copy of the database `template`, after a CHECKPOINT."""
    url = ctx.copy_db(template, "run")
    try:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CHECKPOINT")
        return drain(ctx, "pgsched", url, n, procs, worker_args=worker_args)["rate"]
    finally:
        ctx.drop_db(url)


def schema_ab(server: EphemeralServer) -> None:
    ctx, n = _ctx(server), 50_000
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
        r = rates[i]
        print(
            f"{name:40} min/median/max {min(r):7.0f} {statistics.median(r):7.0f}"
            f" {max(r):7.0f} tasks/s"
        )


def writers_ab(server: EphemeralServer) -> None:
    """B's drain of 100k no-op tasks with one and with two completion writers per worker, on
    copies of one filled database, one worker and then two; 8 rounds, the order flipping every
    round. Prints min/median/max and the median of the per-round ratios."""
    ctx, n = _ctx(server), 100_000
    seed = ctx.filled_db("pgsched", "seed", n).rsplit("/", 1)[1]
    for procs in (1, 2):
        rates: dict[int, list[float]] = {1: [], 2: []}
        for rnd in range(8):
            for w in (1, 2) if rnd % 2 == 0 else (2, 1):
                rates[w].append(_drain_copy(ctx, seed, n, procs, "--writers", str(w)))
        for w, r in rates.items():
            print(
                f"{procs} worker(s), {w} writer(s): min/median/max {min(r):7.0f}"
                f" {statistics.median(r):7.0f} {max(r):7.0f} tasks/s"
            )
        ratio = statistics.median(a / b for a, b in zip(rates[1], rates[2], strict=True))
        print(f"{procs} worker(s): median per-round ratio, 1 writer / 2 writers {ratio:.3f}")


def claim_after_drain(server: EphemeralServer) -> None:
    ctx, n = _ctx(server), 100_000
    sql, names = to_positional(Q.claim_tasks.sql)
    params = CLAIM | {"task_types": ["noop"]}
    for label, backlog in (("empty", None), ("1M rows due tomorrow", PENDING)):
        url = ctx.fresh_db("pgsched", "g")
        with psycopg.connect(url, autocommit=True) as c:
            if backlog:
                c.execute(backlog, (1_000_000,))
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        drain(ctx, "pgsched", url, n, 1, DUE_LEFT, DUE_COUNT)
        # The claim as the worker's claim connection runs it: prepared, generic plan.
        with psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c:
            c.execute(CLAIM_WORKER)
            c.execute(f"PREPARE claim AS {sql}")
            args = psql.SQL(", ").join(psql.Literal(params[k]) for k in names).as_string(c)
            for when in ("right after the drain", "after VACUUM"):
                if when == "after VACUUM":
                    c.execute("VACUUM pgsched.tasks")
                for _ in range(3):  # the first scan marks dead entries; report the third
                    c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                    text = "\n".join(
                        r[0] for r in c.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE claim({args})")
                    )
                pages = re.search(
                    r"Index Scan using tasks_ready_idx.*?Buffers: shared hit=(\d+)", text, re.S
                )
                ms = re.search(r"Execution Time: ([\d.]+)", text)
                print(f"{label}, {when}: ready-index scan {pages[1]} pages, claim {ms[1]} ms")
        ctx.drop_db(url)


AUTOVACUUM_KNOBS = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_threshold")


def vacuum_after_drain(server: EphemeralServer) -> None:
    """Beside 1M rows due tomorrow, one worker drains 100k tasks; then, every 5 s for 100 s,
    the ready-index pages a one-row claim reads and whether autovacuum has run on the table:
    with PostgreSQL's default thresholds (20% of the table dead) and as migrated."""
    ctx, n = _ctx(server), 100_000
    sql, names = to_positional(Q.claim_tasks.sql)
    params = CLAIM | {"task_types": ["noop"]}
    for label in ("PostgreSQL's default thresholds", "as migrated"):
        url = ctx.fresh_db("pgsched", "g")
        with psycopg.connect(url, autocommit=True) as c:
            if label != "as migrated":
                c.execute(f"ALTER TABLE pgsched.tasks RESET ({', '.join(AUTOVACUUM_KNOBS)})")
            opts = c.execute(
                "SELECT reloptions FROM pg_class WHERE oid = 'pgsched.tasks'::regclass"
            ).fetchone()[0]
            c.execute(PENDING, (1_000_000,))
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        drain(ctx, "pgsched", url, n, 1, DUE_LEFT, DUE_COUNT)
        t0 = time.monotonic()
        print(f"{label} (reloptions {opts}):")
        with psycopg.connect(url, autocommit=True, options=CLAIM_SESSION) as c:
            c.execute(CLAIM_WORKER)
            c.execute(f"PREPARE claim AS {sql}")
            args = psql.SQL(", ").join(psql.Literal(params[k]) for k in names).as_string(c)
            while time.monotonic() - t0 < 100:
                c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                text = "\n".join(
                    r[0] for r in c.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE claim({args})")
                )
                pages = re.search(
                    r"Index Scan using tasks_ready_idx.*?Buffers: shared hit=(\d+)", text, re.S
                )
                vacuums = c.execute(
                    "SELECT autovacuum_count FROM pg_stat_user_tables"
                    " WHERE relid = 'pgsched.tasks'::regclass"
                ).fetchone()[0]
                print(
                    f"  {time.monotonic() - t0:5.1f} s after the drain: ready-index scan"
                    f" {pages[1] if pages else '?'} pages, autovacuum runs {vacuums}"
                )
                time.sleep(5)
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


def trickle(server: EphemeralServer) -> None:
    ctx = Ctx(server=server, quick=False, run_id="probe", systems=["pgsched"], out=Path(os.devnull))
    for gap, n in ((0.02, 300), (0.0, 3000)):
        runs = []
        for _ in range(4):
            url = ctx.fresh_db("pgsched", "trickle")
            with workers("pgsched", url, 1) as ws:
                ready_time(ws[0])
                time.sleep(0.5)
                spids = child_pids(server.proc.pid)  # the worker's backends are there now
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
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        print(
            f"{n} tasks {gap * 1000:.0f} ms apart: Postgres {med[0]:.0f} us and worker"
            f" {med[1]:.0f} us of CPU per task, {med[2]:.0f} tasks/s (medians of 4)"
        )


def idle_fleet(server: EphemeralServer) -> None:
    n = 100
    url = server.url("postgres")
    migrate.upgrade(url)
    env = {"PGSCHED_DSN": url, "PGSCHED_LOG_LEVEL": "warning"}
    fleet = [Proc([str(ROOT / ".venv" / "bin" / "pgsched"), "worker"], env=env) for _ in range(n)]
    try:
        with psycopg.connect(url, autocommit=True) as c:
            end = time.monotonic() + 120
            while time.monotonic() < end and c.execute(
                    "SELECT count(*) FROM pgsched.workers WHERE status = 'active'"
            ).fetchone()[0] < n:  # fmt: skip
                time.sleep(0.5)
            time.sleep(3)
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            for window in range(3):
                c.execute("SELECT pg_stat_statements_reset()")
                pids = child_pids(server.proc.pid)
                before, t0 = _cpu_by_kind(pids), time.monotonic()
                time.sleep(10)
                after, dt = _cpu_by_kind(pids), time.monotonic() - t0
                use = {k: (v - before.get(k, 0.0)) / dt * 100 for k, v in after.items()}
                top = sorted(use.items(), key=lambda kv: -kv[1])[:3]
                print(
                    f"window {window}: Postgres {sum(use.values()):.2f}% of a core ("
                    + ", ".join(f"{k} {v:.2f}%" for k, v in top)
                    + ")"
                )
                for calls, ms, q in c.execute(
                        "SELECT calls, round(total_exec_time::numeric, 1),"
                        " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
                        " FROM pg_stat_statements WHERE query NOT LIKE '%%pg_stat_statements%%'"
                        " ORDER BY total_exec_time DESC LIMIT 3"):  # fmt: skip
                    print(f"  {calls:5} calls {ms:7} ms  {q}")
    finally:
        for p in fleet:
            p.p.terminate()
        for p in fleet:
            p.p.wait()


def commit_cost(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
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
            print(
                f"{name:40} backend CPU per statement, min/median/max"
                f" {min(us):4.0f} {statistics.median(us):4.0f} {max(us):4.0f} us"
            )


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


def _ceiling_functions() -> str:
    claim = _written_in(Q.claim_tasks.sql, _CLAIM_VALUES)
    complete = _written_in(Q.complete_tasks.sql, _COMPLETE_VALUES).replace(
        "SELECT id FROM done", "SELECT count(*) INTO k FROM done"
    )
    return f"""
CREATE FUNCTION probe_claim(cid int) RETURNS int LANGUAGE plpgsql AS $f$
DECLARE ids bigint[]; vers bigint[];
BEGIN
    WITH c AS ({claim}) SELECT array_agg(c.id), array_agg(c.version) INTO ids, vers FROM c;
    PERFORM set_config('probe.ids', coalesce(ids, '{{}}')::text, false),
            set_config('probe.vers', coalesce(vers, '{{}}')::text, false);
    RETURN coalesce(cardinality(ids), 0);
END $f$;
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


def _pgbench(server: EphemeralServer, url: str, script: str, clients: int, seconds: int) -> float:
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


def sql_ceiling(server: EphemeralServer) -> None:
    ctx = _ctx(server)
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
            rates[name].append(_pgbench(server, url, script, clients, 3) * rows)
            ctx.drop_db(url)
    for name, r in rates.items():
        print(
            f"{name:44} min/median/max {min(r):7.0f} {statistics.median(r):7.0f}"
            f" {max(r):7.0f} rows/s"
        )


def recovery_gate(url: str) -> None:
    from pgsched.db import ADVISORY_NAMESPACE, WORKER_LOCK_NAMESPACE

    table = Q.reap_dead_workers.sql
    advisory = table.replace(
        "SELECT pgsched.try_recovery_gate() AS ok",
        "SELECT pg_try_advisory_xact_lock(%(reaper_ns)s::int, 0) AS ok",
    )
    assert advisory != table
    params = {
        "ns": ADVISORY_NAMESPACE,
        "reaper_ns": WORKER_LOCK_NAMESPACE,
        "heartbeat_timeout": 3600.0,
        "now": None,
    }
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status)"
            " SELECT 'w' || i, 'h', i, 'stopped' FROM generate_series(1, 100) i"
        )
    times: dict[str, list[float]] = {}
    for _ in range(20):
        for label, sql in (("table lock", table), ("advisory lock", advisory)):
            with psycopg.connect(url, autocommit=True) as c:
                for i in range(21):
                    t0 = time.perf_counter()
                    c.execute(sql, params).fetchall()
                    key = f"{label}, {'first call' if i == 0 else 'later calls'}"
                    times.setdefault(key, []).append(time.perf_counter() - t0)
    for key, ts in times.items():
        print(f"recovery statement, {key:28} median {statistics.median(ts) * 1000:.3f} ms")


PROBES = {"pickup": pickup, "claim-plan": claim_plan, "listen-claim": listen_claim,
          "claim-parts": claim_parts,
          "commit-idle": commit_idle,
          "bulk": bulk, "commit-cost": commit_cost, "submit-call": submit_call,
          "completion-arbiter": completion_arbiter,
          "workflow-10k": workflow_10k, "recovery-gate": recovery_gate}  # fmt: skip
ON_SERVER = {
    "schema-ab": schema_ab,
    "writers-ab": writers_ab,
    "claim-after-drain": claim_after_drain,
    "vacuum-after-drain": vacuum_after_drain,
    "sql-ceiling": sql_ceiling,
    "insert-cost": insert_cost,
    "bulk-parts": bulk_parts,
    "trickle": trickle,
    "idle-fleet": idle_fleet,
}


HOG_BODY = """import sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, "adapters")
from pgsched_worker import crunch, spin
body, arg = (spin, {"n": 4_000_000}) if sys.argv[1] == "spin" else (crunch, {"n": 400})
t = time.perf_counter()
with ThreadPoolExecutor(8) as ex:
    list(ex.map(body, [arg] * 8))
print(time.perf_counter() - t)"""


def hog_threads() -> None:
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
    for name, t in times.items():
        print(
            f"8 x {name:14} min/median/max {min(t):6.2f}"
            f" {statistics.median(t):6.2f} {max(t):6.2f} s"
        )
    for body in ("spin", "crunch"):
        ratio = statistics.median(times[f"{body} hog"]) / statistics.median(times[f"{body} alone"])
        print(f"{body}: with the hog / alone = {ratio:.2f}")


NO_SERVER = {"hog-threads": hog_threads}


def main() -> None:
    names = [*PROBES, *ON_SERVER, *NO_SERVER]
    if len(sys.argv) != 2 or sys.argv[1] not in names:
        raise SystemExit(f"usage: python bench/probes.py {{{','.join(names)}}}")
    if sys.argv[1] in NO_SERVER:
        NO_SERVER[sys.argv[1]]()
        return
    with EphemeralServer(durable=True, settings=SERVER_SETTINGS) as server:
        if sys.argv[1] in ON_SERVER:
            ON_SERVER[sys.argv[1]](server)
            return
        url = server.url("postgres")
        migrate.upgrade(url)
        PROBES[sys.argv[1]](url)


if __name__ == "__main__":
    main()
