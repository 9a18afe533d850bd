"""The alert ticker: a thread (each `pgsched worker` runs one) that evaluates due threshold
rules and folds recorded events into notifications. Run as many as you like: each window is
evaluated once and each event folded once, whichever ticker gets there first.

It wakes on NOTIFY pgsched_alerts (a trigger recorded an event), when a folded (rule, key)
may send again, when a threshold rule is due, and at least every MAX_SLEEP seconds.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from pgsched.alerts import dispatch as dispatching
from pgsched.db import translated
from pgsched.sql import Q
from pgsched.ticking import MAX_SLEEP, Ticking

log = structlog.get_logger("pgsched.alerts")


class AlertTicker(Ticking):
    thread_name = "pgsched-alerts"
    error_event = "alerts_error"
    listen = Q.alert_listen

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
        self.tick_once()
        delay = dispatching.next_wake(self.connection(), self.now())
        return MAX_SLEEP if delay is None else delay
