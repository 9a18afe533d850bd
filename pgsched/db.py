"""Connections: resolving the DSN, connecting with a deadline, pools, and the schema check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pge
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.datetime import TimestamptzLoader

from pgsched.config import Settings
from pgsched.errors import (
    DatabaseUnavailable,
    DuplicateKey,
    NotMigrated,
    PermissionDenied,
    PgschedError,
    SchemaTooNew,
    ServerTooOld,
    TimedOut,
    ValidationError,
)

# Every advisory lock pgsched takes, as (first key, second key). The first key is one of these
# namespaces, passed to the statement as %(ns)s (never written in the SQL); they differ, so no
# lock of one kind can collide with another's:
#   (ADVISORY_NAMESPACE, workers.id)                  a worker's liveness lock, held by its session
#   (WORKER_LOCK_NAMESPACE, hashtext(signature))      the waker lock (pgsched/worker/waker.py)
#   (ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK)              `pgsched migrate` (migrations/env.py)
#   (ADMIN_LOCK_NAMESPACE, hashtext('pgsched.schedules.apply'))  `pgsched schedules apply`
#   (ADMIN_LOCK_NAMESPACE, hashtext('pgsched.alerts.apply'))     `pgsched alerts apply`
#   (ADMIN_LOCK_NAMESPACE, hashtext('pgsched.alerts.dispatch'))  one alert dispatcher at a time
# (Recovery's one-at-a-time gate is a table lock, not an advisory one: revision 0011.)
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


def lenient_times(conn: psycopg.Connection[Any]) -> None:
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
) -> psycopg.Connection[DictRow]:
    """Connect or raise DatabaseUnavailable naming host and port, within ``timeout`` seconds.
    Rows read as dicts (dict_row). ``kw``: more connection parameters (options, keepalives).

    ``prepare=False``: no server-side prepared statements (psycopg prepares a statement after
    5 runs), for PgBouncer < 1.21 in transaction mode. ``lenient``: timestamps Python cannot
    hold read as FAR_FUTURE / FAR_PAST (lenient_times); the worker's hot path turns it off."""
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=max(1, int(timeout)),
            row_factory=dict_row,
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


# Check constraints by name -> what to tell the user (the field comes first).
CONSTRAINT_MESSAGES: dict[str, str] = {
    "tasks_queue_valid": "queue: must be a non-empty name of at most 128 characters",
    "tasks_task_type_valid": "task_type: must be a non-empty name of at most 200 characters",
    "tasks_status_valid": "status: not one of blocked, pending, running, succeeded, retrying, "
    "failed, cancelled",
    "tasks_priority_range": "priority: must be between -1000 and 1000",
    "tasks_attempts_range": "attempts: must be between 0 and max_attempts",
    "tasks_max_attempts_range": "max_attempts: must be between 1 and 1000",
    "tasks_timeout_positive": "timeout: must be positive",
    "tasks_backoff_base_positive": "backoff_base: must be positive",
    "tasks_backoff_cap_positive": "backoff_cap: must be positive",
    "tasks_progress_range": "progress: must be between 0 and 1",
    "tasks_timeout_bounded": "timeout: must be at most 100 years",
    "tasks_backoff_base_bounded": "backoff_base: must be at most 100 years",
    "tasks_backoff_cap_bounded": "backoff_cap: must be at most 100 years",
    "schedules_timeout_bounded": "timeout: must be at most 100 years",
    "schedules_timeout_positive": "timeout: must be positive",
    "alert_rules_min_interval_bounded": "min_interval: must be at most 100 years",
    "alert_rules_window_bounded": "window: must be at most 100 years",
    "schedules_every_bounded": "every: must be at most 100 years",
    "tasks_run_at_range": "run_at: must be between 1900-01-01 and 9999-01-01 (UTC)",
    "tasks_ready_has_attempts": "attempts: a pending or retrying task needs an attempt left "
    "(attempts below max_attempts)",
    "tasks_blocked_in_workflow": "status: only a workflow's task can be blocked",
    "tasks_payload_size": "payload: larger than the limit (pgsched.max_payload_bytes(), 1 MiB "
    "unless changed)",
    "schedules_payload_size": "payload: larger than the limit (pgsched.max_payload_bytes(), "
    "1 MiB unless changed)",
    "schedules_every_minimum": "every: must be at least 1s",
    "schedules_misfire_cap_range": "misfire_cap: must be at most 10000",
}


