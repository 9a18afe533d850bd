"""The control thread: the worker's direct connection and everything done on it.

On the direct connection (never through a pooler) it holds the worker's liveness lock
(db.ADVISORY_NAMESPACE, workers.id) and, while this worker is the waker, the waker lock;
LISTENs on ``pgsched`` and ``pgsched_control``; heartbeats; runs recovery of dead workers'
tasks and retention pruning; applies pause/resume and cancel requests. It waits in select() on
that connection's socket and a pipe, so other threads may run short statements on the
connection meanwhile, under its lock (the waker lock's statements, the shutdown's status).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql as psql
from psycopg.rows import DictRow

from pgsched.config import Settings
from pgsched.db import WORKER_LOCK_NAMESPACE
from pgsched.sql import Q
from pgsched.worker import heartbeat, reaper, share
from pgsched.worker.completer import Completer
from pgsched.worker.connections import Connections
from pgsched.worker.executor import Executor
from pgsched.worker.identity import Identity
from pgsched.worker.load import LoadSampler
from pgsched.worker.outcome import Completion
from pgsched.worker.supervision import CrashHook
from pgsched.worker.wake import Wake
from pgsched.worker.waker import HANDOFF, Waker


class Pace:
    """When the control thread acts next. A worker running nothing beats every
    ``idle_beat_every`` (heartbeat_timeout / 3 by default), one holding tasks every
    heartbeat_interval; the control thread never waits longer than heartbeat_interval, so a
    worker that turns busy beats on the busy pace within one. The first beat comes
    heartbeat_interval after start at the latest: it tells a new worker the fleet's size, which
    paces its recovery runs. Retention pruning runs a few seconds after start (spread over a
    fleet), then every PRUNE_EVERY s, or every PRUNE_CATCH_UP s while each run finds a full
    batch: a worker then removes up to ~4k expired rows/s, enough for any queue's throughput."""

    def __init__(self, settings: Settings, now: float, pid: int | None = None) -> None:
        pid = os.getpid() if pid is None else pid
        self.interval = settings.heartbeat_interval
        self.idle_every = settings.idle_beat_every
        self.last_beat = now - self.idle_every + self.interval
        self.recovery = reaper.RecoveryPacer(now, pid)
        self.next_prune = now + 2 + (pid % 8)

    def next_beat(self, busy: bool) -> float:
        return self.last_beat + (self.interval if busy else self.idle_every)

    def wake_at(self, now: float, busy: bool) -> float:
        return min(self.next_beat(busy), self.recovery.wake_at(), now + self.interval)

    def pruned(self, now: float, count: int) -> None:
        full = count >= reaper.PRUNE_BATCH
        self.next_prune = now + (reaper.PRUNE_CATCH_UP if full else reaper.PRUNE_EVERY)


