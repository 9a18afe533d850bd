"""Human durations ('500ms', '30s', '5m', '2h', '1d', '1h30m') and instants (ISO-8601)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from pgsched.errors import ValidationError

# The longest duration a task row, a retry delay or a setting may hold: 100 years (365-day
# ones; the CHECKs of revision 0007 compare with interval '36500 days'). An interval and a
# timedelta hold far more, but now() plus it must stay a time that both PostgreSQL and Python
# can read (Python's datetime ends at 9999-12-31), and a wait of it must stay below
# threading.TIMEOUT_MAX.
DURATION_MAX_DAYS = 36500
DURATION_MAX_S = DURATION_MAX_DAYS * 86400.0
# The times a task may be set to run at (the CHECK tasks_run_at_range of revision 0007): finite,
# and far enough inside Python's datetime range (years 1..9999) that any time zone and the
# arithmetic of a read (ages, local time) stay within it.
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(9999, 1, 1, tzinfo=UTC)

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str, field: str = "duration") -> timedelta:
    """Parse '30s', '5m', '2h', '1h30m', '250ms' or a bare number of seconds."""
    s = str(text).strip().lower().replace(" ", "")
    if not s:
        raise ValidationError(f"{field}: empty duration", field)
    try:
        seconds = float(s)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m[1]) * _UNITS[m[2]]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise ValidationError(
                f"{field}: {text!r} is not a duration (examples: 30s, 5m, 2h, 1h30m, 250ms)", field
            ) from None
    if not math.isfinite(seconds):
        raise ValidationError(f"{field}: {text!r} is not a finite duration", field)
    if seconds < 0:
        raise ValidationError(f"{field}: must not be negative", field)
    # Checked before building the timedelta, which overflows past 999999999 days.
    if seconds > DURATION_MAX_S:
        raise ValidationError(f"{field}: {text!r} is longer than 100 years (the most)", field)
    return timedelta(seconds=seconds)


def parse_instant(text: str, field: str = "at") -> datetime:
    """Parse an ISO-8601 instant; a value without offset is taken as UTC."""
    s = str(text).strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValidationError(
            f"{field}: {text!r} is not an ISO-8601 time (example: 2026-01-31T09:30:00+01:00)",
            field,
        ) from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    check_instant(dt, field)
    return dt


def check_instant(dt: datetime, field: str = "at") -> None:
    """Refuse a time outside TIME_MIN..TIME_MAX (the range the tables' CHECKs allow)."""
    try:
        ok = TIME_MIN <= dt <= TIME_MAX
    except (TypeError, OverflowError):  # naive, or an offset that leaves datetime's range
        ok = False
    if not ok:
        raise ValidationError(
            f"{field}: {dt.isoformat()} is not between {TIME_MIN:%Y-%m-%d} and "
            f"{TIME_MAX:%Y-%m-%d} (UTC)",
            field,
        )


def format_duration(td: timedelta | float | None) -> str:
    if td is None:
        return "-"
    seconds = td.total_seconds() if isinstance(td, timedelta) else float(td)
    if not math.isfinite(seconds):  # a read of any row must print something
        return "-" if math.isnan(seconds) else ("∞" if seconds > 0 else "-∞")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"
