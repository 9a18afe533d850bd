"""Workers as real processes (`pgsched worker`): kill -9 mid-task, SIGTERM, --app, --burst."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.client import Client
from tests.conftest import PGSCHED, WORKER_ENV, q, wait_until

pytestmark = pytest.mark.slow


def test_kill_9_mid_task_loses_nothing(dsn: str, spawn: Any) -> None:
    # Tasks long enough that a still runs its three when it is killed, however long b takes
    # to start on a loaded machine.
    with Client(dsn) as c:
        ids = [c.submit("dummy", {"sleepDurationMs": 4000}) for _ in range(6)]
    a = spawn("--name", "a", "--concurrency", "3")
    wait_until(
        lambda: (
            q(
                dsn,
                "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'running' "
                "AND assigned_worker = 'a'",
            )
            >= 2
        ),
        15,
        message="a runs tasks",
    )
    spawn("--name", "b", "--concurrency", "3")
    wait_until(
        lambda: q(dsn, "SELECT status FROM pgsched.workers WHERE name = 'b'") == "active", 15
    )
    a.send_signal(signal.SIGKILL)
    a.wait()
    wait_until(
        lambda: q(dsn, "SELECT status FROM pgsched.workers WHERE name = 'a'") == "dead",
        3,
        message="a declared dead within ~1s",
    )
    wait_until(
        lambda: (
            q(dsn, "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'succeeded'") == len(ids)
        ),
        30,
        interval=0.1,
        message="every task succeeded",
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        per_task = conn.execute(
            "SELECT task_id, count(*) FILTER (WHERE outcome = 'success'),"
            " count(*) FILTER (WHERE outcome = 'lost'),"
            " bool_or(outcome = 'lost' AND worker = 'a')"
            " FROM pgsched.task_executions GROUP BY task_id"
        ).fetchall()
    assert len(per_task) == len(ids)
    assert all(r[1] == 1 for r in per_task), "every task succeeded exactly once"
    lost = [r for r in per_task if r[2]]
    assert lost and all(r[3] for r in lost), "a's running tasks have their lost attempt"


def test_sigterm_lets_running_task_finish(dsn: str, spawn: Any) -> None:
    tid = Client(dsn).submit("dummy", {"sleepDurationMs": 1500})
    p = spawn("--name", "term", "--grace", "10")
    wait_until(
        lambda: q(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", tid) == "running", 15
    )
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0
    assert q(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", tid) == "succeeded"
    assert q(dsn, "SELECT status FROM pgsched.workers WHERE name = 'term'") == "stopped"


def test_app_module_and_burst(dsn: str, spawn: Any, tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "from pgsched.registry import task\n\n"
        "@task('double')\n"
        "def double(payload):\n"
        "    return {'n': payload['n'] * 2}\n"
    )
    tid = Client(dsn).submit("double", {"n": 21})
    p = spawn("--app", "myapp", "--burst")
    assert p.wait(timeout=30) == 0
    assert Client(dsn).get(tid)["result"] == {"n": 42}


def test_app_that_does_not_import_is_one_line(dsn: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [PGSCHED, "--dsn", dsn, "worker", "--app", "no_such_module_x"],
        env=WORKER_ENV,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no_such_module_x" in r.stderr
