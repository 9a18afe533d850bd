"""`--burst` exits only when nothing the worker could run is ready or due within poll_interval;
never because a claim was cut to nothing by a ceiling."""

from __future__ import annotations

import threading

import psycopg

from pgsched.config import Settings
from pgsched.registry import Registry
from pgsched.worker import Worker
from pgsched.worker.load import LoadSampler
from tests.conftest import FAST, Events, wait_until


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(
        conn.execute("SELECT status, count(*) FROM pgsched.all_tasks GROUP BY 1").fetchall()
    )


def test_burst_waits_out_a_ceiling_then_drains(dsn: str, conn: psycopg.Connection) -> None:
    """Other processes hold the worker's CPUs above its ceiling: its claims take nothing, and a
    burst worker must not read that as "nothing ready". When the load goes, it drains the
    queue and only then exits."""
    conn.execute("INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 50)")
    load = {"other": 100.0}
    sampler = LoadSampler(host_cpu=lambda: load["other"], own_cpu=lambda: 0.0, memory=lambda: 1.0)
    ev = Events()
    s = Settings(**{**FAST.model_dump(), "cpu_ceiling": 90.0, "heartbeat_interval": 0.1})
    w = Worker(dsn, s, registry=Registry(), burst=True, on_event=ev, load_sampler=sampler)
    t = threading.Thread(target=w.run, name="test-burst")
    t.start()
    try:
        # Several empty claims and heartbeats above the ceiling, and the worker is still there.
        wait_until(lambda: ev.count("claim_ran", got=0) >= 3, 10, message="empty claims")
        wait_until(lambda: ev.count("heartbeat") >= 5, 10, message="heartbeats")
        assert t.is_alive() and ev.count("worker_burst_done") == 0
        assert counts(conn) == {"pending": 50}
        load["other"] = 0.0
        t.join(timeout=30)
        assert not t.is_alive(), "the burst worker did not exit after the load went"
    finally:
        if t.is_alive():
            w.stop(timeout=15)
            t.join()
    assert ev.count("worker_burst_done") == 1
    assert counts(conn) == {"succeeded": 50}


def test_burst_waits_for_a_retry_due_within_the_poll_interval(
    dsn: str, conn: psycopg.Connection
) -> None:
    """A task due 0.5 s from now (a retry's backoff) is work the burst worker could run within
    poll_interval (1 s here): it waits and runs it. One due in an hour is left alone."""
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, run_at) VALUES"
        " ('noop', now() + interval '0.5 s'), ('noop', now() + interval '1 hour')"
    )
    ev = Events()
    w = Worker(dsn, FAST, registry=Registry(), burst=True, on_event=ev)
    t = threading.Thread(target=w.run, name="test-burst")
    t.start()
    t.join(timeout=20)
    if t.is_alive():
        w.stop(timeout=15)
        t.join()
        raise AssertionError("the burst worker did not exit")
    assert ev.count("worker_burst_done") == 1
    assert counts(conn) == {"succeeded": 1, "pending": 1}
