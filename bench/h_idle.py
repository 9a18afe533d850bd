"""H idle fleet (pgsched): many idle `pgsched worker` processes on one database.

Measured: Postgres CPU while the fleet idles (time on the CPU of the postmaster and its
children, harness.cpu_seconds, over three 10 s windows in a row; quick: one of 3 s),
connections held, claim statements run per single insert (calls of the claim statement in
pg_stat_statements in the 0.5 s after it; the most over 5 inserts), and worker RSS at rest
and during a drain.
"""

from __future__ import annotations

import statistics
import time

import psycopg
from harness import PGSCHED_PY, ROOT, Ctx, Proc, adapter, child_pids, cpu_seconds, wait_done

CLAIM_LIKE = "%FOR UPDATE SKIP LOCKED%"


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def claim_calls(c: psycopg.Connection) -> int:
    return int(
        c.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query LIKE %s AND s.query LIKE %s",
            (CLAIM_LIKE, "%UPDATE pgsched.tasks t%"),
        ).fetchone()[0]
    )


def run(ctx: Ctx, rep: int) -> None:
    if "pgsched" not in ctx.systems:
        return
    n = 10 if ctx.quick else 100
    idle_s = 3 if ctx.quick else 10  # CPU sampling window
    with ctx.cell("H", "pgsched", rep):
        url = ctx.fresh_db("pgsched", "h")
        dbname = url.rsplit("/", 1)[1]
        fleet: list[Proc] = []
        try:
            env = {"PGSCHED_DSN": url, "PGSCHED_LOG_LEVEL": "warning"}
            cmd = [PGSCHED_PY, "-m", "pgsched.cli.app", "worker"]
            if (ROOT / ".venv" / "bin" / "pgsched").exists():
                cmd = [str(ROOT / ".venv" / "bin" / "pgsched"), "worker"]
            for _ in range(n):
                fleet.append(Proc(cmd, env=env))
            with psycopg.connect(url, autocommit=True) as c:
                end = time.monotonic() + 240
                active = 0
                while time.monotonic() < end:
                    active = c.execute(
                        "SELECT count(*) FROM pgsched.workers WHERE status = 'active'"
                    ).fetchone()[0]
                    if active >= n or all(p.p.poll() is not None for p in fleet):
                        break
                    time.sleep(0.5)
                alive = sum(p.p.poll() is None for p in fleet)
                ctx.record(
                    "H", "pgsched", "workers_started", active, "workers", rep, asked=n, alive=alive
                )
                time.sleep(3)  # past start-up
                # the idle windows: Postgres CPU, and what the fleet runs meanwhile; the full
                # run takes three in a row (the figure sits near its target and one window
                # moved by ±1 point between runs), so the cell has a min/median/max
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                base = 0.0
                for window in range(1 if ctx.quick else 3):
                    c.execute("SELECT pg_stat_statements_reset()")
                    pids = child_pids(ctx.server.proc.pid)
                    t0, c0 = time.monotonic(), cpu_seconds(pids)
                    time.sleep(idle_s)
                    dt = time.monotonic() - t0
                    pct = (cpu_seconds(pids) - c0) / dt * 100
                    base = claim_calls(c) * 5 / dt  # idle claims per 5 s
                    top = c.execute(
                        "SELECT calls, round(total_exec_time::numeric, 1), "
                        "left(regexp_replace(query, '\\s+', ' ', 'g'), 70) "
                        "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                        "WHERE d.datname = current_database() "
                        "ORDER BY total_exec_time DESC LIMIT 4"
                    ).fetchall()
                    ctx.record(
                        "H",
                        "pgsched",
                        "idle_pg_cpu",
                        pct,
                        "%",
                        rep,
                        window=window,
                        workers=active,
                        window_s=round(dt, 1),
                        top_statements=[[int(a), float(b), q] for a, b, q in top],
                    )
                conns = (
                    c.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
                    ).fetchone()[0]
                    - 1
                )
                ctx.record("H", "pgsched", "connections", conns, "conns", rep, workers=active)
                rss = [rss_mib(p.p.pid) for p in fleet if p.p.poll() is None]
                ctx.record("H", "pgsched", "worker_rss_idle", statistics.median(rss), "MiB", rep)
                # Claims per insert: 5 single inserts 1 s apart, the claim statements of the
                # 0.5 s after each counted on their own; the figure is the most for one insert.
                # A first insert, not counted, restarts the waker's fallback poll (every
                # poll_interval after its last empty claim, so none falls among the counted
                # ones), which would otherwise count as a claim for the insert.
                c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                time.sleep(1)
                per_insert = []
                for _ in range(5):
                    c.execute("SELECT pg_stat_statements_reset()")
                    c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
                    time.sleep(0.5)
                    per_insert.append(claim_calls(c))
                    time.sleep(0.5)
                ctx.record(
                    "H",
                    "pgsched",
                    "claims_per_insert",
                    max(per_insert),
                    "claims",
                    rep,
                    per_insert=per_insert,
                    idle_claims_per_5s=round(base, 2),
                )
                # RSS during a drain of 20,000 tasks spread over the fleet
                t_drain = time.monotonic()
                adapter("pgsched", "enqueue", url, "20000", "bulk")
                peak: list[float] = []
                end = time.monotonic() + (10 if ctx.quick else 30)  # healthy: a few seconds
                done = False
                while time.monotonic() < end and not done:
                    peak = [
                        max(a, rss_mib(p.p.pid))
                        for a, p in zip(peak or [0.0] * len(fleet), fleet, strict=True)
                    ]
                    done = wait_done(url, "pgsched", 0.2) is not None
                took_part, ran = c.execute(
                    "SELECT count(DISTINCT worker), count(*) FROM pgsched.task_executions"
                ).fetchone()
                elapsed = time.monotonic() - t_drain
                ctx.record(
                    "H",
                    "pgsched",
                    "fleet_drain_20k",
                    (ran - 5) / elapsed,
                    "tasks/s",
                    rep,
                    drained=done,
                    seconds=round(elapsed, 2),
                    workers_that_ran_tasks=took_part,
                )
                ctx.record(
                    "H",
                    "pgsched",
                    "worker_rss_drain_peak",
                    statistics.median([x for x in peak if x > 0]),
                    "MiB",
                    rep,
                    drained=done,
                )
        finally:
            for p in fleet:
                p.signal(15)
            for p in fleet:
                p.stop(5)
            ctx.drop_db(url)
