"""A CLI process killed (SIGKILL) while its statement runs on the server: the server stops that
statement within client_connection_check_interval (2 s for workflow statements), rather than
run it to its end, and nothing of it is written.

The statement is held on the server by a table lock another session takes (SHARE mode: reads
go on, writes wait), so it would never finish on its own while the test holds the lock; the
test waits for its backend to wait on that lock, kills the client, and watches
pg_stat_activity."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from pgsched.workflows import cancel_workflow, submit_workflow
from tests.conftest import PGSCHED, q, wait_until

TASKS = 2000
# Without their own limits: the lock wait would otherwise end at lock_timeout (30 s).
ENV = {**os.environ, "PGSCHED_LOCK_TIMEOUT": "0", "PGSCHED_STATEMENT_TIMEOUT": "0"}
# The backend must be gone well before the lock is released; 2 s is the check interval.
GONE_WITHIN = 15.0


def fan_out(name: str) -> dict:
    tasks = [{"name": "root", "task_type": "noop"}]
    tasks += [{"name": f"n{i}", "task_type": "noop", "depends_on": ["root"]} for i in range(TASKS)]
    return {"name": name, "tasks": tasks}


def digest(dsn: str) -> tuple:
    """Every workflow and task, as they are."""
    with psycopg.connect(dsn) as c:
        wfs = c.execute("SELECT id, status, finished_at FROM pgsched.workflows ORDER BY id")
        workflows = wfs.fetchall()
        tasks = c.execute(
            "SELECT count(*), md5(string_agg(concat_ws(',', id, status, version, attempts,"
            " max_attempts, finished_at, cancel_requested), ';' ORDER BY id))"
            " FROM pgsched.all_tasks"
        ).fetchone()
    return workflows, tasks


def waiting_backend(dsn: str, table: str) -> int | None:
    """The pid of the pgsched CLI backend waiting for a lock on ``table``."""
    return q(
        dsn,
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted"
        " WHERE a.datname = current_database() AND a.state = 'active'"
        "   AND l.relation = %s::regclass",
        f"pgsched.{table}",
    )


@pytest.mark.parametrize("command", ["submit --workflow", "cancel --workflow", "retry --workflow"])
def test_a_killed_client_s_statement_stops_on_the_server_and_writes_nothing(
    dsn: str, tmp_path: Path, command: str
) -> None:
    wf_id = submit_workflow(dsn, fan_out("big"))
    if command == "retry --workflow":
        cancel_workflow(dsn, wf_id)  # something to retry
    f = tmp_path / "wf.json"
    f.write_text(json.dumps(fan_out("another")))
    args = {
        "submit --workflow": ["submit", "--workflow", str(f)],
        "cancel --workflow": ["cancel", "--workflow", str(wf_id)],
        "retry --workflow": ["retry", "--workflow", str(wf_id)],
    }[command]
    table = "workflows" if command.startswith("submit") else "tasks"
    before = digest(dsn)
    with psycopg.connect(dsn) as locker:
        locker.execute(f"LOCK TABLE pgsched.{table} IN SHARE MODE")
        proc = subprocess.Popen(
            [PGSCHED, "--dsn", dsn, *args],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            pid = wait_until(
                lambda: waiting_backend(dsn, table), 60, message="the statement to wait"
            )
        finally:
            proc.kill()
            proc.wait()
        wait_until(
            lambda: not q(dsn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid),
            GONE_WITHIN,
            message=f"the killed client's backend {pid} to end while the lock is still held",
        )
        assert locker.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        locker.rollback()
    assert digest(dsn) == before
