"""A worker either makes progress or exits non-zero: a dead service thread stops it (exit 1,
its tasks handed on), a broken log pipe stops nothing, and a task's payload, timeout, retry
delay or error text can only fail that task."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.client import Client
from pgsched.config import Settings
from pgsched.errors import PermanentError, ValidationError, WorkerDied
from pgsched.registry import Registry
from pgsched.worker import Worker
from pgsched.worker.supervision import ERROR_MAX
from tests.conftest import FAST, WORKER_ENV, wait_until

ENV = {**WORKER_ENV, "PGSCHED_LOG_FORMAT": "json"}


def one(dsn: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(sql, args or None).fetchone()
        return None if row is None else row[0]


def statuses(dsn: str, ids: list[int]) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT id, status FROM pgsched.all_tasks WHERE id = ANY(%s)", (ids,)
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


# -- supervision -------------------------------------------------------------------------------


class FragileLog:
    """A logger (Worker's ``logger=``) that raises when the completion thread logs a failed
    task: a logging failure on a service thread."""

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            if event == "task_failed":
                raise RuntimeError("log sink broke")

        return log


def test_a_dead_service_thread_stops_the_worker_and_its_tasks_go_on(
    dsn: str, workers: list[Worker]
) -> None:
    """Before: the completion thread died on the log call, the worker kept heartbeating with
    its tasks running for good, and wait()/run() never returned."""
    gate = threading.Event()
    reg = Registry()

    @reg.task("boom")
    def boom(payload: Any) -> None:
        raise PermanentError("boom")

    @reg.task("held")
    def held(payload: Any) -> str:
        gate.wait(30)
        return "done"

    with Client(dsn) as c:
        bad = c.submit("boom", queue="sv")
        ids = [c.submit("held", queue="sv") for _ in range(3)]
    a = start(dsn, workers, reg, name="a", queues=["sv"], concurrency=4, logger=FragileLog())
    assert a.wait(30), "the worker stops once its completion thread died"
    assert a.failure is not None
    assert "pgsched-completer-0" in a.failure and "RuntimeError: log sink broke" in a.failure
    with pytest.raises(WorkerDied, match="pgsched-completer-0"):
        a.run()
    assert one(dsn, "SELECT status FROM pgsched.workers WHERE name = 'a'") != "active"
    assert one(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", bad) == "failed"

    gate.set()
    start(dsn, workers, reg, name="b", queues=["sv"], concurrency=4)
    wait_until(
        lambda: statuses(dsn, ids) == ["succeeded"] * 3,
        30,
        message="another worker runs a's tasks",
    )


FRAGILE_APP = """
import structlog
from pgsched.errors import PermanentError
from pgsched.registry import task


def fragile(logger, method, event):
    if event["event"] == "task_failed":
        raise RuntimeError("log sink broke")
    return event


structlog.configure(processors=[fragile, structlog.processors.JSONRenderer()])


@task("boom")
def boom(payload):
    raise PermanentError("boom")
"""


@pytest.mark.slow
def test_pgsched_worker_exits_1_naming_the_dead_thread(
    dsn: str, spawn: Any, tmp_path: Path
) -> None:
    """Before: the process lived on (or exited 0), its tasks running for good."""
    (tmp_path / "fragile.py").write_text(FRAGILE_APP)
    with Client(dsn) as c:
        bad = c.submit("boom", queue="fq")
        ids = [c.submit("dummy", {"sleepDurationMs": 1500}, queue="fq") for _ in range(3)]
    p = spawn(
        "--app", "fragile", "--queues", "fq", "--name", "fragile", "--concurrency", "4",
        env=ENV, stderr="err0",
    )  # fmt: skip
    assert p.wait(timeout=60) == 1
    err = (tmp_path / "err0").read_text().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: worker stopped: thread pgsched-completer-0 died:"), err
    assert "RuntimeError: log sink broke" in err[0]
    assert one(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", bad) == "failed"

    spawn("--queues", "fq", "--name", "healthy", env=ENV)
    wait_until(
        lambda: statuses(dsn, ids) == ["succeeded"] * 3,
        30,
        interval=0.1,
        message="another worker runs the dead one's tasks",
    )


@pytest.mark.slow
def test_a_closed_stdout_stops_no_thread(dsn: str, spawn: Any, tmp_path: Path) -> None:
    """`pgsched worker | head -c 10`: before, the first log line on the completion thread
    killed it (tasks running for good, later submits too) and SIGTERM did not end the
    process."""
    p = spawn("--queues", "zq", stdout=subprocess.PIPE, stderr="err0", env=ENV)
    assert p.stdout is not None
    p.stdout.close()  # the reader is gone: every write to stdout is EPIPE
    with Client(dsn) as c:
        ids = [c.submit("dummy", {"shouldFail": True}, queue="zq", max_attempts=1)]
        ids += [c.submit("noop", queue="zq") for _ in range(3)]
    wait_until(
        lambda: statuses(dsn, ids) == ["failed"] + ["succeeded"] * 3,
        30,
        interval=0.1,
        message="the failing task and the no-ops finish",
    )
    with Client(dsn) as c:
        later = c.submit("noop", queue="zq")
    wait_until(lambda: statuses(dsn, [later]) == ["succeeded"], 30, message="a later task runs")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    err = (tmp_path / "err0").read_text()
    assert "log output dropped" in err and "Traceback" not in err, err


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
        error = one(dsn, "SELECT last_error FROM pgsched.all_tasks WHERE id = %s", tid)
        assert "payload cannot be decoded" in error and why in error, error
        assert one(dsn, "SELECT attempts FROM pgsched.all_tasks WHERE id = %s", tid) == 1
    with Client(dsn) as c:
        later = c.submit("noop", queue="bq")
    wait_until(lambda: statuses(dsn, [later]) == ["succeeded"], 20, message="it claims on")
    assert w.failure is None and not w.stopping


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
    assert w.failure is None
    assert statuses(dsn, ids) == ["failed", "succeeded", "failed", "succeeded"]
    error = one(dsn, "SELECT last_error FROM pgsched.all_tasks WHERE id = %s", ids[0])
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
            "SELECT (SELECT last_error FROM pgsched.all_tasks WHERE id = %(id)s),"
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
    years = one(
        dsn, "SELECT extract(epoch FROM run_at - now()) / 86400 / 365 FROM pgsched.all_tasks"
    )
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
    assert one(dsn, "SELECT count(*) FROM pgsched.all_tasks") == 1


# -- threads beside the worker, and writes that never end ---------------------------------------


class SchedulerClockBroke(BaseException):
    """Not an Exception: the scheduler's loop, which logs and retries those, cannot keep it."""


def test_a_dead_scheduler_thread_stops_the_worker(
    dsn: str, workers: list[Worker], tmp_path: Path
) -> None:
    """`pgsched worker --schedules`: before, the scheduler's thread could die and the worker
    went on without it, its schedules never firing again."""
    from pgsched.schedules import Scheduler

    (tmp_path / "s.yaml").write_text("- {name: s, every: 1h, task_type: noop}\n")
    w = start(dsn, workers, Registry(), name="with-scheduler", queues=["sch"])

    def broken_clock() -> Any:
        raise SchedulerClockBroke("clock broke")

    sched = Scheduler(dsn, tmp_path / "s.yaml", clock=broken_clock, on_crash=w.report_crash)
    with contextlib.suppress(SchedulerClockBroke):
        sched.apply()  # the clock is read by apply too
    sched.defs = None  # applied (or not): tick only
    sched.start()
    try:
        assert w.wait(30), "the worker stops once the scheduler's thread died"
        assert w.failure is not None and "pgsched-scheduler" in w.failure
        assert "clock broke" in w.failure
        with pytest.raises(WorkerDied, match="pgsched-scheduler"):
            w.run()
    finally:
        sched.stop()


def test_a_dead_alert_ticker_stops_the_worker(dsn: str, workers: list[Worker]) -> None:
    """Every `pgsched worker` runs an alert ticker beside it: its death stops the worker,
    non-zero, instead of leaving alerts undelivered while the worker looks healthy."""
    from pgsched.alerts.ticker import AlertTicker

    w = start(dsn, workers, Registry(), name="with-alerts", queues=["alr"])

    def broken_clock() -> Any:
        raise SchedulerClockBroke("alert clock broke")

    ticker = AlertTicker(dsn, clock=broken_clock, on_crash=w.report_crash).start()
    try:
        assert w.wait(30), "the worker stops once the ticker's thread died"
        assert w.failure is not None and "pgsched-alerts" in w.failure
        with pytest.raises(WorkerDied, match="pgsched-alerts"):
            w.run()
    finally:
        ticker.stop()


def test_a_hung_completion_stops_the_worker_non_zero(dsn: str, workers: list[Worker]) -> None:
    """A completion that waits for good (here on a row lock another session holds) used to
    leave the worker heartbeating over a task it could not finish, and run() never returned.
    The threshold is the setting completion_hang_timeout; the control thread's check runs here
    at injected times on both sides of it, so the test does not wait it out."""
    gate = threading.Event()
    started = threading.Event()
    reg = Registry()

    @reg.task("gated")
    def gated(payload: Any) -> str:
        started.set()
        gate.wait(30)
        return "done"

    with Client(dsn) as c:
        tid = c.submit("gated", queue="hang")
    settings = Settings(**FAST.model_dump(exclude_unset=True), completion_hang_timeout=600)
    w = Worker(dsn, settings=settings, registry=reg, name="hung", queues=["hang"])
    assert w.completion_hang_s == 600
    workers.append(w)
    w.start()
    assert started.wait(30)
    with psycopg.connect(dsn) as locker:  # a transaction that holds the task's row
        locker.execute("SELECT 1 FROM pgsched.tasks WHERE id = %s FOR UPDATE", (tid,))
        gate.set()
        in_flight = wait_until(w.completer.hung_for, message="the completion write to start")
        began = time.monotonic() - in_flight[1]
        assert not w.check_hang(began + 599)  # not yet: the worker runs on
        assert w.failure is None and not w.wait(0)
        assert w.check_hang(began + 601)
        locker.rollback()  # the shutdown's last flush need not wait for the lock
    assert w.wait(40), "the worker stops once its completion hung"
    assert w.failure is not None and "hung for 601 s" in w.failure
    with pytest.raises(WorkerDied, match="hung"):
        w.run()
    assert one(dsn, "SELECT status FROM pgsched.workers WHERE name = 'hung'") == "stopped"


@pytest.mark.parametrize(
    ("task_type", "payload", "expected"),
    [
        ("dummy", {"sleepDurationMs": 10**300}, "sleepDurationMs"),
        ("dummy", {"sleepDurationMs": 1e300}, "sleepDurationMs"),
        ("shell", {"command": "true", "env": {"A=B": "x"}}, "env"),
    ],
)
def test_a_payload_no_attempt_can_run_fails_for_good(
    dsn: str, workers: list[Worker], task_type: str, payload: Any, expected: str
) -> None:
    """docs/cli.md says a payload of the wrong shape fails its task permanently."""
    with Client(dsn) as c:
        tid = c.submit(task_type, payload, queue="perm", max_attempts=5)
    start(dsn, workers, Registry(), name="perm", queues=["perm"], allow_shell=True)
    wait_until(
        lambda: one(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", tid) == "failed",
        20,
        message="the task fails",
    )
    assert one(dsn, "SELECT attempts FROM pgsched.all_tasks WHERE id = %s", tid) == 1
    assert expected in one(dsn, "SELECT last_error FROM pgsched.all_tasks WHERE id = %s", tid)
