"""The alert ticker: a thread (each `pgsched worker` runs one) that evaluates due threshold
rules and folds recorded events into notifications. Run as many as you like: each window is
evaluated once and each event folded once, whichever ticker gets there first.

It wakes on NOTIFY pgsched_alerts (a trigger recorded an event), when a folded (rule, key)
may send again, when a threshold rule is due, and at least every MAX_SLEEP seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg
import structlog

from pgsched.alerts import dispatch as dispatching
from pgsched.config import Settings
from pgsched.db import connect, translated
from pgsched.sql import Q
from pgsched.worker.supervision import CrashHook, guarded

log = structlog.get_logger("pgsched.alerts")

MAX_SLEEP = 5.0


class AlertTicker:
    """``clock``: a callable returning an aware datetime, for tests; default: the database's."""

    def __init__(
        self,
        dsn: str,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        on_crash: CrashHook | None = None,
    ) -> None:
        self.dsn = dsn
        # Told if the ticking thread dies (`pgsched worker` then stops, non-zero).
        self.on_crash = on_crash
        self.settings = settings or Settings()
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None

    def start(self) -> AlertTicker:
        self._stop.clear()
        self._thread = threading.Thread(
            target=guarded(self.run, self.on_crash), name="pgsched-alerts", daemon=True
        )
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, timeout=self.settings.connect_timeout)
            Q.alert_listen.run(self._conn)
        return self._conn

    def tick_once(self, now: datetime | None = None) -> list[int]:
        """Evaluate due thresholds, then fold due events; the notifications made."""
        conn = self._connection()
        now = now if now is not None else (self.clock() if self.clock else None)
        with translated():
            events = dispatching.evaluate_thresholds(
                conn, now, heartbeat_timeout=self.settings.heartbeat_timeout
            )
            made = dispatching.dispatch(conn, now)
        if events or made:
            log.info("alerts_dispatched", threshold_events=events, notifications=len(made))
        return made

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.tick_once()
                delay = dispatching.next_wake(
                    self._connection(), self.clock() if self.clock else None
                )
                delay = MAX_SLEEP if delay is None else min(MAX_SLEEP, max(delay, 0.05))
                backoff = 0.5
                self._wait(delay)  # reads notifications: a lost connection surfaces here too
            except Exception as e:  # keep ticking through a lost connection
                log.warning("alerts_error", error=str(e).splitlines()[0] if str(e) else repr(e))
                self._close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_SLEEP)
        self._close()

    def _wait(self, delay: float) -> None:
        conn = self._conn
        deadline = time.monotonic() + delay
        while conn is not None and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if any(True for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1)):
                for _ in conn.notifies(timeout=0.01):  # drain the burst, then look
                    pass
                return
