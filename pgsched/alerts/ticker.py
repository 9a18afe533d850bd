"""The alert ticker: a thread (each `pgsched worker` runs one) that evaluates due threshold
rules and folds recorded events into notifications. Run as many as you like: each window is
evaluated once and each event folded once, whichever ticker gets there first.

It looks at the rules and events when NOTIFY pgsched_alerts comes (a trigger recorded an
event, or the rules changed), when a folded (rule, key) may send again, when a threshold rule
is due, on a new connection, and at least every TICK_POLL seconds (a rule changed by plain
SQL). In between it runs no statement: with a fleet of idle workers, one look per worker every
few seconds was most of the database's idle CPU (docs/performance.md, H and idle-fleet).

Given the name of its process's worker, it also delivers: it claims the ``pgsched.alert``
tasks of the delivery queue (``pgsched.alerts``, where channels put them unless they name
another queue) as that worker, up to ``alert_slots`` at once, and runs each on a thread of
its own. A receiver that hangs or refuses holds those threads only, never a slot of the
worker's tasks; the claims are the worker's, so if the process dies its recovery hands them
back like any task of it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from pgsched.alerts import dispatch as dispatching
from pgsched.alerts.config import DELIVERY_QUEUE, DELIVERY_TYPE
from pgsched.config import Settings
from pgsched.db import translated
from pgsched.registry import TaskContext, TaskType
from pgsched.sql import Q
from pgsched.ticking import MAX_SLEEP, Ticking
from pgsched.worker import claim as claims
from pgsched.worker.completer import complete
from pgsched.worker.executor import Job
from pgsched.worker.outcome import Completion, RetryPolicy, outcome
from pgsched.worker.supervision import CrashHook

log = structlog.get_logger("pgsched.alerts")

DELIVERY_POLL = 10.0  # seconds between looks at an idle delivery queue
TICK_POLL = 60.0  # seconds between looks at rules and events when nothing wakes the ticker


class AlertTicker(Ticking):
    thread_name = "pgsched-alerts"
    error_event = "alerts_error"
    listen = Q.alert_listen

    def __init__(
        self,
        dsn: str,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        on_crash: CrashHook | None = None,
        worker: str | None = None,
    ) -> None:
        """``worker``: the name of the worker of this process, as which deliveries are
        claimed; None: no deliveries (some worker serving the delivery queue runs them)."""
        super().__init__(dsn, settings=settings, clock=clock, on_crash=on_crash)
        self.worker = worker
        self.slots = self.settings.alert_slots
        self._running: dict[int, Job] = {}  # task id -> its delivery, while it runs
        self._finished: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._deliveries_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._policy = RetryPolicy(self.settings.backoff_base, self.settings.backoff_cap)
        self._type = TaskType(DELIVERY_TYPE, _run_alert, stoppable=True)
        self._look_at = 0.0  # monotonic time of the next look at the delivery queue
        self._tick_at = 0.0  # monotonic time of the next look at the rules and events

    def tick_once(self, now: datetime | None = None) -> list[int]:
        """Evaluate due thresholds, then fold due events; the notifications made."""
        conn = self.connection()
        now = now if now is not None else self.now()
        with translated():
            events = dispatching.evaluate_thresholds(
                conn, now, heartbeat_timeout=self.settings.heartbeat_timeout
            )
            made = dispatching.dispatch(conn, now)
        if events or made:
            log.info("alerts_dispatched", threshold_events=events, notifications=len(made))
        return made

    def look(self) -> float:
        fresh = self._conn is None or self._conn.closed  # notifications may have been missed
        made: list[int] = []
        if fresh or self.notified or time.monotonic() >= self._tick_at:
            self.notified = False
            made = self.tick_once()
            wake = dispatching.next_wake(self.connection(), self.now())
            if len(made) >= dispatching.BATCH:
                wake = 0.0  # more (rule, key) pairs may be due than one dispatch folds
            self._tick_at = time.monotonic() + min(TICK_POLL, TICK_POLL if wake is None else wake)
        delay = self._tick_at - time.monotonic()
        if self.worker is not None:
            due = self.deliver_once(look=bool(made))
            if due is not None:
                delay = min(delay, due)
        return min(MAX_SLEEP, delay)

    # -- deliveries ------------------------------------------------------------------------

    def deliver_once(self, *, look: bool = True) -> float | None:
        """Record the deliveries that finished, start those that are due while threads are
        free; seconds until the next one is due (None: none within MAX_SLEEP).

        The delivery queue is looked at when this ticker made notifications (``look``), when
        a delivery finished, when the next known one is due, and at least every
        DELIVERY_POLL seconds (deliveries another ticker made, or a recovery handed back):
        not on every look of an idle ticker. That idle look asks whether a delivery is
        ready (a probe that locks nothing) and claims only then; when the deliveries it made
        or ran may wait for a retry, it also asks when the next is due."""
        assert self.worker is not None
        conn = self.connection()
        finished = self._record(conn)
        self._threads = [t for t in self._threads if t.is_alive()]
        wait = self._look_at - time.monotonic()
        if not (look or finished or wait <= 0):
            return wait
        free = self.slots - len(self._running)
        if free <= 0 or self._stop.is_set():
            self._look_at = 0.0  # when a delivery finishes (it nudges the ticker)
            return None
        idle = not (look or finished)  # nothing of this ticker's is waiting
        if idle and not self._delivery_ready(conn):
            self._look_at = time.monotonic() + DELIVERY_POLL
            return DELIVERY_POLL
        with translated():
            rows = claims.claim(
                conn,
                worker=self.worker,
                queues=[DELIVERY_QUEUE],
                task_types=[DELIVERY_TYPE],
                slots=free,
                weighted=False,
                cpu_ceiling=100.0,
                memory_ceiling=100.0,
                now=self.now(),
            )
        for row in rows:
            self._start(row)
        if len(rows) == free:
            self._look_at = 0.0  # more may wait: look again when one finishes
            return None
        if idle:
            self._look_at = time.monotonic() + DELIVERY_POLL
            return DELIVERY_POLL
        with translated():
            due = claims.next_due_in(
                conn,
                queues=[DELIVERY_QUEUE],
                task_types=[DELIVERY_TYPE],
                horizon=DELIVERY_POLL,
                now=self.now(),
            )
        self._look_at = time.monotonic() + (DELIVERY_POLL if due is None else due)
        return due

    def _delivery_ready(self, conn: Any) -> bool:
        """Whether a delivery waits to be claimed (a probe that locks nothing)."""
        with translated():
            return claims.left_behind(
                conn, queues=[DELIVERY_QUEUE], task_types=[DELIVERY_TYPE], age=0.0, now=self.now()
            )

    def _start(self, row: dict[str, Any]) -> None:
        ctx = TaskContext(row)
        job = Job(row=row, tt=self._type, ctx=ctx)
        self._running[job.id] = job
        t = threading.Thread(
            target=self._deliver, args=(job,), name="pgsched-alert-delivery", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _deliver(self, job: Job) -> None:
        exc: BaseException | None = None
        result: Any = None
        try:
            result = _run_alert(job.row["payload"], job.ctx, self._deliveries_stop)
        except Exception as e:
            exc = e
        try:
            done = outcome(job, exc, result, self._policy)
        except Exception as e:  # an unprintable error must not lose the attempt
            from pgsched.worker.outcome import unrecordable

            done = unrecordable(job, e)
        self._finished.put(done)
        self.nudge()  # the ticker writes it now

    def _record(self, conn: Any) -> bool:
        """Write the completions of the deliveries that finished; whether there were any."""
        batch: list[Completion] = []
        while True:
            try:
                batch.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return False
        assert self.worker is not None
        with translated():
            written = complete(conn, self.worker, batch, now=self.now())
        for c in batch:
            self._running.pop(c.id, None)
            log.info(
                "alert_delivered" if c.status == "succeeded" else "alert_delivery_failed",
                task_id=c.id,
                status=c.status,
                written=c.id in written,
                error=c.error,
            )
        return True

    def shutdown(self) -> None:
        """Deliveries still running get ``grace`` seconds (5 at most); what is left is handed
        back without spending an attempt (its late result is refused by the version check)."""
        if self.worker is None or not self._running:
            return
        self._deliveries_stop.set()
        # At most 5 s: a delivery handed back is sent again, and its idempotency key lets the
        # receiver drop the duplicate.
        deadline = time.monotonic() + min(self.settings.grace, 5.0)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        try:
            conn = self.connection()
            self._record(conn)
            left = list(self._running.values())
            if left:
                with translated():
                    claims.release(conn, [j.id for j in left], [j.row["version"] for j in left])
                self._running.clear()
        except Exception as e:  # the database is gone: recovery hands them back
            log.warning("alerts_release_failed", error=str(e).splitlines()[0] if str(e) else e)


def _run_alert(payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
    from pgsched.alerts.deliver import run_alert

    return run_alert(payload, ctx, stop)
