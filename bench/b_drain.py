"""B drain: N pending no-op tasks, one worker process, then two; the rate runs from the worker's
ready line to the poll (every 20 ms) that first sees no unfinished task.

Every system runs a function registered through its ordinary API that takes the payload and
returns nothing (harness.System.body says which). pgsched also drains with its built-in `noop`,
which its executor runs inline on the claim thread, a lane no `@task` function takes:
`drain_1w_builtin_inline` and `drain_2w_builtin_inline`, beside the `@task` figures.

The backlog is enqueued with the system's bulk API once per run and system, then VACUUM
ANALYZE; every cell drains its own copy of that database (CREATE DATABASE ... TEMPLATE), after a
CHECKPOINT, the same for every system, so each worker starts on the same footing.
"""

from __future__ import annotations

import time

import psycopg
from harness import SYSTEMS, Ctx, ready_time, scalar, wait_done, workers

# A drain that has not finished by then is recorded from the tasks it did (done / elapsed):
# procrastinate (0.4-0.6k/s on this machine) and Chancy (1.6-3.6k/s) always reach it, and
# PGQueuer (8-13k/s) in full runs. 6 s keeps `make bench` inside 20 min.
LIMIT_S = {True: 3, False: 6}


def fill(ctx: Ctx, system: str, label: str, n: int) -> str:
    url = ctx.filled_db(system, label, n)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")
    return url


def drain(
    ctx: Ctx,
    system: str,
    url: str,
    n: int,
    procs: int,
    remaining: str | None = None,
    backlog: str | None = None,
    worker_args: tuple[str, ...] = (),
) -> dict:
    """Start `procs` workers on a filled database; returns rate and timings. `remaining` and
    `backlog` override the system's queries (G: rows due tomorrow are not part of the drain);
    `worker_args` go to each worker's command line."""
    with workers(system, url, procs, *worker_args) as ws:
        t_ready = min(ready_time(w) for w in ws)
        t_end = wait_done(url, system, LIMIT_S[ctx.quick], sql=remaining)
        if t_end is None:
            left = int(scalar(url, backlog or SYSTEMS[system].backlog_sql))
            t_end = time.time()
            return {"rate": (n - left) / (t_end - t_ready), "timed_out": True, "left": left}
    return {"rate": n / (t_end - t_ready), "seconds": t_end - t_ready}


def size(ctx: Ctx) -> int:
    return 20_000 if ctx.quick else 100_000


def run(ctx: Ctx, rep: int) -> None:
    n = size(ctx)
    for procs in (1, 2):
        for system in ctx.systems:
            lanes = [("", ())]
            if system == "pgsched":
                lanes.append(("_builtin_inline", ("--body", "builtin")))
            for suffix, args in lanes:
                with ctx.cell("B", system, rep):
                    url = fill(ctx, system, "b", n)
                    try:
                        r = drain(ctx, system, url, n, procs, worker_args=args)
                        ctx.record(
                            "B",
                            system,
                            f"drain_{procs}w{suffix}",
                            r.pop("rate"),
                            "tasks/s",
                            rep,
                            n=n,
                            body="builtin" if args else SYSTEMS[system].body,
                            **r,
                        )
                    finally:
                        ctx.drop_db(url)
