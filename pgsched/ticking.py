"""A service thread that looks at the database, sleeps until its next look (or until a
notification on the channel it listens to), and keeps looking through a lost connection.

The scheduler (schedules' ticks) and the alert ticker (threshold rules and the event outbox)
are two of them. `pgsched worker` runs them beside its worker and is told, through
``on_crash``, if one dies of something other than the database (the worker then stops,
non-zero); a lost connection is logged and retried with a backoff up to MAX_SLEEP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Self

import psycopg
import structlog
from psycopg.rows import DictRow

from pgsched.config import Settings
from pgsched.db import connect
from pgsched.sql import Query
from pgsched.worker.supervision import CrashHook, guarded

log = structlog.get_logger("pgsched.ticking")

MAX_SLEEP = 5.0  # seconds between looks at the most, and the longest backoff


class Ticking:
    """Subclasses name their thread, their log event for a failed look and the statement that
    LISTENs, and implement look(). ``clock``: a callable returning an aware datetime, for tests
    (None: the database's clock, so services on hosts with skewed clocks agree)."""

    thread_name: ClassVar[str]
    error_event: ClassVar[str]
    listen: ClassVar[Query]  # the statement that LISTENs on the service's channel

    def __init__(
        self,
        dsn: str,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        on_crash: CrashHook | None = None,
    ) -> None:
        self.dsn = dsn
        self.settings = settings or Settings()
        self.clock = clock
        self.on_crash = on_crash
        self._stop = threading.Event()
        self._nudged = threading.Event()
        self.notified = False  # a notification ended the last wait (look() clears it)
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[DictRow] | None = None

    def look(self) -> float:
        """One look at the database: act on what is due; seconds until the next look."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Called on the service's thread once its loop ends, before its connection closes."""

    def nudge(self) -> None:
        """Look again now (from another thread: something the service waits for happened)."""
        self._nudged.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        self._stop.clear()
        self._thread = threading.Thread(
            target=guarded(self.run, self.on_crash), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask run() to return after its current look (safe from a signal handler)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        """The service's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def now(self) -> datetime | None:
        return self.clock() if self.clock is not None else None

    def connection(self) -> psycopg.Connection[DictRow]:
        """The service's connection (autocommit), listening on its channel."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, **self.settings.connect_args())
            self.listen.run(self._conn)
        return self._conn

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Look until stop(). A failed look or wait (a lost connection, a restarted server)
        is logged; the next look comes after a backoff, on a new connection."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                delay = self.look()
                backoff = 0.5
                self._wait(min(MAX_SLEEP, max(delay, 0.05)))
            except Exception as e:
                log.warning(self.error_event, error=str(e).splitlines()[0] if str(e) else repr(e))
                self.close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_SLEEP)
        self.shutdown()
        self.close()

    def _wait(self, delay: float) -> None:
        """Until ``delay`` passes, stop() or nudge() is asked or a notification comes (then
        the rest of its burst is read, so a burst makes one look). A nudge is seen within
        0.25 s."""
        conn = self._conn
        deadline = time.monotonic() + delay
        while conn is not None and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._nudged.is_set():
                self._nudged.clear()
                return
            if any(True for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1)):
                for _ in conn.notifies(timeout=0.01):
                    pass
                self.notified = True
                return
