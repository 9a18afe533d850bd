"""The claimer: the claim thread's loop, on the claim connection.

It claims batches while the worker has free slots and hands them to the executor. A busy
worker (its last claim found something) claims again as slots free up, in batches: it waits
for a quarter of its slots (or of batch_size) before it claims again. An idle worker follows
the waker rule (waker.py), whose steps the claimer carries out: it claims, tries the waker
lock, or waits, listening on its claim connection while it is the waker so a notification
wakes it on the very backend that runs the claim, or, not the waker, polls for tasks left
behind every poll_interval. A burst worker takes no part in the role:
once idle it looks again every 10 ms and exits when nothing it could run is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql as psql
from psycopg.rows import DictRow

from pgsched.config import Settings
from pgsched.errors import DatabaseUnavailable
from pgsched.sql import Q
from pgsched.worker import claim as claims
from pgsched.worker.completer import Completer
from pgsched.worker.connections import Connections
from pgsched.worker.control import Control
from pgsched.worker.executor import Executor
from pgsched.worker.identity import Identity
from pgsched.worker.wake import Wake
from pgsched.worker.waker import Do, Role, Waker

BURST_LOOK_AGAIN = 0.01  # seconds between a burst worker's claims once it is idle


class Claimer:
    def __init__(
        self,
        me: Identity,
        settings: Settings,
        connections: Connections,
        waker: Waker,
        wake: Wake,
        executor: Executor,
        completer: Completer,
        control: Control,
        emit: Callable[..., None],
        stopping: threading.Event,
        burst: bool,
    ) -> None:
        self.me = me
        self.settings = settings
        self._connections = connections
        self._waker = waker
        self._wake = wake
        self._executor = executor
        self._completer = completer
        self._control = control
        self._emit = emit
        self._stopping = stopping
        self._burst = burst
        self._low_water = max(1, min(me.concurrency, settings.batch_size) // 4)
        self._idle = False  # the last claim found nothing (or the worker is paused)
        self._burst_at = 0.0  # a burst worker's next claim once idle
        self._burst_check = False  # a burst worker's empty claim: is anything left it could run?
        self._error_delay = 0.05

    def run(self) -> None:
        """Claim until the worker stops (or a burst worker is done)."""
        conn: psycopg.Connection[DictRow] | None = None
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    if conn is None or conn.closed:
                        conn = self._connections.claim(self._on_notify)
                        self._waker.listen_done(False)
                        self._hand_back_unknown(conn)
                    if not self._turn(conn):
                        return
                except (psycopg.OperationalError, DatabaseUnavailable) as e:
                    # DatabaseUnavailable: the reconnect found no server yet (a restart): retry.
                    self._emit("connection_lost", "warning", connection="claim", error=str(e))
                    self._waker.claim_connection_lost()  # the direct connection hears it all
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stopping.wait(self._error_delay)
                    self._error_delay = min(self._error_delay * 2, 2.0)
        finally:
            if conn is not None:
                conn.close()

    def _turn(self, conn: psycopg.Connection[DictRow]) -> bool:
        """One pass of the loop: claim, or wait for a reason to. False: a burst worker is done."""
        control = self._control
        if control.paused:
            if self._waker.paused():
                control.release_waker_lock(handoff=False)
            self._listen(conn, False)
            self._idle = True
            self._wake.wait(1.0)
            return True
        running = self._executor.running
        free = min(control.capacity - running, self.me.concurrency)
        if free <= 0 or self._completer.backlog > 2 * self.settings.batch_size:
            self._wake.wait(0.5)
            return True
        if not self._idle and free < min(self._low_water, control.capacity) and running:
            # Busy: wait for a few free slots so claims stay batches, not single rows.
            self._wake.wait(0.005)
            return True
        if self._idle and not self._idle_step(conn):
            return True
        return self._claim(conn, min(free, self.settings.batch_size))

    def _idle_step(self, conn: psycopg.Connection[DictRow]) -> bool:
        """An idle worker's step before it claims. True: claim now."""
        now = time.monotonic()
        if self._burst:
            left = self._burst_at - now
            if left > 0:
                self._wake.wait(left)
                return False
            return True
        step = self._waker.next_step(now)
        if step.do is Do.CLAIM:
            if self._waker.role is Role.WAKER:
                self._listen(conn, True)  # first: what is inserted after the claim wakes it
            return True
        if step.do is Do.POLL:
            return claims.left_behind(
                conn,
                queues=self.me.queues,
                task_types=self.me.task_types,
                age=self.settings.poll_interval / 2,
            )
        if step.do is Do.TRY_LOCK:
            got = self._control.try_waker_lock()
            self._waker.lock_tried(got, time.monotonic(), claim_now=True)
        elif step.listen:
            self._waker_wait(conn, step.timeout)
        else:
            self._listen(conn, False)
            self._wake.wait(step.timeout)
        return False

    def _claim(self, conn: psycopg.Connection[DictRow], n: int) -> bool:
        self._waker.claiming()
        s = self.settings
        rows = claims.claim(
            conn,
            worker=self.me.name,
            queues=self.me.queues,
            task_types=self.me.task_types,
            slots=n,
            weighted=self.me.weighted,
            cpu_ceiling=s.cpu_ceiling,
            memory_ceiling=s.memory_ceiling,
        )
        self._error_delay = 0.05
        self._emit("claim_ran", "debug", asked=n, got=len(rows))
        self._executor.run(rows)
        if rows:
            # Work was there, and more may be: a batch cut short by load weighting says
            # nothing about what is left, so the worker stays busy and claims again as slots
            # free up; only an empty claim makes it idle (a queue that runs dry costs one
            # extra, empty, claim). Going idle on any short batch would leave a large fleet
            # on the fallback poll.
            self._idle = False
            self._burst_check = False
            if self._waker.claimed(len(rows), n):
                self._control.release_waker_lock(handoff=True)
            return True
        self._idle = True
        return self._after_empty_claim(conn)

    def _after_empty_claim(self, conn: psycopg.Connection[DictRow]) -> bool:
        """The worker is idle: set its next claim. False: a burst worker is done."""
        s = self.settings
        if self._burst:
            if not self._executor.running and not self._completer.backlog:
                if self._burst_check and self._burst_done(conn):
                    self._emit("worker_burst_done")
                    return False
                self._burst_check = True
            self._burst_at = time.monotonic() + BURST_LOOK_AGAIN
            return True
        if self._waker.wants_lock_after_empty_claim():
            got = self._control.try_waker_lock()
            self._waker.lock_tried(got, time.monotonic(), claim_now=False)
        if self._waker.role is Role.WAKER:
            due = claims.next_due_in(
                conn, queues=self.me.queues, task_types=self.me.task_types, horizon=s.poll_interval
            )
            wait = s.poll_interval if due is None else min(max(due, 0.0), s.poll_interval)
            self._waker.set_timer(time.monotonic() + wait)
        return True

    def _burst_done(self, conn: psycopg.Connection[DictRow]) -> bool:
        """After two empty claims in a row with nothing running: a burst worker is done only
        if it may claim (active, under its ceilings) and nothing it could run is ready or due
        within poll_interval. A claim cut to nothing by a pause or a ceiling is not the end."""
        s = self.settings
        may_claim = claims.claim_limit(
            conn,
            worker=self.me.name,
            weighted=self.me.weighted,
            cpu_ceiling=s.cpu_ceiling,
            memory_ceiling=s.memory_ceiling,
        )
        if not may_claim:
            self._wake.wait(min(0.5, s.heartbeat_interval))  # a new load sample
            return False
        due = claims.next_due_in(
            conn, queues=self.me.queues, task_types=self.me.task_types, horizon=s.poll_interval
        )
        if due is not None:
            self._wake.wait(max(0.0, min(due, s.poll_interval)))
            return False
        return True

    # -- the waker's wait on the claim connection -----------------------------------------------

    def _on_notify(self, n: psycopg.Notify) -> None:
        if n.channel == "pgsched" and self._waker.heard(
            n.payload, self.me.queues, on_claim_connection=True
        ):
            self._wake.set()

    def _listen(self, conn: psycopg.Connection[DictRow], on: bool) -> None:
        """LISTEN (or stop) on the claim connection. Only the waker listens there: every
        listening backend is signalled for each notification, so an idle fleet listens on
        one connection per worker, plus one."""
        if on != self._waker.listening and self._connections.claim_listens:
            self._waker.listen_changing(on)
            conn.execute(
                psql.SQL("LISTEN {}" if on else "UNLISTEN {}").format(psql.Identifier("pgsched"))
            )
            self._waker.listen_done(on)

    def _waker_wait(self, conn: psycopg.Connection[DictRow], timeout: float) -> None:
        """The idle waker's wait: for the alarm, or a notification on the claim connection,
        which it then claims on at once, whatever the control thread is running on the direct
        connection meanwhile (a prune batch, recovery, a heartbeat waiting on a lock)."""
        if not self._connections.claim_listens:
            self._wake.wait(timeout)
            return
        self._listen(conn, True)  # a notification it brought is handled already
        if self._waker.notified or self._wake.wait(timeout, sock=conn.fileno()):
            return
        pgconn = conn.pgconn
        pgconn.consume_input()
        handler = pgconn.notify_handler  # psycopg's, which calls self._on_notify
        assert handler is not None  # psycopg installs it on every connection it makes
        while (pgn := pgconn.notifies()) is not None:
            handler(pgn)
        if pgconn.status != psycopg.pq.ConnStatus.OK:
            raise psycopg.OperationalError("claim connection lost")

    def _hand_back_unknown(self, conn: psycopg.Connection[DictRow]) -> None:
        """A claim may have committed while its answer was lost with the connection: hand back
        running tasks of ours that this process does not know about."""
        self._completer.flush(timeout=30)  # finished ones are written (or refused) first
        rows = Q.owned_running.run(conn, {"worker": self.me.name})
        known = self._executor.running_ids()
        unknown = [r for r in rows if r["id"] not in known]
        if unknown:
            claims.release(conn, [r["id"] for r in unknown], [r["version"] for r in unknown])
            self._emit("tasks_handed_back", "warning", task_ids=[r["id"] for r in unknown])
