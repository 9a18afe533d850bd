"""F load weighting (pgsched): two workers of 8 slots, each pinned to its own core with taskset;
in the `hogged` cells a CPU hog shares the second worker's core, in the `even` cells nothing
does. A burst of 16 CPU-bound `crunch` tasks (as many as the two workers' slots, each ~0.25 s
of a core), inserted at once: the time to finish them all with load-weighted claiming
(the default) and with plain claiming (`--plain`, i.e. the CLI's --no-load-weighting), plus how
many tasks each worker ran. Weighting pays when the loaded worker holds fewer of the burst's
tasks; on even hosts it should cost nothing.

The body hashes outside the GIL, as native work does (hashing, compression, numeric
libraries): the kernel shares the core between the worker's threads and the hog, each in its own
session like two services on a host. A pure-Python loop (`spin`) would have the worker's 8 tasks
take turns on the GIL instead; `python bench/probes.py hog-threads` measures how much 8 threads
of each body slow beside a hog on one CPU.
"""

from __future__ import annotations

import time

import psycopg
from harness import PGSCHED_PY, SYSTEMS, Ctx, Proc, ready_time, wait_done, workers

TASKS = 16
CRUNCH_MIB = 400  # MiB hashed per task (~0.25 s of one core)
LIMIT_S = 60  # bound on the wait; a slower run is recorded as timed out


def one(ctx: Ctx, rep: int, plain: bool, hogged: bool) -> None:
    mode = ("hogged_" if hogged else "even_") + ("plain" if plain else "weighted")
    url = ctx.fresh_db("pgsched", "f")
    hog = Proc(
        [
            "taskset",
            "-c",
            "1",
            PGSCHED_PY,
            "-c",
            "import time\nt = time.time() + 300\nwhile time.time() < t: pass",
        ]
        if hogged
        else [PGSCHED_PY, "-c", "import time\ntime.sleep(300)"]
    )
    try:
        extra = (
            "--concurrency",
            "8",
            "--heartbeat-interval",
            "1",
            "--heartbeat-timeout",
            "5",
            *(("--plain",) if plain else ()),
        )
        with workers("pgsched", url, 2, *extra, pins=["0", "1"]) as ws:
            for w in ws:
                ready_time(w)
            time.sleep(2.5)  # two heartbeats: load samples are in the workers rows
            with psycopg.connect(url, autocommit=True) as c:
                t0 = time.time()
                c.execute(
                    "INSERT INTO pgsched.tasks (task_type, payload) SELECT 'crunch', "
                    "jsonb_build_object('n', %s::int) FROM generate_series(1, %s)",
                    (CRUNCH_MIB, TASKS),
                )
                t_end = wait_done(url, "pgsched", LIMIT_S)
                left = 0 if t_end else c.execute(SYSTEMS["pgsched"].backlog_sql).fetchone()[0]
                split = dict(
                    c.execute(
                        "SELECT w.pid::text, count(*) FROM pgsched.task_executions e "
                        "JOIN pgsched.workers w ON w.name = e.worker GROUP BY 1"
                    ).fetchall()
                )
        pids = [str(w.p.pid) for w in ws]
        ctx.record(
            "F",
            "pgsched",
            f"total_{mode}",
            (t_end or time.time()) - t0,
            "s",
            rep,
            tasks=TASKS,
            timed_out=t_end is None,
            left=left,
            on_first_core=split.get(pids[0], 0),
            on_second_core=split.get(pids[1], 0),
        )
        ctx.record(
            "F",
            "pgsched",
            f"share_on_second_core_{mode}",
            100 * split.get(pids[1], 0) / TASKS,
            "%",
            rep,
        )
    finally:
        hog.stop(2)
        ctx.drop_db(url)


def run(ctx: Ctx, rep: int) -> None:
    if "pgsched" not in ctx.systems:
        return
    for hogged in (True, False):
        for plain in (False, True) if rep % 2 == 0 else (True, False):
            with ctx.cell("F", "pgsched", rep):
                one(ctx, rep, plain, hogged)
