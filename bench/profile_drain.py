"""The drain-profile probe (`python bench/probes.py drain-profile`): where one pgsched drain's
time goes.

One worker (the bench's: concurrency 500, built-in inline noop) drains 100,000 no-op tasks twice,
each time from a copy of the same filled database:

1. unobserved except for CPU counters: wall time, the worker process's CPU and the Postgres
   server's CPU (postmaster and all its children), per task; and pg_stat_statements (claim,
   completion and every other statement: calls, rows per call, execution time per task);
2. with py-spy (from bench/.venv-peers) sampling the worker at 100 Hz without pausing it
   (--nonblocking: stopping 500 executor threads per sample was too slow), active samples only
   (a thread waiting on a socket or a lock is not counted): where the worker's Python CPU goes,
   by thread and by frame (self time).
"""

from __future__ import annotations

import collections
import re
import subprocess
import time

import psycopg
from harness import BENCH, Probe, child_pids, cpu_seconds, ready_time, wait_done, worker

PYSPY = BENCH / ".venv-peers" / "bin" / "py-spy"
# leaf frames of threads blocked in SimpleQueue.get() (C code, no GIL): idle, not CPU
PARKED = ("Executor._pool_loop ", "Completer._run ")
N = 100_000


def kind(query: str) -> str:
    q = " ".join(query.split())
    if "FOR UPDATE SKIP LOCKED" in q and "UPDATE pgsched.tasks t" in q:
        return "claim"
    if q.startswith("WITH u AS") or "task_executions" in q:
        return "completion"
    if "pgsched.workers" in q:
        return "heartbeat / workers"
    return "other"


def drain_profile(p: Probe) -> None:
    ctx, n, postmaster = p.ctx, N, p.server.proc.pid
    # -- 1: CPU counters and pg_stat_statements, no sampler attached ---------------------------
    url = ctx.filled_db("pgsched", "prof", n)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        c.execute("SELECT pg_stat_statements_reset()")
    w = worker("pgsched", url)
    t0 = ready_time(w)
    pg0, w0 = cpu_seconds(child_pids(postmaster)), cpu_seconds([w.p.pid])
    t_end = wait_done(url, "pgsched", 120)
    pg1, w1 = cpu_seconds(child_pids(postmaster)), cpu_seconds([w.p.pid])
    dt = (t_end or time.time()) - t0
    w.stop()
    us = 1e6 / n
    p.record(f"drain of {n:,} tasks, no sampler", n / dt, "tasks/s", drained=t_end is not None)
    p.record("wall time per task", dt * us, "µs")
    p.record("worker process CPU per task", (w1 - w0) * us, "µs", cores=(w1 - w0) / dt)
    p.record(
        "PostgreSQL CPU per task, all backends", (pg1 - pg0) * us, "µs", cores=(pg1 - pg0) / dt
    )
    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        ).fetchall()
    by: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    for q, calls, ms, nrows in rows:
        if "pg_stat_statements" in q or "EXISTS (SELECT 1 FROM pgsched.tasks" in q:
            continue  # this probe's own statements and the harness's done-poll
        b = by[kind(q)]
        b[0] += calls
        b[1] += ms
        b[2] += nrows
    for k in ("claim", "completion", "heartbeat / workers", "other"):
        calls, ms, nrows = by.get(k, [0, 0.0, 0])
        if calls:
            p.record(f"statement {k}: execution per task", ms * 1000 / n, "µs", calls=calls,
                     rows_per_call=nrows / calls, share_of_wall=ms / 1000 / dt)  # fmt: skip
    ctx.drop_db(url)
    if PYSPY.exists():
        _sampled(p, n)


def _sampled(p: Probe, n: int) -> None:
    """-- 2: the same drain with py-spy sampling the worker."""
    ctx = p.ctx
    url = ctx.filled_db("pgsched", "prof", n)
    w = worker("pgsched", url)
    t0 = ready_time(w)
    raw = BENCH / ".work" / "pyspy.txt"
    raw.unlink(missing_ok=True)
    spy_args = ["--format", "raw", "-o", str(raw), "--rate", "100", "--threads", "--nonblocking"]
    spy = subprocess.Popen(
        [str(PYSPY), "record", "--pid", str(w.p.pid), *spy_args, "--duration", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # py-spy attaches
    t_end = wait_done(url, "pgsched", 120)
    dt2 = (t_end or time.time()) - t0
    spy.send_signal(2)
    spy.wait(30)
    w.stop()
    ctx.drop_db(url)
    if not raw.exists():
        return
    self_time: collections.Counter[tuple[str, str]] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = parked = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        c = int(count)
        if any(frames[-1].startswith(x) for x in PARKED):
            parked += c  # blocked in a queue's get: py-spy cannot tell it is idle
            continue
        total += c
        th = re.sub(r"^thread \(\d+\): ", "", frames[0]).strip()  # py-spy: "thread (TID): NAME"
        threads[th[:50]] += c
        self_time[(th[:30], re.sub(r" \(/.*?site-packages/", " (", frames[-1]))] += c
    p.record("drain with py-spy sampling at 100 Hz", n / dt2, "tasks/s", active_samples=total,
             parked_samples=parked)  # fmt: skip
    for name, c in threads.most_common(6):
        p.record(f"py-spy, thread {name}: all its frames", 100 * c / total, "% of active samples")
    for (th, name), c in self_time.most_common(10):
        p.record(f"py-spy, thread {th}, self time: {name[:100]}", 100 * c / total,
                 "% of active samples")  # fmt: skip
