"""Load sampling for heartbeats: CPU and memory, in percent (psutil).

The CPU figure is the load that *other* processes put on this worker's CPUs: busy time of the
CPUs this process may run on, minus this process's own (its claim and completion loops and the
task bodies on its threads), minus the server backends that serve this worker's own
connections when the server runs on the same host, over the time since the previous sample
(one heartbeat interval, so a momentary spike does not stop a worker from claiming). It feeds
the load weighting (pgsched/worker/share.py) and the ``cpu_ceiling`` stop.

Why not the plain host figure: a worker's own work is already bounded by its concurrency; the
weighting and the ceiling are about *something else* loading the host. A worker beside its
database on a small host keeps that host busy by itself: its claims and completions cost the
server about as much CPU as they cost the worker. Counted as load, that work would make the
worker take less and the backlog grow. Subprocesses a task starts (shell) are not this
process: they count as load.

Which CPUs: those this process may run on (``os.sched_getaffinity``), not the whole host. Two
workers pinned to different cores (``taskset``, cpusets) then each see the load on their own
cores: a hog on one core shows in the load of the worker pinned there and not in the other's.
The server backends are not pinned with the worker, so their time is counted in proportion to
the worker's share of the host's CPUs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import psutil


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not supported)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(psutil.cpu_count() or 1))


def _busy_total(t: object) -> tuple[float, float]:
    """(busy, total) seconds of one CPU's times (psutil's scputimes); idle and iowait are
    not busy; guest time is already inside user time on Linux."""
    fields = t._asdict()  # type: ignore[attr-defined]
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


def cpus_percent(cpus: list[int]) -> Callable[[], float]:
    """Mean busy percent of `cpus` since the previous call. The previous reading is kept
    here, not in psutil.cpu_percent, whose memory is per calling thread: the worker samples
    once from the thread that registers it and then from the heartbeat thread, whose first
    psutil reading would span no time at all and read 0."""
    last = psutil.cpu_times(percpu=True)

    def read() -> float:
        nonlocal last
        now = psutil.cpu_times(percpu=True)
        picked = [i for i in cpus if i < len(now)] or list(range(len(now)))
        shares = []
        for i in picked:
            b1, t1 = _busy_total(last[i]) if i < len(last) else (0.0, 0.0)
            b2, t2 = _busy_total(now[i])
            shares.append(100.0 * (b2 - b1) / (t2 - t1) if t2 > t1 else 0.0)
        last = now
        return min(100.0, max(0.0, sum(shares) / len(shares)))

    return read


class BackendCpu:
    """CPU time of the local server backends that serve this worker, in percent of the
    worker's CPUs since the previous call. ``pids`` returns the backend pids of the worker's
    open connections; a pid that is not a local ``postgres`` process (a remote server, a
    pooler's made-up pid, negative ones too) counts nothing."""

    def __init__(self, pids: Callable[[], set[int]], cpus: int) -> None:
        self._pids = pids
        self._host_cpus = max(1, psutil.cpu_count() or cpus)
        self._seen: dict[int, tuple[psutil.Process, float]] = {}
        self._last = time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        used = 0.0
        seen: dict[int, tuple[psutil.Process, float]] = {}
        for pid in self._pids():
            if pid <= 0:  # a pooler's made-up backend pid (PgBouncer's may be negative)
                continue
            try:
                proc, before = self._seen.get(pid) or (psutil.Process(pid), -1.0)
                if before < 0 and proc.name() != "postgres":
                    continue
                t = proc.cpu_times()
                total = t.user + t.system
            except (psutil.Error, OSError, ValueError):
                continue
            if before >= 0:
                used += max(0.0, total - before)
            seen[pid] = (proc, total)
        self._seen = seen
        if elapsed <= 0:
            return 0.0
        # Spread evenly over the host's CPUs, the backends' time falls on this worker's CPUs
        # in proportion to their number: the same percent of them as of the host.
        return 100.0 * used / elapsed / self._host_cpus


class LoadSampler:
    def __init__(
        self,
        host_cpu: Callable[[], float] | None = None,
        own_cpu: Callable[[], float] | None = None,
        memory: Callable[[], float] | None = None,
        backend_cpu: Callable[[], float] | None = None,
    ) -> None:
        """The readers return percent since their previous call; ``own_cpu`` and
        ``backend_cpu`` are relative to the same CPUs as ``host_cpu`` (all of them at 100%).
        Defaults: psutil over the CPUs this process may run on, no backends. Tests pass their
        own."""
        cpus = allowed_cpus()
        if host_cpu is None:
            host_cpu = cpus_percent(cpus)
        if own_cpu is None:
            me, cores = psutil.Process(), len(cpus)
            me.cpu_percent(None)
            own_cpu = lambda: me.cpu_percent(None) / cores  # noqa: E731
        self._host_cpu: Callable[[], float] = host_cpu
        self._own_cpu: Callable[[], float] = own_cpu
        self._memory: Callable[[], float] = memory or (lambda: psutil.virtual_memory().percent)
        self._backend_cpu: Callable[[], float] = backend_cpu or (lambda: 0.0)

    def watch_backends(self, pids: Callable[[], set[int]]) -> None:
        """Count the CPU of these local server backends as the worker's own."""
        self._backend_cpu = BackendCpu(pids, len(allowed_cpus()))

    def sample(self) -> tuple[float, float]:
        """(CPU used by everything but this worker and its backends on its CPUs, host
        memory), in percent."""
        own = float(self._own_cpu()) + float(self._backend_cpu())
        other = float(self._host_cpu()) - own
        return min(100.0, max(0.0, other)), float(self._memory())
