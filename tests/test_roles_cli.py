"""Every write command of the CLI, run as a member of the read-only group role pgsched_read:
exit 1, one ``error:`` line naming the privilege the role lacks, and nothing written (every
table of the schema reads the same before and after)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.cli import ok, run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_n = itertools.count()
ALERTS = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/x", secret_env: PGSCHED_TEST_SECRET}
rules:
  - {name: dead-letters, event: task.dead_lettered, channels: [hook]}
"""
MORE_SCHEDULES = """
schedules:
  - {name: another, every: 5m, task_type: noop}
"""


def tables_digest(dsn: str) -> dict[str, tuple[int, str | None]]:
    """Each table of the pgsched schema: (rows, md5 of its rows in order)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        names = [
            r[0]
            for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'pgsched' ORDER BY 1"
            )
        ]
        digest = {}
        for name in names:
            t = sql.Identifier("pgsched", name)
            q = sql.SQL(
                "SELECT count(*), md5(string_agg(r::text, ',' ORDER BY r::text)) FROM {} r"
            ).format(t)
            digest[name] = c.execute(q).fetchone()
        return digest


@pytest.fixture
def world(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A database with something for every write command to act on: a failed task (and its
    dead-letter entry), a workflow, a worker, a schedule, an alert rule and an API token.
    Returns the ids and names the commands take."""
    for name in ("schedules.yaml", "workflow.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "alerts.yaml").write_text(ALERTS)
    (tmp_path / "more-schedules.yaml").write_text(MORE_SCHEDULES)
    monkeypatch.setenv("PGSCHED_TEST_SECRET", "s")
    ok(dsn, "schedules", "apply", str(tmp_path / "schedules.yaml"))
    ok(dsn, "alerts", "apply", str(tmp_path / "alerts.yaml"))
    ok(dsn, "tokens", "create", "ro-test", "--scopes", "read")
    wf = ok(dsn, "submit", "--workflow", str(tmp_path / "workflow.yaml")).split()[0]
    tid = ok(dsn, "submit", "noop").strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "UPDATE pgsched.tasks SET status = 'failed', attempts = max_attempts,"
            " finished_at = now(), last_error = 'x' WHERE id = %s",
            (int(tid),),
        )
        c.execute(
            "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts)"
            " SELECT id, queue, task_type, payload, attempts FROM pgsched.all_tasks WHERE id = %s",
            (int(tid),),
        )
        c.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w-ro', 'h', 1)")
        schedule = c.execute("SELECT name FROM pgsched.schedules LIMIT 1").fetchone()[0]
        rule = c.execute("SELECT name FROM pgsched.alert_rules LIMIT 1").fetchone()[0]
    return {
        "task": tid,
        "workflow": wf,
        "schedule": schedule,
        "rule": rule,
        "dir": str(tmp_path),
    }


@pytest.fixture
def reader(dsn: str) -> Iterator[str]:
    """The DSN of a login role that is a member of pgsched_read only."""
    user = f"u_ro_{os.getpid()}_{next(_n)}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'pw-{user}' IN ROLE pgsched_read")
    yield make_conninfo(dsn, user=user, password=f"pw-{user}")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP OWNED BY {user}")
        c.execute(f"DROP ROLE {user}")


WRITES = {
    "submit": ["submit", "noop"],
    "submit --workflow": ["submit", "--workflow", "{dir}/workflow.yaml"],
    "cancel": ["cancel", "{task}"],
    "cancel --workflow": ["cancel", "--workflow", "{workflow}"],
    "retry": ["retry", "{task}"],
    "retry --workflow": ["retry", "--workflow", "{workflow}"],
    "dlq requeue": ["dlq", "requeue", "{task}"],
    "dlq requeue --all": ["dlq", "requeue", "--all"],
    "dlq purge": ["dlq", "purge", "--yes"],
    "workers pause": ["workers", "pause", "w-ro"],
    "workers resume": ["workers", "resume", "w-ro"],
    "schedules apply": ["schedules", "apply", "{dir}/more-schedules.yaml"],
    "schedules pause": ["schedules", "pause", "{schedule}"],
    "schedules resume": ["schedules", "resume", "{schedule}"],
    "alerts apply": ["alerts", "apply", "{dir}/alerts.yaml", "--prune"],
    "alerts pause": ["alerts", "pause", "{rule}"],
    "alerts resume": ["alerts", "resume", "{rule}"],
    "tokens create": ["tokens", "create", "another"],
    "tokens revoke": ["tokens", "revoke", "ro-test"],
    "migrate": ["migrate"],
    "migrate --downgrade": ["migrate", "--downgrade", "0010"],
}


@pytest.mark.parametrize("command", list(WRITES))
def test_a_read_only_role_is_refused_every_write_in_one_line(
    dsn: str, world: dict[str, str], reader: str, command: str
) -> None:
    args = [a.format(**world) for a in WRITES[command]]
    before = tables_digest(dsn)
    r = run(reader, *args)
    lines = r.stderr.splitlines()
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    user = conninfo_to_dict(reader)["user"]
    assert re.search(rf": role {user} lacks [A-Z]+", lines[0]), lines[0]
    assert tables_digest(dsn) == before
