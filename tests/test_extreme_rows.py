"""Every timestamp and interval a row can carry from SQL, at the extremes PostgreSQL accepts
('infinity', year 1, year 294276, 4713 BC; intervals of a million years, negative ones).

The tables' CHECKs refuse the values a worker or a read cannot survive (test_refused). Every
other value is written into every row of a database that has one of each kind of row, and then
every read (the CLI's, `--json` included, the HTTP API's and the dashboard's pages), a look of
the scheduler and of the alert ticker, and a burst worker must all succeed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgsched.alerts.ticker import AlertTicker
from pgsched.registry import Registry
from pgsched.schedules import Scheduler
from pgsched.worker import Worker
from tests.api import serving
from tests.cli import ok, run
from tests.conftest import FAST

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ALERTS = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/x", secret_env: PGSCHED_TEST_SECRET}
rules:
  - {name: dl, event: task.dead_lettered, channels: [hook]}
  - {name: depth, threshold: ready_depth, above: 0, window: 30s, channels: [hook]}
"""
TIMES = ["infinity", "-infinity", "0001-01-01 00:00+00", "294276-12-31 00:00+00", "4713-01-01 BC"]
# The values each interval column may hold, at both ends (the CHECKs refuse the rest).
INTERVAL_BOUNDS = {
    ("alert_rules", "min_interval"): ["0", "36500 days"],
    ("alert_rules", "time_window"): ["1 microsecond", "36500 days"],
    ("schedules", "every"): ["1 second", "36500 days"],
    ("schedules", "timeout"): ["1 microsecond", "36500 days"],
    ("tasks", "timeout"): ["1 microsecond", "36500 days"],
    ("tasks", "backoff_base"): ["1 microsecond", "36500 days"],
    ("tasks", "backoff_cap"): ["1 microsecond", "36500 days"],
}
# finished_tasks holds rows moved out of tasks, which its CHECKs bounded on the way in: no
# CHECKs of its own (a row from before a bound was added moves all the same), the same bounds.
MOVED_BOUNDS = {
    ("finished_tasks", column): bounds
    for (table, column), bounds in INTERVAL_BOUNDS.items()
    if table == "tasks"
}
# (table, column, value) that the CHECKs refuse ('infinity' intervals exist from PostgreSQL 17;
# an older server refuses them as input).
BAD_INTERVALS = ("-1 second", "1000000 years", "-178000000 years", "178000000 years", "infinity")
REFUSED = [("tasks", "run_at", t) for t in TIMES] + [
    (table, column, value) for table, column in INTERVAL_BOUNDS for value in BAD_INTERVALS
]


@pytest.fixture
def world(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One row at least in every table that has a time: tasks (pending, failed, in a workflow),
    an attempt, a dead-letter entry, a worker, schedules, alert rules with an event, a state
    and a notification, an API token."""
    monkeypatch.setenv("PGSCHED_TEST_SECRET", "s")
    shutil.copy(EXAMPLES / "schedules.yaml", tmp_path / "s.yaml")
    (tmp_path / "a.yaml").write_text(ALERTS)
    ok(dsn, "schedules", "apply", str(tmp_path / "s.yaml"))
    ok(dsn, "alerts", "apply", str(tmp_path / "a.yaml"))
    ok(dsn, "tokens", "create", "t1")
    wf = ok(dsn, "submit", "--workflow", str(EXAMPLES / "workflow.yaml")).split()[0]
    task = ok(dsn, "submit", "noop", "--timeout", "1s").strip()
    failed = ok(dsn, "submit", "noop").strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "UPDATE pgsched.tasks SET status = 'failed', attempts = max_attempts,"
            " started_at = now(), finished_at = now(), last_error = 'x', backoff_base = '1s',"
            " backoff_cap = '2s', schedule_tick = now() WHERE id = %s",
            (int(failed),),
        )
        c.execute(
            "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts)"
            " SELECT id, queue, task_type, payload, attempts FROM pgsched.all_tasks WHERE id = %s",
            (int(failed),),
        )
        c.execute(
            "INSERT INTO pgsched.task_executions (task_id, attempt, worker, started_at, outcome,"
            " duration_ms) VALUES (%s, 1, 'w', now(), 'failure', 5)",
            (int(failed),),
        )
        c.execute(  # a task a worker finished: moved out of pgsched.tasks
            "INSERT INTO pgsched.finished_tasks (id, task_type, status, attempts, timeout,"
            " backoff_base, backoff_cap, started_at, finished_at, schedule_tick)"
            " VALUES (nextval(pg_get_serial_sequence('pgsched.tasks', 'id')), 'noop',"
            " 'succeeded', 1, '1s', '1s', '2s', now(), now(), now())"
        )
        c.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w1', 'h', 1)")
        c.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status, stopped_at)"
            " VALUES ('w2', 'h', 2, 'stopped', now())"
        )
        c.execute("UPDATE pgsched.workflows SET finished_at = now()")
        c.execute("UPDATE pgsched.api_tokens SET last_used_at = now(), revoked_at = now()")
        rule = c.execute("SELECT id FROM pgsched.alert_rules WHERE name = 'dl'").fetchone()[0]
        c.execute(
            "INSERT INTO pgsched.alert_events (rule_id, key, data) VALUES (%s, 'k', '{}')",
            (rule,),
        )
        c.execute(
            "INSERT INTO pgsched.alert_state (rule_id, key, last_sent_at) VALUES (%s, 'k', now())",
            (rule,),
        )
        c.execute(
            "INSERT INTO pgsched.alert_notifications (uid, rule_id, rule, event, key, count,"
            " channels, body) VALUES (gen_random_uuid(), %s, 'dl', 'task.dead_lettered', 'k',"
            " 1, '{hook}', '{}')",
            (rule,),
        )
        c.execute("UPDATE pgsched.alert_rules SET next_eval = now()")
        c.execute("UPDATE pgsched.schedules SET last_tick = now(), timeout = '1 minute'")
    return {"task": task, "failed": failed, "workflow": wf}


def time_columns(dsn: str, types: tuple[str, ...]) -> list[tuple[str, str]]:
    """(table, column) of every column of the schema's tables of one of ``types``."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'pgsched' AND data_type = ANY(%s)"
            " AND table_name IN (SELECT table_name FROM information_schema.tables"
            "                    WHERE table_schema = 'pgsched' AND table_type = 'BASE TABLE')"
            " ORDER BY 1, 2",
            (list(types),),
        ).fetchall()


