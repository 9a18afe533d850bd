"""The service threads beside a worker (scheduler, alert ticker) keep looking through a lost
connection, and a death of anything else reaches on_crash."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from pgsched.alerts.ticker import AlertTicker
from pgsched.db import connect
from pgsched.schedule_file import parse_schedules
from pgsched.schedules import Scheduler, apply_schedules
from pgsched.sql import Q
from pgsched.ticking import MAX_SLEEP, Ticking
from tests.conftest import wait_until


class Counting(Ticking):
    thread_name = "pgsched-test-ticking"
    error_event = "test_ticking_error"
    listen = Q.schedule_listen

    def __init__(self, dsn: str, **kw) -> None:
        super().__init__(dsn, **kw)
        self.pids: list[int] = []
        self.fail_with: BaseException | None = None

    def look(self) -> float:
        if self.fail_with is not None:
            raise self.fail_with
        conn = self.connection()
        conn.execute("SELECT 1")  # a lost connection surfaces here
        self.pids.append(conn.info.backend_pid)
        return 0.05


def _terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_lost_connection_is_replaced_and_the_looks_go_on(dsn: str) -> None:
    svc = Counting(dsn).start()
    try:
        first = wait_until(lambda: svc.pids and svc.pids[-1], message="a first look")
        _terminate(dsn, first)
        wait_until(lambda: svc.pids[-1] != first, message="a look on a new connection")
        assert svc.alive
    finally:
        svc.stop()
    assert not svc.alive


def test_an_error_other_than_the_database_reaches_on_crash(dsn: str) -> None:
    crashed: list[tuple[str, BaseException]] = []
    told = threading.Event()

    def on_crash(name: str, e: BaseException) -> None:
        crashed.append((name, e))
        told.set()

    svc = Counting(dsn, on_crash=on_crash)
    svc.fail_with = SystemExit(3)  # not an Exception: the loop does not retry it
    svc.start()
    assert told.wait(10)
    assert crashed[0][0] == "pgsched-test-ticking" and isinstance(crashed[0][1], SystemExit)
    svc.stop()


def _tasks_of(dsn: str, name: str) -> int:
    with psycopg.connect(dsn, row_factory=dict_row) as c:
        return c.execute(
            "SELECT count(*) AS n FROM pgsched.all_tasks t JOIN pgsched.schedules s"
            " ON s.id = t.schedule_id WHERE s.name = %s",
            (name,),
        ).fetchone()["n"]


def _service_session(dsn: str) -> int | None:
    """The pid of the one session in this test's database besides the asking one (the
    service's), as pg_stat_activity shows it; None while there is not exactly one."""
    with psycopg.connect(dsn, autocommit=True) as c:
        pids = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return pids[0][0] if len(pids) == 1 else None


def test_the_scheduler_ticks_after_its_connection_is_killed(dsn: str, tmp_path: Path) -> None:
    sched = Scheduler(dsn).start()
    try:
        pid = wait_until(lambda: _service_session(dsn), message="the scheduler's connection")
        _terminate(dsn, pid)
        with connect(dsn) as c:
            apply_schedules(c, parse_schedules("- {name: soon, every: 1s, task_type: noop}"))
        wait_until(lambda: _tasks_of(dsn, "soon") > 0, message="a tick after the reconnect")
    finally:
        sched.stop()


def test_the_alert_ticker_reconnects_too(dsn: str) -> None:
    ticker = AlertTicker(dsn).start()
    try:
        pid = wait_until(lambda: _service_session(dsn), message="the ticker's connection")
        _terminate(dsn, pid)
        wait_until(
            lambda: _service_session(dsn) not in (None, pid),
            timeout=15,
            message="the ticker on a new connection",
        )
    finally:
        ticker.stop()


def _last_statement(dsn: str, pid: int) -> tuple[object, str] | None:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT query_start, query FROM pg_stat_activity WHERE pid = %s AND state = 'idle'",
            (pid,),
        ).fetchone()
    return (row[0], row[1]) if row else None


def test_an_idle_alert_ticker_runs_no_statement_until_something_wakes_it(dsn: str) -> None:
    """A fleet of idle workers each runs a ticker: between looks at what is due it sends the
    database nothing, however often its thread wakes (every MAX_SLEEP seconds); a
    notification (an event recorded, the rules changed) makes it look at once."""
    ticker = AlertTicker(dsn).start()
    try:
        pid = wait_until(lambda: _service_session(dsn), message="the ticker's connection")
        first = wait_until(
            lambda: (s := _last_statement(dsn, pid)) and "has something to do next" in s[1] and s,
            message="the ticker's first look, ending with when to look next",
        )
        time.sleep(MAX_SLEEP + 1.5)  # a window in which the old ticker looked again
        assert _last_statement(dsn, pid) == first, "the idle ticker looked again"
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("NOTIFY pgsched_alerts, 'rules'")
        wait_until(
            lambda: (s := _last_statement(dsn, pid)) is not None and s[0] != first[0],
            message="a look after the notification",
        )
    finally:
        ticker.stop()
