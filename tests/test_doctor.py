"""`pgsched doctor`: each finding provoked on the real server, with its fix."""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg
import pytest

from pgsched import migrate
from tests.cli import ok, run

CHECKS = {"schema", "xmin horizon", "table size", "orphaned tasks", "connections", "server"}


def doctor(dsn: str, *args: str, code: int) -> list[dict[str, Any]]:
    r = run(dsn, "doctor", "--json", *args)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    return json.loads(r.stdout)


def problems(findings: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check and f["level"] == "problem"]


def test_a_healthy_database_has_no_problem(dsn: str) -> None:
    findings = doctor(dsn, code=0)
    assert {f["check"] for f in findings} >= CHECKS
    assert all(f["level"] != "problem" for f in findings), findings
    text = ok(dsn, "doctor")
    assert "no problems" in text and "pgsched.tasks" in text


def test_a_held_snapshot_and_the_dead_rows_it_keeps(dsn: str) -> None:
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as c:
        holder.execute("SET application_name = 'long-report'")
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgsched.all_tasks")
        pid = holder.info.backend_pid
        c.execute(
            "INSERT INTO pgsched.tasks (task_type, status, attempts, finished_at)"
            " SELECT 'noop', 'succeeded', 1, now() FROM generate_series(1, 12000)"
        )
        c.execute("DELETE FROM pgsched.tasks")
        c.execute("SELECT pg_stat_force_next_flush()")
        c.execute("SELECT 1")  # the deletes' statistics are sent with this statement
        findings = doctor(dsn, "--xact-age", "0", code=1)
        (held,) = problems(findings, "xmin horizon")
        assert f"session pid {pid}" in held["finding"] and "long-report" in held["finding"]
        assert held["fix"] == f"end that transaction, or SELECT pg_terminate_backend({pid})"
        (dead,) = problems(findings, "dead rows")
        assert dead["finding"].startswith("pgsched.tasks: 12,000 dead rows")
        assert "VACUUM (ANALYZE) pgsched.tasks" in dead["fix"]
        holder.rollback()
    # the default threshold (5 min) lets a short transaction be
    with psycopg.connect(dsn) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")
        assert not problems(doctor(dsn, code=1), "xmin horizon")  # the dead rows remain


def test_autovacuum_turned_off_for_a_table(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("ALTER TABLE pgsched.task_executions SET (autovacuum_enabled = false)")
    (found,) = problems(doctor(dsn, code=1), "dead rows")
    assert found["finding"].startswith("pgsched.task_executions: autovacuum is turned off")
    assert found["fix"] == "ALTER TABLE pgsched.task_executions RESET (autovacuum_enabled)"
    conn.execute(found["fix"])
    doctor(dsn, code=0)


def test_tasks_running_on_a_silent_worker_and_their_recovery(
    dsn: str, conn: psycopg.Connection
) -> None:
    conn.execute(
        "INSERT INTO pgsched.workers (name, host, pid, last_heartbeat)"
        " VALUES ('gone', 'h', 1, now() - interval '1 hour')"
    )
    tid = conn.execute(
        "INSERT INTO pgsched.tasks (task_type, status, attempts, assigned_worker, started_at)"
        " VALUES ('noop', 'running', 1, 'gone', now()) RETURNING id"
    ).fetchone()[0]
    (found,) = problems(doctor(dsn, code=1), "orphaned tasks")
    assert found["finding"] == (
        f"1 running task(s) (first {tid}) on worker 'gone', which has not beaten for 1h00m"
    )
    assert found["fix"].startswith("pgsched workers recover")
    out = ok(dsn, "workers", "recover")
    assert out.strip() == "1 dead worker(s): gone; 1 task(s) handed back"
    doctor(dsn, code=0)


def test_a_database_behind_or_without_the_schema(empty_dsn: str) -> None:
    findings = doctor(empty_dsn, code=1)
    (schema,) = problems(findings, "schema")
    assert schema["fix"] == "pgsched migrate"
    assert {"xmin horizon", "connections"} <= {f["check"] for f in findings}
    migrate.upgrade(empty_dsn, revision="0010")
    (schema,) = problems(doctor(empty_dsn, code=1), "schema")
    assert "older than" in schema["finding"]
    migrate.upgrade(empty_dsn)
    doctor(empty_dsn, code=0)


def test_a_fleet_larger_than_the_servers_connections(dsn: str, conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
    ).fetchone()
    workers = math.ceil(row[0] * 0.8 / 5) + 1
    conn.execute(
        "INSERT INTO pgsched.workers (name, host, pid)"
        " SELECT 'w' || g, 'h', g FROM generate_series(1, %s) g",
        (workers,),
    )
    (found,) = problems(doctor(dsn, code=1), "connections")
    assert f"{workers} live workers (up to {workers * 5} connections)" in found["finding"]
    assert "PgBouncer" in found["fix"]


def test_jit_behind_a_pooler(dsn: str, conn: psycopg.Connection, monkeypatch) -> None:
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE {dbname} SET jit = on")
    doctor(dsn, code=0)  # pgsched's sessions turn it off themselves
    monkeypatch.setenv("PGSCHED_PREPARED_STATEMENTS", "false")
    (found,) = problems(doctor(dsn, code=1), "jit")
    assert found["fix"] == "ALTER ROLE <pgsched's role> SET jit = off"


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "1e400"])
def test_bad_thresholds_are_refused_in_one_line(dsn: str, bad: str) -> None:
    r = run(dsn, "doctor", "--xact-age", bad)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout


def test_indexes_left_at_their_high_water_mark_and_the_rebuild_it_names(
    dsn: str, conn: psycopg.Connection
) -> None:
    """A backlog drained leaves the hot table's heap truncated by VACUUM and its indexes at
    their largest: the doctor warns (exit 0), and its fix gives the pages back."""
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, idempotency_key)"
        " SELECT 'noop', 'q' || (g % 7), 'k' || g FROM generate_series(1, 60000) g"
    )
    conn.execute("DELETE FROM pgsched.tasks")
    conn.execute("VACUUM pgsched.tasks")
    conn.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
    conn.execute("ANALYZE pgsched.tasks")
    (found,) = [f for f in doctor(dsn, code=0) if f["check"] == "index size"]
    assert found["level"] == "warn"
    assert found["finding"].startswith("pgsched.tasks: ") and "for 1 live row (" in found["finding"]
    assert found["fix"] == "REINDEX TABLE CONCURRENTLY pgsched.tasks (as the table's owner)"
    assert found["data"]["index_bytes"] >= 8 * 2**20
    conn.execute(found["fix"].removesuffix(" (as the table's owner)"))
    after = doctor(dsn, code=0)
    assert not [f for f in after if f["check"] == "index size"], after
    (size,) = [f for f in after if f["check"] == "table size" and "pgsched.tasks:" in f["finding"]]
    assert size["data"]["index_bytes"] < 2**20
    # the rebuilt unique index still refuses a duplicate key
    ok(dsn, "submit", "noop", "--key", "k1")
    ok(dsn, "submit", "noop", "--key", "k1")
    keyed = "SELECT count(*) FROM pgsched.tasks WHERE idempotency_key = 'k1'"
    assert conn.execute(keyed).fetchone()[0] == 1
