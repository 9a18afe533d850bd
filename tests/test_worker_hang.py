"""A worker that hangs (SIGSTOP) while holding tasks, and the waker role of the idle fleet:
after the heartbeat timeout a live worker runs its tasks; when it resumes it writes nothing."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched.client import Client
from pgsched.sql import Q
from pgsched.worker import heartbeat, reaper
from tests.conftest import q, wait_until

pytestmark = pytest.mark.slow


def test_hung_worker_is_fenced_and_its_tasks_run_elsewhere(
    dsn: str,
    spawn: Any,
    tmp_path: Path,
) -> None:
    client = Client(dsn)
    # Both workers start idle; the rescuer is paused before the tasks exist, so the victim
    # takes both (with free slots left, it stays the waker) however long the start-up took.
    victim = spawn("--name", "victim", "--concurrency", "4")
    rescuer = spawn("--name", "rescuer", "--concurrency", "4")
    wait_until(
        lambda: q(dsn, "SELECT count(*) FROM pgsched.workers WHERE status = 'active'") == 2,
        30,
        message="both workers registered",
    )
    set_status = "SELECT name FROM pgsched.workers WHERE name = 'rescuer' AND status = %s"
    with psycopg.connect(dsn, autocommit=True) as c:
        Q.worker_set_status.run(c, {"name": "rescuer", "status": "paused"})
    rescuer_log = tmp_path / "worker1.log"
    wait_until(lambda: "worker_paused" in rescuer_log.read_text(), 30, message="the rescuer pauses")
    ids = [client.submit("dummy", {"sleepDurationMs": 1500}) for _ in range(2)]
    wait_until(
        lambda: (
            q(
                dsn,
                "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'running' "
                "AND assigned_worker = 'victim'",
            )
            == 2
        ),
        30,
        message="victim claims",
    )
    os.kill(victim.pid, signal.SIGSTOP)
    with psycopg.connect(dsn, autocommit=True) as c:
        Q.worker_set_status.run(c, {"name": "rescuer", "status": "active"})
    assert q(dsn, set_status, "active") == "rescuer"
    try:
        # Heartbeat timeout is 5 s (tests/test_worker_process.py ENV).
        wait_until(
            lambda: (
                q(dsn, "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'succeeded'") == 2
            ),
            40,
            message="the hung worker's tasks to succeed elsewhere",
        )
        assert (
            q(
                dsn,
                "SELECT count(*) FROM pgsched.task_executions "
                "WHERE outcome = 'lost' AND worker = 'victim'",
            )
            == 2
        )
        assert (
            q(
                dsn,
                "SELECT count(*) FROM pgsched.task_executions "
                "WHERE outcome = 'success' AND worker = 'rescuer'",
            )
            == 2
        )
        # Fenced: the victim's sessions are gone although its process still exists.
        assert (
            q(
                dsn,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '' "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                "AND objid = (SELECT id FROM pgsched.workers WHERE name = 'victim')::oid "
                "AND objsubid = 2)",
            )
            == 0
        )
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    # Resumed, the victim finishes its stale copies; their completions must be refused.
    log = tmp_path / "worker0.log"
    wait_until(
        lambda: log.read_text().count("task_completion_rejected") >= 2 or victim.poll() is not None,
        30,
        message="victim's late completions",
    )
    for task_id in ids:
        assert (
            q(
                dsn,
                "SELECT count(*) FROM pgsched.task_executions "
                "WHERE task_id = %s AND outcome = 'success'",
                task_id,
            )
            == 1
        )
        assert q(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", task_id) == "succeeded"
    assert rescuer.poll() is None


def test_heartbeat_says_when_the_stalest_other_worker_expires(conn: psycopg.Connection) -> None:
    """The worker aims a recovery run at that moment, so a hung worker's tasks go back at
    heartbeat_timeout rather than at the next periodic run."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for name, age in (("me", 0), ("fresh", 1), ("stale", 4), ("gone", 30)):
        conn.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status, last_heartbeat)"
            " VALUES (%s, 'h', 1, %s, %s)",
            (name, "dead" if name == "gone" else "active", t0 - timedelta(seconds=age)),
        )
    me = conn.execute("SELECT id FROM pgsched.workers WHERE name = 'me'").fetchone()[0]
    params = {
        "id": me,
        "cpu": 0.0,
        "memory": 0.0,
        "running": 0,
        "capacity": 1,
        "queues": ["default"],
        "heartbeat_timeout": 5.0,
        "ns": None,
        "waker_signature": None,
        "now": t0,
    }
    row = Q.heartbeat.run(conn.cursor(row_factory=dict_row), params)
    assert row["live_workers"] == 3  # the dead one does not count
    assert row["next_expiry_s"] == pytest.approx(1.0)  # 'stale' beat 4 s ago, timeout 5 s
    conn.execute("UPDATE pgsched.workers SET status = 'dead' WHERE id <> %s", (me,))
    row = Q.heartbeat.run(conn.cursor(row_factory=dict_row), params)
    assert row["next_expiry_s"] is None  # nobody else to watch


def test_heartbeat_commits_without_waiting_for_its_flush_and_only_its_own(
    conn: psycopg.Connection,
) -> None:
    """synchronous_commit is off for the heartbeat's transaction, and back on after it."""
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('beater', 'h', 1)")
    wid = conn.execute("SELECT id FROM pgsched.workers WHERE name = 'beater'").fetchone()[0]
    conn.execute("SET synchronous_commit = on")  # the test server runs without it
    with conn.transaction():
        row = heartbeat.beat(
            conn.cursor(row_factory=dict_row),
            wid,
            cpu=0.0,
            memory=0.0,
            running=0,
            capacity=1,
            queues=["default"],
            heartbeat_timeout=5.0,
        )
        assert row is not None and row["live_workers"] == 1
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"


def test_a_periodic_recovery_run_keeps_the_aim_at_the_next_expiry() -> None:
    """A periodic run that comes before the stalest worker's expiry must not drop the run aimed
    at it: the next heartbeat (an idle pace of heartbeat_timeout / 3) would come too late."""
    pacer = reaper.RecoveryPacer(now=0.0, pid=1)
    pacer.on_beat(10.0, live_workers=2, next_expiry_s=3.0)  # aimed at 13.02-13.07
    aim = pacer.expiry
    assert 13.0 < aim < 13.1
    pacer.next_periodic = 11.0
    assert pacer.due(11.0)
    pacer.ran(11.0)  # the periodic run, before the expiry
    assert pacer.expiry == aim
    pacer.next_periodic = float("inf")  # only the aimed run left
    assert pacer.wake_at() == aim
    assert not pacer.due(aim - 0.01)
    assert pacer.due(aim)
    pacer.ran(aim)  # the aimed run: the next heartbeat aims the next one
    assert pacer.expiry == float("inf")
    assert pacer.next_periodic > aim


def test_recovery_runs_spread_over_the_fleet_and_tighten_when_it_shrinks() -> None:
    pacer = reaper.RecoveryPacer(now=0.0, pid=1)
    pacer.on_beat(1.0, live_workers=100, next_expiry_s=None)
    assert pacer.expiry == float("inf")
    pacer.ran(1.0)
    assert 1.0 + 50 <= pacer.next_periodic <= 1.0 + 150  # ~1 run/s across 100 workers
    pacer.on_beat(2.0, live_workers=2, next_expiry_s=None)  # the fleet shrank
    assert pacer.next_periodic <= 2.0 + 3.0
