"""K held snapshot: steady load while another session of the same database holds a snapshot.

One producer enqueues batches of 100 on a fixed schedule (RATE tasks/s) for a window (full
300 s, quick 60 s) to one worker, while a session of the system's database sits in a
REPEATABLE READ transaction that has read a row and taken a transaction id: its xmin holds
back every vacuum of that database, so no row version deleted or updated after it began can
be removed. Completed tasks are sampled (produced minus unfinished, SAMPLES times over the
window) with the CPU time of the server's processes; the figures:

- the completed rate and the server's CPU per completed task in the window's first and last
  tenth, and the last over the first;
- the backlog when the producer stops;
- the dead row versions (pg_stat_user_tables.n_dead_tup) and the total size (heap, indexes,
  TOAST) of the system's tables when the snapshot is taken, when the producer stops, and
  after the snapshot is released and VACUUM has run on them;
- for pgsched, its hot table (pgsched.tasks; finished tasks move to pgsched.finished_tasks)
  alone, heap and indexes apart, at the same moments and two more: once autovacuum has
  processed it after the release (with no VACUUM of ours before; waited for up to
  AUTOVACUUM_WAIT_S, and how long it took), and after the rebuild `pgsched doctor` names
  for indexes left at their high-water mark (REINDEX TABLE CONCURRENTLY).

The rate is one that PGQueuer, graphile-worker and pgsched keep up with at batches of 100 (C);
procrastinate (~0.1k/s) and Chancy (1.6-1.9k/s in C) are left out by default: a backlog they
build at this rate says nothing about bloat.
"""

from __future__ import annotations

import time

import psycopg
from harness import SYSTEMS, Ctx, Proc, child_pids, cpu_seconds, ready_time, workers

RATE = 2000  # tasks/s
BATCH = 100
WINDOW_S = {True: 60, False: 300}
SAMPLES = 30
SYSTEMS_K = ("pgsched", "pgqueuer", "graphile")
AUTOVACUUM_WAIT_S = 300  # autovacuum_naptime is 60 s: its first pass comes well inside this

# The system's own tables (pgsched's setup also makes public.bench_raw, which is not pgsched's).
TABLES = {
    "pgsched": "schemaname = 'pgsched'",
    "pgqueuer": "schemaname = 'public' AND relname LIKE 'pgqueuer%'",
    "procrastinate": "schemaname = 'public' AND relname LIKE 'procrastinate%'",
    "chancy": "schemaname = 'public' AND relname LIKE 'chancy%'",
    "graphile": "schemaname = 'graphile_worker'",
}


# The table a claim and a completion work on, where the system has one apart from its history.
HOT_TABLE = {"pgsched": "pgsched.tasks"}


def tables(conn: psycopg.Connection, system: str) -> dict[str, tuple[int, int, int]]:
    """(dead row versions, live rows, total bytes) of each of the system's tables."""
    rows = conn.execute(
        "SELECT schemaname || '.' || relname, n_dead_tup, n_live_tup, "
        "pg_total_relation_size(relid) "
        f"FROM pg_stat_user_tables WHERE {TABLES[system]} ORDER BY 1"
    ).fetchall()
    return {name: (int(dead), int(live), int(size)) for name, dead, live, size in rows}