def translate(exc: BaseException) -> PgschedError | None:
    """Map a psycopg error to a domain error, by constraint name; None if it is not ours."""
    if isinstance(exc, PgschedError):
        return exc
    if isinstance(exc, pge.InsufficientPrivilege) and exc.diag.constraint_name == (
        "shell_needs_pgsched_shell"
    ):
        return PermissionDenied(str(exc.diag.message_primary))  # the trigger's own line
    if isinstance(exc, pge.InsufficientPrivilege):
        # Without the connection at hand (db.translated names the privilege when it has it).
        return PermissionDenied(
            (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
            + ": the role lacks a privilege this command needs"
        )
    missing = pge.UndefinedTable | pge.InvalidSchemaName | pge.UndefinedFunction
    if isinstance(exc, missing) and "pgsched" in str(exc):
        return NotMigrated()
    if isinstance(exc, pge.CheckViolation | pge.UniqueViolation | pge.ForeignKeyViolation):
        name = exc.diag.constraint_name or ""
        if name in CONSTRAINT_MESSAGES:
            return ValidationError(CONSTRAINT_MESSAGES[name], field=name.split("_")[1])
        if isinstance(exc, pge.UniqueViolation):
            return DuplicateKey(f"already exists ({name}): {exc.diag.message_detail}", name)
    if isinstance(exc, pge.InvalidTextRepresentation | pge.InvalidDatetimeFormat):
        return ValidationError(str(exc.diag.message_primary or exc))
    if isinstance(exc, pge.QueryCanceled | pge.LockNotAvailable):
        primary = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        return TimedOut(f"the database gave up on the statement: {primary}; nothing was changed")
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(f"lost the database connection: {failure_reason(exc)}")
    return None


@contextlib.contextmanager
def translated(conn: psycopg.Connection[Any] | None = None) -> Iterator[None]:
    """Turn psycopg errors into the domain errors of pgsched.errors at one boundary. With the
    connection the statement ran on, a permission error names the privilege the role lacks."""
    try:
        yield
    except psycopg.Error as e:
        mapped = translate(e)
        if mapped is None:
            raise
        if isinstance(e, pge.InsufficientPrivilege) and conn is not None:
            mapped = PermissionDenied(missing_privilege(conn, e))
        raise mapped from None


def row_values(row: Any) -> tuple[Any, ...]:
    """A row's values, whichever row factory the connection it was read on has."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


# "permission denied for <kind> <name>" -> the privileges that kind of object has.
_PRIVILEGES = {
    "table": ("has_table_privilege", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    "view": ("has_table_privilege", ("SELECT",)),
    "sequence": ("has_sequence_privilege", ("USAGE", "UPDATE")),
    "function": ("has_function_privilege", ("EXECUTE",)),
    "schema": ("has_schema_privilege", ("USAGE", "CREATE")),
    "database": ("has_database_privilege", ("CONNECT", "CREATE", "TEMPORARY")),
}


def missing_privilege(conn: psycopg.Connection[Any], exc: psycopg.Error) -> str:
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
    if row is None:  # not met: an aggregate without GROUP BY always gives one row
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
    order: list[str] = []
    current: str | None = None
    while True:
        nxt = [r for r, d in revs.items() if d == current]
        if not nxt:
            return order
        current = nxt[0]
        order.append(current)


# The oldest PostgreSQL major version pgsched supports (docs/operations.md, "Supported
# PostgreSQL servers").
MIN_SERVER_VERSION = 14


def check_server_version(conn: psycopg.Connection[Any], minimum: int = MIN_SERVER_VERSION) -> None:
    """Refuse, in one line, a server older than ``minimum`` (a major version)."""
    have = conn.info.server_version  # e.g. 150018 for 15.18
    if have < minimum * 10000:
        major, minor = divmod(have, 10000)
        raise ServerTooOld(
            f"PostgreSQL {major}.{minor} at {describe_conn(conn)} is older than {minimum}, "
            f"the oldest version pgsched supports"
        )


def describe_conn(conn: psycopg.Connection[Any]) -> str:
    return f"{conn.info.host}:{conn.info.port}"


def check_schema(conn: psycopg.Connection[Any]) -> str:
    """Refuse, in one line, a server older than pgsched supports, and a database that is not
    migrated or newer than this code."""
    check_server_version(conn)
    row = conn.execute(
        "SELECT to_regclass('pgsched.alembic_version') IS NOT NULL AS has_version,"
        " to_regclass('pgsched.tasks') IS NOT NULL AS has_tasks"
    ).fetchone()
    if row is None:  # not met: a SELECT without FROM always gives one row
        raise NotMigrated()
    has_version, has_tasks = (
        (row["has_version"], row["has_tasks"]) if isinstance(row, dict) else row
    )
    if not (has_version and has_tasks):
        raise NotMigrated()
    cur = conn.execute("SELECT version_num FROM pgsched.alembic_version").fetchone()
    rev: str | None = (cur["version_num"] if isinstance(cur, dict) else cur[0]) if cur else None
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
