"""The probe `servers-ab`: bench B's drain (one worker, 100,000 tasks, each system's registered
no-op body) on the bundled PostgreSQL and on the system's (Debian's 15, JIT on), both servers
up at once and taking turns, the order swapped each turn, so that the ratio between them is
measured on the same machine at the same time. pgsched and graphile-worker (the fastest
peer) each take every turn: the peer's ratio tells how much of pgsched's is the server's.
Recorded per system: each server's median rate and the median of the per-turn ratios."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path

from b_drain import drain, fill
from harness import SERVER_SETTINGS, Ctx, Probe

from pgsched.server import EphemeralServer, server_version

TURNS = 5
N = 100_000
SYSTEMS = ("pgsched", "graphile")


@contextlib.contextmanager
def _bin_dir(path: str | None) -> Iterator[None]:
    """PGSCHED_PG_BIN set (or unset) while a server is made, as bench/run.py --server does."""
    before = os.environ.pop("PGSCHED_PG_BIN", None)
    if path:
        os.environ["PGSCHED_PG_BIN"] = path
    try:
        yield
    finally:
        os.environ.pop("PGSCHED_PG_BIN", None)
        if before is not None:
            os.environ["PGSCHED_PG_BIN"] = before


def servers_ab(p: Probe) -> None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("servers-ab: no /usr/lib/postgresql/*/bin/postgres on this machine")
    with contextlib.ExitStack() as stack:
        ctxs: dict[str, Ctx] = {}
        for label, path in (("bundled", None), ("system", str(Path(found[-1]).parent))):
            with _bin_dir(path):
                server = EphemeralServer(durable=True, settings=SERVER_SETTINGS)
            stack.enter_context(server)
            version = server_version(server.bin_dir)
            ctxs[f"{label} {version}"] = Ctx(
                server, quick=False, run_id=p.ctx.run_id, systems=list(SYSTEMS), out=p.ctx.out
            )
        (a, ca), (b, cb) = ctxs.items()
        rates: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {s: [] for s in SYSTEMS}
        for turn in range(TURNS):
            for system in SYSTEMS:
                got: dict[str, float] = {}
                for name, ctx in [(a, ca), (b, cb)][:: 1 if turn % 2 == 0 else -1]:
                    url = fill(ctx, system, "ab", N)
                    try:
                        got[name] = drain(ctx, system, url, N, 1)["rate"]
                    finally:
                        ctx.drop_db(url)
                    rates.setdefault((system, name), []).append(got[name])
                ratios[system].append(got[b] / got[a])
                print(f"  turn {turn} {system}: {b} / {a} = {got[b] / got[a]:.2f}", flush=True)
        for (system, name), rs in rates.items():
            p.spread(f"{system} drain on {name}", rs, "tasks/s")
        for system, rs in ratios.items():
            p.spread(f"{system}: {b} over {a}, per turn", rs, "×")
