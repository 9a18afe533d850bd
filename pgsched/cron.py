"""Tick computation for schedules: cron expressions (through cronsim) and fixed intervals.

A tick is an absolute instant (stored as timestamptz). Cron fields are read in the schedule's
IANA time zone; cronsim follows Debian cron on daylight-saving changes:

* spring forward (a local hour is skipped): a job whose hour field names the skipped hour runs
  once, at the first instant after the gap (``30 2 * * *`` runs at 03:00 that day); jobs with a
  wildcard hour simply have no tick in the hour that does not exist;
* fall back (a local hour repeats): a job with a fixed hour runs once, in the first occurrence
  of the hour (``30 2 * * *`` runs at 02:30 summer time, not again at 02:30 winter time); jobs
  with a wildcard hour (``30 * * * *``) run in both occurrences, since both are real hours.

``every`` schedules ignore the time zone: their ticks are the multiples of the interval since
the Unix epoch (UTC), so every process computes the same grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pgsched.errors import CronError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def normalize_cron(expr: str) -> str:
    """The expression cronsim evaluates: aliases expanded, whitespace collapsed. Five fields
    (minute hour day month weekday) or six with a leading seconds field."""
    text = " ".join(str(expr).split())
    text = ALIASES.get(text.lower(), text)
    if len(text.split()) not in (5, 6):
        raise CronError(
            f"invalid cron {expr!r}: expected 5 fields (6 with seconds first) "
            "or @hourly/@daily/@weekly/@monthly"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise CronError(f"invalid cron {expr!r}: {str(e).lower()}") from None
    return text


def zone(name: str) -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown timezone {name!r}") from None


@dataclass(frozen=True)
class TickRule:
    """When a schedule fires: ``cron`` (in ``timezone``) or ``every``, exactly one of them."""

    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise CronError("give cron or every (one of them)")
        if self.every is not None and self.every <= timedelta(0):
            raise CronError("every: must be positive")
        if self.cron is not None:
            object.__setattr__(self, "cron", normalize_cron(self.cron))
        zone(self.timezone)

    # -- single steps ------------------------------------------------------------------------

    def next_after(self, when: datetime) -> datetime:
        """The first tick strictly after ``when`` (an aware datetime), in UTC."""
        when = _aware(when)
        if self.every is not None:
            step = _micros(self.every)
            n = _micros(when - EPOCH) // step + 1
            return EPOCH + timedelta(microseconds=n * step)
        it = CronSim(self.cron, when.astimezone(zone(self.timezone)))  # type: ignore[arg-type]
        return next(it).astimezone(UTC)

    def prev_at_or_before(self, when: datetime) -> datetime:
        """The last tick at or before ``when``, in UTC."""
        when = _aware(when)
        if self.every is not None:
            step = _micros(self.every)
            n = _micros(when - EPOCH) // step
            return EPOCH + timedelta(microseconds=n * step)
        local = (when + timedelta(microseconds=1)).astimezone(zone(self.timezone))
        it = CronSim(self.cron, local, reverse=True)  # type: ignore[arg-type]
        return next(it).astimezone(UTC)

    # -- ranges ------------------------------------------------------------------------------

    def iter_from(self, start: datetime) -> Iterator[datetime]:
        """Ticks at or after ``start``, ascending."""
        t = self.next_after(_aware(start) - timedelta(microseconds=1))
        while True:
            yield t
            t = self.next_after(t)

    def latest(self, first: datetime, now: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` most recent ticks in [first, now], ascending."""
        out: list[datetime] = []
        t = self.prev_at_or_before(now)
        while t >= first and len(out) < limit:
            out.append(t)
            t = self.prev_at_or_before(t - timedelta(microseconds=1))
        return out[::-1]


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    return dt


def _micros(td: timedelta) -> int:
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
