"""Load sampling for heartbeats: CPU and memory, in percent (psutil).

The CPU figure is the host's CPU *not used by this worker process*: host-wide busy time minus
this process's own (its claim/completion loops and the task bodies on its threads), over the
time since the previous sample (one heartbeat interval, so a momentary spike does not stop a
worker from claiming). It feeds the claim's load weighting and the ``cpu_ceiling`` stop.

Why not the plain host figure: a worker's own work is already bounded by its concurrency; the
ceiling is there to shed work when *something else* loads the host. With the plain figure a
worker that kept its host busy stopped itself: in bench C (one producer inserting one task per
transaction, worker, and PostgreSQL on 2 cores) the host read 99-100% after the first heartbeat,
every claim got k = 0, and the backlog grew by the full insert rate (255 completed/s against
~460/s produced; 1.7-2.2k/s with a 3k/s producer, backlog 2.5-5k after 5 s). Subprocesses a
task starts (shell) are not this process: they count as host load, as before.

Which CPUs: those this process may run on (``os.sched_getaffinity``), not the whole host. Two
workers pinned to different cores (``taskset``, cpusets) then each see the load on their own
cores: a hog on one core shows in the load of the worker pinned there and not in the other's.
With the host-wide figure both saw the same hog, and weighting could not tell them apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not supported)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(psutil.cpu_count() or 1))


def cpus_percent(cpus: list[int]) -> Callable[[], float]:
    """Mean busy percent of `cpus` since the previous call (psutil's per-CPU counters)."""
    psutil.cpu_percent(None, percpu=True)  # prime: the first call has no interval to measure

    def read() -> float:
        per = psutil.cpu_percent(None, percpu=True)
        mine = [per[i] for i in cpus if i < len(per)] or per
        return sum(mine) / len(mine)

    return read


class LoadSampler:
    def __init__(
        self,
        host_cpu: Callable[[], float] | None = None,
        own_cpu: Callable[[], float] | None = None,
        memory: Callable[[], float] | None = None,
    ) -> None:
        """The readers return percent since their previous call; ``own_cpu`` is relative to the
        same CPUs as ``host_cpu`` (all of them at 100%). Defaults: psutil over the CPUs this
        process may run on. Tests pass their own."""
        cpus = allowed_cpus()
        if host_cpu is None:
            host_cpu = cpus_percent(cpus)
        if own_cpu is None:
            me, cores = psutil.Process(), len(cpus)
            me.cpu_percent(None)
            own_cpu = lambda: me.cpu_percent(None) / cores  # noqa: E731
        self._host_cpu = host_cpu
        self._own_cpu = own_cpu
        self._memory = memory or (lambda: psutil.virtual_memory().percent)

    def sample(self) -> tuple[float, float]:
        """(CPU used by everything but this worker on its CPUs, host memory), in percent."""
        other = float(self._host_cpu()) - float(self._own_cpu())
        return min(100.0, max(0.0, other)), float(self._memory())
