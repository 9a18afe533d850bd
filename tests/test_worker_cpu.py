"""A CPU-bound Python task (it holds the GIL) does not stall the claim loop or the heartbeat."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from pgsched.client import Client
from pgsched.registry import Registry
from tests.conftest import wait_until


def heartbeat(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT last_heartbeat FROM pgsched.workers").fetchone()[0]


def test_cpu_bound_task_does_not_stall_claims_or_heartbeats(dsn: str, make_worker: Any) -> None:
    reg = Registry()
    spinning = threading.Event()
    release = threading.Event()

    @reg.task("spin")
    def spin(payload: Any) -> int:
        spinning.set()
        n = 0
        deadline = time.monotonic() + 30  # bounded even if the test fails
        while not release.is_set() and time.monotonic() < deadline:
            for i in range(10_000):  # pure Python: holds the GIL between switch intervals
                n += i
        return n

    client = Client(dsn)
    spin_id = client.submit("spin")
    _w, ev = make_worker(registry=reg, concurrency=2)
    try:
        assert spinning.wait(10), "the spin task did not start"
        beat = heartbeat(dsn)
        # While the spin runs: heartbeats go on (interval 0.2 s) and new work is claimed and
        # finished on the free slot.
        wait_until(lambda: heartbeat(dsn) > beat, 10, message="a heartbeat during the spin")
        quick = [client.submit("noop") for _ in range(5)]
        for tid in quick:
            wait_until(
                lambda tid=tid: (
                    ev.count("task_succeeded", task_id=tid)
                    or client.get(tid)["status"] == "succeeded"
                ),
                10,
                message=f"noop task {tid} to finish during the spin",
            )
        assert client.get(spin_id)["status"] == "running"
    finally:
        release.set()
    wait_until(lambda: client.get(spin_id)["status"] == "succeeded", 10, message="spin to end")
