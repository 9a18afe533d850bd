"""Profile pgsched's drain path: `python bench/profile_drain.py [N]`.

One worker drains N (default 100,000) no-op tasks while py-spy (from bench/.venv-peers) samples
it; prints the worker's hottest frames (self time) and pg_stat_statements' top statements
(total time, calls, mean, rows per call). Output goes to stdout and bench/raw/profile-*.txt.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from harness import BENCH, RAW, SERVER_SETTINGS, Ctx, adapter, ready_time, wait_done, worker

from pgsched.server import EphemeralServer

PYSPY = BENCH / ".venv-peers" / "bin" / "py-spy"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    RAW.mkdir(exist_ok=True)
    out_lines: list[str] = []

    def say(s: str) -> None:
        print(s)
        out_lines.append(s)

    with EphemeralServer(durable=True, settings=SERVER_SETTINGS) as server:
        ctx = Ctx(
            server=server,
            quick=True,
            run_id="profile",
            systems=["pgsched"],
            out=RAW / "profile.jsonl",
        )
        url = ctx.fresh_db("pgsched", "prof")
        adapter("pgsched", "enqueue", url, str(n), "bulk", timeout=600)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
            c.execute("SELECT pg_stat_statements_reset()")
        w = worker("pgsched", url)
        t0 = ready_time(w)
        raw = BENCH / ".work" / "pyspy.txt"
        spy = None
        if PYSPY.exists():
            spy = subprocess.Popen(
                [
                    str(PYSPY),
                    "record",
                    "--pid",
                    str(w.p.pid),
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "--rate",
                    "500",
                    "--threads",
                    "--duration",
                    "60",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        t_end = wait_done(url, "pgsched", 120)
        dt = (t_end or time.time()) - t0
        say(f"drained {n} in {dt:.2f} s: {n / dt:,.0f} tasks/s")
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        w.stop()
        with psycopg.connect(url, autocommit=True) as c:
            rows = c.execute(
                "SELECT calls, round(total_exec_time::numeric, 1), "
                "round(mean_exec_time::numeric, 3), rows / greatest(calls, 1), "
                "shared_blks_hit / greatest(calls, 1), left(regexp_replace(query, '\\s+', ' ', "
                "'g'), 90) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"
            ).fetchall()
        say("pg_stat_statements: calls | total ms | mean ms | rows/call | buffer hits/call")
        for r in rows:
            say(" | ".join(str(x) for x in r))
        if raw.exists():
            self_time: collections.Counter[str] = collections.Counter()
            threads: collections.Counter[str] = collections.Counter()
            total = 0
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = stack.split(";")
                c = int(count)
                total += c
                threads[frames[0][:60]] += c
                self_time[frames[-1][:110]] += c
            say(f"py-spy: {total} samples at 500 Hz (all threads, idle waits included)")
            for name, c in threads.most_common(6):
                say(f"  thread {100 * c / total:5.1f}%  {name}")
            for name, c in self_time.most_common(15):
                say(f"  self {100 * c / total:5.1f}%  {name}")
        ctx.drop_db(url)
    path = RAW / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
