"""Every named statement is checked by PostgreSQL itself, and no SQL lives outside pgsched/sql/.

PREPARE parses, resolves every table and column and infers every parameter's type, without
running the statement: a renamed column, a typo or a parameter whose type PostgreSQL cannot
infer (fix: an explicit cast in the .sql file) fails here instead of in production.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

import psycopg
import pytest

from pgsched.sql import Q, Query, SqlLoadError, parse, to_positional

ROOT = Path(__file__).resolve().parent.parent


def test_to_positional_numbers_each_name_once() -> None:
    sql, names = to_positional("SELECT %(a)s, %(b)s, %(a)s, '100%%'")
    assert sql == "SELECT $1, $2, $1, '100%'"
    assert names == ["a", "b"]


def test_a_percent_sign_in_a_statements_comment_is_refused() -> None:
    """psycopg reads comments for placeholders too: '%(x)b' in a comment made the completion
    fail at run time with 'query parameter missing: x', which PREPARE did not notice."""
    text = "-- name: q :exec\n-- the arrays go as %(name)b\nSELECT %(a)s\n"
    with pytest.raises(SqlLoadError, match=r"'%' in a comment of 'q'"):
        parse(text, "x.sql")
    with pytest.raises(SqlLoadError, match=r"'%' in a comment of 'q'"):
        parse(text.replace("%(name)b", "90% of it"), "x.sql")
    # A placeholder the statement uses may be named in its comment, as may '%%'.
    assert set(parse(text.replace("%(name)b", "%(a)s, 100%%"), "x.sql")) == {"q"}


def test_statements_are_loaded() -> None:
    # The parametrised test below must not pass by having nothing to check.
    assert {"submit_task", "get_task", "list_tasks", "cancel_task", "retry_task"} <= set(Q.all())


def test_the_arbitrated_completion_differs_from_the_completion_by_its_arbiter_only() -> None:
    """complete_tasks_arbitrated writes what complete_tasks writes, but keeps an attempt row
    that exists already (tests/test_queue_model.py runs it through complete()): a change to
    one statement that the other does not get fails here."""

    def code(q: Query) -> list[str]:
        return [ln for ln in q.sql.splitlines() if not ln.lstrip().startswith("--")]

    diff = [
        ln
        for ln in difflib.unified_diff(code(Q.complete_tasks), code(Q.complete_tasks_arbitrated))
        if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
    ]
    assert diff == ["+    ON CONFLICT ON CONSTRAINT task_executions_attempt_unique DO NOTHING"]


LOCK_CALL = re.compile(
    r"pg_(?:try_)?advisory_(?:xact_)?(?:un)?lock(?:_shared)?\(([^,]*),\s*(hashtext\('[^']*'\))?"
)


def test_every_advisory_lock_is_in_the_one_registry() -> None:
    """pgsched/db.py lists every advisory lock pgsched takes: the statements take the
    namespace as %(ns)s, never a number of their own; a fixed second key is named in the
    registry; no other module defines a namespace or lock key; and no Python file but
    alembic's environment (the migration lock) takes a lock in SQL of its own."""
    registry = (ROOT / "pgsched/db.py").read_text()
    locks = 0
    for q in Q.all().values():
        for m in LOCK_CALL.finditer(q.sql):
            locks += 1
            assert m[1] == "%(ns)s::int", f"{q.name}: the namespace {m[1]!r} is not %(ns)s"
            assert m[2] is None or m[2] in registry, f"{q.name}: {m[2]} is not in pgsched/db.py"
    assert locks >= 8  # liveness, waker (take, heartbeat, release), admin locks
    for path in [*(ROOT / "pgsched").rglob("*.py"), *(ROOT / "migrations").rglob("*.py")]:
        text = path.read_text()
        where = path.relative_to(ROOT).as_posix()
        defined = re.findall(r"^(\w*(?:NAMESPACE|LOCK)\w*)(?:: int)? = [0-9A]", text, re.M)
        assert where == "pgsched/db.py" or not defined, f"{where} defines {defined}"
        if "advisory_" in text and "lock(" in text:
            assert where == "migrations/env.py", f"{where} takes an advisory lock of its own"


