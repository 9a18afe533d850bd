"""`pgsched submit|status|list|cancel|retry`: in-process through typer's CliRunner (fast, with a
hypothesis property), and a few real subprocess runs for exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsched.server import free_port
from tests import cli
from tests.cli import ok


def refused(dsn: str, *args: str, code: int = 2) -> str:
    return cli.refused(dsn, *args, code=code)


PGSCHED = Path(sys.executable).parent / "pgsched"


def rows(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0]


def status_json(dsn: str, task_id: int | str) -> dict[str, Any]:
    return json.loads(ok(dsn, "status", str(task_id), "--json"))


# -- submit ------------------------------------------------------------------------------------


def test_submit_prints_the_id_alone(dsn: str) -> None:
    out = ok(dsn, "submit", "email", "--payload", '{"to": "a@b.c"}', "--queue", "mail")
    assert out.strip().isdigit() and out == out.strip() + "\n"
    task = status_json(dsn, out.strip())
    assert (task["task_type"], task["payload"], task["queue"]) == ("email", {"to": "a@b.c"}, "mail")
    assert (task["max_attempts"], task["priority"], task["status"]) == (3, 0, "pending")


def test_same_key_twice_prints_the_first_id(dsn: str) -> None:
    first = ok(dsn, "submit", "email", "--key", "welcome-42", "--payload", '{"v": 1}')
    second = ok(dsn, "submit", "email", "--key", "welcome-42", "--payload", '{"v": 2}')
    assert first == second
    assert rows(dsn) == 1
    assert status_json(dsn, first.strip())["payload"] == {"v": 1}


def test_payload_from_file(dsn: str, tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text('{"nested": {"list": [1, 2, "ß"]}}', encoding="utf-8")
    task_id = ok(dsn, "submit", "x", "--payload", f"@{f}").strip()
    assert status_json(dsn, task_id)["payload"] == {"nested": {"list": [1, 2, "ß"]}}


def test_delay_and_at(dsn: str) -> None:
    later = status_json(dsn, ok(dsn, "submit", "x", "--delay", "2h").strip())
    now = status_json(dsn, ok(dsn, "submit", "x").strip())
    gap = _ts(later["run_at"]) - _ts(now["run_at"])
    assert 7190 < gap < 7210
    at = status_json(dsn, ok(dsn, "submit", "x", "--at", "2031-01-02T03:04:05Z").strip())
    assert at["run_at"] == "2031-01-02T03:04:05+00:00"


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["x", "--payload", '{"a": 1,\n "b": }'], "invalid JSON at line 2 column 7"),
        (["x", "--payload", "@/nonexistent/p.json"], "/nonexistent/p.json does not exist"),
        (["x", "--delay", "5 parsecs"], "--delay"),
        (["x", "--delay", "-5s"], "--delay"),
        (["x", "--at", "next tuesday"], "--at"),
        (["x", "--delay", "5m", "--at", "2030-01-01T00:00:00Z"], "not both"),
        (["x", "--priority", "1001"], "--priority: must be between -1000 and 1000"),
        (["x", "--priority", "-1001"], "--priority"),
        (["x", "--priority", "high"], "not an integer"),
        (["x", "--max-attempts", "0"], "--max-attempts: must be between 1 and 1000"),
        (["x", "--max-attempts", "1001"], "--max-attempts"),
        (["x", "--timeout", "0s"], "timeout: must be positive"),
        (["x", "--key", ""], "idempotency_key"),
        ([""], "task_type"),
        (["x" * 201], "task_type"),
        (["x", "--queue", ""], "queue"),
        ([], "missing TYPE"),
    ],
)
def test_bad_submissions_are_refused(dsn: str, args: list[str], expected: str) -> None:
    line = refused(dsn, "submit", *args)
    assert expected in line
    assert rows(dsn) == 0


# -- status ------------------------------------------------------------------------------------


def test_status_of_one_task_shows_fields_and_history(dsn: str) -> None:
    task_id = int(ok(dsn, "submit", "email", "--timeout", "30s").strip())
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.task_executions (task_id, attempt, worker, outcome, error,"
            " duration_ms) VALUES (%s, 1, 'w1', 'failure', 'boom', 12.5)",
            (task_id,),
        )
    task = status_json(dsn, task_id)
    assert task["timeout"] == 30.0
    assert [(h["attempt"], h["outcome"], h["error"]) for h in task["history"]] == [
        (1, "failure", "boom")
    ]
    human = ok(dsn, "status", str(task_id))
    for text in ("email", "pending", "attempts", "failure", "boom", "w1"):
        assert text in human


def test_status_unknown_id(dsn: str) -> None:
    assert refused(dsn, "status", "4242", code=1) == "error: no task with id 4242"
    assert "not an integer" in refused(dsn, "status", "abc")


def test_status_overview_and_unserved_warning(dsn: str) -> None:
    ok(dsn, "submit", "email", "--queue", "mail")
    ok(dsn, "submit", "noop")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, queues, task_types, current_task_count,"
            " max_task_capacity, cpu_usage) VALUES ('w1', 'hostA', 1, '{default}', '{noop}',"
            " 1, 4, 37)"
        )
    summary = json.loads(ok(dsn, "status", "--json"))
    assert summary["counts"] == {"default": {"pending": 1}, "mail": {"pending": 1}}
    assert summary["unserved"] == [{"queue": "mail", "task_type": "email", "n": 1}]
    assert summary["workers"][0]["name"] == "w1"
    human = ok(dsn, "status")
    warnings = [ln for ln in human.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: 1 ready task(s) of type 'email' in queue 'mail': no live worker runs them"
    ]
    assert "hostA" in human and "1/4" in human


def test_status_empty_database(dsn: str) -> None:
    out = ok(dsn, "status")
    assert "no tasks" in out and "no workers" in out and "warning" not in out


# -- list, cancel, retry -----------------------------------------------------------------------


def test_list_filters_and_json(dsn: str) -> None:
    a = int(ok(dsn, "submit", "a", "--queue", "q1").strip())
    b = int(ok(dsn, "submit", "b", "--queue", "q2").strip())
    ok(dsn, "cancel", str(a))
    assert [r["id"] for r in json.loads(ok(dsn, "list", "--json"))] == [b, a]
    assert [r["id"] for r in json.loads(ok(dsn, "list", "--queue", "q1", "--json"))] == [a]
    assert [r["id"] for r in json.loads(ok(dsn, "list", "--type", "b", "--json"))] == [b]
    assert [r["id"] for r in json.loads(ok(dsn, "list", "--status", "cancelled", "--json"))] == [a]
    assert [r["id"] for r in json.loads(ok(dsn, "list", "--limit", "1", "--json"))] == [b]
    human = ok(dsn, "list")
    assert "cancelled" in human and "q2" in human
    assert "bogus" in refused(dsn, "list", "--status", "bogus")
    assert "--limit" in refused(dsn, "list", "--limit", "0")


def test_cancel_pending_running_and_finished(dsn: str) -> None:
    pending = ok(dsn, "submit", "x").strip()
    assert ok(dsn, "cancel", pending) == f"task {pending} cancelled\n"
    assert status_json(dsn, pending)["status"] == "cancelled"
    assert refused(dsn, "cancel", pending, code=1) == (
        f"error: cannot cancel task {pending}: it is cancelled"
    )
    running = ok(dsn, "submit", "x").strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "UPDATE pgsched.tasks SET status = 'running', attempts = 1 WHERE id = %s", (running,)
        )
    assert "cancel request sent" in ok(dsn, "cancel", running)
    assert status_json(dsn, running)["cancel_requested"] is True
    assert refused(dsn, "cancel", "777", code=1) == "error: no task with id 777"
    assert "one of them" in refused(dsn, "cancel")


def test_retry(dsn: str) -> None:
    task_id = ok(dsn, "submit", "x", "--max-attempts", "1").strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "UPDATE pgsched.tasks SET status = 'failed', attempts = 1 WHERE id = %s", (task_id,)
        )
    assert "pending again (max attempts now 3)" in ok(dsn, "retry", task_id, "--attempts", "2")
    assert status_json(dsn, task_id)["status"] == "pending"
    assert "it is pending" in refused(dsn, "retry", task_id, code=1)
    assert "--attempts" in refused(dsn, "retry", task_id, "--attempts", "0")


# -- --workflow delegates to pgsched.cli.workflow ----------------------------------------------


@pytest.fixture
def fake_workflow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    mod = types.ModuleType("pgsched.cli.workflow")
    mod.submit_workflow = lambda path: calls.append(("submit", path))  # type: ignore[attr-defined]
    mod.show_workflow = lambda wid, as_json: calls.append(("show", (wid, as_json)))  # type: ignore[attr-defined]
    mod.cancel_workflow = lambda wid: calls.append(("cancel", wid))  # type: ignore[attr-defined]
    mod.retry_workflow = lambda wid: calls.append(("retry", wid))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgsched.cli.workflow", mod)
    return calls


def test_workflow_options_delegate(dsn: str, fake_workflow: list, tmp_path: Path) -> None:
    ok(dsn, "submit", "--workflow", str(tmp_path / "wf.yaml"))
    ok(dsn, "status", "--workflow", "7", "--json")
    ok(dsn, "status", "--workflow", "8")
    ok(dsn, "cancel", "--workflow", "9")
    ok(dsn, "retry", "--workflow", "10")
    assert fake_workflow == [
        ("submit", tmp_path / "wf.yaml"),
        ("show", (7, True)),
        ("show", (8, False)),
        ("cancel", 9),
        ("retry", 10),
    ]
    assert "not both" in refused(dsn, "submit", "x", "--workflow", "wf.yaml")
    assert "one of them" in refused(dsn, "cancel", "1", "--workflow", "2")
    assert rows(dsn) == 0


# -- database errors ---------------------------------------------------------------------------


def test_unreachable_database(dsn: str) -> None:
    port = free_port()
    start = time.monotonic()
    line = refused(f"postgresql://u@127.0.0.1:{port}/x", "status", code=1)
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in line and "cannot connect" in line


def test_not_migrated(empty_dsn: str) -> None:
    line = refused(empty_dsn, "submit", "x", code=1)
    assert "run pgsched migrate" in line


# -- property: valid submissions round-trip, invalid ones write nothing ------------------------

_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
names = st.text(_chars, min_size=1, max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_chars, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(_chars, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _exact(text: str) -> Any:
    # jsonb stores numbers as exact decimals (1e16 comes back as 10000000000000000): compare
    # numbers by value, not by Python type.
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    task_type=names,
    payload=json_values.filter(lambda v: v is not None),  # null: no payload, stored as {}
    # A queue `worker --queues` can name: no comma, no surrounding white space.
    queue=st.none() | names.filter(lambda s: len(s) <= 128 and "," not in s and s == s.strip()),
    priority=st.none() | st.integers(-1000, 1000),
    max_attempts=st.none() | st.integers(1, 1000),
    timeout=st.none() | st.integers(1, 10**6),
    key=st.none() | names,
)
def test_valid_submissions_round_trip(
    dsn: str,
    task_type: str,
    payload: Any,
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
    timeout: int | None,
    key: str | None,
) -> None:
    args = [f"--payload={json.dumps(payload)}"]
    if queue is not None:
        args.append(f"--queue={queue}")
    if priority is not None:
        args.append(f"--priority={priority}")
    if max_attempts is not None:
        args.append(f"--max-attempts={max_attempts}")
    if timeout is not None:
        args.append(f"--timeout={timeout}s")
    if key is not None:
        key = f"{uuid.uuid4().hex}:{key}"  # one database serves every example
        args.append(f"--key={key}")
    task_id = ok(dsn, "submit", *args, "--", task_type).strip()
    task = _exact(ok(dsn, "status", task_id, "--json"))
    assert task["task_type"] == task_type
    assert task["payload"] == _exact(json.dumps(payload))
    assert task["queue"] == ("default" if queue is None else queue)
    assert task["priority"] == (priority or 0)
    assert task["max_attempts"] == (3 if max_attempts is None else max_attempts)
    assert task["timeout"] == (None if timeout is None else timeout)
    assert task["idempotency_key"] == key


def _not_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return True
    return False


invalid = st.one_of(
    st.integers().filter(lambda n: not -1000 <= n <= 1000).map(lambda n: [f"--priority={n}"]),
    st.integers().filter(lambda n: not 1 <= n <= 1000).map(lambda n: [f"--max-attempts={n}"]),
    st.text(_chars, max_size=30).filter(_not_json).map(lambda s: [f"--payload={s}"]),
    st.text(_chars, min_size=201, max_size=260).map(lambda s: ["--", s]),
    st.text(_chars, min_size=129, max_size=160).map(lambda s: [f"--queue={s}"]),
    st.just(["--", ""]),
    st.just(["--payload", '{"s": "nul \\u0000"}']),
    st.sampled_from(["0s", "-1s", "soon", ""]).map(lambda s: [f"--timeout={s}"]),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=invalid)
def test_invalid_submissions_write_nothing(dsn: str, bad: list[str]) -> None:
    args = bad if bad[0] == "--" else [*bad, "--", "t"]
    refused(dsn, "submit", *args)
    assert rows(dsn) == 0


# -- the real executable -----------------------------------------------------------------------


def _exe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PGSCHED), *args], capture_output=True, text=True, cwd=cwd, timeout=30, check=False
    )


def test_executable_exit_codes_and_one_line_errors(dsn: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    r = _exe("--dsn", dsn, "submit", "email", "--payload", '{"to": "x"}', cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.strip().isdigit()
    for args, code in [
        (["--dsn", dsn, "submit", "x", "--payload", "{bad"], 2),
        (["--dsn", dsn, "submit", "x", "--priority", "5000"], 2),
        (["--dsn", dsn, "status", "999"], 1),
        (["--dsn", dsn, "cancel", "999"], 1),
        (["--dsn", f"postgresql://u@127.0.0.1:{free_port()}/x", "list"], 1),
    ]:
        r = _exe(*args, cwd=tmp_path)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert rows(dsn) == 1


def test_an_error_quoting_a_line_break_stays_one_line(dsn: str) -> None:
    """Found by hypothesis: a --payload file name holding U+0085 (a line break to
    str.splitlines) split the error in two."""
    line = refused(dsn, "submit", "t", "--payload", "@a\x85b\nc")
    assert line == "error: --payload: file a\\x85b\\nc does not exist"
