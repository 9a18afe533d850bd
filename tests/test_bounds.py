"""Every input is bounded where it enters: one ``error:`` line, exit 2 (or 1 for a failed
operation), nothing written; and every read survives any row the schema allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.cli import ok, refused, run


def count(dsn: str, table: str = "tasks") -> int:
    with psycopg.connect(dsn) as c:
        return c.execute(f"SELECT count(*) FROM pgsched.{table}").fetchone()[0]


def sql(dsn: str, statement: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(statement, args or None)
        return cur.fetchone() if cur.description else None


# -- the CLI: durations, times, payloads --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "1e400"], "--timeout"),
        (["--timeout", "1000000000d"], "--timeout"),
        (["--delay", "nan"], "--delay"),
        (["--delay", "3000000d"], "--delay"),
        (["--at", "9999-12-31T23:59:59-01:00"], "--at"),
        (["--at", "0001-01-01T00:00:00+01:00"], "--at"),
        (["--payload", "[" * 600 + "]" * 600], "--payload"),
        (["--payload", '{"n": ' + "9" * 5000 + "}"], "--payload"),
        (["--payload", '{"x": NaN}'], "--payload"),
        (["--payload", '{"x": Infinity}'], "--payload"),
        (["--payload", '{"x": "\\ud800"}'], "--payload"),
        (["--payload", '{"x": "a\\u0000b"}'], "--payload"),
        (["--payload", "@/dev/zero"], "--payload"),
        (["--key", "k" * 3000], "--key"),
        (["--queue", "a,b"], "queue"),
        (["--queue", " q"], "queue"),
    ],
)
def test_submit_refuses_what_cannot_be_held(dsn: str, args: list[str], names: str) -> None:
    before = count(dsn)
    line = refused(dsn, "submit", "noop", *args, code=2)
    assert names in line
    assert count(dsn) == before


@pytest.mark.parametrize("value", ["nan", "inf", "999999999d"])
def test_dlq_purge_older_than_is_bounded(dsn: str, value: str) -> None:
    assert "--older-than" in refused(dsn, "dlq", "purge", "--older-than", value, code=2)


def test_demo_duration_nan_is_refused(dsn: str) -> None:
    assert "--duration" in refused(dsn, "demo", "--duration", "nan", code=2)


@pytest.mark.parametrize("value", ["nan", "inf", "1e12"])
def test_worker_grace_must_be_a_number_of_seconds(dsn: str, value: str) -> None:
    r = run(dsn, "worker", "--grace", value, "--burst")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "--grace" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_app_calling_sys_exit_is_one_line_and_exit_1(dsn: str, tmp_path: Path) -> None:
    app = tmp_path / "exits.py"
    app.write_text("import sys\nsys.exit(3)\n")
    line = refused(dsn, "worker", "--app", str(app), "--burst", code=1)
    assert "sys.exit(3)" in line


# -- YAML: schedules and workflows ---------------------------------------------------------------

BAD_SCHEDULES = {
    "every inf": "- {name: s, every: inf, task_type: noop}",
    "every huge": "- {name: s, every: 999999999d, task_type: noop}",
    "a date": "- {name: s, every: 1h, task_type: noop, payload: {when: 2024-01-01}}",
    "binary": "- {name: s, every: 1h, task_type: noop, payload: {b: !!binary aGVsbG8=}}",
    "nan": "- {name: s, every: 1h, task_type: noop, payload: {x: .nan}}",
    "NUL in payload": '- {name: s, every: 1h, task_type: noop, payload: {x: "a\\0"}}',
    "NUL in name": '- {name: "s\\0", every: 1h, task_type: noop}',
    "NUL in type": '- {name: s, every: 1h, task_type: "no\\0op"}',
    "comma in queue": "- {name: s, every: 1h, task_type: noop, queue: 'a,b'}",
}


@pytest.mark.parametrize("case", sorted(BAD_SCHEDULES))
@pytest.mark.parametrize("dry_run", [False, True])
def test_schedules_apply_refuses_in_one_line(
    dsn: str, tmp_path: Path, case: str, dry_run: bool
) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(BAD_SCHEDULES[case] + "\n")
    before = count(dsn, "schedules")
    line = refused(dsn, "schedules", "apply", str(f), *(["--dry-run"] if dry_run else []), code=2)
    assert f"{f}:1" in line
    assert count(dsn, "schedules") == before


def test_schedules_apply_refuses_a_non_utf8_file(dsn: str, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(b"- {name: \xff, every: 1h, task_type: noop}\n")
    assert "not UTF-8" in refused(dsn, "schedules", "apply", str(f), code=2)


@pytest.mark.parametrize(
    "task",
    [
        "{name: a, task_type: noop, timeout: inf}",
        "{name: a, task_type: noop, timeout: 999999999d}",
        "{name: a, task_type: noop, payload: {when: 2024-01-01}}",
        '{name: "a\\0", task_type: noop}',
    ],
)
def test_workflow_files_refuse_in_one_line(dsn: str, tmp_path: Path, task: str) -> None:
    f = tmp_path / "wf.yaml"
    f.write_text(f"name: w\ntasks:\n  - {task}\n")
    before = count(dsn)
    line = refused(dsn, "submit", "--workflow", str(f), code=2)
    assert "task" in line
    assert count(dsn) == before


# -- config files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"queue = '\xff'\n", "not UTF-8"),
        (b"[profiles]\nprod = 5\n", "profiles.prod must be a table"),
        (b'profiles = "abc"\n', "profiles must be a table"),
    ],
)
def test_bad_config_files_are_one_line(
    dsn: str, tmp_path: Path, content: bytes, expected: str
) -> None:
    f = tmp_path / "pgsched.toml"
    f.write_bytes(content)
    line = refused(dsn, "--config", str(f), "config", code=2)
    assert expected in line


# -- privileges ------------------------------------------------------------------------------------


def test_a_read_only_role_is_told_which_privilege_it_lacks(dsn: str) -> None:
    role = "pgsched_reader"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {role}")
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")  # the server wants one (SCRAM)
        c.execute(f"GRANT USAGE ON SCHEMA pgsched TO {role}")
        c.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA pgsched TO {role}")
    try:
        params = conninfo_to_dict(dsn)
        params["user"], params["password"] = role, "pw"
        ro = make_conninfo(**params)
        before = count(dsn)
        line = refused(ro, "submit", "noop", code=1)
        assert "permission denied for table tasks" in line
        assert f"role {role} lacks INSERT" in line
        assert count(dsn) == before
        tid = int(ok(dsn, "submit", "noop").strip())
        line = refused(ro, "cancel", str(tid), code=1)
        assert "lacks" in line and "UPDATE" in line
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


# -- the schema and the reads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO pgsched.tasks (task_type, run_at) VALUES ('noop', 'infinity')",
        "INSERT INTO pgsched.tasks (task_type, run_at) VALUES ('noop', '-infinity')",
        "INSERT INTO pgsched.tasks (task_type, attempts, max_attempts) VALUES ('noop', 3, 3)",
        "INSERT INTO pgsched.tasks (task_type, status) VALUES ('noop', 'blocked')",
        "INSERT INTO pgsched.schedules (name, every, task_type) VALUES ('s', '200 years', 'noop')",
    ],
)
def test_the_schema_refuses_rows_no_worker_could_handle(dsn: str, statement: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(dsn, statement)


def test_retry_of_a_task_at_the_most_attempts_is_refused(dsn: str) -> None:
    (tid,) = sql(
        dsn,
        "INSERT INTO pgsched.tasks (task_type, status, attempts, max_attempts)"
        " VALUES ('noop', 'failed', 1000, 1000) RETURNING id",
    )
    line = refused(dsn, "retry", str(tid), code=1)
    assert "used 1000 attempts" in line
    assert sql(dsn, "SELECT status FROM pgsched.all_tasks WHERE id = %s", tid) == ("failed",)


def test_a_retried_task_drops_its_old_error(dsn: str) -> None:
    tid = int(ok(dsn, "submit", "noop", "--delay", "1h").strip())
    ok(dsn, "cancel", str(tid))
    ok(dsn, "retry", str(tid))
    assert sql(dsn, "SELECT last_error FROM pgsched.all_tasks WHERE id = %s", tid) == (None,)


def test_the_same_key_with_another_payload_warns(dsn: str) -> None:
    first = ok(dsn, "submit", "noop", "--key", "k1", "--payload", '{"a": 1}').strip()
    r = run(dsn, "submit", "noop", "--key", "k1", "--payload", '{"a": 2}')
    assert r.exit_code == 0 and r.stdout.strip() == first
    assert "warning: --key 'k1' already names task" in r.stderr and "payload" in r.stderr
    r = run(dsn, "submit", "noop", "--key", "k1", "--payload", '{"a": 1}')
    assert r.exit_code == 0 and r.stderr == ""


def test_every_read_survives_times_python_cannot_hold(dsn: str) -> None:
    (tid,) = sql(dsn, "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id")
    sql(
        dsn,
        "UPDATE pgsched.tasks SET created_at = '-infinity', started_at = 'infinity',"
        " finished_at = '10000-01-01' WHERE id = %s",
        tid,
    )
    sql(
        dsn,
        "INSERT INTO pgsched.workers (name, host, pid, last_heartbeat, queues)"
        " VALUES ('w-inf', 'h', 1, 'infinity', '{default}')",
    )
    for args in (["list"], ["status"], ["status", str(tid)], ["top", "--once"], ["workers"]):
        ok(dsn, *args)
    for args in (["status", "--json"], ["status", str(tid), "--json"], ["top", "--once", "--json"]):
        json.loads(ok(dsn, *args))  # strict JSON: no NaN or Infinity
    shown = json.loads(ok(dsn, "status", str(tid), "--json"))
    assert shown["started_at"] == "infinity" and shown["created_at"] == "-infinity"


def test_status_of_a_long_chain_prints_plain_rows(dsn: str, tmp_path: Path) -> None:
    """Past 300 tasks the rows are plain text (rich took 27 s for 10k), indented at most 12
    layers, the deeper ones saying their layer."""
    n = 400
    lines = ["name: long", "tasks:"]
    for i in range(n):
        after = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{name: t{i}, task_type: noop{after}}}")
    f = tmp_path / "long.yaml"
    f.write_text("\n".join(lines) + "\n")
    wid = ok(dsn, "submit", "--workflow", str(f)).strip()
    out = ok(dsn, "status", "--workflow", wid).splitlines()
    rows = [ln for ln in out if ln.lstrip().startswith(("t", "[")) and " noop " in ln]
    assert len(rows) == n
    deepest = next(ln for ln in rows if "t399 " in ln)
    assert "[399] t399" in deepest and len(deepest) - len(deepest.lstrip()) == 24
