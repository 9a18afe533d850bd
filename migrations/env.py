"""alembic environment: one transaction under an advisory lock, version table in pgsched."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from pgsched.db import ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK
from pgsched.migrate import sqlalchemy_url

config = context.config
dsn = config.attributes.get("pgsched_dsn") or config.get_main_option("sqlalchemy.url")

OPTS = {"version_table_schema": "pgsched", "transactional_ddl": True}


def run_offline() -> None:
    context.configure(
        url=sqlalchemy_url(dsn) if dsn else "postgresql+psycopg://", literal_binds=True, **OPTS
    )
    with context.begin_transaction():
        context.execute("CREATE SCHEMA IF NOT EXISTS pgsched")
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(
        sqlalchemy_url(dsn), poolclass=pool.NullPool, connect_args={"connect_timeout": 5}
    )
    with engine.connect() as connection:
        context.configure(connection=connection, **OPTS)
        with context.begin_transaction():
            # Ten hosts running `pgsched migrate` at once: one migrates, the others wait and
            # then find nothing to do (READ COMMITTED: they read the version after the wait).
            # The wait has a limit (lock_timeout); pgsched.migrate then names who holds it.
            wait_ms = round(float(config.attributes.get("lock_timeout", 30.0)) * 1000)
            connection.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:ns, :k)"),
                {"ns": ADMIN_LOCK_NAMESPACE, "k": MIGRATE_LOCK},
            )
            connection.execute(text("CREATE SCHEMA IF NOT EXISTS pgsched"))
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
