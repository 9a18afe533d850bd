"""The group roles of migration 0006, logged in as a member of each: what it may do, and what
it is refused."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgsched.client import Client
from pgsched.errors import PermissionDenied

_n = itertools.count()


@pytest.fixture
def login_as(dsn: str, conn: psycopg.Connection) -> Iterator:
    made: list[str] = []

    def login(group: str) -> psycopg.Connection:
        user = f"u_{group}_{os.getpid()}_{next(_n)}"
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'pw-{user}' IN ROLE {group}")
        made.append(user)
        return psycopg.connect(
            make_conninfo(dsn, user=user, password=f"pw-{user}"), autocommit=True
        )

    yield login
    for user in made:
        conn.execute(f"DROP OWNED BY {user}")
        conn.execute(f"DROP ROLE {user}")


def refused(c: psycopg.Connection, sql: str, params: tuple = ()) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(sql, params)


def test_the_roles_exist_and_cannot_log_in(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'pgsched\\_%'"
        " ORDER BY rolname"
    ).fetchall()
    assert dict(rows) == {
        "pgsched_admin": False,
        "pgsched_read": False,
        "pgsched_shell": False,  # who may submit shell tasks (revision 0011)
        "pgsched_submit": False,
        "pgsched_worker": False,
    }


def test_submit_may_only_insert_tasks(login_as, conn: psycopg.Connection, dsn: str) -> None:
    tid = conn.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('x') RETURNING id").fetchone()
    with login_as("pgsched_submit") as c:
        new = c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('y') RETURNING id")
        assert new.fetchone()[0] > tid[0]
        assert c.execute("SELECT pgsched.submit('z', '{}', idempotency_key => 'k')").fetchone()
        assert c.execute("SELECT pgsched.submit('z', '{}', idempotency_key => 'k')").fetchone()
        refused(c, "SELECT payload FROM pgsched.all_tasks")
        refused(c, "UPDATE pgsched.tasks SET priority = 5")
        refused(c, "DELETE FROM pgsched.tasks")
        refused(c, "SELECT * FROM pgsched.workers")
        refused(c, "SELECT * FROM pgsched.api_tokens")
        refused(
            c,
            "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload,"
            " attempts) VALUES (1, 'q', 't', '{}', 1)",
        )
        refused(c, "CREATE TABLE pgsched.mine (x int)")
    # Through the library too: submitting works, reading a task back does not.
    with login_as("pgsched_submit") as c:
        submit_dsn = make_conninfo(dsn, user=c.info.user, password=f"pw-{c.info.user}")
    with Client(submit_dsn) as client:
        new_id = client.submit("lib", {"a": 1})
        assert client.submit_batch("lib", [{}, {}])
        with pytest.raises(PermissionDenied, match="lacks SELECT"):  # named, in one line
            client.get(new_id)
    assert conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 6


def test_read_may_read_but_not_write_nor_see_tokens(login_as, conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO pgsched.tasks (task_type, payload) VALUES ('x', '{\"a\": 1}')")
    with login_as("pgsched_read") as c:
        assert c.execute("SELECT payload FROM pgsched.all_tasks").fetchone() == ({"a": 1},)
        assert c.execute("SELECT count(*) FROM pgsched.task_executions").fetchone() == (0,)
        refused(c, "INSERT INTO pgsched.tasks (task_type) VALUES ('y')")
        refused(c, "UPDATE pgsched.tasks SET priority = 1")
        refused(c, "SELECT * FROM pgsched.api_tokens")
        refused(c, "DELETE FROM pgsched.dead_letter")


def test_worker_role_runs_a_worker_but_sees_no_tokens(
    login_as, conn: psycopg.Connection, dsn: str
) -> None:
    from conftest import FAST, wait_until

    from pgsched.worker import Worker

    conn.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('noop')")
    with login_as("pgsched_worker") as c:
        refused(c, "SELECT * FROM pgsched.api_tokens")
        refused(c, "DROP TABLE pgsched.tasks")
        refused(c, "DELETE FROM pgsched.schedules")
        worker_dsn = make_conninfo(dsn, user=c.info.user, password=f"pw-{c.info.user}")
    w = Worker(worker_dsn, FAST, name="as-role", burst=True).start()
    try:
        assert w.wait(30), "the burst worker did not finish"
    finally:
        w.stop(timeout=20)
    wait_until(
        lambda: conn.execute("SELECT status FROM pgsched.all_tasks").fetchone()[0] == "succeeded",
        message="the task to succeed under the worker role",
    )
    # The counters' trigger ran for it without a grant on the counters table.
    n = conn.execute(
        "SELECT sum(value) FROM pgsched.metric_counters WHERE name = 'attempts'"
    ).fetchone()[0]
    assert n == 1


def test_admin_role_reads_and_writes_every_table_but_changes_no_schema(login_as, dsn: str) -> None:
    with login_as("pgsched_admin") as c:
        c.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('x')")
        c.execute("UPDATE pgsched.tasks SET priority = 2")
        assert c.execute("SELECT count(*) FROM pgsched.api_tokens").fetchone() == (0,)
        c.execute("DELETE FROM pgsched.dead_letter")
        refused(c, "DROP TABLE pgsched.tasks")
        refused(c, "ALTER TABLE pgsched.tasks ADD COLUMN x int")
        admin_dsn = make_conninfo(dsn, user=c.info.user, password=f"pw-{c.info.user}")
    with Client(admin_dsn) as client:
        assert client.list()[0]["priority"] == 2
