"""J dashboard: the web dashboard's page times on a large history, with the plans.

A database of 1M task rows and 100k attempt rows, the way a long-running deployment leaves
them: statuses interleaved over 24 h of ids (90% succeeded, 5% failed with a dead-letter entry
each, 4% pending of which a quarter scheduled later, 0.5% retrying, 0.5% running), 1,000
three-task workflows, the newest 100k tasks' attempts spread over the last 24 h (5% failed),
20 live workers, 20 schedules and 10,000 alert notifications; VACUUM ANALYZE. `pgsched serve`
runs in its own process; each page is fetched REQUESTS times over loopback by one keep-alive
client, and its wall time (server time plus a loopback round trip, so an upper bound on the
server time) recorded as p50/p99. The target: every page's p50 < 300 ms (bench/report.py
names the slowest).

The plans: every dashboard statement (pgsched/sql/dashboard.sql, and the existing ones the
pages use) under EXPLAIN (ANALYZE, BUFFERS), kept in the record and written to
bench/dashboard-plans.md.
"""

from __future__ import annotations

import os
import statistics
import time

import httpx
import psycopg
from harness import BENCH, Ctx, pct, serving

from pgsched.admin.deadletter import encode_dlq_cursor
from pgsched.sql import Q

ROWS = 1_000_000
ATTEMPTS = 100_000
REQUESTS = {True: 10, False: 40}


def run(ctx: Ctx, rep: int) -> None:
    if "pgsched" not in ctx.systems:
        return
    with ctx.cell("J", "pgsched", rep):
        pages(ctx, rep)


# Bench set-up, not product code: rows written directly, statuses interleaved by id.
FILL = [
    """
    INSERT INTO pgsched.tasks (queue, task_type, payload, status, attempts, max_attempts, run_at,
                               created_at, started_at, finished_at, assigned_worker, last_error,
                               result)
    SELECT 'q' || (g %% 4), 't' || (g %% 10), jsonb_build_object('n', g), s.status,
           CASE WHEN s.status IN ('pending') THEN 0 ELSE 1 END, 3,
           CASE WHEN s.status = 'pending' AND g %% 4 = 0 THEN now() + interval '1 hour'
                ELSE c.at END,
           c.at,
           CASE WHEN s.status IN ('succeeded', 'failed', 'running') THEN c.at END,
           CASE WHEN s.status IN ('succeeded', 'failed') THEN c.at + interval '1 second' END,
           CASE WHEN s.status = 'running' THEN 'bench-w' || (g %% 20) END,
           CASE WHEN s.status IN ('failed', 'retrying')
                THEN 'ValueError: upstream said ' || (g %% 997) || ' for item ' || g END,
           CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('ok', true) END
    FROM generate_series(1, %(n)s) g
    CROSS JOIN LATERAL (SELECT now() - (%(n)s - g) * interval '86 milliseconds' AS at) c
    CROSS JOIN LATERAL (SELECT CASE
        WHEN g %% 200 < 180 THEN 'succeeded'
        WHEN g %% 200 < 190 THEN 'failed'
        WHEN g %% 200 < 198 THEN 'pending'
        WHEN g %% 200 = 198 THEN 'retrying'
        ELSE 'running' END AS status) s
    """,
    """
    INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts, last_error,
                                     failed_at)
    SELECT id, queue, task_type, payload, attempts, last_error, finished_at
    FROM pgsched.tasks WHERE status = 'failed'
    """,
    """
    INSERT INTO pgsched.task_executions (task_id, attempt, worker, started_at, finished_at,
                                         outcome, duration_ms, error)
    SELECT t.id, 1, 'bench-w' || (t.id %% 20),
           now() - (%(attempts)s - r.n) * interval '864 milliseconds' - interval '1 second',
           now() - (%(attempts)s - r.n) * interval '864 milliseconds',
           CASE WHEN t.id %% 20 = 0 THEN 'failure' ELSE 'success' END,
           (t.id %% 5000)::float8,
           CASE WHEN t.id %% 20 = 0 THEN 'ValueError: bench' END
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
          FROM (SELECT id FROM pgsched.tasks WHERE status IN ('succeeded', 'failed')
                ORDER BY id DESC LIMIT %(attempts)s) newest) r
    JOIN pgsched.tasks t ON t.id = r.id
    """,
    """
    INSERT INTO pgsched.workflows (name, status, created_at)
    SELECT 'wf-' || g, 'running', now() - g * interval '1 minute' FROM generate_series(1, 1000) g
    """,
    """
    INSERT INTO pgsched.tasks (queue, task_type, status, workflow_id, workflow_node, attempts,
                               finished_at, started_at)
    SELECT 'default', 'step', x.status, w.id, x.node, x.attempts, x.fin, x.fin
    FROM pgsched.workflows w
    CROSS JOIN LATERAL (VALUES ('a', 'succeeded', 1, now()), ('b', 'pending', 0, NULL),
                               ('c', 'blocked', 0, NULL)) x(node, status, attempts, fin)
    """,
    """
    INSERT INTO pgsched.task_dependencies (task_id, depends_on)
    SELECT c.id, p.id FROM pgsched.tasks c
    JOIN pgsched.tasks p ON p.workflow_id = c.workflow_id
     AND (c.workflow_node, p.workflow_node) IN (('b', 'a'), ('c', 'b'))
    WHERE c.workflow_id IS NOT NULL
    """,
    """
    INSERT INTO pgsched.workers (name, host, pid, status, queues, cpu_usage, memory_usage,
                                 current_task_count, max_task_capacity, last_heartbeat)
    SELECT 'bench-w' || g, 'host-' || (g % 5), 1000 + g, 'active', '{q0,q1,q2,q3}', 40 + g,
           30 + g, g % 8, 8, now()
    FROM generate_series(0, 19) g
    """,
    """
    INSERT INTO pgsched.alert_notifications (uid, rule, event, key, count, channels, body,
                                             created_at)
    SELECT gen_random_uuid(), 'dead-letters', 'task.dead_lettered', 'q' || mod(g, 4), 1,
           '{ops-webhook,oncall-mail}', jsonb_build_object('summary', 'task ' || g || ' failed'),
           now() - g * interval '8 seconds'
    FROM generate_series(1, 10000) g
    """,
    """
    INSERT INTO pgsched.schedules (name, every, task_type, next_tick, last_tick)
    SELECT 'sched-' || g, g * interval '1 minute', 'noop', now() + g * interval '1 minute', now()
    FROM generate_series(1, 20) g
    """,
]


