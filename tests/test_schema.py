"""The SQL surface is safe on its own: defaults, CHECK constraints, submit(), NOTIFY."""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterator
from importlib import resources

import psycopg
import pytest
from psycopg import errors as pge

from pgsched import migrate
from pgsched.db import check_schema, check_server_version, connect, known_revisions
from pgsched.errors import NotMigrated, ServerTooOld
from pgsched.server import EphemeralServer
from tests.conftest import drop_database, new_database

HEAD = known_revisions()[-1]


# -- pgsched/sql/schema.sql is the schema the migrations make -----------------------------------


def schema_dump(server: EphemeralServer, dsn: str) -> list[str]:
    """The pgsched schema as pg_dump (the server's own) writes it: tables with their columns
    in order, constraints (NOT VALID ones apart), indexes, function sources, triggers, owners
    and grants, each object in a fixed order. Left out: alembic's version table (alembic makes
    it, not the schema), pg_dump's comments and blank lines, and its \\restrict lines (a random
    key each run)."""
    pg_dump = str(server.bin_dir / "pg_dump")
    out = subprocess.run(
        [
            pg_dump,
            "--schema-only",
            "--schema=pgsched",
            "--exclude-table=pgsched.alembic_version",
            dsn,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    skip = ("--", "\\restrict ", "\\unrestrict ")
    return [ln for ln in out.stdout.splitlines() if ln.strip() and not ln.startswith(skip)]


@pytest.fixture
def second_empty_dsn(pg_server: EphemeralServer) -> Iterator[str]:
    """Another database with no pgsched schema, beside empty_dsn's."""
    name = new_database(pg_server, "template1")
    yield pg_server.url(name)
    drop_database(pg_server, name)


def test_schema_sql_is_the_schema_the_migrations_make(
    pg_server: EphemeralServer, empty_dsn: str, second_empty_dsn: str
) -> None:
    """pgsched/sql/schema.sql, run alone, makes the schema that the migrations make from zero:
    a migration that changes the schema without it (or an edit of it alone) fails here."""
    migrate.upgrade(empty_dsn)
    with psycopg.connect(second_empty_dsn, autocommit=True) as c:
        c.execute(resources.files("pgsched.sql").joinpath("schema.sql").read_text())
    migrated = schema_dump(pg_server, empty_dsn)
    written = schema_dump(pg_server, second_empty_dsn)
    assert "CREATE TABLE pgsched.tasks (" in migrated  # the dump holds the schema
    if migrated != written:
        diff = difflib.unified_diff(
            migrated, written, "migrated from zero", "pgsched/sql/schema.sql", lineterm=""
        )
        pytest.fail(
            "pgsched/sql/schema.sql is not the schema the migrations make (pg_dump of each;"
            " -: the migrations', +: schema.sql's):\n" + "\n".join(diff),
            pytrace=False,
        )


def test_plain_insert_gets_every_default(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') "
        "RETURNING queue, payload, status, priority, attempts, max_attempts, version, "
        "run_at <= now(), created_at IS NOT NULL"
    ).fetchone()
    assert row == ("default", {}, "pending", 0, 0, 3, 0, True, True)


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("task_type", "''", "tasks_task_type_valid"),
        ("queue", "''", "tasks_queue_valid"),
        ("status", "'bogus'", "tasks_status_valid"),
        ("priority", "5000", "tasks_priority_range"),
        ("max_attempts", "-1", "tasks_max_attempts_range"),
        ("max_attempts", "0", "tasks_max_attempts_range"),
        ("timeout", "'-5 seconds'", "tasks_timeout_positive"),
        ("queue", "repeat('q', 129)", "tasks_queue_valid"),
        ("attempts", "-1", "tasks_attempts_range"),
        ("attempts", "4", "tasks_attempts_range"),  # above max_attempts (default 3)
        ("backoff_base", "'0 seconds'", "tasks_backoff_base_positive"),
        ("backoff_cap", "'-1 second'", "tasks_backoff_cap_positive"),
        ("progress", "1.5", "tasks_progress_range"),
    ],
)
def test_check_constraints_refuse_nonsense(
    conn: psycopg.Connection, column: str, value: str, constraint: str
) -> None:
    cols = "task_type" if column == "task_type" else f"task_type, {column}"
    vals = value if column == "task_type" else f"'noop', {value}"
    with pytest.raises(pge.CheckViolation) as info:
        conn.execute(f"INSERT INTO pgsched.tasks ({cols}) VALUES ({vals})")
    assert info.value.diag.constraint_name == constraint
    assert conn.execute("SELECT count(*) FROM pgsched.tasks").fetchone() == (0,)


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("status = 'bogus'", "tasks_status_valid"),
        ("priority = priority + 5000", "tasks_priority_range"),
        ("attempts = max_attempts + 1", "tasks_attempts_range"),
        ("max_attempts = 0", "tasks_max_attempts_range"),
        ("progress = 2", "tasks_progress_range"),
    ],
)
def test_updates_are_refused_the_same_nonsense(
    conn: psycopg.Connection, assignment: str, constraint: str
) -> None:
    task_id = conn.execute(
        "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id"
    ).fetchone()[0]
    with pytest.raises(pge.CheckViolation) as info:
        conn.execute(f"UPDATE pgsched.tasks SET {assignment} WHERE id = %s", (task_id,))
    assert info.value.diag.constraint_name == constraint


