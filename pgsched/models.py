"""What a submission may contain, checked before any row is written (the database checks again)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgsched.errors import ValidationError

STATUSES = ("blocked", "pending", "running", "succeeded", "retrying", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
OUTCOMES = ("success", "failure", "timeout", "lost", "cancelled")
WORKER_STATUSES = ("active", "paused", "draining", "stopped", "dead")


# The limits the CHECK constraints of pgsched.tasks set. Every check of a task's fields reads
# them: TaskSpec, fits_common, the workflow and schedule specs, retry, @task.
TASK_TYPE_MAX = 200
QUEUE_MAX = 128
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_ATTEMPTS_MAX = 1000
# The longest duration a task row, a retry delay or a setting may hold: 100 years (365-day
# ones; the CHECKs of revision 0006 compare with interval '36500 days'). An interval and a
# timedelta hold far more, but now() plus it must stay a time that both PostgreSQL and Python
# can read (Python's datetime ends at 9999-12-31), and a wait of it must stay below
# threading.TIMEOUT_MAX.
DURATION_MAX_DAYS = 36500
DURATION_MAX_S = DURATION_MAX_DAYS * 86400.0


class TaskSpec(BaseModel):
    """One task to submit. Field limits mirror the CHECK constraints of ``pgsched.tasks``."""

    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(min_length=1, max_length=TASK_TYPE_MAX)
    payload: Any = Field(default_factory=dict)
    queue: str = Field("default", min_length=1, max_length=QUEUE_MAX)
    priority: int = Field(0, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    run_at: datetime | None = None
    delay: timedelta | None = None
    max_attempts: int = Field(3, ge=1, le=MAX_ATTEMPTS_MAX)
    timeout: timedelta | None = None
    idempotency_key: str | None = Field(None, min_length=1)
    backoff_base: timedelta | None = None
    backoff_cap: timedelta | None = None

    @field_validator("task_type", "queue", "idempotency_key")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("must not contain the NUL character")
        return v

    @field_validator("payload")
    @classmethod
    def _jsonb_storable(cls, v: Any) -> Any:
        # jsonb refuses \u0000 in any string; say so here rather than fail in the database.
        if has_nul(v):
            raise ValueError(PAYLOAD_NUL)
        return v

    @field_validator("run_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must include a time zone offset")
        return v

    @field_validator("timeout", "backoff_base", "backoff_cap")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v.total_seconds() <= 0:
            raise ValueError("must be positive")
        if v is not None and v > timedelta(days=DURATION_MAX_DAYS):  # the CHECKs of 0006
            raise ValueError("must be at most 100 years")
        return v

    @field_validator("delay")
    @classmethod
    def _not_negative(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v.total_seconds() < 0:
            raise ValueError("must not be negative")
        return v


PAYLOAD_NUL = "must not contain the NUL character (\\u0000): jsonb cannot store it"


def check_payload(v: Any, name: str = "payload") -> None:
    """The payload check of TaskSpec, for payloads submitted without one (submit_batch)."""
    if has_nul(v):
        raise ValidationError(f"{name}: {PAYLOAD_NUL}", "payload")


def fits_common(task_type: Any, payload: Any, queue: Any, priority: Any, max_attempts: Any) -> bool:
    """True when TaskSpec would take these values exactly as they are (the exact types, within
    its limits, no NUL), so Client.submit may skip building one."""
    return (
        type(task_type) is str
        and 0 < len(task_type) <= TASK_TYPE_MAX
        and "\x00" not in task_type
        and type(queue) is str
        and 0 < len(queue) <= QUEUE_MAX
        and "\x00" not in queue
        and type(priority) is int
        and PRIORITY_MIN <= priority <= PRIORITY_MAX
        and type(max_attempts) is int
        and 1 <= max_attempts <= MAX_ATTEMPTS_MAX
        and not has_nul(payload)
    )


def has_nul(v: Any) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(has_nul(k) or has_nul(x) for k, x in v.items())
    if isinstance(v, list | tuple):
        return any(has_nul(x) for x in v)
    return False


def make_spec(**fields: Any) -> TaskSpec:
    """Build a TaskSpec or raise a one-line ValidationError naming the first bad field."""
    from pydantic import ValidationError as PydanticError

    try:
        spec = TaskSpec(**{k: v for k, v in fields.items() if v is not None})
    except PydanticError as e:
        err = e.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "task"
        msg = err["msg"].removeprefix("Value error, ")
        raise ValidationError(f"{name}: {msg}", name) from None
    if spec.run_at is not None and spec.delay is not None:
        raise ValidationError("run_at and delay: give one or the other, not both", "run_at")
    return spec
