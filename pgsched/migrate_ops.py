"""What an alembic revision does: apply one SQL file from pgsched/sql/migrations."""

from __future__ import annotations

from pgsched.sql import migration_sql


def run_sql_file(filename: str) -> None:
    from alembic import context, op

    sql = migration_sql(filename)
    if context.is_offline_mode():
        op.execute(sql)
        return
    # The raw psycopg connection runs the file as one multi-statement query without
    # parameters, so '%' and ':' in the SQL are left alone.
    raw = op.get_bind().connection.driver_connection
    assert raw is not None  # online, alembic's connection wraps a live psycopg connection
    raw.execute(sql)
