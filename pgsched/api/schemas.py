"""The HTTP API's request and response models. Field names are camelCase on the wire and
snake_case in Python (the names pgsched.client and pgsched.admin use); requests accept both, and
the alternative names other schedulers use (the alias table in docs/http.md) through
``validation_alias``. Limits are those of pgsched.models, so a request is refused with the
field's path before anything is written."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from pgsched.models import (
    MAX_ATTEMPTS_MAX,
    STATUSES,
    IdempotencyKey,
    MaxAttempts,
    Payload,
    PositiveSeconds,
    Priority,
    QueueName,
    RunAt,
    Seconds,
    TaskTypeName,
    builtin_type_name,
)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Out(BaseModel):
    """Responses: camelCase on the wire; extra columns are dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class TaskIn(ApiModel):
    """One task, with the limits and checks of TaskSpec's fields (pgsched.models).
    ``maxRetries``/``retries`` count retries (max_attempts = retries + 1); ``delaySeconds`` and
    ``scheduleAt`` are other names of a delay and of run_at."""

    task_type: TaskTypeName = Field(validation_alias=_alias("taskType", "task_type", "type"))
    payload: Payload = Field(default_factory=dict)
    queue: QueueName | None = None
    priority: Priority | None = None
    run_at: RunAt | None = Field(
        None, validation_alias=_alias("runAt", "run_at", "scheduleAt", "scheduledAt")
    )
    delay_seconds: Seconds | None = Field(
        None, validation_alias=_alias("delaySeconds", "delay_seconds")
    )
    max_attempts: MaxAttempts | None = Field(
        None, validation_alias=_alias("maxAttempts", "max_attempts")
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        le=MAX_ATTEMPTS_MAX - 1,
        validation_alias=_alias("maxRetries", "max_retries", "retries"),
    )
    timeout_seconds: PositiveSeconds | None = Field(
        None, validation_alias=_alias("timeoutSeconds", "timeout_seconds")
    )
    idempotency_key: IdempotencyKey | None = Field(
        None, validation_alias=_alias("idempotencyKey", "idempotency_key", "key")
    )

    @field_validator("task_type")
    @classmethod
    def _builtin(cls, v: str) -> str:
        return builtin_type_name(v)

    def options(self) -> dict[str, Any]:
        """Client.spec's options (the client's defaults fill what is missing)."""
        if self.max_attempts is not None and self.max_retries is not None:
            raise ValueError("maxAttempts and maxRetries: give one or the other")
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("scheduleAt/runAt and delaySeconds: give one or the other")
        out: dict[str, Any] = {}
        if self.queue is not None:
            out["queue"] = self.queue
        if self.priority is not None:
            out["priority"] = self.priority
        if self.run_at is not None:
            out["run_at"] = self.run_at
        if self.delay_seconds:
            out["delay"] = timedelta(seconds=self.delay_seconds)
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.max_retries is not None:
            out["max_attempts"] = self.max_retries + 1
        if self.timeout_seconds is not None:
            out["timeout"] = timedelta(seconds=self.timeout_seconds)
        if self.idempotency_key is not None:
            out["key"] = self.idempotency_key
        return out


class TaskBatchIn(ApiModel):
    tasks: list[TaskIn] = Field(min_length=1, max_length=10_000)


class RetryIn(ApiModel):
    attempts: MaxAttempts | None = None


class RequeueIn(ApiModel):
    queue: QueueName | None = None
    task_type: TaskTypeName | None = Field(None, validation_alias=_alias("taskType", "type"))
    attempts: MaxAttempts | None = None


class SchedulesIn(ApiModel):
    """Schedules as the YAML file lists them (pgsched.schedule_file.ScheduleDef fields)."""

    schedules: list[dict[str, Any]] = Field(max_length=10_000)
    prune: bool = False
    dry_run: bool = False


# -- responses -----------------------------------------------------------------------------------


class SubmitOut(Out):
    id: int
    created: bool = True
    status: str = "pending"


class BatchOut(Out):
    ids: list[int]


class Attempt(Out):
    attempt: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    duration_ms: float | None
    error: str | None


class TaskRow(Out):
    id: int
    queue: str
    task_type: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    assigned_worker: str | None
    last_error: str | None


class TaskOut(TaskRow):
    payload: Any
    result: Any = None
    progress: float | None = None
    checkpoint: Any = None
    timeout_seconds: float | None = None
    idempotency_key: str | None = None
    workflow_id: int | None = None
    workflow_name: str | None = None
    workflow_node: str | None = None
    cancel_requested: bool
    history: list[Attempt] = []


class TaskPage(Out):
    items: list[TaskRow]
    page: int | None = None
    size: int
    next_cursor: int | None = Field(
        None, description="Pass as ?cursor= for the next page; null on the last page"
    )


class CancelOut(Out):
    id: int
    status: Literal["cancelled", "cancel_requested"]


class RetryOut(Out):
    id: int
    status: str = "pending"
    max_attempts: int


class DagTask(Out):
    id: int
    name: str
    task_type: str
    status: str
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: Any = None
    assigned_worker: str | None
    cancel_requested: bool
    depends_on: list[str]
    layer: int


class DagOut(Out):
    id: int
    dag_id: int
    dag_name: str
    description: str | None
    status: str
    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    cancelled_tasks: int
    running_tasks: int
    created_at: datetime
    finished_at: datetime | None


class DagActionOut(Out):
    dag_id: int
    cancelled: int | None = None
    cancel_requested: int | None = None
    retried: int | None = None
    pending: int | None = None


class DlqEntry(Out):
    task_id: int
    dead_letter_id: int
    queue: str
    task_type: str
    payload: Any
    attempts: int
    last_error: str | None
    failed_at: datetime
    task_status: str | None


class RequeueOut(Out):
    requeued: list[int]


class PurgeOut(Out):
    deleted: int


class WorkerOut(Out):
    name: str
    host: str
    pid: int
    status: str
    queues: list[str] | None
    task_types: list[str] | None
    cpu_usage: float
    memory_usage: float
    current_task_count: int
    max_task_capacity: int
    last_heartbeat: datetime | None
    started_at: datetime | None
    heartbeat_age_s: float | None


class WorkerStatusOut(Out):
    name: str
    status: str


class ScheduleOut(Out):
    name: str
    cron: str | None
    every_seconds: float | None = None
    timezone: str
    task_type: str
    payload: Any
    queue: str
    priority: int
    max_attempts: int
    enabled: bool
    paused: bool
    misfire: str
    last_tick: datetime | None
    next_tick: datetime | None


class ApplyOut(Out):
    added: list[str]
    changed: dict[str, list[str]]
    removed: list[str]
    unchanged: list[str]
    kept: list[str]
    dry_run: bool


class Percentiles(Out):
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class StatsOut(Out):
    window_s: float
    counts: dict[str, dict[str, int]]
    oldest_ready: dict[str, dict[str, float]]
    live_workers: int
    dead_letter: int
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    throughput_per_s: float
    failure_rate: float
    duration_ms: Percentiles


class HealthOut(Out):
    status: Literal["UP", "DOWN"]
    database: str
    schema_revision: str | None = None
    live_workers: int | None = None
    error: str | None = None


class RecoveryOut(Out):
    dead_workers: list[str]
    tasks_recovered: list[dict[str, Any]]


class ErrorOut(BaseModel):
    error: str
    errors: list[dict[str, Any]] | None = None


STATUS_VALUES = STATUSES
