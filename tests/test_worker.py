"""The worker engine in-process: claim/complete loop, retries, timeouts, cancel, pause."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgsched.client import Client
from pgsched.config import Settings
from pgsched.registry import Registry
from pgsched.worker import Worker
from tests.conftest import wait_until

FAST = Settings(
    heartbeat_interval=0.2, heartbeat_timeout=3, poll_interval=1, cpu_ceiling=100,
    memory_ceiling=100, backoff_base=0.01, backoff_cap=0.05, grace=5, log_level="warning",
)


class Events:
    """Collects the worker's events so tests wait on signals, not sleeps."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        with self.lock:
            self.items.append((name, fields))

    def count(self, name: str, **match: Any) -> int:
        with self.lock:
            return sum(1 for n, f in self.items if n == name
                       and all(f.get(k) == v for k, v in match.items()))


@pytest.fixture
def make_worker(dsn: str) -> Iterator[Any]:
    workers: list[Worker] = []

    def make(**kw: Any) -> tuple[Worker, Events]:
        ev = Events()
        kw.setdefault("settings", FAST)
        kw.setdefault("registry", Registry())
        w = Worker(dsn, on_event=ev, **kw)
        workers.append(w)
        return w.start(), ev

    yield make
    for w in workers:
        w.stop(timeout=15)


def status_of(conn: psycopg.Connection, task_id: int) -> str:
    return Client(conn.info.dsn, check=False).get(task_id)["status"]


def test_drains_noop_tasks(dsn: str, make_worker: Any) -> None:
    with Client(dsn) as c:
        ids = [c.submit("noop") for _ in range(300)]
    _w, ev = make_worker(concurrency=50)
    wait_until(lambda: ev.count("task_succeeded") == 300, 20, message="300 successes")
    with Client(dsn) as c:
        rows = [c.get(i) for i in ids]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(len(r["history"]) == 1 and r["history"][0]["outcome"] == "success" for r in rows)
