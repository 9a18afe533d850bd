"""A enqueue: one call per task on one connection, and the bulk API (1,000 per call).

One call per task runs for N tasks or a fixed window, whichever ends first (the same window for
every system: a one-row autocommit enqueue runs at a steady rate, and the slow peers would
otherwise spend most of the run here); the rate is tasks done / elapsed. pgsched is also
measured through plain SQL (INSERT, SELECT pgsched.submit) and against a raw INSERT into a bare
table with no trigger. The plain INSERT and the raw one take turns on one connection, in chunks
of 20 (the adapter's `paired` mode, for twice the window): run one after the other, each in its
own window, their ratio moved with the machine's flush times (medians 0.69-0.99, single
repetitions 0.66-0.99, in the four full runs of 2026-12-01). Each cell gets its own fresh database.
"""

from __future__ import annotations

from harness import Ctx, adapter

ONE_WINDOW_S = {True: 1.0, False: 3.0}  # quick, full


def sizes(ctx: Ctx) -> tuple[int, int]:
    return (2_000, 5_000) if ctx.quick else (20_000, 20_000)


def run(ctx: Ctx, rep: int) -> None:
    n_one, n_bulk = sizes(ctx)
    window = ONE_WINDOW_S[ctx.quick]
    cells = [(s, "one", n_one) for s in ctx.systems] + [(s, "bulk", n_bulk) for s in ctx.systems]
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
