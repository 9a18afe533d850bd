"""The claim's statements: take ready tasks for this worker, see when the next one is due,
and hand claimed tasks back. The claimer (claimer.py) decides when to run them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from pgsched.sql import Q


def claim(
    conn: psycopg.Connection[DictRow],
    *,
    worker: str,
    queues: list[str],
    task_types: list[str],
    slots: int,
    weighted: bool,
    cpu_ceiling: float,
    memory_ceiling: float,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = Q.claim_tasks.run(
        conn,
        {
            "worker": worker,
            "queues": queues,
            "task_types": task_types,
            "slots": slots,
            "weighted": weighted,
            "cpu_ceiling": cpu_ceiling,
            "memory_ceiling": memory_ceiling,
            "now": now,
        },
    )
    return rows


def claim_limit(
    conn: psycopg.Connection[DictRow],
    *,
    worker: str,
    weighted: bool,
    cpu_ceiling: float,
    memory_ceiling: float,
) -> bool:
    """Whether the claim would take anything now: the worker is active and, with weighting,
    under its ceilings."""
    return bool(
        Q.claim_limit.run(
            conn,
            {
                "worker": worker,
                "weighted": weighted,
                "cpu_ceiling": cpu_ceiling,
                "memory_ceiling": memory_ceiling,
            },
        )
    )


def left_behind(
    conn: psycopg.Connection[DictRow],
    *,
    queues: list[str],
    task_types: list[str],
    age: float,
    now: datetime | None = None,
) -> bool:
    """Whether a task this worker could run has been due for more than ``age`` seconds."""
    params = {"queues": queues, "task_types": task_types, "age": age, "now": now}
    return bool(Q.left_behind.run(conn, params))


def next_due_in(
    conn: psycopg.Connection[DictRow],
    *,
    queues: list[str],
    task_types: list[str],
    horizon: float,
    now: datetime | None = None,
) -> float | None:
    """Seconds until the next task this worker could run is due, if within `horizon`."""
    seconds: float | None = Q.next_due_in.run(
        conn,
        {"queues": queues, "task_types": task_types, "horizon": horizon, "now": now},
    )
    return seconds


def release(conn: psycopg.Connection[DictRow], ids: list[int], versions: list[int]) -> list[int]:
    """Hand running tasks back without spending an attempt (graceful shutdown)."""
    rows = Q.release_tasks.run(conn, {"ids": ids, "versions": versions})
    return [r["id"] if isinstance(r, dict) else r[0] for r in rows]
