"""G large tables (pgsched): the drain rate of B and the pickup latency of D on an empty
database, then with a large backlog of pending rows, then with as many finished rows (status
succeeded) plus their task_executions rows; reported as a ratio to the empty case.

The pickup is measured as D does, on the vacuumed table before the drain; and again right
after the drain (shown, judged by no target): until autovacuum comes, a claim there walks the
drained rows' dead entries in the ready index, on an empty table as much as beside the large
one (`python bench/probes.py claim-after-drain`), so that ratio follows whether autovacuum has
come yet.

The three tables are built once; each of three rounds (quick: one) drains a fresh copy of
each, in an order that rotates, and a round's ratios are to the same round's empty case: one
round's ratio moves with the machine.

The pending backlog is due tomorrow (run_at + 1 day): it sits in the ready index in front of
nothing, as a big scheduled backlog does, so B and D measure fresh work beside it.
"""

from __future__ import annotations

import time

import psycopg
from b_drain import drain
from d_latency import probe
from harness import Ctx, adapter, pct

from pgsched.worker import reaper

DUE = "status IN ('pending', 'running', 'retrying') AND run_at <= now() + interval '1 hour'"
# "Done" poll (every 20 ms), on the indexes: EXISTS over DUE was planned as a seq scan (it
# expects a match early, but the due rows sit behind the backlog in the heap) and took 90-125 ms
# per poll with 1M rows due tomorrow, so the poll itself held most of a core during the drain.
DUE_LEFT = (
    "SELECT (SELECT id FROM pgsched.tasks WHERE status IN ('pending', 'retrying')"
    " AND queue = 'default' AND run_at <= now() + interval '1 hour'"
    " ORDER BY priority DESC, run_at, id LIMIT 1) IS NOT NULL"
    " OR EXISTS (SELECT 1 FROM pgsched.tasks WHERE status = 'running')"
)
DUE_COUNT = f"SELECT count(*) FROM pgsched.tasks WHERE {DUE}"
PENDING = """INSERT INTO pgsched.tasks (task_type, payload, run_at)
SELECT 'noop', '{}', now() + interval '1 day' FROM generate_series(1, %s)"""
FINISHED = """WITH t AS (
    INSERT INTO pgsched.tasks (task_type, status, attempts, started_at, finished_at, version)
    SELECT 'noop', 'succeeded', 1, now(), now(), 2 FROM generate_series(1, %s)
    RETURNING id)
INSERT INTO pgsched.task_executions (task_id, attempt, worker, started_at, outcome, duration_ms)
SELECT id, 1, 'old-worker', now(), 'success', 0.1 FROM t"""


# Rows the prune rate is measured over: the first ~200k of the 1.1M expired ones, enough for a
# rate without spending the run on pruning them all.
PRUNE_SAMPLE = 200_000


def prune_rate(ctx: Ctx, url: str, rep: int) -> None:
    """How fast retention pruning removes the finished rows and their attempt rows: the
    worker's own statement and batch size, one connection, as if a day had passed."""
    with psycopg.connect(url, autocommit=True) as c:
        later = c.execute("SELECT now() + interval '1 day'").fetchone()[0]
        t0, rows = time.perf_counter(), 0
        while rows < PRUNE_SAMPLE and (n := reaper.prune(c, retention=3600, now=later)):
            rows += n
        dt = time.perf_counter() - t0
    ctx.record(
        "G",
        "pgsched",
        "prune_rate",
        rows / dt,
        "rows/s",
        rep,
        rows=rows,
        seconds=round(dt, 2),
        batch=reaper.PRUNE_BATCH,
    )


def run(ctx: Ctx, rep: int) -> None:
    """Runs once per full run (run.py's ONCE) and repeats inside: the three tables are built
    once, and every round drains a fresh copy of each, in an order that rotates per round;
    each round's ratios are to that round's empty case (quick: one round)."""
    if "pgsched" not in ctx.systems:
        return
    big = 100_000 if ctx.quick else 1_000_000
    n = 20_000 if ctx.quick else 100_000
    labels = {"empty": None, "pending": PENDING, "finished": FINISHED}
    seeds: dict[str, str] = {}
    try:
        for label, sql in labels.items():
            url = ctx.fresh_db("pgsched", f"g_seed_{label}")
            seeds[label] = url.rsplit("/", 1)[1]
            with psycopg.connect(url, autocommit=True) as c:
                if sql:
                    c.execute(sql, (big,))
                c.execute("VACUUM ANALYZE")
        for r in range(1 if ctx.quick else 3):
            order = list(labels)[r % 3 :] + list(labels)[: r % 3]
            got: dict[str, dict[str, float]] = {}
            for label in order:
                with ctx.cell("G", "pgsched", r):
                    url = ctx.copy_db(seeds[label], f"g_{label}")
                    got[label] = one_table(ctx, url, label, big, n, r, prune=r == 0)
            for label in ("pending", "finished"):
                if "empty" in got and label in got:
                    for metric in ("drain_1w", "latency_api_p50"):
                        ratio = got[label][metric] / got["empty"][metric]
                        ctx.record("G", "pgsched", f"{metric}_vs_empty_{label}", ratio, "ratio", r)
    finally:
        for name in seeds.values():
            ctx.drop_db(ctx.server.url(name))


def one_table(
    ctx: Ctx, url: str, label: str, big: int, n: int, rep: int, prune: bool
) -> dict[str, float]:
    """D's pickup, B's drain of n tasks and the pickup right after, on one copy of a table."""
    try:
        # D's pickup beside the large table, as D measures it: an idle worker, a vacuumed table.
        lat, _ = probe(ctx, "pgsched", url, 100, "20")
        p50 = pct(lat, 50)
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
            c.execute("CHECKPOINT")
        rate = drain(ctx, "pgsched", url, n, 1, DUE_LEFT, DUE_COUNT)["rate"]
        # The same pickup right after the drain, before autovacuum has removed the drained
        # rows' entries from the ready index (shown, judged by no target).
        after, _ = probe(ctx, "pgsched", url, 100, "20")
        ctx.record("G", "pgsched", f"drain_1w_{label}", rate, "tasks/s", rep, rows=big)
        ctx.record("G", "pgsched", f"latency_api_p50_{label}", p50, "ms", rep)
        ctx.record("G", "pgsched", f"latency_api_p99_{label}", pct(lat, 99), "ms", rep)
        ctx.record(
            "G", "pgsched", f"latency_api_p50_after_drain_{label}", pct(after, 50), "ms", rep
        )
        if prune and label == "finished":
            prune_rate(ctx, url, rep)
        return {"drain_1w": rate, "latency_api_p50": p50}
    finally:
        ctx.drop_db(url)
