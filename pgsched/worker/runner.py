"""The Worker: ties claiming, execution, completion, heartbeats, wake-ups and recovery together.

Threads and connections (4 per worker):
- control thread, on the *direct* connection: holds the liveness lock (ADVISORY_NAMESPACE,
  workers.id), LISTENs on ``pgsched`` and ``pgsched_control``, heartbeats, runs recovery, and
  holds the waker lock. It waits in select() on the socket, so other threads may run short
  statements on that connection under ``_direct_lock``.
- claim thread, on the claim connection: claims batches, hands them to the executor. While
  it is the idle waker it also LISTENs on ``pgsched`` there and waits in select() on that
  socket, so it claims on the backend that delivered the notification.
- two completer threads, each on its own completion connection: write finished attempts in
  batches, so the claim of batch N+1 overlaps the completion of batch N, and one completion's
  commit overlaps the next (claim.Completer says what was measured).

Anti-stampede: among idle workers with the same (queues, types), exactly one holds the
non-blocking "waker" advisory lock; only it claims on a queue notification (the others ignore
them, costing nothing). A worker that is not idle (its last claim was full) claims whenever it
has free slots, without waiting for notifications. When the waker claims a full batch it is no
longer idle: it releases the lock and NOTIFYs '!waker', so one idle worker (the first to get
the lock) takes over and claims. One insert therefore makes at most ~2 workers claim. If the
waker dies its lock goes with its session; the idle workers that are not the waker try the lock
with each heartbeat (no statement of their own), so a vacant role is taken at the next idle
heartbeat of any of them.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql as psql

from pgsched.config import Settings
from pgsched.db import connect, direct_dsn
from pgsched.errors import DatabaseUnavailable, PgschedError, ValidationError
from pgsched.models import DURATION_MAX_S
from pgsched.registry import Registry, TaskContext, default_registry
from pgsched.sql import Q
from pgsched.worker import claim as claims
from pgsched.worker import heartbeat, reaper, share
from pgsched.worker.claim import Completer, Completion
from pgsched.worker.executor import Executor, Job, RetryPolicy
from pgsched.worker.load import LoadSampler
from pgsched.worker.supervision import bounded, guarded, safe_str

EventHook = Callable[[str, dict[str, Any]], None]
# Session settings of the worker's connections. jit = off: every statement a worker runs is
# an indexed lookup or a batch of at most batch_size rows, which JIT compilation (100-200 ms a
# statement where the server has LLVM) never pays back, and a plan whose estimated cost passes
# jit_above_cost is compiled on every execution. Behind a pooler that refuses startup options
# the statements run without JIT all the same: their estimated costs stay far below the
# thresholds (tests/test_worker_plan.py checks both ways on every supported server).
SESSION = "-c plan_cache_mode=force_custom_plan -c jit=off"
# The claim and completion connections plan each statement once per session (generic plans),
# maybe over an empty table, and keep the plan while a backlog grows. Over an empty table the
# cheapest way to find the claimed ids is a sequential scan, which then reads the whole backlog
# on every claim (12 ms a claim over 50,000 tasks), so sequential scans are off there. That
# costs nothing else: every statement these connections run has an index plan, so the 1e10
# that PostgreSQL before 18 adds to a disabled scan's cost never enters one of their plans
# (tests/test_worker_plan.py asserts it for each of them), and with jit off no cost could
# make them compile.
CLAIM_SESSION = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off"
# The least time a completion write may take before the worker counts it as hung.
COMPLETION_HANG_MIN_S = 60.0
# Seconds run() waits, once a thread died, for the shutdown to hand tasks back before it
# raises WorkerDied anyway (what is left running, recovery hands on).
FAILED_STOP_WAIT = 15.0
_TERMINAL_EVENTS = {
    "succeeded": "task_succeeded",
    "failed": "task_failed",
    "cancelled": "task_cancelled",
    "retrying": "task_retrying",
}


def _is_local(conn: psycopg.Connection) -> bool:
    """Whether ``conn``'s server runs on this host (a Unix socket or a loopback address)."""
    host = conn.info.hostaddr or conn.info.host
    return host.startswith("/") or host in ("localhost", "::1") or host.startswith("127.")


class WorkerDied(PgschedError):
    """A service thread of the worker died; the worker stopped (the CLI exits 1)."""