def test_submit_function_defaults_and_idempotency(conn: psycopg.Connection) -> None:
    a = conn.execute(
        "SELECT pgsched.submit('email', '{\"to\": 1}', queue => 'mail', idempotency_key => 'k1')"
    ).fetchone()[0]
    b = conn.execute("SELECT pgsched.submit('email', idempotency_key => 'k1')").fetchone()[0]
    c = conn.execute("SELECT pgsched.submit('noop')").fetchone()[0]
    assert a == b != c
    rows = conn.execute("SELECT id, queue, payload FROM pgsched.tasks ORDER BY id").fetchall()
    assert rows == [(a, "mail", {"to": 1}), (c, "default", {})]


def test_insert_notifies_once_per_transaction_and_queue(dsn: str, conn: psycopg.Connection) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        with conn.transaction():
            conn.execute(
                "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 50)"
            )
            conn.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('noop', 'q2')")
            conn.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('noop', 'q2')")
        got = [n.payload for n in listener.notifies(timeout=0.5)]
    assert sorted(got) == ["default", "q2"]


def test_delayed_and_blocked_inserts_do_not_notify_ready_work(
    dsn: str, conn: psycopg.Connection
) -> None:
    # Only a workflow's task can be blocked (revision 0007).
    wf = conn.execute("INSERT INTO pgsched.workflows (name) VALUES ('w') RETURNING id").fetchone()
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        conn.execute(
            "INSERT INTO pgsched.tasks (task_type, status, workflow_id)"
            " VALUES ('noop', 'blocked', %s)",
            wf,
        )
        got = [n.payload for n in listener.notifies(timeout=0.3)]
        assert got == []
        # One statement, ready and blocked rows of different queues: only the ready one wakes.
        conn.execute(
            "INSERT INTO pgsched.tasks (task_type, status, queue, workflow_id) VALUES ('noop',"
            " 'blocked', 'b', %s), ('noop', 'pending', 'a', NULL), ('noop', 'retrying', 'a', NULL)",
            wf,
        )
        got = [n.payload for n in listener.notifies(timeout=0.3)]
    assert got == ["a"]


def test_migrate_is_idempotent_and_downgrade_works(empty_dsn: str) -> None:
    with pytest.raises(NotMigrated), connect(empty_dsn) as c:
        check_schema(c)
    migrate.upgrade(empty_dsn)
    migrate.upgrade(empty_dsn)
    assert migrate.current(empty_dsn) == HEAD
    migrate.downgrade(empty_dsn, "base")
    with connect(empty_dsn) as c:
        left = c.execute(
            "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'pgsched' AND c.relname NOT LIKE 'alembic_version%'"
            " UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
            " ON n.oid = p.pronamespace WHERE n.nspname = 'pgsched'"
        ).fetchall()
        assert left == [], "downgrade left objects behind"
    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        assert check_schema(c) == HEAD


