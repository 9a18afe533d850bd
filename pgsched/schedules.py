"""Recurring schedules: definitions read from a file (pgsched.schedule_file says what one may
hold), synced into ``pgsched.schedules``, and the ticker that turns due ticks into tasks,
exactly once per tick however many processes tick.

    scheduler = Scheduler(dsn, Path("schedules.yaml"))   # applies the file (no prune)
    scheduler.start()                                      # background thread
    ...
    scheduler.stop()

Misfire (ticks that fell while nothing was ticking), decided when a scheduler finds a
schedule whose ``next_tick`` is in the past:

* ``skip``: fire only the latest due tick, and only if it is at most ``MISFIRE_GRACE`` late;
* ``once`` (default): fire one task, for the latest due tick, however late;
* ``all``: fire every missed tick, the most recent ``misfire_cap`` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import psycopg
import structlog
from psycopg.types.json import Jsonb

from pgsched.config import Settings
from pgsched.cron import TickRule
from pgsched.db import ADMIN_LOCK_NAMESPACE, connect, translated
from pgsched.errors import CronError, NotFound, UsageError
from pgsched.schedule_file import ScheduleDef, parse_schedules
from pgsched.sql import Q, Query
from pgsched.ticking import MAX_SLEEP, Ticking
from pgsched.worker.supervision import CrashHook

log = structlog.get_logger("pgsched.scheduler")

MISFIRE_GRACE = timedelta(seconds=30)


def load_schedules(path: Path | str) -> list[ScheduleDef]:
    """Read and validate a schedules file: every error names the file, line and schedule."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_schedules(text, str(path))


# -- syncing definitions into the table ----------------------------------------------------------


@dataclass
class ApplyReport:
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> changed fields
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the table, not in the file, no --prune

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept": self.kept,
        }