class _Wake:
    """A threading.Event whose wait() can also watch a socket (the claim connection's).

    set() writes to a socket pair only while a waiter is in select(), so the calls made per
    finished task cost no system call."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._selecting = False
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def set(self) -> None:
        self._event.set()
        if self._selecting:
            with contextlib.suppress(OSError):  # full: the waiter wakes anyway; closed: none
                self._w.send(b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float | None = None, sock: int | None = None) -> bool:
        """True once set; with ``sock``, also returns (False) when that socket is readable."""
        if sock is None:
            return self._event.wait(timeout)
        self._selecting = True  # before the check: a set() after it writes to the pair
        try:
            if not self._event.is_set():
                ready, _, _ = select.select([self._r, sock], [], [], timeout)
                if self._r in ready:
                    with contextlib.suppress(OSError):
                        self._r.recv(4096)
        finally:
            self._selecting = False
        return self._event.is_set()

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Worker:
    def __init__(
        self,
        dsn: str,
        settings: Settings | None = None,
        *,
        name: str | None = None,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        allow_shell: bool = False,
        registry: Registry | None = None,
        weighted: bool = True,
        burst: bool = False,
        grace: float | None = None,
        on_event: EventHook | None = None,
        logger: Any = None,
        load_sampler: LoadSampler | None = None,
    ) -> None:
        import structlog

        from pgsched.builtins import builtin_registry
        from pgsched.logging import configure, get_logger

        self.settings = settings or Settings()
        if not structlog.is_configured():
            configure(self.settings.log_level, self.settings.log_format)
        self.dsn = dsn
        self.direct_dsn = direct_dsn(self.settings, dsn)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.queues = sorted(set(queues or [self.settings.queue]))
        self.concurrency = concurrency or self.settings.concurrency
        user = registry if registry is not None else default_registry
        if not allow_shell:
            user = user.without("shell")
        builtins = builtin_registry(allow_shell=allow_shell, settings=self.settings)
        self.registry = builtins.merged(user)
        self.task_types = self.registry.names()
        self.weighted = weighted
        self.burst = burst
        self.grace = self.settings.grace if grace is None else grace
        if not 0 <= self.grace <= DURATION_MAX_S:  # also NaN
            raise ValidationError(
                f"grace: {self.grace} is not a number of seconds from 0 to "
                f"{DURATION_MAX_S:.0f} (100 years)",
                "grace",
            )
        # A completion write in flight for longer than this is hung (a lock that is never
        # released, a server that stopped answering): the worker stops as a failure, as for a
        # dead thread, rather than heartbeat over tasks whose outcomes it cannot write.
        self.completion_hang_s = max(COMPLETION_HANG_MIN_S, 2 * self.settings.heartbeat_timeout)
        self.on_event = on_event
        self.log = logger or get_logger(worker=self.name)
        self._debug = self.settings.log_level == "debug"
        self.signature = ",".join(self.queues) + "|" + ",".join(self.task_types)

        self.worker_id: int | None = None
        self.paused = False
        self._running: dict[int, Job] = {}
        self._handback: list[Job] = []
        self._state_lock = threading.Lock()
        self._wake = _Wake()
        # The waker also LISTENs on its claim connection (not through a pooler): a notification
        # then wakes the claim thread on the very backend that will run the claim.
        self._claim_listens = self.direct_dsn == self.dsn
        self._claim_listening = False
        self._notified = False
        self._waker_handoff = False
        self._holds_waker = False
        self._wants_waker = False  # idle and not the waker: the heartbeat tries the lock
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._stopped = threading.Event()
        self._claim_done = threading.Event()
        self._control_stop = threading.Event()
        self._direct: psycopg.Connection | None = None
        self._direct_lock = threading.RLock()
        self._pipe_r, self._pipe_w = os.pipe()
        self._check_status = False
        self._check_cancels = False
        self._aux: psycopg.Connection | None = None
        self._aux_lock = threading.Lock()
        self._backends: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        self._backends_lock = threading.Lock()
        self._sampler = load_sampler or LoadSampler()
        self._sampler.watch_backends(self._backend_pids)
        # Tasks held at once: the concurrency, scaled by the load-weighted share from the
        # last heartbeat (share.capacity).
        self.capacity = self.concurrency
        self._threads: list[threading.Thread] = []
        # Why the worker stopped on its own, if a service thread died ("thread X died: ...").
        self.failure: str | None = None
        self.executor = Executor(
            self.concurrency,
            RetryPolicy(self.settings.backoff_base, self.settings.backoff_cap),
            self._job_finished,
            on_crash=self._thread_died,
        )
        self.completer = Completer(
            self._connect_completer,
            self.name,
            self._completions_written,
            self._completion_error,
            max_batch=max(self.settings.batch_size, 100),
            writers=self.settings.completion_writers,
            on_crash=self._thread_died,
        )

    # -- events --------------------------------------------------------------------------------

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        if level == "debug" and self.on_event is None and not self._debug:
            return  # the per-task hot path: not even the call into structlog
        getattr(self.log, level)(event, **fields)
        if self.on_event is not None:
            try:
                self.on_event(event, {"worker": self.name, **fields})
            except Exception:  # a broken hook must not stop the worker
                self.log.exception("event_hook_failed", hook_event=event)

    # -- connections ---------------------------------------------------------------------------

    def _connect_pooled(self, options: str = SESSION) -> psycopg.Connection:
        # force_custom_plan: psycopg prepares after 5 runs and PostgreSQL may then switch to a
        # generic plan; one claim shape fell from ~19k to ~4.5k tasks/s that way (claim-path.md).
        conn = connect(self.dsn, **self._connect_options(options))
        self._watch_backend(conn)
        claims.fast_json(conn)  # claim-thread CPU per 40k tasks 0.365 -> 0.34 s (6 runs each)
        return conn

    def _connect_claim(self) -> psycopg.Connection:
        # The claim connection plans each statement once per session (generic plans): planning
        # the claim again for every claim cost ~0.2 ms, a fifth of an idle worker's pickup
        # (bench/probes.py claim-plan). A generic plan is made once, maybe over an empty
        # table, and kept while a backlog grows: the claim and next_due_in keep their index
        # plans either way (tests/test_worker_plan.py, on every supported server).
        conn = self._connect_pooled(CLAIM_SESSION)
        conn.add_notify_handler(self._on_notify)  # the waker listens here too (_waker_wait)
        return conn

    def _connect_completer(self) -> psycopg.Connection:
        # Generic plans, as on the claim connection: planning the completion statement again
        # for every batch cost ~0.4 ms of server CPU per call (a one-task batch's bind, in the
        # server log of bench D), paid per task whenever tasks trickle in one at a time. Its
        # generic plan keeps the key-index lookup of the ids whatever the table held when it
        # was made (tests/test_worker_plan.py).
        return self._connect_pooled(CLAIM_SESSION)

    def _connect_direct(self) -> psycopg.Connection:
        conn = connect(self.direct_dsn, **self._connect_options())
        self._watch_backend(conn)
        conn.add_notify_handler(self._on_direct_notify)
        return conn

    def _watch_backend(self, conn: psycopg.Connection) -> None:
        """Count the server backend of ``conn`` as this worker's own load if it runs on this
        host (load.BackendCpu). Closed connections drop out by themselves."""
        if _is_local(conn):
            with self._backends_lock:
                self._backends.add(conn)

    def _backend_pids(self) -> set[int]:
        with self._backends_lock:
            return {c.info.backend_pid for c in self._backends if not c.closed}

    def _connect_options(self, options: str = SESSION) -> dict[str, Any]:
        if not self.settings.prepared_statements:
            # Behind PgBouncer in transaction mode: no prepared statements, and no startup
            # `options` (it refuses them); unprepared statements always get custom plans.
            return {"timeout": self.settings.connect_timeout, "prepare": False, "lenient": False}
        options = f"{options} {self.settings.session_options}"  # time limits (settings)
        return {"timeout": self.settings.connect_timeout, "options": options, "lenient": False}

    def _aux_conn(self) -> psycopg.Connection:
        if self._aux is None or self._aux.closed:
            self._aux = self._connect_pooled()
        return self._aux

    def _save_progress(
        self,
        task_id: int,
        version: int,
        progress: float | None,
        set_checkpoint: bool,
        checkpoint: Any,
    ) -> None:
        from psycopg.types.json import Jsonb

        with self._aux_lock:
            Q.task_progress.run(
                self._aux_conn(),
                {
                    "id": task_id,
                    "version": version,
                    "progress": progress,
                    "set_checkpoint": set_checkpoint,
                    "checkpoint": None if checkpoint is None else Jsonb(checkpoint),
                },
            )

    def _parent_results(self, task_id: int) -> dict[str, Any]:
        from pgsched.workflows import parent_results

        with self._aux_lock:
            return parent_results(self._aux_conn(), task_id)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Worker:
        """Register (refusing a name a live worker holds), then run in background threads."""
        self._direct = self._connect_direct()
        self._register(self._direct)
        self.executor.start()
        self.completer.start()
        for target, tname in (
            (guarded(self._control_loop, self._thread_died), "pgsched-control"),
            (self._claim_loop, "pgsched-claim"),  # its own guard: it runs the shutdown
        ):
            t = threading.Thread(target=target, name=tname, daemon=True)
            self._threads.append(t)
            t.start()
        self.emit(
            "worker_started",
            queues=self.queues,
            concurrency=self.concurrency,
            task_types=self.task_types,
        )
        return self

    def _register(self, conn: psycopg.Connection) -> None:
        from pgsched.db import check_schema

        check_schema(conn)
        self.worker_id = heartbeat.register(
            conn,
            self.name,
            queues=self.queues,
            task_types=self.task_types,
            capacity=self.concurrency,
            load=self._sampler.sample(),  # claims before the first heartbeat weigh it too
        )
        for channel in ("pgsched", "pgsched_control"):
            # LISTEN is a utility statement: it cannot be PREPAREd, so it cannot live in a
            # checked .sql file; the channel name is composed as an identifier.
            conn.execute(psql.SQL("LISTEN {}").format(psql.Identifier(channel)))
        if self.paused:
            heartbeat.set_status(conn, self.worker_id, "paused")
        self._holds_waker = False

    def run(self) -> None:
        """Start and block until stopped (by stop(), a signal handler, or --burst). Raises
        WorkerDied if the worker stopped because one of its threads died."""
        if not self._threads:
            self.start()
        failed_at: float | None = None
        while not self._stopped.wait(0.5):
            if self.failure is None:
                continue
            # A thread died: the shutdown is bounded, but must not hold run() for good if
            # what died is what it waits on (a hung completion).
            failed_at = failed_at or time.monotonic()
            if time.monotonic() - failed_at > FAILED_STOP_WAIT:
                break
        if self.failure is not None:
            raise WorkerDied(f"worker stopped: {self.failure}")

    def report_crash(self, thread: str, exc: BaseException) -> None:
        """A thread running alongside the worker (the CLI's scheduler) died: stop as a
        failure, as for one of the worker's own threads."""
        self._thread_died(thread, exc)

    def _thread_died(self, thread: str, exc: BaseException) -> None:
        """A service thread ended on an exception: the worker stops, as a failure. Its
        heartbeat stops at once (the control thread ends), running tasks get no grace: they
        are handed back, and what the shutdown cannot hand back (a dead completer's unwritten
        completions) the other workers' recovery does, within heartbeat_timeout of the last
        beat. Never raises: it runs on the dying thread."""
        text = safe_str(exc).strip()
        line = text.splitlines()[0] if text else ""
        if self.failure is None:
            self.failure = bounded(
                f"thread {thread} died: {type(exc).__name__}" + (f": {line}" if line else ""), 500
            )
        self._control_stop.set()
        self._force.set()
        self._stopping.set()
        with contextlib.suppress(Exception):
            self._wake.set()
            self._poke()
        with contextlib.suppress(Exception):  # logging may be what failed
            self.log.error("worker_thread_died", thread=thread, error=self.failure, exc_info=exc)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def ready(self) -> bool:
        """Registered, its control connection up, and not stopping (the --http-port probe)."""
        conn = self._direct
        return (
            self.worker_id is not None
            and conn is not None
            and not conn.closed
            and not self._stopping.is_set()
        )

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped (True) or ``timeout`` passed (False)."""
        return self._stopped.wait(timeout)

    def request_stop(self) -> None:
        """First call: graceful (grace period). Second call: stop at once."""
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()
        self._wake.set()
        self._poke()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop and wait for it: running tasks get ``grace`` seconds, then the rest
        is handed back without spending an attempt; the worker row ends 'stopped'."""
        self.request_stop()
        if threading.current_thread() not in self._threads:
            self._stopped.wait(timeout)

    def _shutdown(self) -> None:
        """Runs on the claim thread once the claim loop has ended."""
        try:
            self._set_status("draining")
            deadline = time.monotonic() + self.grace
            while self._running and time.monotonic() < deadline and not self._force.is_set():
                self._wake.wait(0.05)
                self._wake.clear()
            with self._state_lock:
                rest = list(self._running.values())
            for job in rest:
                self.executor.stop_job(job, "shutdown")
            # A dead or hung completer writes nothing more: recovery takes what it left running.
            self.completer.flush(timeout=10 if self.completer.healthy else 0)
            self._control_stop.set()
            self._poke()
            for t in self._threads:
                if t.name == "pgsched-control" and t is not threading.current_thread():
                    t.join(timeout=5)
            if self._handback:
                conn = self.completer.spare_connection()
                ids = [j.id for j in self._handback]
                released = claims.release(conn, ids, [j.row["version"] for j in self._handback])
                for j in self._handback:
                    self.emit(
                        "task_released",
                        task_id=j.id,
                        queue=j.row["queue"],
                        attempt=j.row["attempts"],
                        released=j.id in released,
                    )
        except Exception as e:
            with contextlib.suppress(Exception):
                self.emit("shutdown_error", "error", error=safe_str(e))
        finally:
            try:
                self.completer.stop(timeout=5)
                self.executor.close()
                self._close_direct(final=True)
                if self._aux is not None:
                    self._aux.close()
                self._wake.close()
                self.emit("worker_stopped", failure=self.failure)
            finally:
                self._stopped.set()  # whatever failed above: run() and the CLI must return

    def _set_status(self, status: str) -> None:
        try:
            with self._direct_lock:
                if self._direct is not None and self.worker_id is not None:
                    heartbeat.set_status(self._direct, self.worker_id, status)
        except psycopg.Error as e:
            self.emit("worker_status_failed", "warning", status=status, error=str(e))

    def _close_direct(self, final: bool) -> None:
        with self._direct_lock:
            conn, self._direct = self._direct, None
        if conn is None:
            return
        try:
            if final and self.worker_id is not None:
                heartbeat.set_status(conn, self.worker_id, "stopped")
                heartbeat.unlock(conn, self.worker_id)
        except psycopg.Error:
            pass
        conn.close()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._pipe_w, b"x")

    # -- notifications and the control loop ----------------------------------------------------

    def _on_direct_notify(self, n: Any) -> None:
        # While the waker listens on its claim connection, a queue notification comes on both
        # connections, and the direct copy, read whenever the control thread gets to it, could
        # land after the claim it caused had cleared _notified: one more, empty, claim per
        # pickup (tests/test_worker.py, one insert: 3 claims in 3 of 18 runs). The claim
        # connection's copy is the one that counts then.
        if n.channel == "pgsched" and n.payload != "!waker" and self._claim_listening:
            return
        self._on_notify(n)

    def _on_notify(self, n: Any) -> None:
        if n.channel == "pgsched":
            if n.payload == "!waker":
                self._waker_handoff = True
                self._wake.set()
            elif n.payload in self.queues:
                self._notified = True
                if self._holds_waker:
                    self._wake.set()
        elif n.channel == "pgsched_control":
            if n.payload == self.name:
                self._check_status = True
            elif n.payload == "cancel:" + self.name:
                self._check_cancels = True

    def _control_loop(self) -> None:
        s = self.settings
        # A worker running nothing beats every idle_beat_every (heartbeat_timeout / 3 by
        # default), one holding tasks every heartbeat_interval. The wait below never outlasts
        # heartbeat_interval, so a worker that turns busy beats on the busy pace within one.
        idle_every = s.idle_beat_every
        # The first beat comes heartbeat_interval after start, idle or not: it tells a new
        # worker the fleet's size, which paces its recovery runs (registration wrote the row).
        last_beat = time.monotonic() - idle_every + s.heartbeat_interval
        recovery = reaper.RecoveryPacer(time.monotonic())
        # Retention pruning: first a few seconds after start (spread over a fleet), then every
        # PRUNE_EVERY s, or every PRUNE_CATCH_UP s while each run finds a full batch: a worker
        # then removes up to ~4k expired rows/s instead of 1k a minute, which fell behind any
        # queue running more than ~17 tasks/s past its retention.
        next_prune = time.monotonic() + 2 + (os.getpid() % 8)
        while not self._control_stop.is_set():
            try:
                conn = self._direct
                if conn is None or conn.closed:
                    self._reconnect_direct()
                    continue
                now = time.monotonic()
                next_beat = last_beat + (s.heartbeat_interval if self._running else idle_every)
                wake = min(next_beat, recovery.wake_at(), now + s.heartbeat_interval)
                timeout = max(0.0, wake - now)
                ready, _, _ = select.select([conn.fileno(), self._pipe_r], [], [], timeout)
                if self._pipe_r in ready:
                    os.read(self._pipe_r, 4096)
                with self._direct_lock:
                    if conn.fileno() in ready:
                        conn.pgconn.consume_input()
                        while (pgn := conn.pgconn.notifies()) is not None:
                            conn.pgconn.notify_handler(pgn)  # -> self._on_notify
                        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                            raise psycopg.OperationalError("LISTEN connection lost")
                    if self._check_status:
                        self._check_status = False
                        self._apply_status(Q.worker_status.run(conn, {"id": self.worker_id}))
                    if self._check_cancels:
                        self._check_cancels = False
                        self._sync_cancels(conn)
                    now = time.monotonic()
                    if now >= next_beat:
                        beat = self._beat(conn)
                        last_beat = now
                        if beat is not None:
                            recovery.on_beat(now, *beat)
                    if recovery.due(now):
                        self._reap(conn)
                        recovery.ran(now)
                    hung = self.completer.hung_for(now)
                    if hung is not None and hung[1] > self.completion_hang_s:
                        self._thread_died(
                            hung[0],
                            TimeoutError(f"a completion write hung for {hung[1]:.0f} s"),
                        )
                        return
                    if now >= next_prune:
                        pruned = reaper.prune(conn, retention=s.retention)
                        next_prune = now + (
                            reaper.PRUNE_CATCH_UP
                            if pruned >= reaper.PRUNE_BATCH
                            else reaper.PRUNE_EVERY
                        )
                        if pruned:
                            self.emit("tasks_pruned", "debug", count=pruned)
            except (psycopg.OperationalError, OSError, ValueError) as e:
                self.emit("connection_lost", "warning", connection="direct", error=str(e))
                self._close_direct(final=False)
                self._holds_waker = False
                time.sleep(0.2)
            except psycopg.Error as e:
                self.emit("control_error", "error", error=str(e))
                time.sleep(0.2)

    def _reconnect_direct(self) -> None:
        if self._control_stop.is_set():
            return
        try:
            conn = self._connect_direct()
            self._register(conn)
        except Exception as e:
            self.emit("reconnect_failed", "warning", connection="direct", error=str(e))
            time.sleep(0.5)
            return
        with self._direct_lock:
            self._direct = conn
        self.emit("reconnected", connection="direct")
        self._check_cancels = True
        self._wake.set()

    def _apply_status(self, status: str | None) -> None:
        paused = status == "paused"
        if paused != self.paused:
            self.paused = paused
            self.emit("worker_paused" if paused else "worker_resumed")
            self._wake.set()

    def _beat(self, conn: psycopg.Connection) -> tuple[int, float | None] | None:
        """Heartbeat; returns (live workers, seconds until the stalest other one expires)."""
        cpu, mem = self._sampler.sample()
        try_waker = self._wants_waker and not self._holds_waker and not self.paused
        row = heartbeat.beat(
            conn,
            self.worker_id,
            cpu=cpu,
            memory=mem,
            running=len(self._running),
            capacity=self.concurrency,
            queues=self.queues,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            waker=(reaper.WORKER_LOCK_NS, self.signature) if try_waker else None,
        )
        if row is None:
            return None
        if row["waker"]:  # the role was vacant: claim now, as a new waker does
            self._holds_waker = self._notified = True
            self._wake.set()
        self._apply_status(row["status"])
        if self.weighted:
            capacity = share.capacity(
                self.concurrency, cpu, row["other_slots"], row["other_shares"]
            )
            if capacity > self.capacity:
                self._wake.set()  # room to claim more
            self.capacity = capacity
        self.emit(
            "heartbeat",
            "debug",
            cpu=cpu,
            memory=mem,
            running=len(self._running),
            capacity=self.capacity,
        )
        return int(row["live_workers"]), row["next_expiry_s"]

    def _reap(self, conn: psycopg.Connection) -> None:
        dead, lost = reaper.reap(conn, heartbeat_timeout=self.settings.heartbeat_timeout)
        for name in dead:
            self.emit("worker_reaped", "warning", dead_worker=name)
        for r in lost:
            self.emit(
                "task_lost", "warning", task_id=r["task_id"], owner=r["name"], status=r["status"]
            )
        if dead:
            Q.notify_queue.run(conn, {"payload": "!waker"})  # its waker lock may be gone

    def _sync_cancels(self, conn: psycopg.Connection) -> None:
        for r in Q.cancel_requests.run(conn, {"worker": self.name}):
            with self._state_lock:
                job = self._running.get(r["id"])
            if job is not None:
                job.row["version"] = r["version"]
                self.executor.stop_job(job, "cancel")
            else:
                # Finished here meanwhile (its completion is refused: the cancel bumped the
                # version): the cancel wins.
                self.completer.put(
                    Completion(
                        r["id"], r["version"], "cancelled", "cancelled", error="cancelled by user"
                    )
                )

    # -- waker lock ----------------------------------------------------------------------------

    def _try_waker(self) -> bool:
        if self._holds_waker:
            return True
        with self._direct_lock:
            if self._direct is None:
                return False
            self._holds_waker = bool(
                Q.try_waker_lock.run(
                    self._direct, {"ns": reaper.WORKER_LOCK_NS, "signature": self.signature}
                )
            )
        return self._holds_waker

    def _release_waker(self, handoff: bool) -> None:
        if not self._holds_waker:
            return
        with self._direct_lock:
            if self._direct is None:
                return
            Q.release_waker_lock.run(
                self._direct, {"ns": reaper.WORKER_LOCK_NS, "signature": self.signature}
            )
            self._holds_waker = False
            if handoff:
                Q.notify_queue.run(self._direct, {"payload": "!waker"})

    # -- the claim loop ------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        try:
            self._claim_loop_inner()
        except BaseException as e:  # a bug: stop, as a failure (exit 1), rather than hang
            self._thread_died("pgsched-claim", e)
        finally:
            self._claim_done.set()
            self._shutdown()

    def _claim_loop_inner(self) -> None:
        s = self.settings
        conn: psycopg.Connection | None = None
        idle = False  # the last claim found less than it asked for
        next_claim_at = 0.0  # the waker's timer: next due task or fallback poll
        error_delay = 0.05
        low_water = max(1, min(self.concurrency, s.batch_size) // 4)
        burst_check = False  # a burst worker's empty claim: is anything left it could run?
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if conn is None or conn.closed:
                    conn = self._connect_claim()
                    self._claim_listening = False
                    self._hand_back_unknown(conn)
                if self.paused:
                    self._wants_waker = False
                    self._release_waker(handoff=False)
                    self._claim_listen(conn, False)
                    idle = True
                    self._wake.wait(1.0)
                    continue
                free = min(self.capacity - len(self._running), self.concurrency)
                if free <= 0 or self.completer.backlog > 2 * s.batch_size:
                    self._wake.wait(0.5)
                    continue
                if not idle and free < min(low_water, self.capacity) and self._running:
                    # Busy: wait for a few free slots so claims stay batches, not single rows.
                    self._wake.wait(0.005)
                    continue
                if idle:
                    if self.burst:
                        # A burst worker takes no part in the waker role: while its last
                        # tasks run it looks again every 10 ms, then exits. (Waiting for the
                        # role hung it whenever another idle worker held the lock.)
                        left = next_claim_at - time.monotonic()
                        if left > 0:
                            self._wake.wait(left)
                            continue
                    elif not self._holds_waker:
                        left = next_claim_at - time.monotonic()
                        if not self._waker_handoff and left > 0:
                            # Not the waker: the heartbeat tries the lock, and sets _wake if
                            # it got it; a handoff ('!waker') makes us try at once.
                            self._wants_waker = True
                            self._claim_listen(conn, False)
                            self._wake.wait(left)
                            continue
                        if not self._waker_handoff:
                            # The fallback poll, every poll_interval: the waker lock is an
                            # advisory lock any session can hold, and a waker can hang with
                            # it. A task due for half an interval was left behind: claim.
                            next_claim_at = time.monotonic() + s.poll_interval
                            if not claims.left_behind(
                                conn,
                                queues=self.queues,
                                task_types=self.task_types,
                                age=s.poll_interval / 2,
                            ):
                                continue
                        else:
                            self._waker_handoff = False
                            if not self._try_waker():
                                self._wants_waker = True
                                next_claim_at = time.monotonic() + s.poll_interval
                                continue
                    elif not self._notified:
                        left = next_claim_at - time.monotonic()
                        if left > 0:
                            self._waker_wait(conn, left)
                            continue
                self._wants_waker = False
                self._notified = False
                n = min(free, s.batch_size)
                rows = claims.claim(
                    conn,
                    worker=self.name,
                    queues=self.queues,
                    task_types=self.task_types,
                    slots=n,
                    weighted=self.weighted,
                    cpu_ceiling=s.cpu_ceiling,
                    memory_ceiling=s.memory_ceiling,
                )
                error_delay = 0.05
                self.emit("claim_ran", "debug", asked=n, got=len(rows))
                self._dispatch(rows)
                if rows:
                    # Work was there, and more may be: a batch cut short by load weighting
                    # (k < slots) says nothing about what is left, so claim again as slots free
                    # up. Only an empty claim means idle; a queue that runs dry costs one extra
                    # empty claim. (Going idle on any short batch left a 100-worker fleet on the
                    # fallback poll: 1.1k tasks/s, bench H full run.) Only a full batch hands the
                    # waker role on, so one insert still wakes at most two workers.
                    idle = False
                    burst_check = False
                    if len(rows) >= n:
                        self._release_waker(handoff=True)
                    continue
                idle = True
                if self.burst and not self._running and not self.completer.backlog:
                    if burst_check and self._burst_done(conn):
                        self.emit("worker_burst_done")
                        break
                    burst_check = True
                if self.burst:
                    next_claim_at = time.monotonic() + 0.01  # look again soon, then exit
                elif not self._try_waker():
                    next_claim_at = time.monotonic() + s.poll_interval  # the fallback poll
                else:
                    due = claims.next_due_in(
                        conn,
                        queues=self.queues,
                        task_types=self.task_types,
                        horizon=s.poll_interval,
                    )
                    wait = s.poll_interval if due is None else min(max(due, 0.0), s.poll_interval)
                    next_claim_at = time.monotonic() + wait
            except (psycopg.OperationalError, DatabaseUnavailable) as e:
                # DatabaseUnavailable: the reconnect found no server yet (a restart): retry.
                self.emit("connection_lost", "warning", connection="claim", error=str(e))
                self._claim_listening = False  # the direct connection hears the queues again
                if conn is not None:
                    conn.close()
                conn = None
                self._stopping.wait(error_delay)
                error_delay = min(error_delay * 2, 2.0)
        if conn is not None:
            conn.close()

    def _burst_done(self, conn: psycopg.Connection) -> bool:
        """After two empty claims in a row with nothing running: a burst worker is done only
        if it may claim (active, under its ceilings) and nothing it could run is ready or due
        within poll_interval. A claim cut to nothing by a pause or a ceiling is not the end."""
        s = self.settings
        may_claim = claims.claim_limit(
            conn,
            worker=self.name,
            weighted=self.weighted,
            cpu_ceiling=s.cpu_ceiling,
            memory_ceiling=s.memory_ceiling,
        )
        if not may_claim:
            self._wake.wait(min(0.5, s.heartbeat_interval))  # a new load sample
            return False
        due = claims.next_due_in(
            conn, queues=self.queues, task_types=self.task_types, horizon=s.poll_interval
        )
        if due is not None:
            self._wake.wait(max(0.0, min(due, s.poll_interval)))
            return False
        return True

    def _claim_listen(self, conn: psycopg.Connection, on: bool) -> None:
        """LISTEN (or stop) on the claim connection. Only the waker listens there: every
        listening backend is signalled for each notification, so an idle fleet listens on
        one connection per worker, plus one."""
        if on != self._claim_listening and self._claim_listens:
            # The flag is true only while the claim connection surely listens (LISTEN done,
            # UNLISTEN not yet sent): the direct connection drops queue notifications then.
            if not on:
                self._claim_listening = False
            conn.execute(
                psql.SQL("LISTEN {}" if on else "UNLISTEN {}").format(psql.Identifier("pgsched"))
            )
            self._claim_listening = on

    def _waker_wait(self, conn: psycopg.Connection, timeout: float) -> None:
        """The idle waker's wait: for _wake, or a notification on the claim connection, which
        it then claims on at once, whatever the control thread is running on the direct
        connection meanwhile (a prune batch, recovery, a heartbeat waiting on a lock)."""
        if not self._claim_listens:
            self._wake.wait(timeout)
            return
        self._claim_listen(conn, True)  # a notification it brought is handled already
        if self._notified or self._wake.wait(timeout, sock=conn.fileno()):
            return
        pgconn = conn.pgconn
        pgconn.consume_input()
        while (pgn := pgconn.notifies()) is not None:
            pgconn.notify_handler(pgn)  # -> self._on_notify: sets _notified for our queues
        if pgconn.status != psycopg.pq.ConnStatus.OK:
            raise psycopg.OperationalError("claim connection lost")

    def _hand_back_unknown(self, conn: psycopg.Connection) -> None:
        """A claim may have committed while its answer was lost with the connection: hand back
        running tasks of ours that this process does not know about."""
        self.completer.flush(timeout=30)  # finished ones are written (or refused) first
        rows = Q.owned_running.run(conn, {"worker": self.name})
        with self._state_lock:
            known = set(self._running)
        unknown = [r for r in rows if r["id"] not in known]
        if unknown:
            claims.release(conn, [r["id"] for r in unknown], [r["version"] for r in unknown])
            self.emit("tasks_handed_back", "warning", task_ids=[r["id"] for r in unknown])

    def _dispatch(self, rows: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for row in rows:
            tt = self.registry.get(row["task_type"])
            timeout = row["timeout_s"] or (tt.timeout if tt is not None else None)
            ctx = TaskContext(row, self._save_progress, self._parent_results)
            job = Job(row, tt, ctx, started=now, deadline=None if not timeout else now + timeout)
            with self._state_lock:
                self._running[job.id] = job
            self.emit(
                "task_claimed",
                "debug",
                task_id=job.id,
                queue=row["queue"],
                task_type=row["task_type"],
                attempt=row["attempts"],
            )
            self.executor.submit(job)

    # -- completions ---------------------------------------------------------------------------

    def _job_finished(self, job: Job, completion: Completion | None) -> None:
        with self._state_lock:
            self._running.pop(job.id, None)
            if completion is None:
                self._handback.append(job)
        if completion is not None:
            self.completer.put(completion)
        if job.tt is None or not job.tt.inline:
            # An inline body runs on the claim thread, which is not waiting: skipping this
            # set (~3 us: Condition + notify_all) halves its per-task Python cost with _stop.
            self._wake.set()

    def _completions_written(self, batch: list[Completion], changed: set[int]) -> None:
        self._wake.set()  # a claim loop held back by the completion backlog may go on
        # A written success logs at debug level: when nobody listens, skip it before building
        # its fields (completer CPU 7.0 -> 5.3 us per task, 40k no-op drain, 2 runs each).
        quiet = self.on_event is None and not self._debug
        for c in batch:
            if quiet and c.status == "succeeded" and c.id in changed:
                continue
            fields = {
                "task_id": c.id,
                "attempt": c.attempt,
                "queue": c.queue,
                "task_type": c.task_type,
            }
            if c.id not in changed:
                self.emit(
                    "task_completion_rejected",
                    "warning",
                    version=c.version,
                    status=c.status,
                    **fields,
                )
                self._check_cancels = True
                self._poke()
                continue
            level = "debug" if c.status == "succeeded" else "info"
            if c.status == "failed":
                level = "warning"
            self.emit(
                _TERMINAL_EVENTS[c.status],
                level,
                outcome=c.outcome,
                duration_ms=round(c.duration_ms, 3),
                error=c.error,
                retry_in_s=round(c.delay, 3) if c.status == "retrying" else None,
                **fields,
            )

    def _completion_error(self, e: BaseException) -> None:
        self.emit(
            "completion_error",
            "warning",
            error=str(e).splitlines()[0] if str(e) else type(e).__name__,
        )