def test_tasks_table_is_vacuumed_after_two_percent_dead(empty_dsn: str) -> None:
    """Revision 0004: autovacuum thresholds of pgsched.tasks (the claim walks the ready
    index's dead entries until a vacuum); downgrading to 0003 gives the server's back."""
    sql = "SELECT reloptions FROM pg_class WHERE oid = 'pgsched.tasks'::regclass"
    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        assert sorted(c.execute(sql).fetchone()["reloptions"]) == [
            "autovacuum_vacuum_scale_factor=0.02",
            "autovacuum_vacuum_threshold=1000",
        ]
    migrate.downgrade(empty_dsn, "0003")
    with connect(empty_dsn) as c:
        assert c.execute(sql).fetchone()["reloptions"] is None


def test_concurrent_migrate_from_many_hosts(empty_dsn: str) -> None:
    import subprocess
    import sys

    code = "import sys; from pgsched import migrate; migrate.upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_dsn]) for _ in range(6)]
    assert [p.wait(60) for p in procs] == [0] * 6
    assert migrate.current(empty_dsn) == HEAD


def test_migrate_sql_prints_the_schema() -> None:
    sql = migrate.upgrade_sql("postgresql://nobody@127.0.0.1:1/none")
    assert "CREATE TABLE pgsched.tasks" in sql
    assert "CREATE FUNCTION pgsched.submit" in sql


def test_database_newer_than_the_code_is_refused_in_one_line(empty_dsn: str) -> None:
    from pgsched.errors import SchemaTooNew

    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        c.execute("UPDATE pgsched.alembic_version SET version_num = '9999'")
        with pytest.raises(SchemaTooNew, match=r"revision 9999.*upgrade pgsched"):
            check_schema(c)
    with pytest.raises(SchemaTooNew, match="revision 9999"):
        migrate.upgrade(empty_dsn)


def test_a_database_at_0001_upgrades_in_place_and_is_refused_until_then(empty_dsn: str) -> None:
    """A database migrated by the first release keeps its tasks through the upgrade, and the
    code refuses it in one line until it is migrated (the claim needs revision 0005)."""
    migrate.upgrade(empty_dsn, "0001")
    with connect(empty_dsn) as c:
        c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
        with pytest.raises(NotMigrated, match=r"revision 0001, older than .*pgsched migrate"):
            check_schema(c)
    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        assert check_schema(c) == HEAD
        c.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
        assert (
            c.execute("SELECT pgsched.claim_limit('w', 7, true, 95, 95) AS k").fetchone()["k"] == 7
        )
        assert c.execute("SELECT count(*) AS n FROM pgsched.tasks").fetchone()["n"] == 1
    migrate.downgrade(empty_dsn, "0001")
    with connect(empty_dsn) as c:
        assert (
            c.execute(
                "SELECT to_regprocedure('pgsched.claim_limit(text, integer, boolean, real,"
                " real)') AS f"
            ).fetchone()["f"]
            is None
        )


def test_a_server_older_than_supported_is_refused_in_one_line(dsn: str) -> None:
    """The check reads the real server's version; asked for a minimum above it, as for a
    server older than 14, it refuses naming both versions."""
    with connect(dsn) as c:
        check_server_version(c)  # every server the suite runs on is supported
        major = c.info.server_version // 10000
        with pytest.raises(ServerTooOld, match=rf"^PostgreSQL {major}\.\d+ at .* is older than "):
            check_server_version(c, minimum=major + 1)


def test_task_durations_are_bounded_to_100_years(empty_dsn: str) -> None:
    """Revision 0007: timeout, backoff_base and backoff_cap at most 100 years (a worker adds
    them to now() and waits on them); longer ones already there are lowered to the bound."""
    migrate.upgrade(empty_dsn, "0005")
    with connect(empty_dsn) as c:
        c.execute(
            "INSERT INTO pgsched.tasks (task_type, timeout, backoff_base, backoff_cap)"
            " VALUES ('noop', '300 years', '1000000 years', '1000000 years')"
        )
    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        row = c.execute(
            "SELECT timeout::text AS t, backoff_base::text AS b, backoff_cap::text AS c"
            " FROM pgsched.tasks"
        ).fetchone()
        assert row == {"t": "36500 days", "b": "36500 days", "c": "36500 days"}
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("INSERT INTO pgsched.tasks (task_type, timeout) VALUES ('noop', '110 years')")
    migrate.downgrade(empty_dsn, "0005")
    with connect(empty_dsn) as c:
        c.execute("INSERT INTO pgsched.tasks (task_type, timeout) VALUES ('noop', '110 years')")


