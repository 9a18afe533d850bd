"""The pgsched worker as the benchmarks run it: `pgsched.worker.Worker` in this process. Task
`noop` is, by `--body`:

- `task` (default): `def noop(payload): return None` registered with `@task`, the user's
  ordinary API, and run on the executor's thread pool like any user function;
- `async`: the same as `async def`, run on the executor's event loop;
- `builtin`: the built-in `noop`, which the executor runs inline on the claim thread (a lane
  `@task` does not offer: only the built-in takes it).

With --trace, `noop` instead prints when its body starts (inline, as pickup latency measures
it). Also a CPU-bound `spin` task, a CPU-bound `crunch` task that runs outside the GIL (load
weighting) and a `hold` task (crash recovery). Prints `READY epoch` once started.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import time
from typing import Any

from pgsched.config import Settings
from pgsched.registry import Registry, TaskType
from pgsched.worker import Worker


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def noop(payload: Any) -> None:
    """The drain body every system runs: takes the payload, does nothing."""
    return None


async def async_noop(payload: Any) -> None:
    return None


def traced_noop(payload: Any) -> None:
    say(f"START {payload.get('k')} {time.time():.6f}")


def hold(payload: Any) -> None:
    """Crash-recovery body: say it started, then hold the task (payload hold, seconds)."""
    say(f"START {payload.get('k')} {time.time():.6f}")
    time.sleep(float(payload.get("hold", 30)))


def spin(payload: Any) -> int:
    """CPU-bound body: a fixed number of loop iterations (payload n, default 200,000)."""
    x = 0
    for i in range(int(payload.get("n", 200_000))):
        x ^= i
    return x


BODIES = ("task", "async", "builtin")
CRUNCH_BLOCK = b"\x5a" * (1 << 20)


def crunch(payload: Any) -> str:
    """CPU-bound body outside the GIL: SHA-256 over payload n MiB (default 100). hashlib
    releases the GIL for large buffers, as compression and numeric libraries do, so a
    worker's tasks share its CPUs the way native work does, not one at a time."""
    h = hashlib.sha256()
    for _ in range(int(payload.get("n", 100))):
        h.update(CRUNCH_BLOCK)
    return h.hexdigest()


def work(dsn: str, argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--plain", action="store_true", help="claim without load weighting")
    ap.add_argument("--heartbeat-timeout", type=float, default=None)
    ap.add_argument("--heartbeat-interval", type=float, default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--writers", type=int, default=None, help="completion_writers")
    ap.add_argument("--body", choices=BODIES, default="task", help="what runs task noop")
    a = ap.parse_args(argv)
    opts: dict[str, Any] = {"log_level": "warning"}
    if a.heartbeat_timeout:
        opts["heartbeat_timeout"] = a.heartbeat_timeout
    if a.heartbeat_interval:
        opts["heartbeat_interval"] = a.heartbeat_interval
    if a.writers:
        opts["completion_writers"] = a.writers
    reg = Registry()
    if a.trace:
        reg.register(TaskType("noop", traced_noop, inline=True))
    elif a.body == "task":
        reg.task("noop")(noop)  # what `@task("noop")` above `def noop` does
    elif a.body == "async":
        reg.task("noop")(async_noop)
    # builtin: nothing registered under noop, so the worker's built-in noop runs it
    reg.register(TaskType("spin", spin))
    reg.register(TaskType("crunch", crunch))
    reg.register(TaskType("hold", hold))
    w = Worker(
        dsn,
        Settings(**opts),
        name=a.name,
        concurrency=a.concurrency,
        registry=reg,
        weighted=not a.plain,
    )
    signal.signal(signal.SIGTERM, lambda *_: w.request_stop())
    signal.signal(signal.SIGINT, lambda *_: w.request_stop())
    w.start()
    say(f"READY {time.time():.6f}")
    w.run()
