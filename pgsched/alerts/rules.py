"""Alert rules: what sends a notification (an event, or a threshold over the queue), what it may
filter on and how its notifications are grouped (storm control)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgsched.models import NoNul, QueueName, TaskTypeName, text_duration

EVENTS = (
    "task.dead_lettered",
    "task.retrying",
    "workflow.failed",
    "workflow.succeeded",
    "worker.dead",
    "schedule.misfired",
)
THRESHOLDS = (
    "ready_depth",
    "oldest_ready_age",
    "failure_rate",
    "no_live_worker",
    "dead_letter_size",
)
# What each kind of rule may filter on, and the event fields a rule may group by (storm
# control keys); the first is the default.
_TASK: dict[str, tuple[str, ...]] = {
    "filters": ("queue", "task_type", "workflow"),
    "keys": ("queue", "task_type", "workflow"),
}
RULE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "task.dead_lettered": _TASK,
    "task.retrying": _TASK,
    "workflow.failed": {"filters": ("workflow",), "keys": ("workflow",)},
    "workflow.succeeded": {"filters": ("workflow",), "keys": ("workflow",)},
    "worker.dead": {"filters": ("queue",), "keys": ("worker", "host")},
    "schedule.misfired": {"filters": ("queue", "task_type"), "keys": ("schedule", "queue")},
    "threshold": {"filters": ("queue", "task_type"), "keys": ("queue",)},
}


def _names(v: Any) -> Any:
    """A filter is one name or a list of names."""
    return [v] if isinstance(v, str) else v


class RuleDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    event: Literal[EVENTS] | None = None  # type: ignore[valid-type]
    threshold: Literal[THRESHOLDS] | None = None  # type: ignore[valid-type]
    # Threshold rules: the bound (a count; a duration for oldest_ready_age; a percentage for
    # failure_rate) and the window (how often it is evaluated, and failure_rate's span).
    above: float | None = None
    window: timedelta | None = None
    min_attempts: int = Field(1, ge=1, le=1_000_000)
    queue: list[QueueName] | None = None
    task_type: list[TaskTypeName] | None = None
    workflow: list[Annotated[str, Field(min_length=1, max_length=1000), NoNul]] | None = None
    group_by: str | None = None
    min_interval: timedelta = timedelta(minutes=1)
    channels: list[str] = Field(min_length=1, max_length=50)

    @field_validator("queue", "task_type", "workflow", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _names(v)

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v: Any) -> Any:
        return _names(v)

    @field_validator("window", "min_interval", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: Any) -> timedelta | None:
        td = text_duration(v, info.field_name)
        if td is not None and td > timedelta(days=7):
            raise ValueError("must be at most 7 days")
        if info.field_name == "window" and td is not None and td <= timedelta(0):
            raise ValueError("must be positive")
        return td

    @field_validator("above", mode="before")
    @classmethod
    def _above(cls, v: Any, info: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("not a number")
        if isinstance(v, str):
            s = v.strip()
            if s.endswith("%"):
                return s[:-1]
            if s and not re.match(r"^[-+0-9.eE]+$", s):  # a duration: oldest_ready_age
                td = text_duration(s, "above")
                return td.total_seconds() if td is not None else v
        return v

    @model_validator(mode="after")
    def _kind(self) -> RuleDef:
        if (self.event is None) == (self.threshold is None):
            raise ValueError("give event or threshold (one of them)")
        kind = self.kind
        if self.threshold is not None:
            if self.window is None:
                raise ValueError("window: a threshold rule needs a window (example: window: 5m)")
            above = 0.0 if self.above is None and self.threshold == "no_live_worker" else self.above
            if above is None:
                raise ValueError("above: a threshold rule needs a bound")
            if not math.isfinite(above) or above < 0 or above > 1e12:
                raise ValueError("above: must be a finite number from 0")
            if self.threshold == "failure_rate" and above > 100:
                raise ValueError("above: failure_rate is a percentage (0 to 100)")
            object.__setattr__(self, "above", float(above))
        else:
            for f in ("above", "window"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only threshold rules have one")
        if self.threshold != "failure_rate" and "min_attempts" in self.model_fields_set:
            raise ValueError("min_attempts: only failure_rate rules have one")
        allowed = RULE_FIELDS[kind]
        for f in ("queue", "task_type", "workflow"):
            if getattr(self, f) is not None and f not in allowed["filters"]:
                raise ValueError(f"{f}: {self.event or self.threshold} rules cannot filter by it")
        if self.threshold == "no_live_worker" and self.task_type is not None:
            raise ValueError("task_type: no_live_worker rules cannot filter by it")
        if self.group_by is not None and self.group_by not in (*allowed["keys"], "none"):
            raise ValueError(
                f"group_by: one of {', '.join((*allowed['keys'], 'none'))} for this rule"
            )
        return self

    @property
    def kind(self) -> str:
        return self.event or "threshold"

    @property
    def key_field(self) -> str:
        return self.group_by or RULE_FIELDS[self.kind]["keys"][0]

    def row(self) -> dict[str, Any]:
        """The columns this definition sets, as the database returns them."""
        return {
            "event": self.event,
            "threshold": self.threshold,
            "above": self.above,
            "time_window": self.window,
            "min_attempts": self.min_attempts,
            "queues": self.queue,
            "task_types": self.task_type,
            "workflows": self.workflow,
            "group_by": self.key_field,
            "min_interval": self.min_interval,
            "channels": list(self.channels),
        }
