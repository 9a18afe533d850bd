"""Recurring schedules: definitions from YAML, synced into ``pgsched.schedules``, and the
ticker that turns due ticks into tasks, exactly once per tick however many processes tick.

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
from typing import Annotated, Any, Literal, Self

import psycopg
import structlog
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgsched.config import Settings
from pgsched.cron import TickRule
from pgsched.db import ADMIN_LOCK_NAMESPACE, connect, translated
from pgsched.errors import CronError, NotFound, UsageError
from pgsched.models import (
    JsonPayload,
    MaxAttempts,
    Name,
    NoNul,
    Priority,
    QueueName,
    TaskTypeName,
    TextDuration,
)
from pgsched.sql import Q, Query
from pgsched.ticking import MAX_SLEEP, Ticking
from pgsched.worker.supervision import CrashHook

log = structlog.get_logger("pgsched.scheduler")

MISFIRE_GRACE = timedelta(seconds=30)

# -- definitions ---------------------------------------------------------------------------------


MIN_EVERY = timedelta(seconds=1)


class ScheduleDef(BaseModel):
    """One schedule as written in YAML. Limits mirror the tasks table's CHECK constraints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    cron: str | None = None
    every: TextDuration | None = None
    timezone: Annotated[str, NoNul] = "UTC"
    task_type: TaskTypeName
    payload: JsonPayload = Field(default_factory=dict)
    queue: QueueName = "default"
    priority: Priority = 0
    max_attempts: MaxAttempts = 3
    timeout: TextDuration | None = None
    enabled: bool = True
    misfire: Literal["skip", "once", "all"] = "once"
    misfire_cap: int = Field(100, ge=1, le=10000)

    @field_validator("every")
    @classmethod
    def _every(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < MIN_EVERY:
            # the table's schedules_every_minimum says the same to a direct INSERT
            raise ValueError(f"must be at least {MIN_EVERY.total_seconds():g}s")
        return v

    @field_validator("cron", mode="before")
    @classmethod
    def _cron_text(cls, v: Any) -> Any:
        return v if v is None else str(v)

    @model_validator(mode="after")
    def _timing(self) -> ScheduleDef:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give cron or every (one of them)")
        self.rule()  # raises CronError for a bad expression or time zone
        return self

    def rule(self) -> TickRule:
        return TickRule(cron=self.cron, every=self.every, timezone=self.timezone)

    def row(self) -> dict[str, Any]:
        """The columns this definition sets, normalized as the database returns them."""
        return {
            "cron": self.rule().cron,
            "every": self.every,
            "timezone": self.timezone,
            "task_type": self.task_type,
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "enabled": self.enabled,
            "misfire": self.misfire,
            "misfire_cap": self.misfire_cap,
        }


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


def parse_schedules(text: str, source: str = "<schedules>") -> list[ScheduleDef]:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UsageError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise UsageError(f"{source}: nested too deeply to read") from None
    if root is None:
        return []
    items_node = root
    if isinstance(root, yaml.MappingNode) and isinstance(data, dict):
        extra = sorted(set(data) - {"schedules"})
        if extra:
            raise UsageError(f"{source}:{root.start_mark.line + 1}: unknown key {extra[0]!r}")
        items_node = next(v for k, v in root.value if k.value == "schedules")
        data = data.get("schedules") or []
    if not isinstance(data, list) or not isinstance(items_node, yaml.SequenceNode):
        raise UsageError(
            f"{source}:{root.start_mark.line + 1}: expected a list of schedules "
            "(or a 'schedules:' key holding one)"
        )
    out: list[ScheduleDef] = []
    seen: dict[str, int] = {}
    for node, item in zip(items_node.value, data, strict=True):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            raise UsageError(f"{source}:{line}: each schedule is a mapping with a name")
        lines = {
            k.value: (k.start_mark.line + 1, v.start_mark.line + 1)
            for k, v in getattr(node, "value", [])
            if isinstance(k, yaml.ScalarNode)
        }
        name = item.get("name")
        label = f"schedule {name!r}" if isinstance(name, str) and name else "schedule"
        sdef = _validate(item, lines, line, f"{source}:", label)
        if sdef.name in seen:
            raise UsageError(
                f"{source}:{lines.get('name', (line,))[0]}: {label}: duplicate name "
                f"(first defined on line {seen[sdef.name]})"
            )
        seen[sdef.name] = lines.get("name", (line,))[0]
        out.append(sdef)
    return out


def _validate(
    item: dict[str, Any], lines: dict[str, tuple[int, int]], line: int, src: str, label: str
) -> ScheduleDef:
    from pydantic import ValidationError as PydanticError

    unknown = [k for k in item if k not in ScheduleDef.model_fields]
    if unknown:
        k = unknown[0]
        raise UsageError(f"{src}{lines.get(str(k), (line,))[0]}: {label}: unknown key {k!r}")
    if "task_type" not in item:
        raise UsageError(f"{src}{line}: {label}: missing task_type")
    if "name" not in item:
        raise UsageError(f"{src}{line}: {label}: missing name")
    try:
        return ScheduleDef(**item)
    except CronError as e:
        at = lines.get("timezone" if "timezone" in str(e) else "cron", (line, line))[1]
        raise UsageError(f"{src}{at}: {label}: {e}") from None
    except PydanticError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, CronError):
            msg = str(cause)
            key = "timezone" if "timezone" in msg else ("cron" if item.get("cron") else "every")
        at = lines.get(key, (line, line))[1]
        nested = msg.startswith((key + ".", key + "["))  # the message names the place already
        prefix = f"{key}: " if key and key not in ("cron", "timezone") and not nested else ""
        raise UsageError(f"{src}{at}: {label}: {prefix}{msg}") from None


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
