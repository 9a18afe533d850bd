"""A schedules file: what one schedule definition may say (ScheduleDef), and reading a list of
them from YAML, where every refusal names the source, the line and the schedule.

    schedules:
      - name: nightly-report
        cron: "0 3 * * *"
        timezone: Europe/Paris
        task_type: report
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgsched.cron import TickRule
from pgsched.errors import CronError, UsageError
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
