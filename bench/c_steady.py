"""C steady: one producer (one call per task, then batches of 100) and one worker for T seconds;
completed per second over the window and the backlog left when the producer stops.

Each producer runs as fast as its system's enqueue allows, so a faster enqueue offers more
load. Then pgsched once more, its producer paced at the fastest peer's batch-100 rate of the
same repetition: the backlog it leaves at the load that peer kept up with."""

from __future__ import annotations

from harness import SYSTEMS, Ctx, adapter, ready_time, scalar, workers

# Window per cell. The issue asks 20 s (quick 10 s); 5 systems x 2 batch sizes x 3 repetitions
# x 20 s alone would take 10 of the 20 minutes `make bench` may take, so: full 8 s, quick 1.5 s.
WINDOW_S = {True: 1.5, False: 8}


def run(ctx: Ctx, rep: int) -> None:
    seconds = WINDOW_S[ctx.quick]
    peer_rates: dict[str, float] = {}
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
                    if batch == 100 and system != "pgsched":
                        peer_rates[system] = done / res["seconds"]
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
    if "pgsched" in ctx.systems and peer_rates:
        peer, rate = max(peer_rates.items(), key=lambda x: x[1])
        at_peer_rate(ctx, rep, seconds, peer, rate)


def at_peer_rate(ctx: Ctx, rep: int, seconds: float, peer: str, rate: float) -> None:
    """pgsched with its producer paced at `rate` (batches of 100): the backlog it leaves."""
    with ctx.cell("C", "pgsched", rep):
        url = ctx.fresh_db("pgsched", "c")
        try:
            with workers("pgsched", url, 1) as ws:
                ready_time(ws[0])
                res = adapter(
                    "pgsched", "pace", url, str(seconds), "100", str(rate), timeout=seconds + 60
                )
                backlog = int(scalar(url, SYSTEMS["pgsched"].backlog_sql))
            for metric, value, unit in (
                ("steady_b100_at_peer_rate_offered", res["n"] / res["seconds"], "tasks/s"),
                ("steady_b100_at_peer_rate_backlog", backlog, "tasks"),
            ):
                ctx.record("C", "pgsched", metric, value, unit, rep, peer=peer, peer_rate=rate)
        finally:
            ctx.drop_db(url)
