"""D pickup latency: an idle worker; N tasks inserted one at a time (gap between them); latency
is "insert committed" (the producer's clock right after its commit returned) to "task body
starts" (the body's clock). pgsched: by the Python API and by a plain SQL INSERT; plus tasks
delayed to a run_at, whose start is compared with run_at."""

from __future__ import annotations

import time

from harness import SYSTEMS, Ctx, Proc, pct, ready_time, workers

GAP_MS = 20


def probe(ctx: Ctx, system: str, url: str, n: int, *extra: str) -> tuple[list[float], int]:
    """Latencies in ms, and how many tasks never started within the wait."""
    with workers(system, url, 1, "--trace") as ws:
        ready_time(ws[0])
        time.sleep(0.3)  # let the worker settle into its idle wait
        p = Proc([*SYSTEMS[system].cmd, "probe", url, str(n), *extra])
        sent: dict[str, float] = {}
        started: dict[str, float] = {}
        deadline = time.monotonic() + 60 + n * 0.1
        while time.monotonic() < deadline and (p.p.poll() is None or len(started) < len(sent)):
            for line in p.poll_lines(0.01):
                f = line.split()
                if f and f[0] == "SENT":
                    # with a run_at, the reference is run_at, not the commit
                    sent[f[1]] = float(f[3]) if len(f) > 3 else float(f[2])
            for line in ws[0].poll_lines(0.0):
                f = line.split()
                if f and f[0] == "START":
                    started.setdefault(f[1], float(f[2]))
            if p.p.poll() is not None and len(started) >= n:
                break
        p.stop()
    lat = [(started[k] - sent[k]) * 1000 for k in sent if k in started]
    return lat, n - len(lat)


def summarize(ctx: Ctx, system: str, metric: str, lat: list[float], missing: int, rep: int) -> None:
    for p in (50, 95, 99):
        ctx.record(
            "D", system, f"{metric}_p{p}", pct(lat, p), "ms", rep, samples=len(lat), missing=missing
        )
    ctx.record(
        "D",
        system,
        f"{metric}_max",
        max(lat) if lat else float("nan"),
        "ms",
        rep,
        samples=len(lat),
        missing=missing,
    )


def run(ctx: Ctx, rep: int) -> None:
    n = 50 if ctx.quick else 200
    for system in ctx.systems:
        cells = [("latency_api", (str(GAP_MS),))]
        if system == "pgsched":
            cells += [
                ("latency_sql", (str(GAP_MS), "sql")),
                ("runat_lateness", ("50", "api", "1.0")),
            ]
        for metric, extra in cells:
            with ctx.cell("D", system, rep):
                url = ctx.fresh_db(system, "d")
                try:
                    k = 50 if metric == "runat_lateness" else n
                    lat, missing = probe(ctx, system, url, k, *extra)
                    summarize(ctx, system, metric, lat, missing, rep)
                finally:
                    ctx.drop_db(url)
