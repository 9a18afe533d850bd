"""C steady: one producer (one call per task, then batches of 100) and one worker for T seconds;
completed per second over the window and the backlog left when the producer stops."""

from __future__ import annotations

from harness import SYSTEMS, Ctx, adapter, ready_time, scalar, workers

# Window per cell. The issue asks 20 s (quick 10 s); 5 systems x 2 batch sizes x 3 repetitions
# x 20 s alone would take 10 of the 20 minutes `make bench` may take, so: full 8 s, quick 1.5 s.
WINDOW_S = {True: 1.5, False: 8}


def run(ctx: Ctx, rep: int) -> None:
    seconds = WINDOW_S[ctx.quick]
    for batch in (1, 100):
        for system in ctx.systems:
            with ctx.cell("C", system, rep):
                url = ctx.fresh_db(system, "c")
                try:
                    with workers(system, url, 1) as ws:
                        ready_time(ws[0])
                        res = adapter(
                            system, "produce", url, str(seconds), str(batch), timeout=seconds + 60
                        )
                        backlog = int(scalar(url, SYSTEMS[system].backlog_sql))
                    done = res["n"] - backlog
                    ctx.record(
                        "C",
                        system,
                        f"steady_b{batch}_completed",
                        done / res["seconds"],
                        "tasks/s",
                        rep,
                        produced=res["n"],
                        seconds=res["seconds"],
                    )
                    ctx.record(
                        "C",
                        system,
                        f"steady_b{batch}_backlog",
                        backlog,
                        "tasks",
                        rep,
                        produced=res["n"],
                    )
                finally:
                    ctx.drop_db(url)
