"""The CPU ceiling counts load the worker did not cause itself (bench C: a worker fed one task
per transaction stopped claiming once its own work, with PostgreSQL's and the producer's on the
same host, read above the ceiling; its backlog then grew by the full insert rate)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import namedtuple
from typing import Any

import psutil
import psycopg
import pytest

from pgsched.config import Settings
from pgsched.registry import Registry
from pgsched.worker import Worker, load
from pgsched.worker.load import LoadSampler
from tests.conftest import Events, wait_until

# Default ceilings (CPU: none; memory: 95%); fast heartbeats so the faked load reaches the
# workers row at once.
LOADED = Settings(heartbeat_interval=0.1, heartbeat_timeout=3, poll_interval=1, log_level="warning")


def backlog(conn: psycopg.Connection) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM pgsched.tasks WHERE status IN ('pending', 'running', 'retrying')"
        ).fetchone()[0]
    )


def run_worker(dsn: str, sampler: LoadSampler, **settings: float) -> tuple[Worker, Events]:
    ev = Events()
    s = Settings(**{**LOADED.model_dump(), **settings})
    w = Worker(dsn, s, registry=Registry(), concurrency=500, on_event=ev, load_sampler=sampler)
    w.start()
    # Claims after this read the faked load from the row (the first beat may predate it).
    wait_until(lambda: ev.count("heartbeat") >= 2, 10, message="two heartbeats")
    return w, ev


def test_sampler_subtracts_own_cpu() -> None:
    s = LoadSampler(host_cpu=lambda: 90.0, own_cpu=lambda: 60.0, memory=lambda: 40.0)
    assert s.sample() == (30.0, 40.0)
    s = LoadSampler(host_cpu=lambda: 10.0, own_cpu=lambda: 30.0, memory=lambda: 1.0)
    assert s.sample() == (0.0, 1.0)  # clock skew between the two readers: never negative


class FakeTimes:
    """psutil.cpu_times(percpu=True) over injected counters: each CPU's (busy, idle) seconds."""

    def __init__(self, *cpus: tuple[float, float]) -> None:
        self.cpus = list(cpus)

    def __call__(self, percpu: bool = False) -> list[Any]:
        assert percpu
        fields = ("user", "nice", "system", "idle", "iowait", "guest", "guest_nice")
        row = namedtuple("scputimes", fields)
        return [row(b, 0.0, 0.0, i, 0.0, 0.0, 0.0) for b, i in self.cpus]

    def advance(self, *deltas: tuple[float, float]) -> None:
        self.cpus = [(b + db, i + di) for (b, i), (db, di) in zip(self.cpus, deltas, strict=True)]


def test_sampler_reads_only_the_cpus_it_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    times = FakeTimes((0, 0), (0, 0), (0, 0))
    monkeypatch.setattr(psutil, "cpu_times", times)
    readers = {k: load.cpus_percent(cpus) for k, cpus in {"0": [0], "1": [1], "12": [1, 2]}.items()}
    times.advance((1, 0), (0, 1), (0.5, 0.5))
    assert {k: r() for k, r in readers.items()} == {"0": 100.0, "1": 0.0, "12": 25.0}


