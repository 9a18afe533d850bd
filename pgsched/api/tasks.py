"""The task routes under /api/v1 (submit, batch, list, get, cancel, retry) and the paths other
schedulers use for them (pgsched.api.app.ALIASES)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from pgsched.api import schemas as s
from pgsched.api.auth import Principal
from pgsched.api.deps import PAGE_MAX, AdminScope, Read, Service, Submit, Svc, check_id
from pgsched.errors import ValidationError
from pgsched.models import STATUSES, builtin_type_name

v1 = APIRouter(prefix="/api/v1")
aliases = APIRouter(include_in_schema=True, tags=["aliases"])


def _submit(svc: Service, body: s.TaskIn) -> s.SubmitOut:
    try:
        options = body.options()
    except ValueError as e:
        raise ValidationError(str(e), None) from None
    spec = svc.client.spec(body.task_type, body.payload, **options)
    task_id, created = svc.client.submit_spec(spec)
    return s.SubmitOut(id=task_id, created=created)


@v1.post("/tasks", status_code=201, response_model=s.SubmitOut, tags=["tasks"])
def submit_task(body: s.TaskIn, svc: Svc, _: Principal = Submit) -> s.SubmitOut:
    """Submit one task (aliases: POST /api/tasks, POST /tasks, POST /tasks/schedule)."""
    return _submit(svc, body)


aliases.post("/api/tasks", status_code=201, response_model=s.SubmitOut)(submit_task)
aliases.post("/tasks", status_code=201, response_model=s.SubmitOut)(submit_task)
aliases.post("/tasks/schedule", status_code=201, response_model=s.SubmitOut)(submit_task)


@v1.post("/tasks/batch", status_code=201, response_model=s.BatchOut, tags=["tasks"])
def submit_tasks(body: s.TaskBatchIn, svc: Svc, _: Principal = Submit) -> s.BatchOut:
    """Submit many tasks in one statement; ids in the order given."""
    from pgsched.models import TaskSpec

    specs: list[TaskSpec] = []
    for i, t in enumerate(body.tasks):
        try:
            options = t.options()
            specs.append(svc.client.spec(t.task_type, t.payload, **options))
        except ValueError as e:
            raise ValidationError(f"tasks.{i}: {e}", f"tasks.{i}") from None
        except ValidationError as e:
            raise ValidationError(f"tasks.{i}.{e}", f"tasks.{i}.{e.field}") from None
    if any(sp.delay for sp in specs):
        now = _utcnow()
        specs = [
            sp.model_copy(update={"run_at": now + sp.delay, "delay": None}) if sp.delay else sp
            for sp in specs
        ]
    return s.BatchOut(ids=svc.client.submit_many(specs))


def _utcnow() -> datetime:
    return datetime.now(UTC)


@v1.get("/tasks", response_model=s.TaskPage, tags=["tasks"])
def list_tasks(
    svc: Svc,
    status: Annotated[str | None, Query(description="One of " + ", ".join(STATUSES))] = None,
    type: Annotated[str | None, Query(max_length=200, description="Task type")] = None,
    queue: Annotated[str | None, Query(max_length=128)] = None,
    page: Annotated[int | None, Query(ge=0, le=1_000_000, description="Page number")] = None,
    size: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Tasks per page")] = 20,
    cursor: Annotated[
        int | None, Query(ge=1, description="nextCursor of the previous page (keyset)")
    ] = None,
    _: Principal = Read,
) -> s.TaskPage:
    """Tasks newest first, by page number (``page``/``size``) or keyset (``cursor``)."""
    st = status.lower() if status is not None else None
    if st is not None and st not in STATUSES:
        raise RequestValidationError(
            [{"type": "enum", "loc": ("query", "status"), "msg": f"not one of {STATUSES}"}]
        )
    if page is not None and cursor is not None:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": "give page or cursor"}]
        )
    task_type = builtin_type_name(type) if type else None
    rows = svc.client.list(
        status=st,
        queue=queue,
        task_type=task_type,
        limit=size,
        before=cursor,
        offset=(page or 0) * size,
    )
    nxt = rows[-1]["id"] if len(rows) == size else None
    return s.TaskPage(items=rows, page=page, size=size, next_cursor=nxt)  # type: ignore[arg-type]


aliases.get("/tasks", response_model=s.TaskPage)(list_tasks)


def _task_out(row: dict[str, Any]) -> s.TaskOut:
    timeout = row.get("timeout")
    row["timeout_seconds"] = timeout.total_seconds() if timeout is not None else None
    return s.TaskOut.model_validate(row)


@v1.get("/tasks/{task_id}", response_model=s.TaskOut, tags=["tasks"])
def get_task(task_id: int, svc: Svc, _: Principal = Read) -> s.TaskOut:
    """One task with its attempts (alias: GET /tasks/{id})."""
    check_id(task_id)
    return _task_out(svc.client.get(task_id))


aliases.get("/tasks/{task_id}", response_model=s.TaskOut)(get_task)


@v1.delete("/tasks/{task_id}", response_model=s.CancelOut, tags=["tasks"])
def cancel_task(task_id: int, svc: Svc, _: Principal = AdminScope) -> s.CancelOut:
    """Cancel: at once if it has not started, else its worker is asked to stop it
    (alias: DELETE /tasks/{id})."""
    check_id(task_id)
    return s.CancelOut(id=task_id, status=svc.client.cancel(task_id))  # type: ignore[arg-type]


aliases.delete("/tasks/{task_id}", response_model=s.CancelOut)(cancel_task)


@v1.post("/tasks/{task_id}/retry", response_model=s.RetryOut, tags=["tasks"])
def retry_task(
    task_id: int, svc: Svc, body: s.RetryIn | None = None, _: Principal = AdminScope
) -> s.RetryOut:
    """Run a failed or cancelled task again with ``attempts`` more tries."""
    check_id(task_id)
    more = body.attempts if body is not None else None
    return s.RetryOut(id=task_id, max_attempts=svc.client.retry(task_id, attempts=more))
