"""A enqueue: N tasks one call per task on one connection, and the bulk API (1,000 per call).

pgsched is also measured through plain SQL (INSERT, SELECT pgsched.submit) and against a raw
INSERT into a bare table with no trigger. Each cell gets its own fresh database.
"""

from __future__ import annotations

from harness import Ctx, adapter


def sizes(ctx: Ctx) -> tuple[int, int]:
    return (2_000, 20_000) if ctx.quick else (20_000, 20_000)


def run(ctx: Ctx, rep: int) -> None:
    n_one, n_bulk = sizes(ctx)
    cells = [(s, "one", n_one) for s in ctx.systems] + [(s, "bulk", n_bulk) for s in ctx.systems]
    if "pgsched" in ctx.systems:
        cells += [("pgsched", m, n_one) for m in ("sql_insert", "sql_submit", "raw_insert")]
    for system, mode, n in cells:
        with ctx.cell("A", system, rep):
            url = ctx.fresh_db(system, "a")
            try:
                res = adapter(system, "enqueue", url, str(n), mode, timeout=300)
                ctx.record("A", system, f"enqueue_{mode}", n / res["seconds"], "tasks/s", rep, n=n)
            finally:
                ctx.drop_db(url)