def test_alert_and_schedule_durations_are_bounded(empty_dsn: str) -> None:
    """Revision 0012: an alert rule's min_interval and window at most 100 years (the alert
    ticker adds them to now()), a schedule's timeout positive (its tasks' CHECK wants it so);
    values already there are moved: durations to the bound, a timeout to none. Rows inside
    the bounds are left as they are."""
    migrate.upgrade(empty_dsn, "0011")
    with connect(empty_dsn) as c:
        c.execute(
            "INSERT INTO pgsched.alert_rules (name, event, channels, min_interval) VALUES"
            " ('long', 'worker.dead', '{}', '1000000 years'),"
            " ('fine', 'worker.dead', '{}', '36500 days')"
        )
        c.execute(
            "INSERT INTO pgsched.alert_rules (name, threshold, above, time_window, channels)"
            " VALUES ('wide', 'ready_depth', 1, '1000000 years', '{}')"
        )
        c.execute(
            "INSERT INTO pgsched.schedules (name, every, task_type, timeout) VALUES"
            " ('neg', '1 minute', 'noop', '-1 second'), ('ok', '1 minute', 'noop', '1 second')"
        )
    migrate.upgrade(empty_dsn)
    with connect(empty_dsn) as c:
        rules = c.execute(
            "SELECT name, min_interval::text AS m, time_window::text AS w"
            " FROM pgsched.alert_rules ORDER BY name"
        ).fetchall()
        assert [(r["name"], r["m"], r["w"]) for r in rules] == [
            ("fine", "36500 days", None),
            ("long", "36500 days", None),
            ("wide", "00:01:00", "36500 days"),
        ]
        timeouts = c.execute("SELECT name, timeout::text AS t FROM pgsched.schedules ORDER BY 1")
        assert [(r["name"], r["t"]) for r in timeouts] == [("neg", None), ("ok", "00:00:01")]
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("UPDATE pgsched.schedules SET timeout = '0 seconds'")
    migrate.downgrade(empty_dsn, "0011")
    with connect(empty_dsn) as c:
        c.execute("UPDATE pgsched.schedules SET timeout = '0 seconds'")


EVERY_STATUS = """
INSERT INTO pgsched.workflows (name) VALUES ('wf');
INSERT INTO pgsched.tasks (task_type, queue, status, priority, attempts, run_at, workflow_id,
                           assigned_worker, started_at, finished_at)
SELECT t, q, s, p, CASE WHEN s IN ('pending', 'retrying', 'blocked') THEN 0 ELSE 1 END,
       now() - interval '1 minute',
       CASE WHEN s = 'blocked' THEN (SELECT id FROM pgsched.workflows) END,
       CASE WHEN s = 'running' THEN 'w' END,
       CASE WHEN s NOT IN ('pending', 'retrying', 'blocked') THEN now() END,
       CASE WHEN s IN ('succeeded', 'failed', 'cancelled') THEN now() END
FROM unnest(ARRAY['blocked', 'pending', 'running', 'succeeded', 'retrying', 'failed',
                  'cancelled']) s,
     unnest(ARRAY['noop', 'other']) t, unnest(ARRAY['default', 'q2']) q,
     generate_series(1, 3) p;
"""