def _fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        # Remove the 3,000 workflow rows from the main fill so the table holds 1M rows.
        params = {"n": ROWS - 3000, "attempts": ATTEMPTS}
        for sql in FILL:
            c.execute(sql, params if "%(" in sql else None)
        c.execute("VACUUM ANALYZE")


def _plans(url: str, samples: dict[str, int]) -> list[tuple[str, str, float]]:
    """(statement, plan text, database ms) for each statement the pages run."""
    from datetime import timedelta

    cases = [
        ("dash_queues", Q.dash_queues.sql, {"now": None}),
        (
            "dash_series (24 h by 1 min, work_mem 32MB as Admin.throughput_series sets it)",
            Q.dash_series.sql,
            {"now": None, "window": timedelta(hours=24), "bucket": timedelta(minutes=1)},
        ),
        (
            "dash_tasks (newest page, no filter)",
            Q.dash_tasks.sql,
            _task_params(samples["hi"] + 1, samples["hi"] + 1 - 200_000),
        ),
        (
            "dash_tasks (failed, error text matching 1 in 997, one 200k-id window)",
            Q.dash_tasks.sql,
            _task_params(
                samples["hi"] + 1,
                samples["hi"] + 1 - 200_000,
                status="failed",
                error="%said 500 for%",
            ),
        ),
        ("dash_workflows", Q.dash_workflows.sql, {"before": None, "status": None, "limit": 50}),
        (
            "dash_dead_letter (first page)",
            Q.dash_dead_letter.sql,
            _dlq_params("infinity", 2**63 - 1),
        ),
        (
            "dash_dead_letter (page at the middle, queue q2)",
            Q.dash_dead_letter.sql,
            _dlq_params(*samples["dlq_middle"], queue="q2"),
        ),
        (
            "alert_notifications_recent",
            Q.alert_notifications_recent.sql,
            {"limit": 8, "rule": None},
        ),
        (
            "dlq_purge_count",
            Q.dlq_purge_count.sql,
            {"older_than": None, "queue": None, "task_type": None, "now": None},
        ),
        ("workers_list", Q.workers_list.sql, {"all": False, "now": None}),
        ("get_task", Q.get_task.sql, {"id": samples["task"]}),
        ("task_history", Q.task_history.sql, {"id": samples["task"]}),
        ("workflow_tasks", Q.workflow_tasks.sql, {"id": samples["workflow"]}),
    ]
    out = []
    with psycopg.connect(url, autocommit=True) as c:
        for name, sql, params in cases:
            c.execute("SET work_mem = '32MB'" if "work_mem" in name else "RESET work_mem")
            rows = c.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql, params).fetchall()
            text = "\n".join(r[0] for r in rows)
            ms = sum(
                float(line.split(":")[1].strip().split()[0])
                for line in text.splitlines()
                if line.startswith(("Planning Time", "Execution Time"))
            )
            out.append((name, text, ms))
    return out


