"""`pgsched doctor`: what threatens a queue in production, each finding with its fix in one line.

Read-only: catalog and statistics views, the workers rows and the running tasks. A finding is
``ok``, ``warn`` (worth a look) or ``problem`` (the command exits 1). Thresholds are arguments
so that tests, and operators with other needs, can set them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow

from pgsched.durations import format_duration
from pgsched.errors import NotMigrated, SchemaTooNew
from pgsched.sql import Q

LEVELS = ("ok", "warn", "problem")

# Connections a `pgsched worker` process holds at most with the defaults: claim, completion
# writer, session (LISTEN and locks), auxiliary (progress, checkpoints), alert ticker.
CONNECTIONS_PER_WORKER = 5


@dataclass
class Finding:
    check: str
    level: str  # ok | warn | problem
    finding: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """When a reading becomes a finding."""

    xact_age_s: float = 300.0  # a transaction holding the xmin horizon this long
    dead_rows: int = 10_000  # dead rows in one table, and
    dead_share: float = 0.2  # ... this share of its live rows
    connections_share: float = 0.8  # of the connections available to non-superusers
    index_bytes: int = 8 * 2**20  # a table's indexes this large, and
    index_bytes_per_row: int = 1024  # ... this many bytes per live row (a few dozen is healthy)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _age(s: float | None) -> str:
    return "never" if s is None else format_duration(s)


def diagnose(
    conn: psycopg.Connection[DictRow],
    *,
    heartbeat_timeout: float,
    prepared_statements: bool = True,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Every check, in order: schema, xmin horizon, tables, orphaned tasks, server settings."""
    from pgsched.db import check_schema

    t = thresholds or Thresholds()
    out: list[Finding] = []
    migrated = True
    try:
        rev = check_schema(conn)
        out.append(Finding("schema", "ok", f"at revision {rev}, the newest this code knows"))
    except (NotMigrated, SchemaTooNew) as e:
        migrated = isinstance(e, SchemaTooNew)  # a newer schema still has the tables
        fix = "upgrade pgsched" if isinstance(e, SchemaTooNew) else "pgsched migrate"
        out.append(Finding("schema", "problem", str(e), fix))
    out.extend(_xmin(conn, t))
    if migrated:
        out.extend(_tables(conn, t))
        out.extend(_orphans(conn, heartbeat_timeout))
    out.extend(_server(conn, t, heartbeat_timeout if migrated else None, prepared_statements))
    return out


def _xmin(conn: psycopg.Connection[DictRow], t: Thresholds) -> list[Finding]:
    found = []
    for r in Q.doctor_xmin_holders.run(conn):
        if r["kind"] == "replication slot":
            level = "warn" if r["state"] == "active" else "problem"
            found.append(
                Finding(
                    "xmin horizon",
                    level,
                    f"replication slot {r['who']} ({r['state']}) holds back the xmin horizon: "
                    "dead rows of pgsched's tables cannot be vacuumed",
                    f"SELECT pg_drop_replication_slot('{r['who']}') if it is not needed",
                    dict(r),
                )
            )
        elif r["age_s"] is not None and r["age_s"] >= t.xact_age_s:
            what = (
                f"session pid {r['who']} (role {r['role']}, {r['app'] or 'no application name'},"
                f" {r['state']})"
                if r["kind"] == "session"
                else f"prepared transaction {r['who']!r}"
            )
            fix = (
                f"end that transaction, or SELECT pg_terminate_backend({r['who']})"
                if r["kind"] == "session"
                else f"COMMIT PREPARED or ROLLBACK PREPARED '{r['who']}'"
            )
            found.append(
                Finding(
                    "xmin horizon",
                    "problem",
                    f"{what} has held a snapshot for {_age(r['age_s'])}: dead rows of "
                    "pgsched's tables newer than it cannot be vacuumed",
                    fix,
                    dict(r),
                )
            )
    if not found:
        found.append(
            Finding(
                "xmin horizon",
                "ok",
                f"no transaction of this database holds a snapshot for {_age(t.xact_age_s)} "
                "or more (sessions of other roles show to pg_read_all_stats members only)",
            )
        )
    return found


def _tables(conn: psycopg.Connection[DictRow], t: Thresholds) -> list[Finding]:
    found = []
    for r in Q.doctor_tables.run(conn):
        name = f"pgsched.{r['table_name']}"
        size = f"{_mb(r['table_bytes'])} + {_mb(r['index_bytes'])} of indexes"
        if r["autovacuum_off"]:
            found.append(
                Finding(
                    "dead rows",
                    "problem",
                    f"{name}: autovacuum is turned off for this table ({size})",
                    f"ALTER TABLE {name} RESET (autovacuum_enabled)",
                    dict(r),
                )
            )
        elif r["dead"] >= t.dead_rows and r["dead"] >= t.dead_share * max(r["live"], 1):
            share = r["dead"] / max(r["live"], 1)
            found.append(
                Finding(
                    "dead rows",
                    "problem",
                    f"{name}: {r['dead']:,} dead rows against {r['live']:,} live "
                    f"({share:.0%}), last vacuum {_age(r['vacuum_age_s'])} ago ({size})",
                    f"release what holds the xmin horizon (above), then VACUUM (ANALYZE) {name}",
                    dict(r),
                )
            )
        else:
            found.append(
                Finding(
                    "table size",
                    "ok",
                    f"{name}: {r['live']:,} live rows, {r['dead']:,} dead, {size}",
                    data=dict(r),
                )
            )
        if r["index_bytes"] >= max(t.index_bytes, t.index_bytes_per_row * r["live"]):
            found.append(_bloated_indexes(name, r))
    return found