def test_ready_index_by_type_upgrades_and_downgrades(empty_dsn: str) -> None:
    """Revision 0013: the ready index keyed by (queue, task_type) on a database holding tasks
    of every status; the rows stay as they were, the claim of one type finds its ready rows
    through it, and a downgrade gives the queue-keyed index back with the rows untouched."""

    def snapshot(c: psycopg.Connection) -> tuple[list[tuple], str]:
        rows = c.execute(
            "SELECT id, status, task_type, queue, priority, version FROM pgsched.tasks ORDER BY id"
        ).fetchall()
        index = c.execute("SELECT pg_get_indexdef('pgsched.tasks_ready_idx'::regclass)")
        return [tuple(r.values()) for r in rows], index.fetchone()["pg_get_indexdef"]

    migrate.upgrade(empty_dsn, "0012")
    with connect(empty_dsn) as c:
        c.execute(EVERY_STATUS)
        before, old_index = snapshot(c)
    assert "(queue, priority DESC, run_at, id)" in old_index
    assert {r[1] for r in before} == {
        "blocked", "pending", "running", "succeeded", "retrying", "failed", "cancelled"
    }  # fmt: skip
    migrate.upgrade(empty_dsn, "0013")
    with connect(empty_dsn) as c:
        after, new_index = snapshot(c)
        assert after == before
        assert "(queue, task_type, priority DESC, run_at, id)" in new_index
        assert "WHERE (status = ANY (ARRAY['pending'::text, 'retrying'::text]))" in new_index
        c.execute("SET enable_seqscan = off")
        plan = c.execute(
            "EXPLAIN SELECT id FROM pgsched.tasks WHERE status IN ('pending', 'retrying')"
            " AND queue = 'q2' AND task_type = 'other' ORDER BY priority DESC, run_at, id"
        ).fetchall()
        assert "using tasks_ready_idx" in plan[0]["QUERY PLAN"], plan
        assert "Sort" not in str(plan), plan
        ready = c.execute(
            "SELECT count(*) AS n FROM pgsched.tasks WHERE status IN ('pending', 'retrying')"
            " AND queue = 'q2' AND task_type = 'other'"
        ).fetchone()["n"]
        assert ready == 6  # pending and retrying, 3 priorities each
    migrate.downgrade(empty_dsn, "0012")
    with connect(empty_dsn) as c:
        back, index = snapshot(c)
    assert back == before
    assert index == old_index


def test_duration_buckets_are_the_same_through_revision_0014(empty_dsn: str) -> None:
    """Revision 0014 finds an attempt's duration bucket with a CASE over float8 bounds instead
    of a numeric array: every duration, on a bound, just over one, none at all, negative or
    huge, lands in the bucket it landed in before, and a downgrade gives the old function
    back."""
    durations = [0, -1, 5, 5.000001, 9.99, 10, 25, 250, 1000, 1000.5, 2500, 59999.9, 60000,
                 299999.99, 300000, 300000.01, 1e12, None]  # fmt: skip
    expected = {"0.005": 3, "0.01": 3, "0.025": 1, "0.25": 1, "1": 1, "2.5": 2, "60": 2,
                "300": 2, "+Inf": 2}  # fmt: skip

    def buckets() -> dict[str, int]:
        with connect(empty_dsn) as c:
            c.execute("DELETE FROM pgsched.metric_counters")
            c.execute(
                "INSERT INTO pgsched.task_executions (task_id, attempt, outcome, duration_ms)"
                " SELECT i, 1, 'success', d::float8"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS u(d, i)",
                ([None if d is None else str(d) for d in durations],),
            )
            rows = c.execute(
                "SELECT label, sum(value)::int AS n FROM pgsched.metric_counters"
                " WHERE name = 'duration_bucket' GROUP BY label"
            ).fetchall()
            c.execute("DELETE FROM pgsched.task_executions")
        return {r["label"]: r["n"] for r in rows}

    def body() -> str:
        with connect(empty_dsn) as c:
            return str(
                c.execute(
                    "SELECT pg_get_functiondef('pgsched.count_attempts'::regproc) AS f"
                ).fetchone()["f"]
            )

    migrate.upgrade(empty_dsn, "0013")
    before = buckets()
    assert before == expected
    assert "numeric[]" in body()
    migrate.upgrade(empty_dsn, "0014")
    assert "CASE WHEN" in body()
    assert buckets() == before
    migrate.downgrade(empty_dsn, "0013")
    assert "numeric[]" in body()
    assert buckets() == before
