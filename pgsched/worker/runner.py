"""The Worker: wires the services that do the work, starts them, and stops them.

Each service has one owner and one job:
- the claimer (claimer.py, thread ``pgsched-claim``, the claim connection) claims batches and
  hands them to the executor, following the waker rule (waker.py) while idle;
- the executor (executor.py, threads ``pgsched-task``, ``pgsched-async``, ``pgsched-timeouts``)
  runs task bodies and keeps the table of what runs here;
- the completer (completer.py, threads ``pgsched-completer-N``, a connection each) writes
  finished attempts in batches;
- the control thread (control.py, ``pgsched-control``, the direct connection) heartbeats,
  recovers dead workers' tasks, prunes, and hears notifications, pause and cancel requests.

A service thread that dies stops the worker as a failure (``failure``; run() raises
WorkerDied, the CLI exits 1): the worker either makes progress or exits non-zero.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pgsched.config import Settings
from pgsched.db import direct_dsn
from pgsched.durations import DURATION_MAX_S
from pgsched.errors import ValidationError, WorkerDied
from pgsched.registry import Registry, default_registry
from pgsched.worker import claim as claims
from pgsched.worker.claimer import Claimer
from pgsched.worker.completer import Completer, report_written
from pgsched.worker.connections import CLAIM_SESSION, Connections
from pgsched.worker.control import Control
from pgsched.worker.executor import Executor
from pgsched.worker.identity import Identity
from pgsched.worker.load import LoadSampler
from pgsched.worker.outcome import Completion, RetryPolicy
from pgsched.worker.supervision import bounded, guarded, safe_str
from pgsched.worker.wake import Wake
from pgsched.worker.waker import Waker

__all__ = ["CLAIM_SESSION", "Worker", "WorkerDied"]

EventHook = Callable[[str, dict[str, Any]], None]
# Seconds run() waits, once a thread died, for the shutdown to hand tasks back before it
# raises WorkerDied anyway (what is left running, recovery hands on).
FAILED_STOP_WAIT = 15.0


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

        self.settings = s = settings or Settings()
        if not structlog.is_configured():
            configure(s.log_level, s.log_format)
        self.dsn = dsn
        self.direct_dsn = direct_dsn(s, dsn)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.queues = sorted(set(queues or [s.queue]))
        self.concurrency = concurrency or s.concurrency
        user = registry if registry is not None else default_registry
        if not allow_shell:
            user = user.without("shell")
        builtins = builtin_registry(allow_shell=allow_shell, settings=s)
        self.registry = builtins.merged(user)
        self.task_types = self.registry.names()
        self.weighted = weighted
        self.burst = burst
        self.grace = s.grace if grace is None else grace
        if not 0 <= self.grace <= DURATION_MAX_S:  # also NaN
            raise ValidationError(
                f"grace: {self.grace} is not a number of seconds from 0 to "
                f"{DURATION_MAX_S:.0f} (100 years)",
                "grace",
            )
        self.on_event = on_event
        self.log = logger or get_logger(worker=self.name)
        self._verbose = s.log_level == "debug"
        me = Identity(self.name, self.queues, self.task_types, self.concurrency, weighted)
        self.signature = me.signature
        # Why the worker stopped on its own, if a service thread died ("thread X died: ...").
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wire(me, load_sampler or LoadSampler())

    def _wire(self, me: Identity, sampler: LoadSampler) -> None:
        s = self.settings
        self._wake = Wake()
        self._waker = Waker(s.poll_interval)
        self._connections = Connections(self.dsn, self.direct_dsn, s, sampler)
        self.completer = Completer(
            self._connections.completer,
            self.name,
            self._completions_written,
            self._completion_error,
            max_batch=max(s.batch_size, 100),
            writers=s.completion_writers,
            on_crash=self._thread_died,
        )
        self.executor = Executor(
            self.concurrency,
            RetryPolicy(s.backoff_base, s.backoff_cap),
            self.registry,
            self._connections.task_context,
            self.completer.put,
            self._wake.set,
            self.emit,
            on_crash=self._thread_died,
        )
        self._control = Control(
            me, s, self._connections, sampler, self._waker, self._wake,
            self.executor, self.completer, self.emit, self._thread_died,
        )  # fmt: skip
        self._claimer = Claimer(
            me, s, self._connections, self._waker, self._wake, self.executor,
            self.completer, self._control, self.emit, self._stopping, self.burst,
        )  # fmt: skip

    # -- what the worker's row and its services say -----------------------------------------

    @property
    def worker_id(self) -> int | None:
        return self._control.worker_id

    @property
    def paused(self) -> bool:
        return self._control.paused

    @property
    def capacity(self) -> int:
        """Tasks held at once: the concurrency, scaled by the load-weighted share from the
        last heartbeat (share.capacity)."""
        return self._control.capacity

    @property
    def completion_hang_s(self) -> float:
        """A completion write in flight for longer than this stops the worker as a failure
        (Settings.completion_hang_after)."""
        return self._control.hang_after

    def check_hang(self, now: float | None = None) -> bool:
        """The hang check the control thread runs on each pass, at monotonic time ``now``
        (default: now): a completion write in flight for longer than completion_hang_s stops
        the worker as a failure (True then)."""
        return self._control.check_hang(time.monotonic() if now is None else now)

    @property
    def waker(self) -> Waker:
        """This worker's part in the waker rule (its role, whether its claim connection
        listens); read it, the worker's threads drive it."""
        return self._waker

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def ready(self) -> bool:
        """Registered, its control connection up, and not stopping (the --http-port probe)."""
        return self._control.connected and not self._stopping.is_set()

    # -- events -------------------------------------------------------------------------------

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        if level == "debug" and self.on_event is None and not self._verbose:
            return  # the per-task hot path: not even the call into structlog
        getattr(self.log, level)(event, **fields)
        if self.on_event is not None:
            try:
                self.on_event(event, {"worker": self.name, **fields})
            except Exception:  # a broken hook must not stop the worker
                self.log.exception("event_hook_failed", hook_event=event)

    def _completions_written(self, batch: list[Completion], changed: set[int]) -> None:
        self._wake.set()  # a claimer held back by the completion backlog may go on
        verbose = self.on_event is not None or self._verbose
        if report_written(batch, changed, self.emit, verbose):
            self._control.check_cancels()

    def _completion_error(self, e: BaseException) -> None:
        text = str(e)
        self.emit(
            "completion_error", "warning", error=text.splitlines()[0] if text else type(e).__name__
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Worker:
        """Register (refusing a name a live worker holds), then run in background threads."""
        self._control.open()
        self.executor.start()
        self.completer.start()
        for target, tname in (
            (guarded(self._control.run, self._thread_died), "pgsched-control"),
            (self._claim_thread, "pgsched-claim"),  # its own guard: it runs the shutdown
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

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped (True) or ``timeout`` passed (False)."""
        return self._stopped.wait(timeout)

    def request_stop(self) -> None:
        """First call: graceful (grace period). Second call: stop at once."""
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()
        self._wake.set()
        self._control.poke()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop and wait for it: running tasks get ``grace`` seconds, then the rest
        is handed back without spending an attempt; the worker row ends 'stopped'."""
        self.request_stop()
        if threading.current_thread() not in self._threads:
            self._stopped.wait(timeout)

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
        self._force.set()
        self._stopping.set()
        with contextlib.suppress(Exception):
            self._control.stop()
            self._wake.set()
        with contextlib.suppress(Exception):  # logging may be what failed
            self.log.error("worker_thread_died", thread=thread, error=self.failure, exc_info=exc)

    def _claim_thread(self) -> None:
        try:
            self._claimer.run()
        except BaseException as e:  # a bug: stop, as a failure (exit 1), rather than hang
            self._thread_died("pgsched-claim", e)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Runs on the claim thread once the claimer has ended: running tasks get the grace
        period, the rest is handed back, then every service stops."""
        try:
            self._control.set_status("draining")
            deadline = time.monotonic() + self.grace
            while self.executor.running and time.monotonic() < deadline:
                if self._force.is_set():
                    break
                self._wake.wait(0.05)
                self._wake.clear()
            self.executor.stop_all("shutdown")
            # A dead or hung completer writes nothing more: recovery takes what it left running.
            self.completer.flush(
                timeout=10 if self.completer.healthy(self.completion_hang_s) else 0
            )
            self._control.stop()
            for t in self._threads:
                if t.name == "pgsched-control" and t is not threading.current_thread():
                    t.join(timeout=5)
            self._release_handed_back()
        except Exception as e:
            with contextlib.suppress(Exception):
                self.emit("shutdown_error", "error", error=safe_str(e))
        finally:
            try:
                self.completer.stop(timeout=5)
                self.executor.close()
                self._control.close(final=True)
                self._connections.close()
                self._wake.close()
                self.emit("worker_stopped", failure=self.failure)
            finally:
                self._stopped.set()  # whatever failed above: run() and the CLI must return

    def _release_handed_back(self) -> None:
        jobs = self.executor.handed_back
        if not jobs:
            return
        conn = self.completer.spare_connection()
        released = claims.release(conn, [j.id for j in jobs], [j.row["version"] for j in jobs])
        for j in jobs:
            self.emit(
                "task_released",
                task_id=j.id,
                queue=j.row["queue"],
                attempt=j.row["attempts"],
                released=j.id in released,
            )