def _bloated_indexes(name: str, r: DictRow) -> Finding:
    """Indexes far larger than the table's live rows need. VACUUM empties and truncates the
    heap's tail once what held the horizon back is gone, but a B-tree keeps every page it
    grew: empty ones are reused by later inserts, never given back. So after a burst (a held
    snapshot under load, a drained backlog) the hot table's indexes stay at their high-water
    mark; a rebuild, which takes no lock that blocks writers, gives the space back."""
    per_row = r["index_bytes"] / max(r["live"], 1)
    return Finding(
        "index size",
        "warn",
        f"{name}: {_mb(r['index_bytes'])} of indexes for {r['live']:,} live "
        f"row{'' if r['live'] == 1 else 's'} "
        f"({per_row:,.0f} bytes a row): pages left by rows long gone, reused but never "
        "given back",
        f"REINDEX TABLE CONCURRENTLY {name} (as the table's owner)",
        dict(r),
    )


def _orphans(conn: psycopg.Connection[DictRow], heartbeat_timeout: float) -> list[Finding]:
    rows = Q.doctor_orphans.run(conn, {"heartbeat_timeout": heartbeat_timeout})
    if not rows:
        return [Finding("orphaned tasks", "ok", "every running task's worker is alive")]
    found = []
    for r in rows:
        if r["worker_status"] is None:
            why = "has no workers row"
        elif r["worker_status"] in ("stopped", "dead"):
            why = f"is {r['worker_status']}"
        else:
            why = f"has not beaten for {_age(r['heartbeat_age_s'])}"
        found.append(
            Finding(
                "orphaned tasks",
                "problem",
                f"{r['tasks']} running task(s) (first {r['first_task']}) on worker "
                f"{r['worker']!r}, which {why}",
                "pgsched workers recover (or wait: any live worker recovers them)",
                dict(r),
            )
        )
    return found


def _server(
    conn: psycopg.Connection[DictRow],
    t: Thresholds,
    heartbeat_timeout: float | None,
    prepared_statements: bool,
) -> list[Finding]:
    s = Q.doctor_server.run(conn)
    found = _server_settings(s, prepared_statements)
    found.append(_connections(conn, s, t, heartbeat_timeout))
    found.append(Finding("server", "ok", f"PostgreSQL {s['version']}"))
    return found


def _server_settings(s: DictRow, prepared_statements: bool) -> list[Finding]:
    """The server settings that harm pgsched: autovacuum off, jit on where pgsched cannot turn
    it off for its own sessions."""
    found = []
    if s["autovacuum"] != "on":
        found.append(
            Finding(
                "autovacuum",
                "problem",
                "autovacuum is off on the server: pgsched's tables fill with dead rows",
                "ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf()",
            )
        )
    if s["jit"] == "on":
        if prepared_statements:
            found.append(
                Finding(
                    "jit",
                    "ok",
                    "jit is on; pgsched's own sessions turn it off for themselves",
                )
            )
        else:
            found.append(
                Finding(
                    "jit",
                    "problem",
                    "jit is on, and behind a pooler (prepared_statements off) pgsched cannot "
                    "turn it off per session: a plan past jit_above_cost compiles on every run",
                    "ALTER ROLE <pgsched's role> SET jit = off",
                )
            )
    return found


def _connections(
    conn: psycopg.Connection[DictRow],
    s: DictRow,
    t: Thresholds,
    heartbeat_timeout: float | None,
) -> Finding:
    """Open connections, and what the live workers may open, against max_connections."""
    available = s["max_connections"] - s["reserved"]
    live = (
        Q.doctor_live_workers.run(conn, {"heartbeat_timeout": heartbeat_timeout})
        if heartbeat_timeout is not None
        else 0
    )
    fleet = live * CONNECTIONS_PER_WORKER
    used = max(s["connections"], fleet)
    data = {**s, "live_workers": live, "fleet_connections": fleet, "available": available}
    if used >= t.connections_share * available:
        return Finding(
            "connections",
            "problem",
            f"{s['connections']} connections open and {live} live workers (up to {fleet} "
            f"connections) against max_connections {s['max_connections']} "
            f"({available} for non-superusers)",
            "raise max_connections, or put PgBouncer in transaction mode before the "
            "workers (docs/operations.md)",
            data,
        )
    return Finding(
        "connections",
        "ok",
        f"{s['connections']} connections open, {live} live workers, "
        f"max_connections {s['max_connections']}",
        data=data,
    )
