"""A worker either makes progress or exits non-zero: a dead service thread stops it (exit 1,
its tasks handed on), a broken log pipe stops nothing, and a task's payload, timeout, retry
delay or error text can only fail that task."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.client import Client
from pgsched.errors import ValidationError
from pgsched.registry import Registry
from pgsched.worker import Worker
from pgsched.worker.supervision import ERROR_MAX
from tests.conftest import FAST, wait_until

PGSCHED = str(Path(sys.executable).parent / "pgsched")
ENV = {
    **os.environ,
    "PGSCHED_HEARTBEAT_INTERVAL": "0.3",
    "PGSCHED_HEARTBEAT_TIMEOUT": "5",
    "PGSCHED_POLL_INTERVAL": "1",
    "PGSCHED_CPU_CEILING": "100",
    "PGSCHED_MEMORY_CEILING": "100",
    "PGSCHED_BACKOFF_BASE": "0.05",
    "PGSCHED_BACKOFF_CAP": "0.1",
    "PGSCHED_LOG_LEVEL": "info",
    "PGSCHED_LOG_FORMAT": "json",
}


def one(dsn: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(sql, args or None).fetchone()
        return None if row is None else row[0]


def statuses(dsn: str, ids: list[int]) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT id, status FROM pgsched.tasks WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    by_id = dict(rows)
    return [by_id[i] for i in ids]


@pytest.fixture
def workers(dsn: str) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop(timeout=15)


def start(dsn: str, started: list[Worker], registry: Registry, **kw: Any) -> Worker:
    kw.setdefault("settings", FAST)
    w = Worker(dsn, registry=registry, **kw)
    started.append(w)
    return w.start()


# -- one task's data fails that task only ------------------------------------------------------


def test_poison_payloads_fail_their_task_only(dsn: str, workers: list[Worker]) -> None:
    """Before: json decoding raised inside the claim, after it committed: the claim thread
    died (exit 0), and the innocent task of the same batch was stranded too."""
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "INSERT INTO pgsched.tasks (task_type, queue, payload) VALUES"
            " ('noop', 'bq', ('{\"n\":' || repeat('9', 5000) || '}')::jsonb),"
            " ('noop', 'bq', '{}'),"
            " ('noop', 'bq', (repeat('[', 2000) || repeat(']', 2000))::jsonb)"
            " RETURNING id"
        ).fetchall()
    big, innocent, deep = (r[0] for r in rows)
    w = start(dsn, workers, Registry(), queues=["bq"])
    wait_until(
        lambda: statuses(dsn, [big, innocent, deep]) == ["failed", "succeeded", "failed"],
        20,
        message="poison tasks failed, the innocent one succeeded",
    )
    for tid, why in ((big, "4300 digits"), (deep, "RecursionError")):
        error = one(dsn, "SELECT last_error FROM pgsched.tasks WHERE id = %s", tid)
        assert "payload cannot be decoded" in error and why in error, error
        assert one(dsn, "SELECT attempts FROM pgsched.tasks WHERE id = %s", tid) == 1
    with Client(dsn) as c:
        later = c.submit("noop", queue="bq")
    wait_until(lambda: statuses(dsn, [later]) == ["succeeded"], 20, message="it claims on")
    assert not w.stopping


def test_a_timeout_beyond_what_python_waits_for_keeps_timeouts_working(
    dsn: str, workers: list[Worker]
) -> None:
    """Before: a timeout of 1e12 s (a task type's, or '300 years' in a row) raised
    OverflowError in the timeouts thread; later tasks were never timed out."""
    gate = threading.Event()
    reg = Registry()

    @reg.task("patient", timeout=1e12)
    def patient(payload: Any) -> str:
        return "ok"

    @reg.task("hang")
    def hang(payload: Any) -> None:
        gate.wait(30)

    with psycopg.connect(dsn, autocommit=True) as c:
        # A row from before revision 0005 bounded the column.
        c.execute("ALTER TABLE pgsched.tasks DROP CONSTRAINT tasks_timeout_bounded")
        old = c.execute(
            "INSERT INTO pgsched.tasks (task_type, queue, timeout)"
            " VALUES ('patient', 'tq', '300 years') RETURNING id"
        ).fetchone()[0]
    with Client(dsn) as c:
        first = c.submit("patient", queue="tq")
    start(dsn, workers, reg, queues=["tq"], concurrency=2)
    wait_until(lambda: statuses(dsn, [old, first]) == ["succeeded"] * 2, 20, message="ran")
    with Client(dsn) as c:
        short = c.submit("hang", queue="tq", timeout=timedelta(seconds=0.3), max_attempts=1)
    try:
        wait_until(
            lambda: statuses(dsn, [short]) == ["failed"], 20, message="the short one timed out"
        )
    finally:
        gate.set()
    assert one(dsn, "SELECT outcome FROM pgsched.task_executions WHERE task_id = %s", short) == (
        "timeout"
    )


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_an_exception_whose_str_raises_fails_its_task_only(dsn: str, workers: list[Worker]) -> None:
    """Before: the task's thread died describing the error: the task stayed running, the slot
    was lost and a --burst worker never exited."""
    reg = Registry()

    @reg.task("bad")
    def bad(payload: Any) -> None:
        raise BadStr()

    @reg.task("fine")
    def fine(payload: Any) -> int:
        return 1

    with Client(dsn) as c:
        ids = [c.submit("bad", queue="xq", max_attempts=1), c.submit("fine", queue="xq")]
        ids.append(c.submit("bad", queue="xq", max_attempts=1))
        ids.append(c.submit("fine", queue="xq"))
    w = start(dsn, workers, reg, queues=["xq"], concurrency=1, burst=True)
    assert w.wait(30), "the burst worker exits"
    assert statuses(dsn, ids) == ["failed", "succeeded", "failed", "succeeded"]
    error = one(dsn, "SELECT last_error FROM pgsched.tasks WHERE id = %s", ids[0])
    assert error.startswith("BadStr: <str() of the exception raised RuntimeError>"), error


def test_a_huge_error_message_is_stored_bounded(dsn: str, workers: list[Worker]) -> None:
    """Before: a 10 MB message was stored three times (task, attempt, dead letter) and logged."""
    reg = Registry()

    @reg.task("loud")
    def loud(payload: Any) -> None:
        raise ValueError("head " + "x" * 2_000_000 + " tail")

    with Client(dsn) as c:
        tid = c.submit("loud", queue="lq", max_attempts=1)
    start(dsn, workers, reg, queues=["lq"])
    wait_until(lambda: statuses(dsn, [tid]) == ["failed"], 20, message="it failed")
    with psycopg.connect(dsn, autocommit=True) as c:
        texts = c.execute(
            "SELECT (SELECT last_error FROM pgsched.tasks WHERE id = %(id)s),"
            " (SELECT error FROM pgsched.task_executions WHERE task_id = %(id)s),"
            " (SELECT last_error FROM pgsched.dead_letter WHERE task_id = %(id)s)",
            {"id": tid},
        ).fetchone()
    for text in texts:
        assert len(text) <= ERROR_MAX + 100
        assert text.startswith("ValueError: head ") and text.endswith(" tail")
        assert "characters cut" in text


def test_a_retry_delay_beyond_the_database_still_schedules_the_retry(
    dsn: str, workers: list[Worker]
) -> None:
    """Before: backoff_base '1000000 years' made the completion fail ("interval out of
    range"); the task stayed running until the worker stopped, then cycled."""
    reg = Registry()

    @reg.task("flaky")
    def flaky(payload: Any) -> None:
        raise ValueError("not yet")

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ALTER TABLE pgsched.tasks DROP CONSTRAINT tasks_backoff_base_bounded")
        c.execute("ALTER TABLE pgsched.tasks DROP CONSTRAINT tasks_backoff_cap_bounded")
        tid = c.execute(
            "INSERT INTO pgsched.tasks (task_type, queue, backoff_base, backoff_cap)"
            " VALUES ('flaky', 'rq', '1000000 years', '1000000 years') RETURNING id"
        ).fetchone()[0]
    start(dsn, workers, reg, queues=["rq"])
    wait_until(lambda: statuses(dsn, [tid]) == ["retrying"], 20, message="a retry is scheduled")
    years = one(dsn, "SELECT extract(epoch FROM run_at - now()) / 86400 / 365 FROM pgsched.tasks")
    assert 49 <= years <= 100  # equal jitter over the 100-year bound


def test_durations_over_100_years_are_refused_at_the_door(dsn: str) -> None:
    with Client(dsn) as c:
        for field in ("timeout", "backoff_base", "backoff_cap"):
            with pytest.raises(ValidationError, match=f"{field}: must be at most 100 years"):
                c.submit("noop", **{field: timedelta(days=36501)})
        c.submit("noop", timeout=timedelta(days=36500))
    for column in ("timeout", "backoff_base", "backoff_cap"):
        with (
            psycopg.connect(dsn, autocommit=True) as c,
            pytest.raises(psycopg.errors.CheckViolation, match=f"tasks_{column}_bounded"),
        ):
            c.execute(
                f"INSERT INTO pgsched.tasks (task_type, {column}) VALUES ('noop', '300 years')"
            )
    assert one(dsn, "SELECT count(*) FROM pgsched.tasks") == 1
