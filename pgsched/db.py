"""Connections: resolving the DSN, connecting with a deadline, pools, and the schema check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.datetime import TimestamptzLoader

from pgsched.config import Settings
from pgsched.errors import (
    DatabaseUnavailable,
    NotMigrated,
    PermissionDenied,
    SchemaTooNew,
    ServerTooOld,
    translate,
)

# Every advisory lock pgsched takes, as (first key, second key); the namespaces differ, so
# no lock of one kind can collide with another's:
#   (ADVISORY_NAMESPACE, workers.id)                  a worker's liveness lock, held by its session
#   (WORKER_LOCK_NAMESPACE, hashtext(signature))      the waker lock (pgsched/worker/waker.py)
#   (ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK)              `pgsched migrate`
#   (ADMIN_LOCK_NAMESPACE, hashtext(...))             `pgsched schedules apply`
ADVISORY_NAMESPACE = 0x70677363  # 'pgsc'
WORKER_LOCK_NAMESPACE = ADVISORY_NAMESPACE + 1
ADMIN_LOCK_NAMESPACE = ADVISORY_NAMESPACE + 2
MIGRATE_LOCK = 1


def resolve_dsn(settings: Settings, *, start_embedded: bool = True) -> str:
    """The configured DSN, else the embedded local server's (started when needed)."""
    if settings.dsn:
        return settings.dsn
    from pgsched.server import Cluster

    global EMBEDDED_STARTED
    cluster = Cluster(settings.home)
    if start_embedded:
        was_running = cluster.initialized() and cluster.running()
        url = cluster.start()
        if not was_running:
            EMBEDDED_STARTED = cluster.home
        return url
    return cluster.url()


# The embedded server's home when this process started it (resolve_dsn): an error such as
# "no pgsched schema" then says where that server is and how to stop it, rather than leave
# a server the user did not know of running.
EMBEDDED_STARTED: Path | None = None


def direct_dsn(settings: Settings, dsn: str) -> str:
    return settings.direct_dsn or dsn


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (in a URL's user info, a ``password`` query parameter or a
    ``password=`` key) written as ``***``."""
    import re

    if re.match(r"^[a-z+]+://", dsn, flags=re.I):
        masked = re.sub(r"^([a-z+]+://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn, flags=re.I)
        return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.I)
    return re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.I)


def describe(dsn: str) -> str:
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database"
    host = d.get("host") or d.get("hostaddr") or "localhost"
    return f"{host}:{d.get('port') or 5432}"


# What a read gives for a timestamp Python's datetime cannot hold ('infinity', '-infinity', a
# year past 9999 or before 1): the latest and earliest datetime, shown as "infinity" and
# "-infinity". The tables' CHECKs keep such times out of run_at; other columns a user may
# write from SQL still reach reads, which must not fail on them.
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
FAR_PAST = datetime.min.replace(tzinfo=UTC)


class _LenientTimestamptz(TimestamptzLoader):
    def load(self, data: Any) -> datetime:
        try:
            return super().load(data)
        except psycopg.DataError:
            raw = bytes(data)
            return FAR_PAST if raw.startswith(b"-") or raw.endswith(b" BC") else FAR_FUTURE


def lenient_times(conn: psycopg.Connection) -> None:
    """Read out-of-range timestamptz values as FAR_FUTURE / FAR_PAST instead of failing."""
    conn.adapters.register_loader("timestamptz", _LenientTimestamptz)


def connect(
    dsn: str,
    *,
    timeout: float = 5.0,
    autocommit: bool = True,
    prepare: bool = True,
    lenient: bool = True,
    **kw: Any,
) -> psycopg.Connection:
    """Connect or raise DatabaseUnavailable naming host and port, within ``timeout`` seconds.

    ``prepare=False``: no server-side prepared statements (psycopg prepares a statement after
    5 runs), for PgBouncer < 1.21 in transaction mode. ``lenient``: timestamps Python cannot
    hold read as FAR_FUTURE / FAR_PAST (lenient_times); the worker's hot path turns it off."""
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=max(1, int(timeout)),
            row_factory=kw.pop("row_factory", dict_row),
            **kw,
        )
        if not prepare:
            conn.prepare_threshold = None
        if lenient:
            lenient_times(conn)
        return conn
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {failure_reason(e)}"
        ) from None
    except psycopg.ProgrammingError as e:
        raise DatabaseUnavailable(f"invalid DSN: {str(e).splitlines()[0]}") from None


def failure_reason(exc: BaseException) -> str:
    """'Connection refused' out of libpq's multi-line 'connection to server at ... failed: ...'."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return "connection failed"
    return lines[0].rsplit("failed: ", 1)[-1]


@contextlib.contextmanager
def translated(conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Turn psycopg errors into the domain errors of pgsched.errors at one boundary. With the
    connection the statement ran on, a permission error names the privilege the role lacks."""
    try:
        yield
    except psycopg.Error as e:
        mapped = translate(e)
        if mapped is None:
            raise
        if isinstance(e, psycopg.errors.InsufficientPrivilege) and conn is not None:
            mapped = PermissionDenied(missing_privilege(conn, e))
        raise mapped from None