def test_sampler_reads_the_interval_whatever_thread_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker samples first from the thread that registers it, then from its heartbeat
    thread: the second reading covers the time since the first, not nothing."""
    times = FakeTimes((0, 0))
    monkeypatch.setattr(psutil, "cpu_times", times)
    read = load.cpus_percent([0])
    times.advance((0.1, 0.1))
    assert read() == 50.0
    times.advance((0.9, 0.1))
    got: list[float] = []
    t = threading.Thread(target=lambda: got.append(read()))
    t.start()
    t.join()
    assert got == [90.0]


SAMPLE = """import time
from pgsched.worker.load import LoadSampler
s = LoadSampler()
time.sleep(1.5)
print(s.sample()[0])"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_hog_shows_only_on_the_core_it_runs_on() -> None:
    """Two workers pinned to different cores: the one sharing its core with a hog reads the
    hog; the other reads its own core (host-wide, both would read the mean of the two). Each
    reading is held against the core's busy share measured by the test over the same time, so
    other load on a shared machine moves both alike."""
    cpus = sorted(os.sched_getaffinity(0))
    free, hogged = cpus[0], cpus[-1]
    hog = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(hogged),
            sys.executable,
            "-c",
            "import time\nt = time.time() + 10\nwhile time.time() < t: pass",
        ]
    )
    try:
        readings = {}
        psutil.cpu_percent(None, percpu=True)  # the measured window starts here
        procs = {
            cpu: subprocess.Popen(
                ["taskset", "-c", str(cpu), sys.executable, "-c", SAMPLE],
                stdout=subprocess.PIPE,
                text=True,
            )
            for cpu in (free, hogged)
        }
        for cpu, p in procs.items():
            readings[cpu] = float(p.communicate(timeout=30)[0])
        truth = psutil.cpu_percent(None, percpu=True)
    finally:
        hog.kill()
        hog.wait()
    measured = {cpu: truth[cpu] for cpu in (free, hogged)}
    assert readings[hogged] > 80, (readings, measured)
    for cpu in (free, hogged):
        assert abs(readings[cpu] - measured[cpu]) < 30, (cpu, readings, measured)
    if measured[hogged] - measured[free] > 50:  # a mean of both cores would sit between them
        assert readings[hogged] - readings[free] > 40, (readings, measured)


def test_worker_fed_one_task_per_transaction_keeps_up_when_its_own_load_fills_the_host(
    dsn: str, conn: psycopg.Connection
) -> None:
    # The host reads 100% busy, all of it this worker: it must keep claiming.
    w, ev = run_worker(dsn, LoadSampler(host_cpu=lambda: 100.0, own_cpu=lambda: 100.0))
    try:
        n, peak = 300, 0
        stop = threading.Event()
        with psycopg.connect(dsn, autocommit=True) as prod:
            for k in range(n):  # one task per transaction, at a modest rate (~200/s)
                prod.execute(
                    "INSERT INTO pgsched.tasks (task_type, payload) "
                    "VALUES ('noop', jsonb_build_object('k', %s::int))",
                    (k,),
                )
                stop.wait(0.005)
                if k % 20 == 19:
                    peak = max(peak, backlog(conn))
        wait_until(lambda: backlog(conn) == 0, 30, message="backlog drained")
        # Each success is logged after its completion commits: the last may trail the rows.
        wait_until(lambda: ev.count("task_succeeded") >= n, 10, message="every success logged")
        assert ev.count("task_succeeded") == n
        # Near zero while fed, not just drained at the end (old behaviour: it only grew).
        assert peak < n // 2, f"backlog reached {peak} of {n} while the producer ran"
    finally:
        w.stop(timeout=15)


def test_worker_above_ceiling_from_other_load_takes_nothing(
    dsn: str, conn: psycopg.Connection
) -> None:
    # The host reads 100% busy and none of it is this worker: a ceiling set below that holds.
    w, ev = run_worker(
        dsn, LoadSampler(host_cpu=lambda: 100.0, own_cpu=lambda: 0.0), cpu_ceiling=95.0
    )
    try:
        before = ev.count("claim_ran")
        conn.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
        wait_until(lambda: ev.count("claim_ran") > before, 10, message="a claim after the insert")
        assert ev.count("task_claimed") == 0 and backlog(conn) == 1
    finally:
        w.stop(timeout=15)


def test_a_poolers_made_up_backend_pid_counts_nothing_and_breaks_nothing(dsn: str) -> None:
    """Behind PgBouncer a connection's backend pid is made up, and may be negative or zero
    (psutil refuses those with ValueError): it counts nothing, and the real local backend
    beside it still counts."""
    with psycopg.connect(dsn, autocommit=True) as c:
        real = c.info.backend_pid
        backends = load.BackendCpu(lambda: {-23629174, 0, real}, 2)
        assert backends() == 0.0  # the first call only takes the backends' times
        c.execute("SELECT count(*) FROM generate_series(1, 3000000)")  # CPU in the backend
        assert backends() > 0.0
