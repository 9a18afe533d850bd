"""`pgsched workers|dlq|top`: in-process through typer's CliRunner against rows written here
directly, plus a few real subprocess runs for exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import cli
from tests.cli import ok

PGSCHED = Path(sys.executable).parent / "pgsched"


def refused(dsn: str, *args: str, code: int = 1) -> str:
    return cli.refused(dsn, *args, code=code)


def add_worker(conn: psycopg.Connection, name: str, status: str = "active", **kw: Any) -> None:
    row = {
        "host": "host-a",
        "pid": 4242,
        "queues": ["default", "mail"],
        "cpu": 37.5,
        "mem": 61.0,
        "running": 3,
        "capacity": 8,
        "age": "2 seconds",
        **kw,
    }
    conn.execute(
        "INSERT INTO pgsched.workers (name, host, pid, status, queues, cpu_usage, memory_usage,"
        " current_task_count, max_task_capacity, last_heartbeat)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now() - %s::interval)",
        (name, row["host"], row["pid"], status, row["queues"], row["cpu"], row["mem"],
         row["running"], row["capacity"], row["age"]),
    )  # fmt: skip


def add_dead(
    conn: psycopg.Connection,
    task_type: str = "email",
    queue: str = "default",
    error: str = "boom: SMTP refused",
    age: str = "1 minute",
) -> int:
    """A task that failed all of its attempts, its executions, and its dead-letter entry."""
    tid = conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, payload, status, attempts, max_attempts,"
        " last_error, started_at, finished_at)"
        " VALUES (%s, %s, '{\"to\": \"a@b.c\"}', 'failed', 2, 2, %s, now(), now())"
        " RETURNING id",
        (task_type, queue, error),
    ).fetchone()[0]
    for attempt in (1, 2):
        conn.execute(
            "INSERT INTO pgsched.task_executions (task_id, attempt, worker, started_at,"
            " finished_at, outcome, duration_ms, error)"
            " VALUES (%s, %s, 'w1', now(), now(), 'failure', 12.5, %s)",
            (tid, attempt, error),
        )
    conn.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts,"
        " last_error, failed_at)"
        " SELECT id, queue, task_type, payload, attempts, last_error, now() - %s::interval"
        " FROM pgsched.all_tasks WHERE id = %s",
        (age, tid),
    )
    return tid


def task(conn: psycopg.Connection, tid: int) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT status, attempts, max_attempts, finished_at IS NULL FROM pgsched.all_tasks"
        " WHERE id = %s",
        (tid,),
    ).fetchone()


def dead_ids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT task_id FROM pgsched.dead_letter ORDER BY 1")]


# -- workers -----------------------------------------------------------------------------------


def test_workers_lists_load_and_heartbeat(dsn: str, conn: psycopg.Connection) -> None:
    add_worker(conn, "alpha")
    add_worker(conn, "beta", status="paused", host="host-b", pid=7, running=0, age="40 seconds")
    add_worker(conn, "gone", status="stopped", age="3 hours")
    data = json.loads(ok(dsn, "workers", "--json"))
    assert [w["name"] for w in data] == ["alpha", "beta"]  # long-stopped ones hidden
    alpha = data[0]
    assert (alpha["status"], alpha["host"], alpha["pid"]) == ("active", "host-a", 4242)
    assert alpha["queues"] == ["default", "mail"]
    assert (alpha["cpu_usage"], alpha["memory_usage"]) == (37.5, 61.0)
    assert (alpha["current_task_count"], alpha["max_task_capacity"]) == (3, 8)
    assert 1.5 < alpha["heartbeat_age_s"] < 60
    assert [w["name"] for w in json.loads(ok(dsn, "workers", "--json", "--all"))] == [
        "alpha",
        "beta",
        "gone",
    ]
    table = ok(dsn, "workers")
    for text in ("alpha", "beta", "paused", "host-b", "3/8", "38", "61", "ago"):
        assert text in table


def test_workers_empty(dsn: str) -> None:
    assert ok(dsn, "workers").strip() == "no workers"
    assert json.loads(ok(dsn, "workers", "--json")) == []


def test_pause_and_resume_update_the_row_and_notify(dsn: str, conn: psycopg.Connection) -> None:
    add_worker(conn, "alpha")
    add_worker(conn, "beta")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_control")
        assert "paused" in ok(dsn, "workers", "pause", "alpha")
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("pgsched_control", "alpha")]
        status = dict(conn.execute("SELECT name, status FROM pgsched.workers").fetchall())
        assert status == {"alpha": "paused", "beta": "active"}

        ok(dsn, "workers", "resume", "alpha")
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [n.payload for n in notes] == ["alpha"]
    row = conn.execute("SELECT status FROM pgsched.workers WHERE name = 'alpha'").fetchone()
    assert row == ("active",)


def test_pause_unknown_or_stopped_worker_is_one_line(dsn: str, conn: psycopg.Connection) -> None:
    assert refused(dsn, "workers", "pause", "nobody") == (
        "error: no worker named 'nobody' (pgsched workers lists them)"
    )
    add_worker(conn, "old", status="stopped")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_control")
        assert refused(dsn, "workers", "resume", "old") == (
            "error: cannot resume worker 'old': it is stopped"
        )
        assert list(listener.notifies(timeout=0.3)) == []


# -- dead letter -------------------------------------------------------------------------------


def test_dlq_list(dsn: str, conn: psycopg.Connection) -> None:
    assert "empty" in ok(dsn, "dlq", "list")
    a = add_dead(conn, "email", age="2 minutes")
    b = add_dead(conn, "report", queue="batch", error="line 1\nline 2")
    data = json.loads(ok(dsn, "dlq", "list", "--json"))
    assert [d["task_id"] for d in data] == [b, a]  # newest first
    assert data[1]["payload"] == {"to": "a@b.c"}
    assert (data[1]["attempts"], data[1]["task_status"]) == (2, "failed")
    assert [d["task_id"] for d in json.loads(ok(dsn, "dlq", "list", "--json", "-n", "1"))] == [b]
    only = json.loads(ok(dsn, "dlq", "list", "--json", "--queue", "batch"))
    assert [d["task_id"] for d in only] == [b]
    table = ok(dsn, "dlq", "list")
    assert str(a) in table and "SMTP" in table and "line 2" not in table


def test_dlq_requeue_one(dsn: str, conn: psycopg.Connection) -> None:
    a, b = add_dead(conn), add_dead(conn)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        out = ok(dsn, "dlq", "requeue", str(a), "--attempts", "3")
        assert f"task {a} is pending again (max attempts now 5)" in out
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["default"]
    assert task(conn, a) == ("pending", 2, 5, True)
    assert dead_ids(conn) == [b]


def test_dlq_requeue_all(dsn: str, conn: psycopg.Connection) -> None:
    a, b, c = add_dead(conn), add_dead(conn, queue="batch"), add_dead(conn, queue="batch")
    assert f"requeued 2 task(s): {b}, {c}" in ok(dsn, "dlq", "requeue", "--all", "-q", "batch")
    assert dead_ids(conn) == [a]
    ok(dsn, "dlq", "requeue", "--all")
    assert dead_ids(conn) == []
    # a fresh budget: the default max_attempts setting (3) more tries
    assert {task(conn, t) for t in (a, b, c)} == {("pending", 2, 5, True)}
    assert "nothing to requeue" in ok(dsn, "dlq", "requeue", "--all")


def test_dlq_requeue_errors(dsn: str, conn: psycopg.Connection) -> None:
    assert refused(dsn, "dlq", "requeue", "999") == (
        "error: no dead-letter entry for task 999 (pgsched dlq list shows them)"
    )
    refused(dsn, "dlq", "requeue", code=2)
    refused(dsn, "dlq", "requeue", "1", "--all", code=2)
    refused(dsn, "dlq", "requeue", "x", code=2)
    tid = add_dead(conn)
    conn.execute("DELETE FROM pgsched.tasks WHERE id = %s", (tid,))
    assert "no longer exists" in refused(dsn, "dlq", "requeue", str(tid))


def test_dlq_purge(dsn: str, conn: psycopg.Connection) -> None:
    old = add_dead(conn, age="10 days")
    new = add_dead(conn, age="1 hour")
    assert "add --yes" in refused(dsn, "dlq", "purge", code=2)
    assert "deleted 1 dead-letter entry" in ok(dsn, "dlq", "purge", "--older-than", "7d", "--yes")
    assert dead_ids(conn) == [new]
    assert task(conn, old)[0] == "failed"  # the task itself stays
    assert "nothing to purge" in ok(dsn, "dlq", "purge", "--older-than", "7d", "--yes")
    refused(dsn, "dlq", "purge", "--older-than", "soon", "--yes", code=2)
    ok(dsn, "dlq", "purge", "--yes")
    assert dead_ids(conn) == []


# -- top ---------------------------------------------------------------------------------------


def test_top_once_renders_a_frame_with_data(dsn: str, conn: psycopg.Connection) -> None:
    add_worker(conn, "alpha", cpu=91.0)
    add_dead(conn, error="ConnectionRefusedError: [Errno 111]")
    conn.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('email', 'mail')")
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, status, run_at) VALUES ('noop', 'pending',"
        " now() - interval '30 seconds')"
    )
    conn.execute(
        "INSERT INTO pgsched.task_executions (task_id, attempt, worker, finished_at, outcome)"
        " SELECT 1000 + g, 1, 'alpha', now() - g * interval '1 second', 'success'"
        " FROM generate_series(0, 19) g"
    )
    frame = ok(dsn, "top", "--once")
    for text in ("queues", "mail", "default", "workers", "alpha", "3/8", "91%", "finished/s"):
        assert text in frame, text
    assert "ConnectionRefusedError" in frame and "dead letter: 1" in frame
    s = json.loads(ok(dsn, "top", "--once", "--json"))
    assert s["queues"]["default"] == {"failed": 1, "pending": 1}
    assert s["oldest_ready"]["default"]["age_s"] >= 29
    # 20 successes over the last 20 s (+2 failures just now): 10+2 in the last 10 s
    assert s["throughput"]["per_s_10s"] == pytest.approx(1.2)
    assert (s["throughput"]["ok_1m"], s["throughput"]["failed_1m"]) == (20, 2)
    assert s["dead_letter"] == 1 and len(s["failures"]) == 2


def test_top_on_an_empty_database(dsn: str) -> None:
    frame = ok(dsn, "top", "--once")
    assert "no tasks yet" in frame and "no workers" in frame and "no failed attempts" in frame
    refused(dsn, "top", "--json", code=2)


# -- real processes: exit codes and one line on stderr -------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["workers", "pause", "nobody"], 1, "error: no worker named 'nobody'"),
        (["dlq", "requeue", "12345"], 1, "error: no dead-letter entry for task 12345"),
        (["dlq", "purge", "--older-than", "x"], 2, "error: --older-than: 'x' is not a duration"),
    ],
)
def test_subprocess_errors(dsn: str, args: list[str], code: int, message: str) -> None:
    r = subprocess.run(
        [str(PGSCHED), "--dsn", dsn, *args], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_subprocess_top_once_and_workers_json(dsn: str, conn: psycopg.Connection) -> None:
    add_worker(conn, "alpha")
    r = subprocess.run(
        [str(PGSCHED), "--dsn", dsn, "top", "--once"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0 and "alpha" in r.stdout, r.stderr
    r = subprocess.run(
        [str(PGSCHED), "--dsn", dsn, "workers", "--json"], capture_output=True, text=True
    )
    assert r.returncode == 0 and json.loads(r.stdout)[0]["name"] == "alpha"