# PREPARE takes only these; utility statements (LISTEN, SET, ...) are run in a rolled-back
# transaction instead, which they must allow without parameters.
PREPARABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "MERGE", "TABLE")


def _first_keyword(sql: str) -> str:
    code = [ln for ln in sql.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    return code[0].split()[0].upper().lstrip("(") if code else ""


@pytest.mark.parametrize("query", list(Q.all().values()), ids=lambda q: f"{q.source}:{q.name}")
def test_statement_prepares(query: Query, dsn: str) -> None:
    sql, names = to_positional(query.sql)
    if query.kind == "copy":
        # COPY ... FROM STDIN cannot be prepared: run it with no rows, then roll back.
        assert not names, f"{query.name}: COPY cannot take parameters"
        with psycopg.connect(dsn) as conn:
            try:
                query.run(conn, [])
            except psycopg.Error as e:
                pytest.fail(f"{query.source}: statement {query.name!r}: {e}".strip())
            conn.rollback()
        return
    if _first_keyword(sql) not in PREPARABLE:
        assert not names, f"{query.name}: a utility statement cannot take parameters"
        with psycopg.connect(dsn) as conn:
            try:
                conn.execute(query.sql)
            except psycopg.Error as e:
                pytest.fail(f"{query.source}: statement {query.name!r}: {e}".strip())
            conn.rollback()
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(f"PREPARE pgsched_check AS {sql}")
        except psycopg.Error as e:
            pytest.fail(f"{query.source}: statement {query.name!r}: {e}".strip())
        types = conn.execute(
            "SELECT parameter_types::text[] FROM pg_prepared_statements"
            " WHERE name = 'pgsched_check'"
        ).fetchone()[0]
    assert len(types) == len(names)


def test_prepare_fails_on_a_renamed_column(dsn: str) -> None:
    # The check above can fail: a statement naming a column that does not exist is refused.
    sql, _ = to_positional("SELECT no_such_column FROM pgsched.all_tasks WHERE id = %(id)s")
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.UndefinedColumn),
    ):
        conn.execute(f"PREPARE pgsched_check AS {sql}")


# -- no SQL text in Python outside pgsched/sql/ ------------------------------------------------

SQL_TEXT = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\b.*\bSET\b|\bDELETE\s+FROM\b", re.S
)
# Bootstrap statements that must run before (or without) the loader and the schema.
ALLOWED = {"pgsched/db.py", "pgsched/server/cluster.py", "pgsched/migrate.py"}
# Not the product's code: tests, alembic's environment, the SQL package itself, and benchmarks
# (which time raw SQL of peer designs on purpose).
EXCLUDED_DIRS = ("tests/", "migrations/", "pgsched/sql/", "bench/", ".venv")


def sql_literals(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.search(node.value)
        ):
            found.append((node.lineno, node.value.strip().splitlines()[0][:60]))
    return found


def test_sql_literal_detector() -> None:
    assert sql_literals('x = "SELECT id FROM pgsched.all_tasks"')
    assert sql_literals('x = f"UPDATE pgsched.tasks SET status = {s}"')
    assert sql_literals('x = "delete" \nconn.execute("DELETE FROM t")')
    assert not sql_literals('"""Select a task from the queue and update its row."""')


def test_no_sql_text_outside_the_sql_package() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(EXCLUDED_DIRS) or rel in ALLOWED or "/." in f"/{rel}":
            continue
        offenders += [f"{rel}:{line}: {text}" for line, text in sql_literals(path.read_text())]
    assert not offenders, "SQL text belongs in pgsched/sql/*.sql:\n" + "\n".join(offenders)
