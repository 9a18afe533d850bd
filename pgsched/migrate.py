"""Schema migrations through alembic, driven from Python (``pgsched migrate``)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pgsched.db import describe, failure_reason, migrations_dir
from pgsched.errors import DatabaseUnavailable, PermissionDenied, PgschedError, SchemaTooNew

if TYPE_CHECKING:
    import psycopg
    from alembic.config import Config


def _config(dsn: str, output: io.StringIO | None = None, lock_timeout: float = 30.0) -> Config:
    from alembic.config import Config

    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["pgsched_dsn"] = dsn
    cfg.attributes["lock_timeout"] = lock_timeout
    return cfg


def _lock_holders(dsn: str) -> str:
    """Who holds the migration lock: pid, role, application and client address."""
    from pgsched.db import ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK, connect

    try:
        with connect(dsn) as conn:
            rows = conn.execute(
                "SELECT a.pid, a.usename, a.application_name, a.client_addr::text AS addr,"
                "       now() - a.xact_start AS held"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::int::oid"
                "   AND l.objid = %s::int::oid AND l.database = (SELECT oid FROM pg_database"
                "                                  WHERE datname = current_database())",
                (ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK),
            ).fetchall()
    except PgschedError:
        rows = []
    if not rows:
        return "no session now (the wait was for a table a running worker uses?)"
    return ", ".join(
        f"pid {r['pid']} (role {r['usename']}, application {r['application_name'] or '-'}, "
        f"from {r['addr'] or 'local'}, for {r['held']})"
        for r in rows
    )


def sqlalchemy_url(dsn: str) -> str:
    """SQLAlchemy wants a URL with the psycopg 3 driver; accept URLs and key=value DSNs."""
    from psycopg.conninfo import conninfo_to_dict

    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + dsn.split("://", 1)[1]
    if dsn.startswith("postgresql+psycopg://"):
        return dsn
    from sqlalchemy.engine import URL

    # conninfo_to_dict gives str values (its type allows int for what make_conninfo takes).
    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return URL.create(
        "postgresql+psycopg",
        username=parts.pop("user", None),
        password=parts.pop("password", None),
        host=parts.pop("host", None),
        port=int(parts.pop("port")) if "port" in parts else None,
        database=parts.pop("dbname", None),
        query={k: str(v) for k, v in parts.items()},
    ).render_as_string(hide_password=False)


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    import logging

    logger = logging.getLogger("alembic")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def _wrap(dsn: str, fn: Callable[[], None]) -> None:
    import sqlalchemy.exc
    from alembic.util import CommandError

    try:
        with _quiet_alembic():
            fn()
    except CommandError as e:
        if "Can't locate revision" in str(e):
            rev = str(e).rsplit(" ", 1)[-1].strip("'")
            raise SchemaTooNew(
                f"the database schema is at revision {rev}, which this pgsched does not know "
                f"(made by a newer version?): upgrade pgsched"
            ) from None
        raise PgschedError(f"migration failed: {e}") from None
    except sqlalchemy.exc.OperationalError as e:
        import psycopg

        if isinstance(e.orig, psycopg.errors.LockNotAvailable):
            raise PgschedError(
                f"migration gave up waiting for a lock (lock_timeout); the migration lock is "
                f"held by {_lock_holders(dsn)}"
            ) from None
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {failure_reason(e.orig or e)}"
        ) from None
    except sqlalchemy.exc.DBAPIError as e:
        import psycopg

        if isinstance(e.orig, psycopg.errors.InsufficientPrivilege):
            raise PermissionDenied(f"migration failed: {_lacking(dsn, e.orig)}") from None
        raise PgschedError(f"migration failed: {str(e.orig).strip().splitlines()[0]}") from None


def _lacking(dsn: str, exc: psycopg.Error) -> str:
    """The server's "permission denied for ...", with the privileges the role lacks on that
    object (db.missing_privilege, on a connection of its own: the migration's is gone)."""
    from pgsched.db import connect, missing_privilege

    try:
        with connect(dsn) as conn:
            return missing_privilege(conn, exc)
    except PgschedError:
        return str(exc).strip().splitlines()[0]


def upgrade(dsn: str, revision: str = "head", lock_timeout: float = 30.0) -> None:
    """Migrate to ``revision``, waiting at most ``lock_timeout`` seconds for a migration that
    another session runs (0: no limit)."""
    from alembic import command

    _wrap(dsn, lambda: command.upgrade(_config(dsn, lock_timeout=lock_timeout), revision))


def downgrade(dsn: str, revision: str) -> None:
    from alembic import command

    _wrap(dsn, lambda: command.downgrade(_config(dsn), revision))


def upgrade_sql(dsn: str, revision: str = "head") -> str:
    """The SQL an upgrade from nothing would run, for a DBA to review and apply."""
    from alembic import command

    out = io.StringIO()
    _wrap(dsn, lambda: command.upgrade(_config(dsn, out), revision, sql=True))
    return out.getvalue()


def current(dsn: str) -> str | None:
    from pgsched.db import connect

    with connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('pgsched.alembic_version') AS t").fetchone()
        if exists is None or exists["t"] is None:
            return None
        row = conn.execute("SELECT version_num FROM pgsched.alembic_version").fetchone()
        return str(row["version_num"]) if row else None
