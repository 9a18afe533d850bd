"""The claim statement keeps its index plan over a large backlog (claim-path.md: one shape
flipped to a sequential scan at 500+ per batch)."""

from __future__ import annotations

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