# "permission denied for <kind> <name>" -> the privileges that kind of object has.
_PRIVILEGES = {
    "table": ("has_table_privilege", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    "view": ("has_table_privilege", ("SELECT",)),
    "sequence": ("has_sequence_privilege", ("USAGE", "UPDATE")),
    "function": ("has_function_privilege", ("EXECUTE",)),
    "schema": ("has_schema_privilege", ("USAGE", "CREATE")),
    "database": ("has_database_privilege", ("CONNECT", "CREATE", "TEMPORARY")),
}


def missing_privilege(conn: psycopg.Connection, exc: psycopg.Error) -> str:
    """The server's "permission denied for table tasks", with what the role lacks on it
    ("role ro lacks INSERT, UPDATE, DELETE on table pgsched.tasks"), read from the catalog.
    Falls back to the server's line alone when it cannot be looked up."""
    primary = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    words = primary.removeprefix("permission denied for ").split(" ", 1)
    if len(words) != 2 or words[0] not in _PRIVILEGES:
        return primary
    kind, name = words
    fn, privs = _PRIVILEGES[kind]
    qualified = name if kind in ("schema", "database") or "." in name else f"pgsched.{name}"
    if kind == "function":
        # has_function_privilege needs the argument types: the name's first overload.
        target = (
            "(SELECT p.oid FROM pg_proc p WHERE p.proname = %(name)s"
            " AND p.pronamespace = 'pgsched'::regnamespace LIMIT 1)"
        )
    else:
        target = "%(qualified)s"
    query = (
        f"SELECT current_user AS who, array_agg(p ORDER BY o) FILTER (WHERE NOT {fn}({target}, p))"
        " AS missing FROM unnest(%(privs)s::text[]) WITH ORDINALITY AS u(p, o)"
    )
    try:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return primary
        row = conn.execute(
            query, {"name": name, "qualified": qualified, "privs": list(privs)}
        ).fetchone()
    except psycopg.Error:
        return primary
    who, missing = (row["who"], row["missing"]) if isinstance(row, dict) else row
    if not missing:
        return primary
    return f"{primary}: role {who} lacks {', '.join(missing)} on {kind} {qualified}"


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("pgsched migrations directory not found")


def known_revisions() -> list[str]:
    """Revision ids this code understands, oldest first (read from the version files)."""
    import re

    revs: dict[str, str | None] = {}
    for f in (migrations_dir() / "versions").glob("*.py"):
        text = f.read_text()
        rev = re.search(r'^revision\s*=\s*"([^"]+)"', text, re.M)
        down = re.search(r'^down_revision\s*=\s*(?:"([^"]+)"|None)', text, re.M)
        if rev:
            revs[rev[1]] = down[1] if down else None
    order, current = [], None
    while True:
        nxt = [r for r, d in revs.items() if d == current]
        if not nxt:
            return order
        current = nxt[0]
        order.append(current)


# The oldest PostgreSQL major version pgsched supports (docs/operations.md, "Supported
# PostgreSQL servers").
MIN_SERVER_VERSION = 14


def check_server_version(conn: psycopg.Connection, minimum: int = MIN_SERVER_VERSION) -> None:
    """Refuse, in one line, a server older than ``minimum`` (a major version)."""
    have = conn.info.server_version  # e.g. 150018 for 15.18
    if have < minimum * 10000:
        major, minor = divmod(have, 10000)
        raise ServerTooOld(
            f"PostgreSQL {major}.{minor} at {describe_conn(conn)} is older than {minimum}, "
            f"the oldest version pgsched supports"
        )


def describe_conn(conn: psycopg.Connection) -> str:
    return f"{conn.info.host}:{conn.info.port}"


def check_schema(conn: psycopg.Connection) -> str:
    """Refuse, in one line, a server older than pgsched supports, and a database that is not
    migrated or newer than this code."""
    check_server_version(conn)
    row = conn.execute(
        "SELECT to_regclass('pgsched.alembic_version') IS NOT NULL AS has_version,"
        " to_regclass('pgsched.tasks') IS NOT NULL AS has_tasks"
    ).fetchone()
    has_version, has_tasks = (
        (row["has_version"], row["has_tasks"]) if isinstance(row, dict) else row
    )
    if not (has_version and has_tasks):
        raise NotMigrated()
    cur = conn.execute("SELECT version_num FROM pgsched.alembic_version").fetchone()
    rev = (cur["version_num"] if isinstance(cur, dict) else cur[0]) if cur else None
    if rev is None:
        raise NotMigrated()
    known = known_revisions()
    if rev not in known:
        raise SchemaTooNew(
            f"the database schema is at revision {rev}, newer than this pgsched understands "
            f"({known[-1] if known else 'none'}): upgrade pgsched"
        )
    if rev != known[-1]:
        raise NotMigrated(
            f"the database schema is at revision {rev}, older than {known[-1]}: run pgsched migrate"
        )
    return rev
