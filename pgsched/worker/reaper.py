"""Recovery of dead workers' tasks, and retention pruning. Any worker runs it; the statement
takes the recovery gate (a lock on a table of its own, for its transaction) so only one runs
at a time, with no leader."""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from pgsched.db import ADVISORY_NAMESPACE
from pgsched.sql import Q


def reap(
    conn: psycopg.Connection[DictRow], *, heartbeat_timeout: float, now: datetime | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Declare dead the workers whose liveness lock is gone or whose heartbeat is too old, and
    hand their running tasks back. Returns (dead worker names, lost task rows)."""
    rows = Q.reap_dead_workers.run(
        conn,
        {
            "ns": ADVISORY_NAMESPACE,
            "heartbeat_timeout": heartbeat_timeout,
            "now": now,
        },
    )
    dead = [r["name"] for r in rows if r["kind"] == "worker"]
    lost = [r for r in rows if r["kind"] == "task"]
    return dead, lost


class RecoveryPacer:
    """When a worker runs recovery: periodically, ~1 run per second across the fleet whatever
    its size, and also right after the stalest other worker's heartbeat expires, so a hung
    worker's tasks go back at heartbeat_timeout, not up to a spread interval later. Every
    heartbeat re-aims the expiry run, so in a healthy fleet it never fires: each beat pushes
    it on. A periodic run before the aimed moment keeps the aim (the worker it watches is not
    expired yet): cleared there, the expiry would wait for the next heartbeat, an idle pace of
    heartbeat_timeout / 3 away, and a SIGSTOPped worker's tasks would go back up to ~1.5 s
    past the timeout (bench E's limit is 1 s)."""

    def __init__(self, now: float, pid: int | None = None) -> None:
        self._pid = os.getpid() if pid is None else pid
        self.live_workers = 1
        self.next_periodic = now + 0.5
        self.expiry = math.inf

    def spread(self, now: float) -> float:
        """Seconds to the next periodic run: each of N workers every ~N s, jittered, so the
        fleet runs recovery ~once a second whatever its size. A cap of heartbeat_timeout / 2
        would make 100 idle workers try ~12 times a second, 1.76 ms each: most of what the
        server spends on an idle fleet (bench H)."""
        return max(1.0, float(self.live_workers)) * (0.5 + (self._pid * 7919 + now) % 1.0)

    def on_beat(self, now: float, live_workers: int, next_expiry_s: float | None) -> None:
        """After a heartbeat: the fleet's size and the seconds until the stalest other worker
        expires (the database's clock)."""
        before, self.live_workers = self.live_workers, live_workers
        # A few tens of ms after the expiry, so the row is stale when the statement runs,
        # jittered so a big fleet does not all try in the same millisecond.
        self.expiry = (
            math.inf
            if next_expiry_s is None
            else now + max(0.0, next_expiry_s) + 0.02 + (self._pid * 7919 + now) % 0.05
        )
        if live_workers < before:  # the fleet shrank: keep ~1 run/s overall
            self.next_periodic = min(self.next_periodic, now + self.spread(now))

    def wake_at(self) -> float:
        return min(self.next_periodic, self.expiry)

    def due(self, now: float) -> bool:
        return now >= self.next_periodic or now >= self.expiry

    def ran(self, now: float) -> None:
        self.next_periodic = now + self.spread(now)
        if now >= self.expiry:  # fired; the next heartbeat aims the next one
            self.expiry = math.inf


PRUNE_BATCH = 2000  # rows per prune statement (with their attempt rows)
PRUNE_EVERY = 60.0  # seconds between prune runs when the last one found less than a batch
PRUNE_CATCH_UP = 0.5  # ... and when it found a full batch: more is waiting


def prune(
    conn: psycopg.Connection[DictRow],
    *,
    retention: float,
    limit: int = PRUNE_BATCH,
    now: datetime | None = None,
) -> int:
    """Delete finished tasks older than ``retention`` seconds (0: keep all), up to ``limit``
    from each of pgsched.tasks and pgsched.finished_tasks; the number deleted."""
    if retention <= 0:
        return 0
    return int(Q.prune_finished.run(conn, {"retention": retention, "limit": limit, "now": now}))
