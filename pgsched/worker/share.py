"""Load weighting: how many tasks a worker holds at once.

A pulled queue balances fine-grained work by itself: a slow worker finishes its tasks later and
so claims less often. What it cannot balance is the batch a worker takes while faster peers
are busy: a worker on a loaded host that fills all its slots holds the last tasks of a burst
for twice as long as a free peer would. So the weighting scales the worker's *capacity*, not
each claim: a worker holds at most ``ceil(concurrency x share)`` tasks, where ``share`` is its
CPU share divided by the best CPU share among the active workers of its queues (at least 1
task while it is active and under its ceilings, so it never stalls its queue).

A CPU share is the part of the worker's CPUs that other processes leave idle, never below
one half: the kernel's fair scheduler gives a new busy thread about half of a CPU that one
other busy process holds. ``cpu_usage`` (the heartbeat's sample, pgsched/worker/load.py)
excludes the worker's own process and its own server backends, so a worker that keeps its
host busy does not see itself as load.

The share comes with each heartbeat (the ``heartbeat`` statement returns the best share among
the other workers), since the load samples change only then. Effect and cost are measured
by bench F (bench/f_weighting.py): a burst of CPU-bound tasks on two workers, one of whose
CPU is held by another process, and the same with even hosts.

Tasks that wait rather than compute (I/O) do not slow each other down on a loaded CPU; a
fleet running mostly such tasks is better served with weighting off (``--no-load-weighting``).
"""

from __future__ import annotations

import math

MIN_SHARE = 0.5


def cpu_share(cpu_usage: float) -> float:
    """The CPU share of a worker whose CPUs other processes keep ``cpu_usage`` percent busy."""
    if not math.isfinite(cpu_usage):
        return MIN_SHARE
    return max(1.0 - cpu_usage / 100.0, MIN_SHARE)


def capacity(concurrency: int, cpu_usage: float, best_other_share: float | None) -> int:
    """The most tasks a worker of ``concurrency`` slots holds at once, given its own load and
    the best CPU share among the other active workers of its queues (None: it is alone)."""
    mine = cpu_share(cpu_usage)
    best = mine if best_other_share is None else max(mine, float(best_other_share))
    return max(1, min(concurrency, math.ceil(concurrency * mine / best - 1e-9)))
