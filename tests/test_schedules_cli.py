"""`pgsched schedules apply|list|pause|resume`, `pgsched scheduler`, and the workflow command
bodies behind `submit|status|cancel|retry --workflow`, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from tests.cli import run
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
PGSCHED = Path(sys.executable).parent / "pgsched"


def test_apply_list_pause_resume(dsn: str, tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "schedules.yaml")
    r = run(dsn, "schedules", "apply", example, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "daily-report would be added" in r.stdout and "(dry run)" in r.stdout
    assert json.loads(run(dsn, "schedules", "list", "--json").stdout) == []

    r = run(dsn, "schedules", "apply", example)
    assert "3 added, 0 changed, 0 removed, 0 unchanged" in r.stdout
    r = run(dsn, "schedules", "apply", example)
    assert "0 added, 0 changed, 0 removed, 3 unchanged" in r.stdout

    one = tmp_path / "one.yaml"
    one.write_text("- {name: daily-report, every: 20s, task_type: dummy}\n")
    r = run(dsn, "schedules", "apply", str(one), "--prune", "--json")
    rep = json.loads(r.stdout)
    assert sorted(rep["removed"]) == ["cleanup-temp-files", "data-backup"]
    assert set(rep["changed"]["daily-report"]) >= {"every", "payload"}

    assert run(dsn, "schedules", "pause", "daily-report").exit_code == 0
    table = run(dsn, "schedules", "list").stdout
    assert "daily-report" in table and "paused" in table and "every 20s" in table
    assert run(dsn, "schedules", "resume", "daily-report").exit_code == 0
    rows = json.loads(run(dsn, "schedules", "list", "--json").stdout)
    assert rows[0]["paused"] is False and rows[0]["next_tick"]

    r = run(dsn, "schedules", "pause", "nope")
    assert r.exit_code == 1 and r.stderr.strip() == "error: no schedule named 'nope'"


def test_invalid_file_is_one_line_exit_2_and_applies_nothing(dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text(
        textwrap.dedent(
            """
            - name: fine
              every: 10s
              task_type: noop
            - name: daily-report
              cron: "0 6 * * *"
              timezone: Mars/Base
              task_type: dummy
            """
        ).lstrip()
    )
    r = run(dsn, "schedules", "apply", str(bad))
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        f"error: {bad}:6: schedule 'daily-report': unknown timezone 'Mars/Base'"
    )
    assert json.loads(run(dsn, "schedules", "list", "--json").stdout) == []
    r = run(dsn, "schedules", "apply", str(tmp_path / "missing.yaml"))
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1


def test_workflow_commands(dsn: str, tmp_path: Path) -> None:
    r = run(dsn, "submit", "--workflow", str(ROOT / "examples" / "workflow.yaml"))
    assert r.exit_code == 0, r.stderr
    wf_id = int(r.stdout.strip())
    shown = json.loads(run(dsn, "status", "--workflow", str(wf_id), "--json").stdout)
    assert shown["name"] == "nightly-etl" and len(shown["tasks"]) == 4
    table = run(dsn, "status", "--workflow", str(wf_id)).stdout
    assert "nightly-etl" in table and "transform-orders" in table and "blocked" in table
    r = run(dsn, "cancel", "--workflow", str(wf_id))
    assert r.exit_code == 0 and "cancelled 4 task(s)" in r.stdout
    r = run(dsn, "retry", "--workflow", str(wf_id))
    assert r.exit_code == 0 and "retrying 4 task(s), 1 ready now" in r.stdout

    cyc = tmp_path / "c.json"
    cyc.write_text(
        json.dumps(
            {
                "dagName": "c",
                "tasks": [
                    {"taskName": "a", "type": "noop", "dependencies": ["b"]},
                    {"taskName": "b", "type": "noop", "dependencies": ["a"]},
                ],
            }
        )
    )
    r = run(dsn, "submit", "--workflow", str(cyc))
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: workflow has a cycle: a -> b -> a"
    r = run(dsn, "status", "--workflow", "999999")
    assert r.exit_code == 1 and "no workflow with id 999999" in r.stderr


def test_scheduler_command_runs_until_sigterm(dsn: str, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("- {name: tick, every: 1s, task_type: noop}\n")
    env = dict(os.environ, PGSCHED_DSN=dsn)
    proc = subprocess.Popen(
        [str(PGSCHED), "scheduler", str(f)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            wait_until(
                lambda: c.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] >= 2,
                timeout=15,
                message="the scheduler's tasks",
            )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "1 added" in out
