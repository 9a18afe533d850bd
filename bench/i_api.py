"""I api: `pgsched serve` against the direct client, and the cost of a /metrics scrape.

Submits: one task per request (POST /api/v1/tasks) and 100 per request (POST
/api/v1/tasks/batch), from one keep-alive httpx client in this process against `pgsched serve`
in its own process, side by side with the same work through pgsched.client.Client (submit, and
submit_batch of 100) on one connection; each for a fixed window, alternated in chunks so the
machine's noise falls on both. Reported: tasks/s and the p50/p99 of one call (request or
client call). pgsched only: the peers have no HTTP API.

Scrape: a database of 1M task rows (990k succeeded with an attempt each, 10k pending over 4
queues), ANALYZEd; Admin.metrics() (the two statements behind /metrics) timed SCRAPES times,
the database time of the scrape statement read from EXPLAIN (ANALYZE) and its plan kept in the
record. The target is < 10 ms of database time per scrape.
"""

from __future__ import annotations

import statistics
import time

import httpx
import psycopg
from harness import Ctx, pct, serving

from pgsched.admin import Admin
from pgsched.client import Client
from pgsched.sql import Q

WINDOW_S = {True: 1.0, False: 4.0}
CHUNK = 50
BATCH = 100
SCRAPES = {True: 20, False: 100}
ROWS = 1_000_000


def run(ctx: Ctx, rep: int) -> None:
    if "pgsched" not in ctx.systems:
        return
    with ctx.cell("I", "pgsched", rep):
        submits(ctx, rep)
    with ctx.cell("I", "pgsched", rep):
        scrape(ctx, rep)


def submits(ctx: Ctx, rep: int) -> None:
    from pgsched import migrate

    url = ctx.fresh_db("pgsched", "i")
    migrate.upgrade(url)
    try:
        with serving(url) as base:
            run_submits(ctx, rep, url, base)
    finally:
        ctx.drop_db(url)


def run_submits(ctx: Ctx, rep: int, url: str, base: str) -> None:
    window = WINDOW_S[ctx.quick]
    with httpx.Client(base_url=base) as http, Client(url) as client:
        one = {"taskType": "noop", "payload": {"n": 1}}
        batch = {"tasks": [one] * BATCH}
        ways = {
            "http_one": lambda: http.post("/api/v1/tasks", json=one).raise_for_status(),
            "client_one": lambda: client.submit("noop", {"n": 1}),
            "http_batch100": lambda: http.post(
                "/api/v1/tasks/batch", json=batch
            ).raise_for_status(),
            "client_batch100": lambda: client.submit_batch("noop", [{"n": 1}] * BATCH),
        }
        lat: dict[str, list[float]] = {k: [] for k in ways}
        spent = dict.fromkeys(ways, 0.0)
        t0 = time.monotonic()
        rnd = 0
        while time.monotonic() - t0 < window * len(ways):
            names = list(ways)
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                fn = ways[name]
                for _ in range(CHUNK if "one" in name else CHUNK // 10):
                    a = time.perf_counter()
                    fn()
                    d = time.perf_counter() - a
                    lat[name].append(d)
                    spent[name] += d
            rnd += 1
    for name, xs in lat.items():
        per_call = BATCH if "batch" in name else 1
        ctx.record("I", "pgsched", f"{name} tasks/s", len(xs) * per_call / spent[name], "/s", rep)
        ctx.record("I", "pgsched", f"{name} p50", 1000 * pct(xs, 50), "ms", rep)
        ctx.record("I", "pgsched", f"{name} p99", 1000 * pct(xs, 99), "ms", rep)


def scrape(ctx: Ctx, rep: int) -> None:
    from pgsched import migrate

    url = ctx.fresh_db("pgsched", "iscrape")
    migrate.upgrade(url)
    try:
        with psycopg.connect(url, autocommit=True) as c:
            # Bench set-up, not product code: rows written directly, the way a long-running
            # deployment leaves them (finished tasks with their attempts, a small backlog).
            done = ROWS - 10_000
            c.execute(
                "INSERT INTO pgsched.tasks (queue, task_type, status, attempts, finished_at,"
                " started_at) SELECT 'q' || (g %% 4), 'noop', 'succeeded', 1, now(), now()"
                " FROM generate_series(1, %s) g",
                (done,),
            )
            c.execute(
                "INSERT INTO pgsched.task_executions (task_id, attempt, outcome, duration_ms)"
                " SELECT id, 1, 'success', (id % 5000)::float8 FROM pgsched.tasks"
            )
            c.execute(
                "INSERT INTO pgsched.tasks (queue, task_type) SELECT 'q' || (g % 4), 'noop'"
                " FROM generate_series(1, 10000) g"
            )
            c.execute("VACUUM ANALYZE")
            sql = Q.metrics_scrape.sql
            plan_rows = c.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql, {"now": None}
            ).fetchall()
            plan = "\n".join(r[0] for r in plan_rows)
            db_ms = []
            for _ in range(SCRAPES[ctx.quick]):
                out = c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, {"now": None}).fetchone()
                db_ms.append(out[0][0]["Execution Time"] + out[0][0]["Planning Time"])
        with Client(url) as client:
            admin = Admin(client)
            admin.metrics()
            wall = []
            for _ in range(SCRAPES[ctx.quick]):
                a = time.perf_counter()
                admin.metrics()
                wall.append(1000 * (time.perf_counter() - a))
        ctx.record(
            "I",
            "pgsched",
            "scrape db time p50 (1M rows)",
            statistics.median(db_ms),
            "ms",
            rep,
            p99=pct(db_ms, 99),
            plan=plan,
        )
        ctx.record(
            "I",
            "pgsched",
            "scrape Admin.metrics p50 (1M rows)",
            statistics.median(wall),
            "ms",
            rep,
            p99=pct(wall, 99),
        )
    finally:
        ctx.drop_db(url)
