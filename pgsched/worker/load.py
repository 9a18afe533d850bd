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
"""

from __future__ import annotations

from collections.abc import Callable

import psutil


class LoadSampler:
    def __init__(
        self,
        host_cpu: Callable[[], float] | None = None,
        own_cpu: Callable[[], float] | None = None,
        memory: Callable[[], float] | None = None,
    ) -> None:
        """The readers return percent since their previous call; ``own_cpu`` is relative to the
        whole host (all cores), like ``host_cpu``. Defaults: psutil. Tests pass their own."""
        if host_cpu is None:
            psutil.cpu_percent(None)  # prime: the first call has no interval to measure
            host_cpu = lambda: psutil.cpu_percent(None)  # noqa: E731
        if own_cpu is None:
            me, cores = psutil.Process(), psutil.cpu_count() or 1
            me.cpu_percent(None)
            own_cpu = lambda: me.cpu_percent(None) / cores  # noqa: E731
        self._host_cpu = host_cpu
        self._own_cpu = own_cpu
        self._memory = memory or (lambda: psutil.virtual_memory().percent)

    def sample(self) -> tuple[float, float]:
        """(CPU used by everything but this worker, host memory), in percent."""
        other = float(self._host_cpu()) - float(self._own_cpu())
        return min(100.0, max(0.0, other)), float(self._memory())
