"""The completer: writes finished attempts in batches, on connections of its own.

Its own connections let the claim of batch N+1 overlap the completion of batch N: the claim
and the completion are each a round trip and a statement's worth of server time, and on one
connection they take turns, so a drain runs at the speed of their sum instead of the slower one
(psycopg's pipeline mode on one connection still serializes them on the server).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow, tuple_row
from psycopg.types.json import Jsonb

from pgsched.errors import DatabaseUnavailable
from pgsched.sql import Q
from pgsched.worker.outcome import Completion
from pgsched.worker.supervision import CrashHook, bounded, guarded, safe_str


def complete(
    conn: psycopg.Connection[DictRow],
    worker: str,
    batch: list[Completion],
    now: datetime | None = None,
) -> set[int]:
    """Write a batch in one statement; returns the ids it changed (the others were rejected:
    their version moved on, so another owner or a cancel has them)."""
    # Ids only, as tuples: the statement returns just the changed ids and this cursor skips
    # building a dict per row, Python work paid on every task.
    params = {
        "worker": worker,
        "now": now,
        "ids": [c.id for c in batch],
        "versions": [c.version for c in batch],
        "statuses": [c.status for c in batch],
        "outcomes": [c.outcome for c in batch],
        "results": [None if c.result is None else Jsonb(c.result) for c in batch],
        "errors": [c.error for c in batch],
        "delays": [c.delay for c in batch],
        "durations": [c.duration_ms for c in batch],
    }
    cur = conn.cursor(row_factory=tuple_row)
    try:
        rows = Q.complete_tasks.run(cur, params)
    except psycopg.errors.UniqueViolation as e:
        # An attempt number with a row already (attempts lowered by hand): the statement
        # changed nothing; the arbitrated one keeps that row and writes everything else.
        if e.diag.constraint_name != "task_executions_attempt_unique" or not conn.autocommit:
            raise
        rows = Q.complete_tasks_arbitrated.run(cur, params)
    return {r[0] for r in rows}


class Completer:
    """Collects finished attempts and writes them in batches on its own connections.

    ``writers`` threads (``Settings.completion_writers``), each with its own connection, take
    batches from one queue; with one, a batch's commit (its fsync wait) still overlaps the claim
    on the claim connection. Each completion is taken by one writer only, so it is written once
    (the version guard would make a second write change nothing anyway). One writer is the
    default because it drains a 100k no-op backlog faster than two on a two-core host (median
    per-round ratio 1.06-1.12 for one worker; even for two workers, ``bench/probes.py
    writers-ab``): a second writer's statement competes with the claim and the server for CPU.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[DictRow]],
        worker: str,
        on_done: Callable[[list[Completion], set[int]], None],
        on_error: Callable[[BaseException], None],
        max_batch: int = 1000,
        writers: int = 1,
        on_crash: CrashHook | None = None,
    ) -> None:
        self._connect = connect
        self._worker = worker
        self._on_done = on_done
        self._on_error = on_error
        self._max_batch = max_batch
        self._q: queue.SimpleQueue[Completion | None] = queue.SimpleQueue()
        self._inflight = [0] * writers  # size of the batch each writer is writing
        self._since = [0.0] * writers  # monotonic start of each writer's write, 0: idle
        self._abandoned = False  # stop(): a hung writer writes nothing more
        self._spares: list[psycopg.Connection[DictRow]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._conns: list[psycopg.Connection[DictRow] | None] = [None] * writers
        self._threads = [
            threading.Thread(
                target=guarded(self._run, on_crash),
                args=(i,),
                name=f"pgsched-completer-{i}",
                daemon=True,
            )
            for i in range(writers)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    @property
    def alive(self) -> bool:
        """Every writer thread is running (a dead one leaves completions unwritten)."""
        return all(t.is_alive() for t in self._threads)

    def hung_for(self, now: float | None = None) -> tuple[str, float] | None:
        """(writer thread, seconds) of the longest write in flight, if any."""
        now = time.monotonic() if now is None else now
        starts = [(t, self._threads[i].name) for i, t in enumerate(self._since) if t]
        if not starts:
            return None
        t, name = min(starts)
        return name, now - t

    def healthy(self, hang_after: float) -> bool:
        """Every writer runs, and none has been writing for more than ``hang_after`` s."""
        hung = self.hung_for()
        return self.alive and (hung is None or hung[1] <= hang_after)

    @property
    def backlog(self) -> int:
        """Completions submitted but not yet written."""
        return self._q.qsize() + sum(self._inflight)

    def put(self, c: Completion) -> None:
        # No lock here: a lock shared with the writer threads makes a GIL convoy (a producer
        # blocked on it waits out the holder's 5 ms switch interval), on every task.
        self._q.put(c)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self.backlog:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop the writers once what is queued is written. A writer still busy after
        ``timeout`` has its statement cancelled and writes nothing more (its tasks stay
        running for recovery to hand on)."""
        for _ in self._threads:
            self._q.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(self._threads) if t.is_alive()]
        if stuck:
            self._abandoned = True
            for i in stuck:
                if (c := self._conns[i]) is not None:
                    with contextlib.suppress(Exception):
                        c.cancel_safe(timeout=2)
            for i in stuck:
                self._threads[i].join(2)
        for i, c in enumerate(self._conns):
            if c is not None and not self._threads[i].is_alive():
                c.close()
        for c in self._spares:
            c.close()

    def spare_connection(self) -> psycopg.Connection[DictRow]:
        """Writer 0's connection when its thread is idle (the worker's shutdown hand-back), or
        a new one while that writer is stuck in a write."""
        if self._since[0] and time.monotonic() - self._since[0] > 1.0:
            c = self._connect()
            self._spares.append(c)
            return c
        return self.connection(0)

    def connection(self, i: int = 0) -> psycopg.Connection[DictRow]:
        """Writer i's connection (0 also serves the worker's shutdown hand-back, once the
        writers are idle)."""
        c = self._conns[i]
        if c is None or c.closed:
            c = self._conns[i] = self._connect()
        return c

    def _run(self, i: int) -> None:
        stopping = False
        while not stopping:
            item = self._q.get()
            if item is None:
                break
            self._inflight[i] = 1
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._inflight[i] = len(batch)
            self._since[i] = time.monotonic()
            try:
                changed = self._write(i, batch)
            finally:
                self._since[i] = 0.0
            with self._idle:
                self._inflight[i] = 0
                self._idle.notify_all()
            # After the bookkeeping: a claim loop woken by this sees the smaller backlog.
            self._on_done(batch, changed)

    def _write(self, i: int, batch: list[Completion]) -> set[int]:
        delay = 0.05
        while True:
            if self._abandoned:
                return set()
            try:
                changed = complete(self.connection(i), self._worker, batch)
            except (psycopg.OperationalError, DatabaseUnavailable) as e:
                # Lost connection, or the server is not back yet: retry on a new one. Safe to
                # repeat: the version guard makes a second write of an applied batch change
                # nothing.
                self._on_error(e)
                if (c := self._conns[i]) is not None:
                    c.close()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as e:  # e.g. a result jsonb cannot store: isolate the bad row
                self._on_error(e)
                if (c := self._conns[i]) is not None and c.broken:
                    c.close()
                changed = self._write_one_by_one(i, batch)
            return changed

    def _write_one_by_one(self, i: int, batch: list[Completion]) -> set[int]:
        changed: set[int] = set()
        for c in batch:
            if self._abandoned:
                break
            try:
                changed |= complete(self.connection(i), self._worker, [c])
                continue
            except Exception as e:  # psycopg.Error, or a result that cannot be JSON-dumped
                if c.status == "succeeded":  # an unstorable result fails the attempt for good
                    c.status, c.outcome = "failed", "failure"
                c.result = None
                c.error = bounded(f"cannot store the outcome: {_first_line(e)}")
                self._reset(i)
            try:
                changed |= complete(self.connection(i), self._worker, [c])
                continue
            except Exception as e:
                self._on_error(e)
                self._reset(i)
            # Last resort, so the task does not stay running: failed, with only the error.
            c.status, c.outcome, c.delay = "failed", "failure", 0.0
            try:
                changed |= complete(self.connection(i), self._worker, [c])
            except Exception as e:
                self._on_error(e)
                self._reset(i)
        return changed

    def _reset(self, i: int) -> None:
        if (c := self._conns[i]) is not None and c.broken:
            c.close()


def _first_line(e: BaseException) -> str:
    text = safe_str(e)
    return text.splitlines()[0] if text.strip() else type(e).__name__


TERMINAL_EVENTS = {
    "succeeded": "task_succeeded",
    "failed": "task_failed",
    "cancelled": "task_cancelled",
    "retrying": "task_retrying",
}


def report_written(
    batch: list[Completion],
    changed: set[int],
    emit: Callable[..., None],
    verbose: bool,
) -> bool:
    """Emit an event for each written completion of ``batch``; ``changed`` holds the ids the
    statement changed, the others were refused (their version moved on: a cancel, or another
    owner). Returns whether any was refused. A written success logs at debug level: unless
    ``verbose``, it is skipped before its fields are built, work that would otherwise be a
    large part of the completer's CPU per task."""
    refused = False
    for c in batch:
        if not verbose and c.status == "succeeded" and c.id in changed:
            continue
        fields: dict[str, Any] = {
            "task_id": c.id,
            "attempt": c.attempt,
            "queue": c.queue,
            "task_type": c.task_type,
        }
        if c.id not in changed:
            emit(
                "task_completion_rejected", "warning", version=c.version, status=c.status, **fields
            )
            refused = True
            continue
        level = {"succeeded": "debug", "failed": "warning"}.get(c.status, "info")
        emit(
            TERMINAL_EVENTS[c.status],
            level,
            outcome=c.outcome,
            duration_ms=round(c.duration_ms, 3),
            error=c.error,
            retry_in_s=round(c.delay, 3) if c.status == "retrying" else None,
            **fields,
        )
    return refused
