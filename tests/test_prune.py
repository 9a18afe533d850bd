"""Retention: finished tasks older than `retention` go, with their attempt rows; nothing else
does. Workers keep up with a backlog of expired rows and never block each other."""

from __future__ import annotations

from typing import Any

import psycopg

from pgsched.worker import reaper
from tests.conftest import FAST, wait_until

SEED = """
WITH t AS (
    INSERT INTO pgsched.tasks (task_type, status, attempts, started_at, finished_at, queue)
    SELECT 'noop', s, 1, now() - %(age)s::interval,
           CASE WHEN s IN ('succeeded', 'failed', 'cancelled')
                THEN now() - %(age)s::interval + i * interval '1 ms' END,
           %(queue)s
    FROM generate_series(1, %(n)s) i, unnest(%(statuses)s::text[]) s
    RETURNING id)
INSERT INTO pgsched.task_executions (task_id, attempt, worker, outcome)
SELECT id, 1, 'w', 'success' FROM t"""


def seed(
    conn: psycopg.Connection,
    queue: str,
    age: str,
    n: int,
    statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
) -> None:
    conn.execute(SEED, {"queue": queue, "age": age, "n": n, "statuses": list(statuses)})


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT queue, count(*) FROM pgsched.all_tasks t"
            " WHERE EXISTS (SELECT 1 FROM pgsched.task_executions e WHERE e.task_id = t.id)"
            " GROUP BY queue"
        ).fetchall()
    )


def test_prune_takes_only_expired_finished_tasks_and_their_attempts(
    conn: psycopg.Connection,
) -> None:
    seed(conn, "old", "2 hours", 4)  # 12 finished rows, expired
    seed(conn, "recent", "10 minutes", 4)  # finished, within retention
    seed(conn, "live", "2 hours", 3, ("pending", "running", "retrying"))
    assert reaper.prune(conn, retention=3600, limit=5) == 5
    assert reaper.prune(conn, retention=3600, limit=100) == 7
    assert reaper.prune(conn, retention=3600) == 0
    assert counts(conn) == {"recent": 12, "live": 9}
    orphans = conn.execute(
        "SELECT count(*) FROM pgsched.task_executions e WHERE NOT EXISTS"
        " (SELECT 1 FROM pgsched.all_tasks t WHERE t.id = e.task_id)"
    ).fetchone()
    assert orphans[0] == 0
    assert reaper.prune(conn, retention=0) == 0  # 0 keeps everything
    assert counts(conn) == {"recent": 12, "live": 9}


def test_two_pruners_take_disjoint_batches_without_waiting(
    dsn: str, conn: psycopg.Connection
) -> None:
    seed(conn, "old", "2 hours", 10, ("succeeded",))
    with psycopg.connect(dsn) as a, psycopg.connect(dsn, autocommit=True) as b:
        b.execute("SET lock_timeout = '2s'")  # blocking on a's rows would fail here
        assert reaper.prune(a, retention=60, limit=6) == 6  # a holds its rows, uncommitted
        assert reaper.prune(b, retention=60, limit=6) == 4
        a.commit()
    assert conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 0


def test_worker_catches_up_with_a_backlog_of_expired_rows(
    make_worker: Any,
    conn: psycopg.Connection,
) -> None:
    """Three full batches are waiting: a worker removes them within seconds (one batch a
    minute fell behind any queue busier than ~17 tasks/s)."""
    seed(conn, "old", "2 hours", reaper.PRUNE_BATCH, ("succeeded", "failed", "cancelled"))
    seed(conn, "recent", "1 minute", 5, ("succeeded",))
    _w, ev = make_worker(settings=FAST.model_copy(update={"retention": 3600.0}))
    wait_until(lambda: counts(conn).get("old", 0) == 0, 30, message="expired rows pruned")
    assert counts(conn) == {"recent": 5}
    # Each batch is logged after its commit: the last line may come just after the rows go.
    wait_until(lambda: ev.count("tasks_pruned") >= 3, 10, message="three batches logged")
