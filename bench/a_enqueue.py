"""A enqueue: one call per task on one connection, and the bulk API (1,000 per call).

One call per task: every system's producer runs at once, each on a fresh database of its own,
and they take turns in chunks of TURN_CHUNK calls (the adapters' `turns` command), the order
rotating every round, for a fixed window per system (a one-row autocommit enqueue runs at a
steady rate, and the slow peers would otherwise spend most of the run here). A system's rate is
its calls over the time its chunks took; the comparison with PGQueuer is also recorded as the
median over rounds of pgsched's chunk rate over PGQueuer's. Taking turns, every system sees
the same machine: run one after the other in windows of their own, the ratio follows the
machine's load between windows. pgsched is also measured through plain SQL (INSERT, SELECT
pgsched.submit) and against a raw INSERT into a bare table with no trigger. The plain INSERT
and the raw one take turns on one connection, in chunks of 20 (the adapter's `paired` mode, for
twice the window), for the same reason: their ratio would otherwise follow the machine's flush
times. Each cell gets its own fresh database.
"""

from __future__ import annotations

import contextlib
import statistics
import time

from harness import SYSTEMS, Ctx, Proc, adapter

ONE_WINDOW_S = {True: 1.0, False: 3.0}  # quick, full: per system
TURN_CHUNK = 50


def sizes(ctx: Ctx) -> tuple[int, int]:
    return (2_000, 5_000) if ctx.quick else (20_000, 20_000)


def one_call_turns(ctx: Ctx, rep: int, n: int, window: float) -> None:
    systems = list(ctx.systems)
    urls = {s: ctx.fresh_db(s, "a") for s in systems}
    procs: dict[str, Proc] = {}
    try:
        with contextlib.ExitStack() as stack:
            for s in systems:
                procs[s] = Proc([*SYSTEMS[s].cmd, "turns", urls[s], str(TURN_CHUNK)])
                stack.callback(procs[s].stop)
            for s in systems:
                procs[s].wait_line("READY")
            spent = dict.fromkeys(systems, 0.0)
            chunks = dict.fromkeys(systems, 0)
            ratios = []
            t0, rnd = time.monotonic(), 0
            while time.monotonic() - t0 < window * len(systems) and (
                max(chunks.values()) * TURN_CHUNK < n
            ):
                k = rnd % len(systems)
                this = {}
                for s in systems[k:] + systems[:k]:
                    procs[s].send("go")
                    this[s] = float(procs[s].next_line("DONE", 120).split()[1])
                    spent[s] += this[s]
                    chunks[s] += 1
                if "pgsched" in this and "pgqueuer" in this:
                    ratios.append(this["pgqueuer"] / this["pgsched"])
                rnd += 1
            for s in systems:
                procs[s].send("end")
        for s in systems:
            ctx.record(
                "A",
                s,
                "enqueue_one",
                chunks[s] * TURN_CHUNK / spent[s],
                "tasks/s",
                rep,
                n=chunks[s] * TURN_CHUNK,
                seconds=spent[s],
                rounds=rnd,
                chunk=TURN_CHUNK,
                turns=True,
            )
        if ratios:
            ctx.record(
                "A",
                "pgsched",
                "one_vs_pgqueuer",
                statistics.median(ratios),
                "ratio",
                rep,
                rounds=len(ratios),
                chunk=TURN_CHUNK,
            )
    finally:
        for url in urls.values():
            ctx.drop_db(url)


def run(ctx: Ctx, rep: int) -> None:
    n_one, n_bulk = sizes(ctx)
    window = ONE_WINDOW_S[ctx.quick]
    with ctx.cell("A", "all", rep):
        one_call_turns(ctx, rep, n_one, window)
    cells = [(s, "bulk", n_bulk) for s in ctx.systems]
    if "pgsched" in ctx.systems:
        cells += [("pgsched", m, n_one) for m in ("sql_submit", "paired")]
    for system, mode, n in cells:
        with ctx.cell("A", system, rep):
            url = ctx.fresh_db(system, "a")
            try:
                cap = 2 * window if mode == "paired" else window
                args = [str(n), mode] + ([] if mode == "bulk" else [str(cap)])
                res = adapter(system, "enqueue", url, *args, timeout=300)
                if mode == "paired":
                    for m in ("sql_insert", "raw_insert"):
                        part = res[m]
                        ctx.record(
                            "A",
                            system,
                            f"enqueue_{m}",
                            part["n"] / part["seconds"],
                            "tasks/s",
                            rep,
                            n=part["n"],
                            seconds=part["seconds"],
                            window=cap,
                            paired=True,
                        )
                    ctx.record(
                        "A",
                        system,
                        "sql_insert_vs_raw",
                        res["ratio_median"],
                        "ratio",
                        rep,
                        rounds=res["rounds"],
                        window=cap,
                    )
                    continue
                done = int(res["n"])
                ctx.record(
                    "A",
                    system,
                    f"enqueue_{mode}",
                    done / res["seconds"],
                    "tasks/s",
                    rep,
                    n=done,
                    seconds=res["seconds"],
                    window=None if mode == "bulk" else window,
                )
            finally:
                ctx.drop_db(url)
