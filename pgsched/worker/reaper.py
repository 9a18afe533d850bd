"""Recovery of dead workers' tasks, and retention pruning. Any worker runs it; the statement
takes a transaction-level advisory lock so only one runs at a time, with no leader."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from pgsched.db import ADVISORY_NAMESPACE
from pgsched.sql import Q

# First key of the locks the worker takes besides its liveness lock (ADVISORY_NAMESPACE,
# workers.id): a separate namespace cannot collide with a worker id.
WORKER_LOCK_NS = ADVISORY_NAMESPACE + 1


def reap(
    conn: psycopg.Connection, *, heartbeat_timeout: float, now: datetime | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Declare dead the workers whose liveness lock is gone or whose heartbeat is too old, and
    hand their running tasks back. Returns (dead worker names, lost task rows)."""
    rows = Q.reap_dead_workers.run(
        conn,
        {
            "ns": ADVISORY_NAMESPACE,
            "reaper_ns": WORKER_LOCK_NS,
            "heartbeat_timeout": heartbeat_timeout,
            "now": now,
        },
    )
    dead = [r["name"] for r in rows if r["kind"] == "worker"]
    lost = [r for r in rows if r["kind"] == "task"]
    return dead, lost


PRUNE_BATCH = 2000  # rows per prune statement (with their attempt rows)
PRUNE_EVERY = 60.0  # seconds between prune runs when the last one found less than a batch
PRUNE_CATCH_UP = 0.5  # ... and when it found a full batch: more is waiting


def prune(
    conn: psycopg.Connection,
    *,
    retention: float,
    limit: int = PRUNE_BATCH,
    now: datetime | None = None,
) -> int:
    """Delete up to ``limit`` finished tasks older than ``retention`` seconds (0: keep all)."""
    if retention <= 0:
        return 0
    return int(Q.prune_finished.run(conn, {"retention": retention, "limit": limit, "now": now}))
