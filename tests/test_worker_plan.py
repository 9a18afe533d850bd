"""The claim statement keeps its index plan over a large backlog (claim-path.md: one shape
flipped to a sequential scan at 500+ per batch)."""

from __future__ import annotations

import re

import psycopg
import pytest

from pgsched.sql import Q


@pytest.mark.parametrize(("slots", "queues"), [(10, ["default"]), (1000, ["default"]),
                                               (1000, ["default", "other"])])
def test_claim_uses_ready_index(conn: psycopg.Connection, slots: int, queues: list[str]) -> None:
    conn.execute("INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
                 " SELECT 'noop', 'default', (i % 5), now() - i * interval '1 ms'"
                 " FROM generate_series(1, 50000) i")
    conn.execute("INSERT INTO pgsched.tasks (task_type, status, finished_at)"
                 " SELECT 'noop', 'succeeded', now() FROM generate_series(1, 20000)")
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    conn.execute("ANALYZE pgsched.tasks")
    conn.execute("SET plan_cache_mode = force_custom_plan")
    params = {"worker": "w", "queues": queues, "task_types": ["noop", "dummy"],
              "slots": slots, "weighted": True, "cpu_ceiling": 100.0,
              "memory_ceiling": 100.0, "heartbeat_timeout": 15.0, "now": None}
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q.claim_tasks.sql, params))
    assert "tasks_ready_idx" in plan, plan
    assert "Seq Scan on tasks" not in plan, plan
    assert "Sort Key: c.priority" not in plan, plan  # the index gives claim order
    rows = Q.claim_tasks.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert len(rows) == slots
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)


NAIVE_DUE = """SELECT extract(epoch FROM min(run_at) - %(now)s::timestamptz)::float8
FROM pgsched.tasks WHERE status IN ('pending', 'retrying') AND queue = ANY(%(queues)s)
  AND task_type = ANY(%(task_types)s) AND attempts < max_attempts
  AND run_at > %(now)s::timestamptz
  AND run_at <= %(now)s::timestamptz + make_interval(secs => %(horizon)s)"""


def test_next_due_in_walks_the_index(conn: psycopg.Connection) -> None:
    """A big scheduled backlog must not make every idle claim scan it: the plain min(run_at)
    aggregate was a seq scan of all future rows (103 ms at 1M rows)."""
    conn.execute("INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
                 " SELECT 'noop', 'default', (i % 7) - 3, now() + interval '1 day'"
                 "        + i * interval '1 ms'"
                 " FROM generate_series(1, 50000) i")
    conn.execute("ANALYZE pgsched.tasks")
    params = {"queues": ["default", "other"], "task_types": ["noop"], "horizon": 5.0,
              "now": None}
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS) " + Q.next_due_in.sql, params))
    assert "Seq Scan" not in plan, plan
    hits = int(re.search(r"Buffers: shared hit=(\d+)", plan).group(1))  # the top node's
    assert hits < 200, plan  # a few probes per priority, not the 50k rows
    assert Q.next_due_in.run(conn, params) is None  # nothing within 5 s
    due = Q.next_due_in.run(conn, params | {"horizon": 2 * 86400.0})
    assert 86399 < due < 86401


@pytest.mark.parametrize("seed", range(5))
def test_next_due_in_matches_a_plain_min(conn: psycopg.Connection, seed: int) -> None:
    """Same answer as the obvious query over mixed queues, types, priorities, statuses,
    exhausted attempts, past and future run_at."""
    conn.execute("SELECT setseed(%s)", (seed / 10,))
    conn.execute("""INSERT INTO pgsched.tasks
        (task_type, queue, priority, status, run_at, attempts, max_attempts)
        SELECT (ARRAY['noop', 'dummy', 'other'])[1 + floor(random() * 3)::int],
               (ARRAY['default', 'q2', 'q3'])[1 + floor(random() * 3)::int],
               floor(random() * 9)::int - 4,
               (ARRAY['pending', 'retrying', 'succeeded', 'failed'])[1 + floor(random() * 4)::int],
               now() + (random() * 20 - 5) * interval '1 s',
               a, 3
        FROM generate_series(1, 300), LATERAL (SELECT floor(random() * 4)::int AS a) x""")
    conn.execute("UPDATE pgsched.tasks SET finished_at = now()"
                 " WHERE status IN ('succeeded', 'failed')")
    now = conn.execute("SELECT now() + interval '1 s'").fetchone()[0]
    for queues in (["default"], ["q2", "q3"], ["default", "q2", "q3", "none"]):
        for types in (["noop"], ["noop", "dummy"], ["absent"]):
            for horizon in (0.5, 3.0, 30.0):
                p = {"queues": queues, "task_types": types, "horizon": horizon, "now": now}
                want = conn.execute(NAIVE_DUE, p).fetchone()[0]
                got = Q.next_due_in.run(conn, p)
                assert got == pytest.approx(want), (p, got, want)
