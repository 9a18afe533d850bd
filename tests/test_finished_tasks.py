"""Finished tasks leave the hot table (revision 0015): where each kind of task ends up, how the
surface reads them, how a retry brings one back, how retention prunes them, and the migration
both ways on a database holding tasks of every status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import migrate
from pgsched.admin import Admin
from pgsched.client import Client
from pgsched.db import connect
from pgsched.registry import Registry
from pgsched.worker import reaper
from tests.conftest import wait_until


def where(conn: psycopg.Connection, task_id: int) -> list[str]:
    """The tables that hold the task's row."""
    return [
        table
        for table in ("tasks", "finished_tasks")
        if conn.execute(f"SELECT 1 FROM pgsched.{table} WHERE id = %s", (task_id,)).fetchone()
    ]


def test_a_plain_task_moves_when_it_ends_and_a_keyed_one_stays(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    reg = Registry()

    @reg.task("ok")
    def ok(payload: Any) -> Any:
        return {"got": payload}

    @reg.task("bad", backoff_base=0.01, backoff_cap=0.02)
    def bad(payload: Any) -> None:
        raise ValueError("no")

    with Client(dsn) as c:
        plain = c.submit("ok", {"n": 1})
        keyed = c.submit("ok", {"n": 2}, key="k-1")
        failed = c.submit("bad", max_attempts=2)
        later = c.submit("ok", delay=timedelta(hours=1))
    _w, ev = make_worker(registry=reg)
    wait_until(lambda: ev.count("task_succeeded") == 2, 10, message="two successes")
    wait_until(lambda: ev.count("task_failed", task_id=failed), 10, message="failed for good")

    assert where(conn, plain) == ["finished_tasks"]
    assert where(conn, failed) == ["finished_tasks"]
    assert where(conn, keyed) == ["tasks"]  # its key keeps refusing a duplicate
    assert where(conn, later) == ["tasks"]
    with Client(dsn) as c:
        t = c.get(plain)
        assert (t["status"], t["result"], t["progress"], t["attempts"]) == (
            "succeeded", {"got": {"n": 1}}, 1.0, 1
        )  # fmt: skip
        assert t["finished_at"] is not None and t["started_at"] is not None
        assert [h["outcome"] for h in t["history"]] == ["success"]
        f = c.get(failed)
        assert (f["status"], f["attempts"], f["last_error"]) == ("failed", 2, "ValueError: no")
        assert [h["outcome"] for h in f["history"]] == ["failure", "failure"]
        assert c.submit("ok", {"n": 3}, key="k-1") == keyed
        listed = {r["id"]: r["status"] for r in c.list(limit=10)}
    assert listed == {later: "pending", failed: "failed", keyed: "succeeded", plain: "succeeded"}
    dead = conn.execute("SELECT task_id FROM pgsched.dead_letter").fetchall()
    assert dead == [(failed,)]
    # Every version the task had plus the completion's: a stale completion finds nothing.
    (version,) = conn.execute(
        "SELECT version FROM pgsched.finished_tasks WHERE id = %s", (plain,)
    ).fetchone()
    assert version == 2  # claimed, then finished


def test_a_moved_failed_task_is_retried_and_runs_again(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    reg = Registry()
    runs: list[int] = []

    @reg.task("once-bad")
    def once_bad(payload: Any, ctx: Any) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first time")

    with Client(dsn) as c:
        tid = c.submit("once-bad", max_attempts=1)
        _w, ev = make_worker(registry=reg)
        wait_until(lambda: ev.count("task_failed", task_id=tid), 10, message="failed")
        assert where(conn, tid) == ["finished_tasks"]
        assert c.retry(tid, attempts=1) == 2
        wait_until(lambda: ev.count("task_succeeded", task_id=tid), 10, message="second run")
        t = c.get(tid)
    assert runs == [1, 2]
    assert (t["status"], t["attempts"], t["last_error"]) == ("succeeded", 2, None)
    assert where(conn, tid) == ["finished_tasks"]
    assert conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone() == (0,)


def test_dlq_requeue_all_brings_moved_tasks_back(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    reg = Registry()

    @reg.task("bad")
    def bad(payload: Any) -> None:
        raise ValueError("no")

    with Client(dsn) as c:
        ids = [c.submit("bad", max_attempts=1) for _ in range(3)]
        w, ev = make_worker(registry=reg)
        wait_until(lambda: ev.count("task_failed") == 3, 10, message="three failed")
        w.stop(timeout=15)
        assert all(where(conn, i) == ["finished_tasks"] for i in ids)
        assert Admin(c).dlq_requeue_all(attempts=2) == ids
        assert {c.get(i)["status"] for i in ids} == {"pending"}
    assert all(where(conn, i) == ["tasks"] for i in ids)


def test_retention_prunes_both_tables_with_attempts_and_edges(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    with Client(dsn) as c:
        ids = [c.submit("noop") for _ in range(5)]
    _w, ev = make_worker()
    wait_until(lambda: ev.count("task_succeeded") == 5, 10, message="five successes")
    # A finished workflow task stays in the hot table, with an edge to a parent.
    conn.execute("INSERT INTO pgsched.workflows (name) VALUES ('wf')")
    wf_ids = [
        r[0]
        for r in conn.execute(
            "INSERT INTO pgsched.tasks (task_type, status, attempts, finished_at, workflow_id,"
            " workflow_node) SELECT 'noop', 'succeeded', 1, now(), w.id, n"
            " FROM pgsched.workflows w, unnest(ARRAY['a', 'b']) n RETURNING id"
        ).fetchall()
    ]
    conn.execute(
        "INSERT INTO pgsched.task_dependencies (task_id, depends_on) VALUES (%s, %s)",
        (wf_ids[1], wf_ids[0]),
    )
    conn.execute("UPDATE pgsched.finished_tasks SET finished_at = now() - interval '2 days'")
    conn.execute("UPDATE pgsched.tasks SET finished_at = now() - interval '2 days'")
    with connect(dsn) as c:
        pruned = reaper.prune(c, retention=86400, limit=3)
        assert pruned == 5  # up to 3 from each table: 3 moved, the 2 workflow tasks
        assert reaper.prune(c, retention=86400, limit=3) == 2
        assert reaper.prune(c, retention=86400, limit=3) == 0
    count = "SELECT count(*) FROM pgsched.{}"
    for table in ("all_tasks", "task_dependencies"):
        assert conn.execute(count.format(table)).fetchone() == (0,), table
    executions = "SELECT count(*) FROM pgsched.task_executions WHERE task_id = ANY(%s)"
    assert conn.execute(executions, (ids,)).fetchone() == (0,)


def test_a_moved_task_keeps_every_column(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    """A schedule's tick whose schedule was deleted (schedule_id set NULL, the tick kept) has
    no unique key left and moves: its row in finished_tasks is the row it had, the
    completion's changes aside."""
    conn.execute(
        "INSERT INTO pgsched.schedules (name, task_type, every, next_tick)"
        " VALUES ('gone', 'noop', interval '1 hour', now())"
    )
    (tid,) = conn.execute(
        "INSERT INTO pgsched.tasks (task_type, schedule_id, schedule_tick, checkpoint)"
        " SELECT 'noop', id, timestamptz '2030-01-01 00:00+00', '{\"at\": 1}'"
        " FROM pgsched.schedules RETURNING id"
    ).fetchone()
    conn.execute("DELETE FROM pgsched.schedules")
    changed = "{status,version,attempts,assigned_worker,started_at,finished_at,progress}"
    unchanged = f"to_jsonb(t) - '{changed}'::text[]"
    before = conn.execute(
        f"SELECT {unchanged} FROM pgsched.tasks t WHERE id = %s", (tid,)
    ).fetchone()
    _w, ev = make_worker()
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 10, message="ran")
    assert where(conn, tid) == ["finished_tasks"]
    after = conn.execute(
        f"SELECT {unchanged} FROM pgsched.finished_tasks t WHERE id = %s", (tid,)
    ).fetchone()
    assert after == before
    assert before[0]["schedule_tick"] is not None


# -- the migration, both ways ------------------------------------------------------------------

EVERY_KIND = """
INSERT INTO pgsched.workflows (name) VALUES ('wf');
INSERT INTO pgsched.schedules (name, task_type, every, next_tick)
VALUES ('s', 'noop', interval '1 hour', now());
INSERT INTO pgsched.tasks (task_type, queue, status, priority, attempts, run_at, workflow_id,
                           workflow_node, idempotency_key, schedule_id, schedule_tick,
                           assigned_worker, started_at, finished_at, result, last_error,
                           payload, progress, checkpoint)
SELECT 'noop', 'default', s, p, CASE WHEN s IN ('pending', 'retrying', 'blocked') THEN 0 ELSE 1 END,
       now() - interval '1 minute',
       CASE WHEN k = 'workflow' OR s = 'blocked' THEN (SELECT id FROM pgsched.workflows) END,
       CASE WHEN k = 'workflow' OR s = 'blocked' THEN s || k || p END,
       CASE WHEN k = 'keyed' THEN s || p END,
       CASE WHEN k = 'schedule' THEN (SELECT id FROM pgsched.schedules) END,
       CASE WHEN k = 'schedule' THEN now() + make_interval(hours => p, days => si::int) END,
       CASE WHEN s = 'running' THEN 'w' END,
       CASE WHEN s NOT IN ('pending', 'retrying', 'blocked') THEN now() END,
       CASE WHEN s IN ('succeeded', 'failed', 'cancelled') THEN now() END,
       CASE WHEN s = 'succeeded' THEN jsonb_build_object('deep', repeat('[', 50)) END,
       CASE WHEN s IN ('failed', 'cancelled') THEN 'error ' || s END,
       jsonb_build_object('k', k, 'p', p, 'text', repeat('é', 1000)), 0.5, '{"at": 3}'
FROM unnest(ARRAY['blocked', 'pending', 'running', 'succeeded', 'retrying', 'failed',
                  'cancelled']) WITH ORDINALITY AS st(s, si),
     unnest(ARRAY['plain', 'keyed', 'workflow', 'schedule']) k,
     generate_series(1, 2) p;
INSERT INTO pgsched.task_dependencies (task_id, depends_on)
SELECT c.id, p.id FROM pgsched.tasks c, pgsched.tasks p
WHERE c.workflow_node = 'blockedworkflow1' AND p.workflow_node = 'succeededworkflow1';
INSERT INTO pgsched.task_executions (task_id, attempt, outcome, duration_ms)
SELECT id, 1, 'failure', 5 FROM pgsched.tasks WHERE status = 'failed';
INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts)
SELECT id, queue, task_type, payload, attempts FROM pgsched.tasks WHERE status = 'failed';
"""

ROWS = "SELECT to_jsonb(t) AS row FROM pgsched.{} t ORDER BY id"


def test_the_migration_moves_finished_tasks_and_the_downgrade_brings_them_back(
    empty_dsn: str,
) -> None:
    migrate.upgrade(empty_dsn, "0014")
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as c:
        c.execute(EVERY_KIND)
        before = [r["row"] for r in c.execute(ROWS.format("tasks"))]
        edges = c.execute("SELECT * FROM pgsched.task_dependencies").fetchall()
        assert len(before) == 56 and len(edges) == 1
    migrate.upgrade(empty_dsn, "0015")
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as c:
        assert [r["row"] for r in c.execute(ROWS.format("all_tasks"))] == before
        moved = [r["row"] for r in c.execute(ROWS.format("finished_tasks"))]
        assert {(r["status"], r["payload"]["k"]) for r in moved} == {
            ("succeeded", "plain"), ("failed", "plain"), ("cancelled", "plain")
        }  # fmt: skip
        assert len(moved) == 6
        assert c.execute("SELECT * FROM pgsched.task_dependencies").fetchall() == edges
        # A finished schedule tick and idempotency key still refuse their duplicates.
        for key, conflict in (
            ("schedule_id", "(schedule_id, schedule_tick) WHERE schedule_id IS NOT NULL"),
            ("idempotency_key", "(idempotency_key) WHERE idempotency_key IS NOT NULL"),
        ):
            dup = c.execute(
                "INSERT INTO pgsched.tasks (task_type, idempotency_key, schedule_id,"
                " schedule_tick) SELECT task_type, idempotency_key, schedule_id, schedule_tick"
                f" FROM pgsched.tasks WHERE status = 'succeeded' AND {key} IS NOT NULL"
                f" ON CONFLICT {conflict} DO NOTHING RETURNING id"
            ).fetchall()
            assert dup == [], conflict
            finished_keys = c.execute(
                f"SELECT count(*) AS n FROM pgsched.tasks WHERE status = 'succeeded'"
                f" AND {key} IS NOT NULL"
            ).fetchone()
            assert finished_keys == {"n": 2}, key
        # An edge whose task is gone (a workflow deleted by hand) is dropped by the downgrade.
        c.execute("INSERT INTO pgsched.task_dependencies VALUES (999999, 999998)")
    migrate.downgrade(empty_dsn, "0014")
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as c:
        assert [r["row"] for r in c.execute(ROWS.format("tasks"))] == before
        assert c.execute("SELECT * FROM pgsched.task_dependencies").fetchall() == edges
        assert c.execute("SELECT to_regclass('pgsched.finished_tasks') AS t").fetchone() == {
            "t": None
        }
        keys = c.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'pgsched.task_dependencies'"
            "::regclass AND contype = 'f' ORDER BY conname"
        ).fetchall()
        assert [k["conname"] for k in keys] == [
            "task_dependencies_depends_on_fkey", "task_dependencies_task_id_fkey"
        ]  # fmt: skip
    migrate.upgrade(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as c:
        assert [r["row"] for r in c.execute(ROWS.format("all_tasks"))] == before


@pytest.mark.parametrize("role", ["pgsched_read", "pgsched_worker", "pgsched_admin"])
def test_every_role_that_reads_tasks_reads_finished_ones(dsn: str, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"SET ROLE {role}")
        assert c.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pgsched.finished_tasks").fetchone() == (0,)
