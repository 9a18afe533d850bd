"""The worker's row: registration with its liveness lock, heartbeats, status changes."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from pgsched.db import ADVISORY_NAMESPACE
from pgsched.errors import WorkerNameTaken
from pgsched.sql import Q


def register(
    conn: psycopg.Connection[DictRow],
    name: str,
    *,
    queues: list[str],
    task_types: list[str],
    capacity: int,
    load: tuple[float, float] = (0.0, 0.0),
    now: datetime | None = None,
) -> int:
    """Upsert the worker row and take its session-level liveness lock on ``conn`` (a direct
    session connection). Refuses a name that a live worker holds."""
    host, pid = socket.gethostname(), os.getpid()
    row = Q.register_worker.run(
        conn, {"name": name, "host": host, "pid": pid, "ns": ADVISORY_NAMESPACE}
    )
    if not row["locked"]:
        raise WorkerNameTaken(f"a live worker named {name!r} is already running")
    Q.activate_worker.run(
        conn,
        {
            "id": row["id"],
            "host": host,
            "pid": pid,
            "queues": queues,
            "task_types": task_types,
            "capacity": capacity,
            "cpu": load[0],
            "memory": load[1],
            "now": now,
        },
    )
    return int(row["id"])


def beat(
    conn: psycopg.Connection[DictRow],
    worker_id: int,
    *,
    cpu: float,
    memory: float,
    running: int,
    capacity: int,
    queues: list[str],
    heartbeat_timeout: float,
    waker: tuple[int, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Write this worker's load; returns its status, the live worker count, the seconds
    until the stalest other live worker's heartbeat expires (None: no other worker) and, if
    ``waker`` (lock namespace, signature) was given, whether this session took the waker lock
    (``waker``; None when not asked)."""
    row: dict[str, Any] | None = Q.heartbeat.run(
        conn,
        {
            "id": worker_id,
            "cpu": cpu,
            "memory": memory,
            "running": running,
            "capacity": capacity,
            "queues": queues,
            "heartbeat_timeout": heartbeat_timeout,
            "ns": waker[0] if waker else None,
            "waker_signature": waker[1] if waker else None,
            "now": now,
        },
    )
    return row


def set_status(
    conn: psycopg.Connection[DictRow], worker_id: int, status: str, now: datetime | None = None
) -> None:
    Q.set_worker_status.run(conn, {"id": worker_id, "status": status, "now": now})


def unlock(conn: psycopg.Connection[DictRow], worker_id: int) -> None:
    Q.unlock_worker.run(conn, {"ns": ADVISORY_NAMESPACE, "id": worker_id})