def _dlq_params(at: object, last_id: int, queue: str | None = None) -> dict:
    return {"at": at, "id": last_id, "queue": queue, "task_type": None, "limit": 51}


def _task_params(before: int, floor: int, **kw: object) -> dict:
    p = {
        "before": before,
        "floor": floor,
        "status": None,
        "queue": None,
        "task_type": None,
        "since": None,
        "until": None,
        "error": None,
        "limit": 50,
    }
    p.update(kw)
    return p


def pages(ctx: Ctx, rep: int) -> None:
    from pgsched import migrate

    url = ctx.fresh_db("pgsched", "jdash")
    migrate.upgrade(url)
    t0 = time.monotonic()
    _fill(url)
    print(f"   J: 1M tasks, 100k attempts in {time.monotonic() - t0:.0f}s", flush=True)
    with psycopg.connect(url) as c:
        hi = c.execute("SELECT max(id) FROM pgsched.tasks").fetchone()[0]
        task = c.execute(
            "SELECT task_id FROM pgsched.task_executions ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        failed = c.execute("SELECT max(id) FROM pgsched.tasks WHERE status = 'failed'").fetchone()[
            0
        ]
        workflow = c.execute("SELECT max(id) FROM pgsched.workflows").fetchone()[0]
        middle = c.execute(
            "SELECT failed_at, id FROM pgsched.dead_letter ORDER BY failed_at DESC, id DESC"
            " OFFSET (SELECT count(*) / 2 FROM pgsched.dead_letter) LIMIT 1"
        ).fetchone()
    samples = {"hi": hi, "task": task, "workflow": workflow, "dlq_middle": middle}
    dlq_cursor = encode_dlq_cursor({"failed_at": middle[0], "dead_letter_id": middle[1]})
    plans = _plans(url, samples)
    for name, text, ms in plans:
        ctx.record("J", "pgsched", f"db ms {name}", ms, "ms", rep, plan=text)
    _write_plans(ctx, plans)

    paths = {
        "overview": "/ui/",
        "tasks": "/ui/tasks",
        "tasks deep (cursor at the middle)": f"/ui/tasks?cursor={hi // 2}",
        "tasks failed + error text": "/ui/tasks?status=failed&error=said+500+for",
        "tasks queue + type + since 2h": "/ui/tasks?queue=q1&type=t3&since=2h",
        "task detail": f"/ui/tasks/{task}",
        "failed task detail": f"/ui/tasks/{failed}",
        "dead letter": "/ui/dead-letter",
        "dead letter filtered": "/ui/dead-letter?queue=q2",
        "dead letter deep (cursor at the middle)": f"/ui/dead-letter?cursor={dlq_cursor}",
        "workers": "/ui/workers",
        "schedules": "/ui/schedules",
        "workflows": "/ui/workflows",
        "workflow": f"/ui/workflows/{workflow}",
    }
    try:
        with serving(url) as base:
            _fetch(ctx, rep, base, paths)
    finally:
        ctx.drop_db(url)


def _fetch(ctx: Ctx, rep: int, base: str, paths: dict[str, str]) -> None:
    lat: dict[str, list[float]] = {k: [] for k in paths}
    with httpx.Client(base_url=base, timeout=30) as http:
        for path in paths.values():  # warm: pool connections, templates, plans
            http.get(path).raise_for_status()
        for i in range(REQUESTS[ctx.quick]):
            names = list(paths)
            k = i % len(names)
            for name in names[k:] + names[:k]:
                a = time.perf_counter()
                r = http.get(paths[name])
                d = 1000 * (time.perf_counter() - a)
                r.raise_for_status()
                lat[name].append(d)
    worst = 0.0
    for name, xs in lat.items():
        p50 = statistics.median(xs)
        worst = max(worst, p50)
        ctx.record("J", "pgsched", f"page p50 {name}", p50, "ms", rep, p99=pct(xs, 99))
    ctx.record("J", "pgsched", "slowest page p50 (1M tasks, 100k attempts)", worst, "ms", rep)


def _write_plans(ctx: Ctx, plans: list[tuple[str, str, float]]) -> None:
    out = [
        "# Dashboard statements on 1M task rows and 100k attempt rows",
        "",
        f"Written by `bench/j_dashboard.py` (run {ctx.run_id}, PostgreSQL at "
        f"{os.environ.get('PGSCHED_PG_BIN', 'the bundled server')}): EXPLAIN (ANALYZE, BUFFERS) "
        "of each statement the dashboard's pages run, on the data that cell builds.",
        "",
    ]
    for name, text, ms in plans:
        out += [f"## {name}: {ms:.1f} ms", "", "```", text, "```", ""]
    suffix = "-system" if os.environ.get("PGSCHED_PG_BIN") else ""
    (BENCH / f"dashboard-plans{suffix}.md").write_text("\n".join(out))
