"""Schedules: YAML validation with line numbers, apply/list/pause/resume, exactly-once ticking,
misfire policies and DST with a fixed clock."""

from __future__ import annotations

import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched.db import connect
from pgsched.errors import UsageError
from pgsched.schedule_file import parse_schedules
from pgsched.schedules import (
    Scheduler,
    apply_schedules,
    list_schedules,
    load_schedules,
    pause_schedule,
    resume_schedule,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def _tasks(dsn: str) -> list[dict]:
    with psycopg.connect(dsn, row_factory=dict_row) as c:
        return c.execute(
            "SELECT t.schedule_tick, s.name, t.task_type, t.payload, t.queue, t.status "
            "FROM pgsched.all_tasks t JOIN pgsched.schedules s ON s.id = t.schedule_id "
            "ORDER BY s.name, t.schedule_tick"
        ).fetchall()


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            - name: ok
              every: 10s
              task_type: noop
            - name: daily-report
              cron: "0 9 * * *"
              timezone: Mars/Base
              task_type: noop
            """,
            "s.yaml:6: schedule 'daily-report': unknown timezone 'Mars/Base'",
        ),
        (
            """
            schedules:
              - name: bad-cron
                cron: "61 * * * *"
                task_type: noop
            """,
            "s.yaml:3: schedule 'bad-cron': invalid cron '61 * * * *': bad minute",
        ),
        (
            """
            - name: typo
              every: 5m
              task_type: noop
              prioritty: 3
            """,
            "s.yaml:4: schedule 'typo': unknown key 'prioritty'",
        ),
        (
            """
            - name: no-type
              every: 5m
            """,
            "s.yaml:1: schedule 'no-type': missing task_type",
        ),
        (
            """
            - name: twice
              every: 5m
              task_type: noop
            - name: twice
              every: 1m
              task_type: noop
            """,
            "s.yaml:4: schedule 'twice': duplicate name (first defined on line 1)",
        ),
        (
            """
            - name: both
              every: 5m
              cron: "* * * * *"
              task_type: noop
            """,
            "s.yaml:1: schedule 'both': give cron or every (one of them)",
        ),
        (
            """
            - name: bad-every
              every: soon
              task_type: noop
            """,
            "s.yaml:2: schedule 'bad-every': every: 'soon' is not a duration",
        ),
        (
            """
            - name: bad-misfire
              every: 5m
              task_type: noop
              misfire: sometimes
            """,
            "s.yaml:4: schedule 'bad-misfire': misfire: ",
        ),
    ],
)
def test_invalid_file_names_schedule_and_line_and_applies_nothing(
    tmp_path: Path, dsn: str, body: str, expected: str
) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(UsageError) as info:
        load_schedules(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path.parent) + "/")
    assert expected in msg
    assert info.value.exit_code == 2
    with pytest.raises(UsageError):
        Scheduler(dsn, path)  # refused before touching the database
    with connect(dsn) as c:
        assert list_schedules(c) == []


def test_example_file_is_valid() -> None:
    defs = load_schedules(ROOT / "examples" / "schedules.yaml")
    assert {d.name for d in defs} >= {"daily-report", "cleanup-temp-files", "data-backup"}


# -- apply / list / pause / resume --------------------------------------------------------------

FILE = """
schedules:
  - name: a
    every: 10s
    task_type: noop
  - name: b
    cron: "0 9 * * 1-5"
    timezone: Europe/Berlin
    task_type: dummy
    payload: {sleepDurationMs: 10}
    queue: reports
    priority: 5
"""


def test_apply_reports_added_changed_removed_and_dry_run(dsn: str) -> None:
    defs = parse_schedules(FILE)
    with connect(dsn) as c:
        dry = apply_schedules(c, defs, dry_run=True, now=T0)
        assert dry.added == ["a", "b"] and list_schedules(c) == []
        r = apply_schedules(c, defs, now=T0)
        assert r.added == ["a", "b"] and not r.changed
        rows = {s["name"]: s for s in list_schedules(c)}
        assert rows["a"]["next_tick"] == T0 + timedelta(seconds=10)
        assert rows["b"]["next_tick"] == datetime(2024, 6, 3, 7, 0, tzinfo=UTC)  # Mon 09:00 CEST
        again = apply_schedules(c, defs, now=T0 + timedelta(seconds=3))
        assert again.unchanged == ["a", "b"] and not again.added and not again.changed
        assert {s["name"]: s["next_tick"] for s in list_schedules(c)}["a"] == rows["a"]["next_tick"]
        changed = parse_schedules(FILE.replace("priority: 5", "priority: 6"))[1:]
        r = apply_schedules(c, changed, now=T0)
        assert r.changed == {"b": ["priority"]} and r.kept == ["a"] and not r.removed
        r = apply_schedules(c, changed, prune=True, dry_run=True, now=T0)
        assert r.removed == ["a"] and len(list_schedules(c)) == 2
        r = apply_schedules(c, changed, prune=True, now=T0)
        assert r.removed == ["a"] and [s["name"] for s in list_schedules(c)] == ["b"]


def test_pause_and_resume(dsn: str) -> None:
    sched = Scheduler(dsn)
    try:
        with connect(dsn) as c:
            apply_schedules(c, parse_schedules(FILE), now=T0)
            pause_schedule(c, "a")
            assert sched.tick_once(T0 + timedelta(seconds=35)) == 0
            # Ticks that fell while paused are not misfires: it restarts at its next tick.
            resume_schedule(c, "a", now=T0 + timedelta(seconds=41))
            row = {s["name"]: s for s in list_schedules(c)}["a"]
            assert not row["paused"] and row["next_tick"] == T0 + timedelta(seconds=50)
            with pytest.raises(Exception, match="no schedule named 'zzz'"):
                pause_schedule(c, "zzz")
        assert sched.tick_once(T0 + timedelta(seconds=50)) == 1
    finally:
        sched.close()


# -- ticking ------------------------------------------------------------------------------------


def _one(dsn: str, body: str, now: datetime = T0) -> Scheduler:
    with connect(dsn) as c:
        apply_schedules(c, parse_schedules(textwrap.dedent(body)), now=now)
    return Scheduler(dsn)


@pytest.mark.parametrize(
    ("misfire", "step", "outage", "expected"),
    [
        ("once", 10, 95, [90]),
        ("skip", 10, 95, [90]),  # the latest tick is 5 s late: within the grace, it fires
        ("skip", 60, 155, []),  # 35 s late: skipped, the schedule goes on at its next tick
        ("all", 10, 95, [10, 20, 30, 40, 50, 60, 70, 80, 90]),
        ("all\n  misfire_cap: 3", 10, 95, [70, 80, 90]),
    ],
)
def test_misfire_policies(
    dsn: str, misfire: str, step: int, outage: int, expected: list[int]
) -> None:
    sched = _one(dsn, f"- name: m\n  every: {step}s\n  task_type: noop\n  misfire: {misfire}\n")
    try:
        sched.tick_once(T0 + timedelta(seconds=outage))
        ticks = [int((t["schedule_tick"] - T0).total_seconds()) for t in _tasks(dsn)]
        assert ticks == expected
        # Then it is back on its grid: the next tick fires on time, once.
        nxt = T0 + timedelta(seconds=(outage // step + 1) * step)
        assert sched.tick_once(nxt) == 1
        assert sched.tick_once(nxt) == 0
    finally:
        sched.close()


def test_task_carries_the_schedule_definition(dsn: str) -> None:
    sched = _one(dsn, FILE)
    try:
        assert sched.tick_once(datetime(2024, 6, 3, 7, 0, tzinfo=UTC)) == 2  # a (once) and b
        got = {t["name"]: t for t in _tasks(dsn)}
        assert got["b"]["task_type"] == "dummy" and got["b"]["queue"] == "reports"
        assert got["b"]["payload"] == {"sleepDurationMs": 10}
        assert got["b"]["status"] == "pending"
    finally:
        sched.close()


@pytest.mark.parametrize("month", [3, 10])
def test_dst_berlin_daily_0230_with_a_fixed_clock(dsn: str, month: int) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, month, 25, tzinfo=berlin)
    body = "- name: nightly\n  cron: '30 2 * * *'\n  timezone: Europe/Berlin\n"
    sched = _one(dsn, body + "  task_type: noop\n  misfire: skip\n", now=start)
    try:
        now = start
        while now < datetime(2024, month, 31, 23, 0, tzinfo=berlin):
            now += timedelta(minutes=10)
            sched.tick_once(now)
    finally:
        sched.close()
    local = [t["schedule_tick"].astimezone(berlin) for t in _tasks(dsn)]
    assert [d.day for d in local] == [25, 26, 27, 28, 29, 30, 31]  # one per day, none lost
    # 2024-03-31: 02:30 does not exist, the run is at 03:00; 2024-10-27: once, in summer time.
    odd = {3: "2024-03-31T03:00:00+02:00", 10: "2024-10-27T02:30:00+02:00"}[month]
    assert odd in [d.isoformat() for d in local]


def test_three_tickers_create_exactly_one_task_per_tick(dsn: str) -> None:
    with connect(dsn) as c:
        apply_schedules(c, parse_schedules("- {name: fast, every: 1s, task_type: noop}"))
    tickers = [Scheduler(dsn) for _ in range(3)]
    started = datetime.now(UTC)
    for t in tickers:
        t.start()
    time.sleep(4.2)
    for t in tickers:
        t.stop()
    elapsed = (datetime.now(UTC) - started).total_seconds()
    rows = _tasks(dsn)
    ticks = [r["schedule_tick"] for r in rows]
    assert len(ticks) == len(set(ticks))
    assert all(t.microsecond == 0 for t in ticks)
    assert abs(len(ticks) - elapsed) <= 1.5, (len(ticks), elapsed)
    with psycopg.connect(dsn) as c:
        lag = c.execute(
            "SELECT max(extract(epoch FROM created_at - schedule_tick)) FROM pgsched.all_tasks"
        ).fetchone()[0]
    assert lag < 1.0  # each tick's task exists within a second of its due time


def test_scheduler_from_file_applies_and_wakes_on_change(dsn: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "- {name: slow, every: 1h, task_type: noop}\n")
    sched = Scheduler(dsn, path).start()
    try:
        with connect(dsn) as c:
            assert [s["name"] for s in list_schedules(c)] == ["slow"]
            # A new definition due in a second wakes the sleeping scheduler.
            apply_schedules(c, parse_schedules("- {name: soon, every: 1s, task_type: noop}"))
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not any(r["name"] == "soon" for r in _tasks(dsn)):
            time.sleep(0.05)
        assert any(r["name"] == "soon" for r in _tasks(dsn))
    finally:
        sched.stop()


def test_concurrent_ticks_with_threads_and_a_fixed_clock(dsn: str) -> None:
    _one(dsn, "- {name: x, every: 1s, task_type: noop, misfire: all}\n").close()
    scheds = [Scheduler(dsn) for _ in range(4)]
    barrier = threading.Barrier(4)

    def go(s: Scheduler) -> None:
        barrier.wait()
        for i in range(1, 30):
            s.tick_once(T0 + timedelta(seconds=i))

    threads = [threading.Thread(target=go, args=(s,)) for s in scheds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in scheds:
        s.close()
    ticks = [int((r["schedule_tick"] - T0).total_seconds()) for r in _tasks(dsn)]
    assert ticks == list(range(1, 30))