def set_column(c: psycopg.Connection, table: str, column: str, value: str) -> None:
    c.execute(
        sql.SQL("UPDATE {} SET {} = %s").format(
            sql.Identifier("pgsched", table), sql.Identifier(column)
        ),
        (value,),
    )


READS = [
    ["list"],
    ["list", "--json"],
    ["status"],
    ["status", "--json"],
    ["status", "{task}"],
    ["status", "{task}", "--json"],
    ["status", "{failed}"],
    ["status", "{failed}", "--json"],
    ["status", "--workflow", "{workflow}"],
    ["status", "--workflow", "{workflow}", "--json"],
    ["top", "--once"],
    ["top", "--once", "--json"],
    ["workers", "--all"],
    ["workers", "--all", "--json"],
    ["dlq", "list"],
    ["dlq", "list", "--json"],
    ["schedules", "list"],
    ["schedules", "list", "--json"],
    ["tokens", "list"],
    ["tokens", "list", "--json"],
    ["alerts", "list"],
    ["alerts", "list", "--json"],
    ["alerts", "history"],
    ["alerts", "history", "--json"],
]
HTTP = [
    "/api/v1/tasks",
    "/api/v1/tasks/{task}",
    "/api/v1/tasks/{failed}",
    "/api/v1/dags/{workflow}",
    "/api/v1/dags/{workflow}/tasks",
    "/api/v1/dead-letter",
    "/api/v1/workers",
    "/api/v1/schedules",
    "/api/v1/stats",
    "/health",
    "/metrics",
    "/ui/",
    "/ui/tasks",
    "/ui/tasks/{failed}",
    "/ui/dead-letter",
    "/ui/workers",
    "/ui/schedules",
    "/ui/workflows",
    "/ui/workflows/{workflow}",
]


def strict_json(text: str) -> Any:
    """JSON as the standard has it: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def every_read_survives(dsn: str, ids: dict[str, str]) -> list[str]:
    """What failed, as lines: each read, each look and the worker."""
    problems = []
    for args in READS:
        argv = [a.format(**ids) for a in args]
        r = run(dsn, *argv)  # an exception other than an exit fails the test there
        if r.exit_code != 0:
            problems.append(f"{' '.join(argv)}: exit {r.exit_code}: {r.stderr.strip()}")
        elif "--json" in argv:
            try:
                strict_json(r.stdout)
            except ValueError as e:
                problems.append(f"{' '.join(argv)}: {e}")
    with serving(dsn) as http:
        for path in HTTP:
            url = path.format(**ids)
            resp = http.get(url)
            if resp.status_code != 200:
                problems.append(f"GET {url}: {resp.status_code} {resp.text[:200]}")
            elif resp.headers.get("content-type", "").startswith("application/json"):
                try:
                    strict_json(resp.text)
                except ValueError as e:
                    problems.append(f"GET {url}: {e}")
    for service in (Scheduler(dsn, settings=FAST), AlertTicker(dsn, settings=FAST)):
        try:
            service.look()
        except Exception as e:
            problems.append(f"{type(service).__name__}: {type(e).__name__}: {e}")
        finally:
            service.close()
    w = Worker(dsn, settings=FAST, registry=Registry(), name="extreme", burst=True).start()
    try:
        if not w.wait(60):
            problems.append("a burst worker did not finish")
        elif w.failure is not None:
            problems.append(f"the worker failed: {w.failure}")
    finally:
        w.stop(timeout=15)
    return problems


@pytest.mark.parametrize("value", TIMES)
def test_every_read_survives_any_time_the_schema_allows(
    dsn: str, world: dict[str, str], value: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for table, column in time_columns(dsn, ("timestamp with time zone",)):
            if column == "run_at" and table in ("tasks", "finished_tasks"):
                continue  # refused (test_refused), and finished rows come from tasks
            set_column(c, table, column, value)
    assert not every_read_survives(dsn, world)


@pytest.mark.parametrize("end", [0, 1], ids=["shortest", "longest"])
def test_every_read_survives_intervals_at_their_bounds(
    dsn: str, world: dict[str, str], end: int
) -> None:
    columns = set(time_columns(dsn, ("interval",)))
    bounded = {**INTERVAL_BOUNDS, **MOVED_BOUNDS}
    assert columns == set(bounded), "a new interval column: give it bounds here"
    with psycopg.connect(dsn, autocommit=True) as c:
        for (table, column), bounds in bounded.items():
            set_column(c, table, column, bounds[end])
    assert not every_read_survives(dsn, world)


def test_refused(dsn: str, world: dict[str, str]) -> None:
    """Before revision 0012 an alert rule's min_interval or window of a million years made
    every look of the alert ticker fail, and a schedule's negative timeout every look of the
    scheduler."""
    accepted = []
    with psycopg.connect(dsn, autocommit=True) as c:
        for table, column, value in REFUSED:
            try:
                set_column(c, table, column, value)
            except (psycopg.errors.CheckViolation, psycopg.errors.DataError):
                continue
            accepted.append(f"{table}.{column} = {value!r}")
    assert not accepted