def apply_schedules(
    conn: psycopg.Connection[Any],
    defs: list[ScheduleDef],
    *,
    prune: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ApplyReport:
    """Sync definitions into the table in one transaction; ``dry_run`` only reports."""
    report = ApplyReport()
    with translated(conn), conn.transaction():
        Q.schedule_apply_lock.run(conn, {"ns": ADMIN_LOCK_NAMESPACE})
        current = {r["name"]: r for r in _dicts(conn, Q.schedule_rows)}
        db_now = _scalar(conn, Q.db_now, {"now": now})
        for d in defs:
            want = d.row()
            have = current.get(d.name)
            if have is None:
                report.added.append(d.name)
            else:
                diff = [k for k, v in want.items() if have[k] != v]
                if not diff:
                    report.unchanged.append(d.name)
                    continue
                report.changed[d.name] = diff
            if not dry_run:
                params = dict(want, name=d.name, payload=Jsonb(d.payload))
                params["next_tick"] = d.rule().next_after(db_now)
                Q.schedule_upsert.run(conn, params)
        extra = sorted(set(current) - {d.name for d in defs})
        if prune:
            report.removed = extra
            if extra and not dry_run:
                Q.schedule_delete.run(conn, {"names": extra})
        else:
            report.kept = extra
    return report


def list_schedules(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with translated(conn):
        return _dicts(conn, Q.schedule_rows)


def pause_schedule(conn: psycopg.Connection[Any], name: str) -> None:
    with translated(conn):
        if Q.schedule_pause.run(conn, {"name": name}) is None:
            raise NotFound(f"no schedule named {name!r}")


def resume_schedule(conn: psycopg.Connection[Any], name: str, now: datetime | None = None) -> None:
    with translated(conn), conn.transaction():
        row = _dict(conn, Q.schedule_by_name, {"name": name})
        if row is None:
            raise NotFound(f"no schedule named {name!r}")
        try:
            nxt = _rule(row).next_after(_scalar(conn, Q.db_now, {"now": now}))
        except CronError as e:
            raise UsageError(f"schedule {name!r}: {e}") from None
        Q.schedule_resume.run(conn, {"name": name, "next_tick": nxt})


# -- ticking -------------------------------------------------------------------------------------


def plan_ticks(
    rule: TickRule, next_tick: datetime | None, now: datetime, misfire: str, cap: int
) -> tuple[list[datetime], datetime]:
    """(ticks to fire now, the schedule's new next_tick) for a schedule due at ``next_tick``."""
    new_next = rule.next_after(now)
    if next_tick is None or next_tick > now:
        return [], new_next if next_tick is None else next_tick
    latest = rule.prev_at_or_before(now)
    if latest < next_tick:  # next_tick was off the rule's grid (edited by hand): fire it
        latest = next_tick
    if misfire == "all":
        return rule.latest(next_tick, now, cap) or [latest], new_next
    if misfire == "skip" and now - latest > MISFIRE_GRACE:
        return [], new_next
    return [latest], new_next


class Scheduler(Ticking):
    """Ticks every enabled schedule in the database; run as many as you like.

    ``clock``: a callable returning an aware datetime, for tests; default: the database's
    clock (so schedulers on hosts with skewed clocks agree)."""

    thread_name = "pgsched-scheduler"
    error_event = "scheduler_error"
    listen = Q.schedule_listen  # NOTIFY pgsched_schedules: a definition changed

    def __init__(
        self,
        dsn: str,
        path: Path | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        on_crash: CrashHook | None = None,
    ) -> None:
        super().__init__(dsn, settings=settings, clock=clock, on_crash=on_crash)
        self.defs = load_schedules(path) if path is not None else None
        self._bad: set[int] = set()

    def start(self) -> Self:
        """Apply the file (if any, without pruning) and tick in a background thread."""
        if self.defs is not None:
            self.apply()
        return super().start()

    def apply(self) -> ApplyReport:
        with connect(self.dsn, **self.settings.connect_args()) as c:
            return apply_schedules(c, self.defs or [], now=self.now())

    def look(self) -> float:
        """Fire what is due; sleep until the earliest next tick (at most poll_interval)."""
        self.tick_once()
        row = _dict(self.connection(), Q.schedule_next_wake, {"now": self.now()})
        cap = min(MAX_SLEEP, self.settings.poll_interval)
        if row is None or row["next_tick"] is None:
            return cap
        seconds = (row["next_tick"] - row["now"]).total_seconds()
        # Already due (another scheduler is advancing it, or its row is invalid): look again
        # soon without spinning.
        return cap if seconds >= cap else max(seconds, 0.2 if seconds <= 0 else 0.0)

    # -- one look --------------------------------------------------------------------------

    def tick_once(self, now: datetime | None = None) -> int:
        """Fire every due tick (per each schedule's misfire policy); returns tasks created."""
        conn = self.connection()
        now = now if now is not None else self.now()
        created = 0
        with translated():
            for row in _dicts(conn, Q.schedules_due, {"now": now}):
                try:
                    rule = _rule(row)
                except CronError as e:
                    if row["id"] not in self._bad:
                        log.warning("schedule_invalid", schedule=row["name"], error=str(e))
                        self._bad.add(row["id"])
                    continue
                ticks, new_next = plan_ticks(
                    rule, row["next_tick"], row["now"], row["misfire"], row["misfire_cap"]
                )
                res = _dict(
                    conn,
                    Q.schedule_fire,
                    {
                        "id": row["id"],
                        "expected": row["next_tick"],
                        "next_tick": new_next,
                        "ticks": ticks,
                        "now": now,
                    },
                )
                if res and res["created"]:
                    created += res["created"]
                    log.info(
                        "schedule_fired",
                        schedule=row["name"],
                        ticks=[t.isoformat() for t in ticks],
                        created=res["created"],
                    )
        return created


# -- helpers -------------------------------------------------------------------------------------


def _rule(row: dict[str, Any]) -> TickRule:
    return TickRule(cron=row["cron"], every=row["every"], timezone=row["timezone"] or "UTC")


def _dicts(conn: psycopg.Connection[Any], q: Query, params: Any = None) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = q.run(cur, params)
    return rows


def _dict(conn: psycopg.Connection[Any], q: Query, params: Any = None) -> dict[str, Any] | None:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        row: dict[str, Any] | None = q.run(cur, params)
    return row


def _scalar(conn: psycopg.Connection[Any], q: Query, params: Any = None) -> Any:
    from psycopg.rows import tuple_row

    with conn.cursor(row_factory=tuple_row) as cur:
        return q.run(cur, params)
