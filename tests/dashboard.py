"""Real rows for the dashboard's tests: tasks in several queues and states, a workflow, a
schedule, and dead-letter entries left by a real worker running a task type that fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgsched.admin import Admin
from pgsched.client import Client
from pgsched.registry import Registry
from pgsched.schedule_file import ScheduleDef
from tests.conftest import FAST, wait_until


@dataclass
class Gates:
    """Task type 'gated' waits until the test opens its node's gate: the test decides when
    each task finishes, and waits on events rather than on time."""

    opened: dict[str, threading.Event] = field(default_factory=dict)
    fail_once: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gate(self, key: str) -> threading.Event:
        with self.lock:
            return self.opened.setdefault(key, threading.Event())

    def open(self, key: str) -> None:
        self.gate(key).set()

    def open_all(self) -> None:
        with self.lock:
            events = list(self.opened.values())
        for e in events:
            e.set()


def registry(gates: Gates) -> Registry:
    reg = Registry()

    @reg.task("ok")
    def ok(payload: Any, ctx: Any) -> dict[str, Any]:
        return {"echo": payload}

    @reg.task("boom")
    def boom(payload: Any, ctx: Any) -> None:
        raise ValueError(f"boom: {payload.get('why', 'always fails')}")

    @reg.task("flaky")
    def flaky(payload: Any, ctx: Any) -> dict[str, Any]:
        # Fails while its key is in fail_once; the test removes it before requeueing.
        with gates.lock:
            failing = payload["key"] in gates.fail_once
        if failing:
            raise RuntimeError(f"flaky {payload['key']}: not yet")
        return {"key": payload["key"], "ok": True}

    @reg.task("gated")
    def gated(payload: Any, ctx: Any) -> dict[str, Any]:
        key = payload.get("key") or payload["node"]
        if not gates.gate(key).wait(60):
            raise TimeoutError(f"gate {key} never opened")
        return {"node": key}

    return reg


@contextmanager
def worker(dsn: str, gates: Gates, name: str, **kw: Any) -> Iterator[Any]:
    from pgsched.worker import Worker

    kw.setdefault("queues", ["default", "mail", "reports"])
    w = Worker(dsn, FAST, name=name, registry=registry(gates), concurrency=4, **kw).start()
    try:
        yield w
    finally:
        gates.open_all()
        w.stop(timeout=15)


def dead_letter_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0]


def seed(dsn: str, conn: psycopg.Connection, gates: Gates) -> dict[str, Any]:
    """Pending, scheduled and succeeded tasks, two dead-letter entries, a workflow and a
    schedule; returns their ids."""
    from datetime import timedelta

    with Client(dsn) as client:
        admin = Admin(client)
        failing = [
            client.submit("boom", {"why": f"reason {i}"}, queue="mail", max_attempts=1)
            for i in range(2)
        ]
        done = client.submit("ok", {"n": 1}, queue="reports")
        with worker(dsn, gates, "seed-worker"):
            wait_until(
                lambda: (
                    dead_letter_count(conn) == 2
                    and conn.execute(
                        "SELECT status FROM pgsched.all_tasks WHERE id = %s", (done,)
                    ).fetchone()[0]
                    == "succeeded"
                ),
                timeout=30,
                message="the seed worker to fail two tasks and finish one",
            )
        pending = [client.submit("ok", {"n": i}, queue="reports") for i in range(3)]
        later = client.submit("ok", {"n": 99}, queue="mail", delay=timedelta(hours=2))
        wf = admin.submit_workflow(
            {
                "name": "nightly",
                "description": "fetch, build, mail",
                "tasks": [
                    {"name": "fetch", "task_type": "gated", "payload": {"node": "fetch"}},
                    {
                        "name": "build",
                        "task_type": "gated",
                        "payload": {"node": "build"},
                        "depends_on": ["fetch"],
                    },
                    {
                        "name": "mail",
                        "task_type": "gated",
                        "payload": {"node": "mail"},
                        "depends_on": ["build"],
                    },
                ],
            }
        )
        admin.apply_schedules([ScheduleDef(name="hourly-report", every="1h", task_type="ok")])
    return {"failing": failing, "done": done, "pending": pending, "later": later, "workflow": wf}