class Control:
    """Owns the direct connection, the worker's row (id, status, heartbeats) and its pause
    state and capacity. Runs as the ``pgsched-control`` thread (run())."""

    def __init__(
        self,
        me: Identity,
        settings: Settings,
        connections: Connections,
        sampler: LoadSampler,
        waker: Waker,
        wake: Wake,
        executor: Executor,
        completer: Completer,
        emit: Callable[..., None],
        on_died: CrashHook,
    ) -> None:
        self.me = me
        self.settings = settings
        self._connections = connections
        self._sampler = sampler
        self._waker = waker
        self._wake = wake
        self._executor = executor
        self._completer = completer
        self._emit = emit
        self._on_died = on_died
        self.worker_id: int | None = None
        self.paused = False
        # Tasks held at once: the concurrency, scaled by the load-weighted share from the last
        # heartbeat (share.capacity).
        self.capacity = me.concurrency
        # A completion write in flight for longer than this is hung (a lock that is never
        # released, a server that stopped answering): the worker stops as a failure, as for a
        # dead thread, rather than heartbeat over tasks whose outcomes it cannot write.
        self.hang_after = settings.completion_hang_after
        self._conn: psycopg.Connection[DictRow] | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._pipe_r, self._pipe_w = os.pipe()
        self._check_status = False
        self._check_cancels = False

    # -- the connection and the worker's row ------------------------------------------------

    def open(self) -> None:
        """Connect and register (refusing a name that a live worker holds)."""
        conn = self._connections.direct(self.on_notify)
        try:
            self._register(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _register(self, conn: psycopg.Connection[DictRow]) -> None:
        from pgsched.db import check_schema

        check_schema(conn)
        self.worker_id = heartbeat.register(
            conn,
            self.me.name,
            queues=self.me.queues,
            task_types=self.me.task_types,
            capacity=self.me.concurrency,
            load=self._sampler.sample(),  # claims before the first heartbeat weigh it too
        )
        for channel in ("pgsched", "pgsched_control"):
            # LISTEN is a utility statement: it cannot be PREPAREd, so it cannot live in a
            # checked .sql file; the channel name is composed as an identifier.
            conn.execute(psql.SQL("LISTEN {}").format(psql.Identifier(channel)))
        if self.paused:
            heartbeat.set_status(conn, self.worker_id, "paused")
        self._waker.lock_lost()  # a new session holds no lock

    @property
    def connected(self) -> bool:
        conn = self._conn
        return self.worker_id is not None and conn is not None and not conn.closed

    def set_status(self, status: str) -> None:
        try:
            with self._lock:
                if self._conn is not None and self.worker_id is not None:
                    heartbeat.set_status(self._conn, self.worker_id, status)
        except psycopg.Error as e:
            self._emit("worker_status_failed", "warning", status=status, error=str(e))

    def close(self, final: bool) -> None:
        """Close the direct connection; ``final``: the row ends 'stopped', the lock is let go."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if final and self.worker_id is not None:
                heartbeat.set_status(conn, self.worker_id, "stopped")
                heartbeat.unlock(conn, self.worker_id)
        except psycopg.Error:
            pass
        conn.close()

    def poke(self) -> None:
        """End the control thread's current wait."""
        with contextlib.suppress(OSError):
            os.write(self._pipe_w, b"x")

    def stop(self) -> None:
        self._stop.set()
        self.poke()

    def check_cancels(self) -> None:
        """Look for cancel requests of this worker's tasks at once (a completion was refused:
        a cancel may be why)."""
        self._check_cancels = True
        self.poke()

    # -- the waker lock, taken and let go for the claimer ------------------------------------

    def _waker_args(self) -> dict[str, Any]:
        return {"ns": WORKER_LOCK_NAMESPACE, "signature": self.me.signature}

    def try_waker_lock(self) -> bool:
        with self._lock:
            if self._conn is None:
                return False
            return bool(Q.try_waker_lock.run(self._conn, self._waker_args()))

    def release_waker_lock(self, handoff: bool) -> None:
        with self._lock:
            if self._conn is None:
                return
            Q.release_waker_lock.run(self._conn, self._waker_args())
            if handoff:
                Q.notify_queue.run(self._conn, {"payload": HANDOFF})

    # -- notifications ------------------------------------------------------------------------

    def on_notify(self, n: psycopg.Notify) -> None:
        """A notification on the direct connection."""
        if n.channel == "pgsched":
            if self._waker.heard(n.payload, self.me.queues, on_claim_connection=False):
                self._wake.set()
        elif n.channel == "pgsched_control":
            if n.payload == self.me.name:
                self._check_status = True
            elif n.payload == "cancel:" + self.me.name:
                self._check_cancels = True

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        pace = Pace(self.settings, time.monotonic())
        while not self._stop.is_set():
            try:
                conn = self._conn
                if conn is None or conn.closed:
                    self._reconnect()
                    continue
                now = time.monotonic()
                busy = self._executor.running > 0
                timeout = max(0.0, pace.wake_at(now, busy) - now)
                ready, _, _ = select.select([conn.fileno(), self._pipe_r], [], [], timeout)
                if self._pipe_r in ready:
                    os.read(self._pipe_r, 4096)
                with self._lock:
                    if conn.fileno() in ready:
                        self._read_notifications(conn)
                    self._service(conn, pace, busy)
            except (psycopg.OperationalError, OSError, ValueError) as e:
                self._emit("connection_lost", "warning", connection="direct", error=str(e))
                self.close(final=False)
                self._waker.lock_lost()
                time.sleep(0.2)
            except psycopg.Error as e:
                self._emit("control_error", "error", error=str(e))
                time.sleep(0.2)

    def _read_notifications(self, conn: psycopg.Connection[DictRow]) -> None:
        pgconn = conn.pgconn
        pgconn.consume_input()
        handler = pgconn.notify_handler  # psycopg's, which calls self.on_notify
        assert handler is not None  # psycopg installs it on every connection it makes
        while (pgn := pgconn.notifies()) is not None:
            handler(pgn)
        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            raise psycopg.OperationalError("LISTEN connection lost")

    def _service(self, conn: psycopg.Connection[DictRow], pace: Pace, busy: bool) -> None:
        """What is due on the direct connection: requests heard, heartbeat, recovery, the hang
        check and pruning."""
        if self._check_status:
            self._check_status = False
            self._apply_status(Q.worker_status.run(conn, {"id": self.worker_id}))
        if self._check_cancels:
            self._check_cancels = False
            self._sync_cancels(conn)
        now = time.monotonic()
        if now >= pace.next_beat(busy):
            beat = self._beat(conn)
            pace.last_beat = now
            if beat is not None:
                pace.recovery.on_beat(now, *beat)
        if pace.recovery.due(now):
            self._reap(conn)
            pace.recovery.ran(now)
        if self.check_hang(now):
            return  # the worker stops: _on_died ended this loop
        if now >= pace.next_prune:
            pruned = reaper.prune(conn, retention=self.settings.retention)
            pace.pruned(now, pruned)
            if pruned:
                self._emit("tasks_pruned", "debug", count=pruned)

    def check_hang(self, now: float) -> bool:
        """Stop the worker as a failure if a completion write has been in flight for longer
        than hang_after at monotonic time ``now`` (True then)."""
        hung = self._completer.hung_for(now)
        if hung is None or hung[1] <= self.hang_after:
            return False
        self._on_died(hung[0], TimeoutError(f"a completion write hung for {hung[1]:.0f} s"))
        return True

    def _reconnect(self) -> None:
        if self._stop.is_set():
            return
        try:
            conn = self._connections.direct(self.on_notify)
            self._register(conn)
        except Exception as e:
            self._emit("reconnect_failed", "warning", connection="direct", error=str(e))
            time.sleep(0.5)
            return
        with self._lock:
            self._conn = conn
        self._emit("reconnected", connection="direct")
        self._check_cancels = True
        self._wake.set()

    def _apply_status(self, status: str | None) -> None:
        paused = status == "paused"
        if paused != self.paused:
            self.paused = paused
            self._emit("worker_paused" if paused else "worker_resumed")
            self._wake.set()

    def _beat(self, conn: psycopg.Connection[DictRow]) -> tuple[int, float | None] | None:
        """Heartbeat; returns (live workers, seconds until the stalest other one expires)."""
        if self.worker_id is None:  # not registered: there is no row to beat on
            return None
        cpu, mem = self._sampler.sample()
        asks = self._waker.heartbeat_asks(self.paused)
        row = heartbeat.beat(
            conn,
            self.worker_id,
            cpu=cpu,
            memory=mem,
            running=self._executor.running,
            capacity=self.me.concurrency,
            queues=self.me.queues,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            waker=(WORKER_LOCK_NAMESPACE, self.me.signature) if asks else None,
        )
        if row is None:
            return None
        if row["waker"] and self._waker.heartbeat_took():
            self._wake.set()
        self._apply_status(row["status"])
        if self.me.weighted:
            capacity = share.capacity(
                self.me.concurrency, cpu, row["other_slots"], row["other_shares"]
            )
            if capacity > self.capacity:
                self._wake.set()  # room to claim more
            self.capacity = capacity
        self._emit(
            "heartbeat",
            "debug",
            cpu=cpu,
            memory=mem,
            running=self._executor.running,
            capacity=self.capacity,
        )
        return int(row["live_workers"]), row["next_expiry_s"]

    def _reap(self, conn: psycopg.Connection[DictRow]) -> None:
        dead, lost = reaper.reap(conn, heartbeat_timeout=self.settings.heartbeat_timeout)
        for name in dead:
            self._emit("worker_reaped", "warning", dead_worker=name)
        for r in lost:
            self._emit(
                "task_lost", "warning", task_id=r["task_id"], owner=r["name"], status=r["status"]
            )
        if dead:
            Q.notify_queue.run(conn, {"payload": HANDOFF})  # its waker lock may be gone

    def _sync_cancels(self, conn: psycopg.Connection[DictRow]) -> None:
        for r in Q.cancel_requests.run(conn, {"worker": self.me.name}):
            if not self._executor.cancel(r["id"], r["version"]):
                # Finished here meanwhile (its completion is refused: the cancel bumped the
                # version): the cancel wins.
                self._completer.put(
                    Completion(
                        r["id"], r["version"], "cancelled", "cancelled", error="cancelled by user"
                    )
                )