class CpuMeter:
    """CPU seconds of a postmaster's processes since the first reading, summed per process:
    a backend or autovacuum worker that exits takes its time with it, so a plain sum over the
    living ones can go down."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.last: dict[int, float] = {}
        self.total = 0.0
        self.read()

    def read(self) -> float:
        for pid in child_pids(self.postmaster):
            now = cpu_seconds([pid])
            if (before := self.last.get(pid)) is not None:
                self.total += max(0.0, now - before)
            self.last[pid] = now
        return self.total


def snapshot_stats(url: str, system: str) -> dict[str, tuple[int, int, int]]:
    with psycopg.connect(url, autocommit=True) as c:
        # the statistics of the backends that just wrote reach pg_stat_* within a second
        time.sleep(1.5)
        return tables(c, system)


def record_tables(
    ctx: Ctx, system: str, rep: int, when: str, stats: dict[str, tuple[int, int, int]]
) -> None:
    dead = sum(d for d, _, _ in stats.values())
    live = sum(n for _, n, _ in stats.values())
    size = sum(s for _, _, s in stats.values()) / 2**20
    per_table = {
        t: {"dead": d, "live": n, "mib": round(s / 2**20, 2)} for t, (d, n, s) in stats.items()
    }
    ctx.record("K", system, f"dead_tuples_{when}", dead, "rows", rep, tables=per_table)
    ctx.record("K", system, f"live_rows_{when}", live, "rows", rep)
    ctx.record("K", system, f"size_{when}", size, "MiB", rep)
    if (hot := stats.get(HOT_TABLE.get(system, ""))) is not None:
        ctx.record("K", system, f"hot_size_{when}", hot[2] / 2**20, "MiB", rep)


def hot_stats(url: str, system: str) -> tuple[int, int, int, int] | None:
    """(heap bytes, index bytes, autovacuum runs, dead row versions) of the system's hot
    table."""
    if (hot := HOT_TABLE.get(system)) is None:
        return None
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            "SELECT pg_table_size(relid), pg_indexes_size(relid), autovacuum_count, n_dead_tup"
            " FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (hot,),
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def record_hot(ctx: Ctx, system: str, rep: int, when: str, url: str) -> tuple[int, int, int, int]:
    hot = hot_stats(url, system)
    assert hot is not None
    ctx.record("K", system, f"hot_heap_{when}", hot[0] / 2**20, "MiB", rep)
    ctx.record("K", system, f"hot_index_{when}", hot[1] / 2**20, "MiB", rep)
    return hot


def after_release(ctx: Ctx, system: str, rep: int, url: str, end: tuple[int, ...]) -> None:
    """The hot table once an autovacuum run after the snapshot's release has been through it:
    one more run, and the dead row versions of the load gone (a run that began while the
    snapshot was held ends with them still there)."""
    t0 = time.monotonic()
    ran = False
    while not ran and time.monotonic() - t0 < AUTOVACUUM_WAIT_S:
        time.sleep(1.0)
        hot = hot_stats(url, system)
        ran = hot is not None and hot[2] > end[2] and hot[3] <= max(1000, end[3] // 100)
    ctx.record("K", system, "autovacuum_wait", time.monotonic() - t0, "s", rep,
               ran=ran, limit_s=AUTOVACUUM_WAIT_S)  # fmt: skip
    record_hot(ctx, system, rep, "after_autovacuum", url)


def window_rate(samples: list[tuple[float, int, float]], a: float, b: float) -> tuple[float, float]:
    """(completed/s, server CPU µs per completed task) between the samples nearest a and b."""
    first = min(samples, key=lambda s: abs(s[0] - a))
    last = min(samples, key=lambda s: abs(s[0] - b))
    done = last[1] - first[1]
    dt = last[0] - first[0]
    if dt <= 0 or done <= 0:
        return 0.0, float("nan")
    return done / dt, (last[2] - first[2]) / done * 1e6


def run_one(ctx: Ctx, system: str, rep: int) -> None:
    seconds = WINDOW_S[ctx.quick]
    url = ctx.fresh_db(system, "k")
    try:
        with workers(system, url, 1) as ws, psycopg.connect(url, autocommit=True) as holder:
            ready_time(ws[0])
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT txid_current(), count(*) FROM pg_class")
            start = snapshot_stats(url, system)
            record_tables(ctx, system, rep, "start", start)
            if system in HOT_TABLE:
                record_hot(ctx, system, rep, "start", url)
            meter = CpuMeter(ctx.server.proc.pid)
            prod = Proc([*SYSTEMS[system].cmd, "pace", url, str(seconds), str(BATCH), str(RATE)])
            samples: list[tuple[float, int, float]] = []  # (epoch, completed, cpu s)
            sent: list[tuple[int, float]] = []  # (produced so far, epoch) per SENT line

            def read(timeout: float) -> None:
                for line in prod.poll_lines(timeout):
                    if line.startswith("SENT"):
                        n, at = line.split()[1:3]
                        sent.append((int(n), float(at)))

            try:
                with psycopg.connect(url, autocommit=True) as c:
                    while prod.p.poll() is None:
                        read(seconds / SAMPLES)
                        cpu = meter.read()
                        t = time.time()
                        produced = sent[-1][0] if sent else 0
                        left = int(c.execute(SYSTEMS[system].backlog_sql).fetchone()[0])
                        samples.append((t, produced - left, cpu))
                    read(0.5)
                    backlog = int(c.execute(SYSTEMS[system].backlog_sql).fetchone()[0])
                    held = c.execute(
                        "SELECT max(age(backend_xmin)) FROM pg_stat_activity "
                        "WHERE datname = current_database()"
                    ).fetchone()[0]
            finally:
                prod.stop()
            end = snapshot_stats(url, system)
            hot_end = record_hot(ctx, system, rep, "end", url) if system in HOT_TABLE else None
        # the worker has stopped and the holder's transaction is rolled back (connection closed)
        if hot_end is not None:
            after_release(ctx, system, rep, url, hot_end)
        # the window runs from the producer's first call to its last
        tenth = seconds / 10
        t_first, t_last = sent[0][1], sent[-1][1]
        r0, cpu0 = window_rate(samples, t_first, t_first + tenth)
        r1, cpu1 = window_rate(samples, t_last - tenth, t_last)
        produced = sent[-1][0]
        extra = {"rate": RATE, "batch": BATCH, "seconds": seconds, "produced": produced}
        ctx.record("K", system, "rate_first_tenth", r0, "tasks/s", rep, **extra)
        ctx.record("K", system, "rate_last_tenth", r1, "tasks/s", rep, **extra)
        ctx.record("K", system, "rate_last_vs_first", r1 / r0 if r0 else 0.0, "ratio", rep)
        ctx.record("K", system, "pg_cpu_per_task_first_tenth", cpu0, "µs", rep)
        ctx.record("K", system, "pg_cpu_per_task_last_tenth", cpu1, "µs", rep)
        ctx.record("K", system, "backlog_end", backlog, "tasks", rep, produced=produced)
        ctx.record("K", system, "xmin_age_end", int(held or 0), "xids", rep)
        record_tables(ctx, system, rep, "end", end)
        with psycopg.connect(url, autocommit=True) as c:
            for name in tables(c, system):
                schema, rel = name.split(".", 1)
                c.execute(f'VACUUM "{schema}"."{rel}"')
        record_tables(ctx, system, rep, "after_vacuum", snapshot_stats(url, system))
        if (hot := HOT_TABLE.get(system)) is not None:
            record_hot(ctx, system, rep, "after_vacuum", url)
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(f"REINDEX TABLE CONCURRENTLY {hot}")
            record_hot(ctx, system, rep, "after_reindex", url)
    finally:
        ctx.drop_db(url)


def run(ctx: Ctx, rep: int) -> None:
    for system in ctx.systems:
        if system in SYSTEMS_K:
            with ctx.cell("K", system, rep):
                run_one(ctx, system, rep)
