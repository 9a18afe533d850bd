"""The operator's routes under /api/v1: workflows (dags), the dead letter, workers, schedules
and statistics, each over the pgsched.admin.Admin method of the same name."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError as PydanticError

from pgsched.api import schemas as s
from pgsched.api.auth import Principal
from pgsched.api.deps import PAGE_MAX, AdminScope, Hours, Read, Submit, Svc, check_id

v1 = APIRouter(prefix="/api/v1")

# -- workflows (dags) ------------------------------------------------------------------------------


@v1.post("/dags", status_code=201, response_model=s.DagOut, tags=["dags"])
def submit_dag(body: dict[str, Any], svc: Svc, _: Principal = Submit) -> s.DagOut:
    """Submit a workflow: the native shape (name, tasks with task_type and depends_on) or the
    dagName/taskName/type/dependencies shape, with an optional description. Unknown
    dependencies and cycles are refused, naming the tasks."""
    wf_id = svc.admin.submit_workflow(body)
    return _dag_out(svc.admin.workflow_summary(wf_id))


def _dag_out(row: dict[str, Any]) -> s.DagOut:
    return s.DagOut.model_validate({**row, "dag_id": row["id"], "dag_name": row["name"]})


@v1.get("/dags/{dag_id}", response_model=s.DagOut, tags=["dags"])
def get_dag(dag_id: int, svc: Svc, _: Principal = Read) -> s.DagOut:
    check_id(dag_id, "dag_id")
    return _dag_out(svc.admin.workflow_summary(dag_id))


@v1.get("/dags/{dag_id}/tasks", response_model=list[s.DagTask], tags=["dags"])
def get_dag_tasks(dag_id: int, svc: Svc, _: Principal = Read) -> list[s.DagTask]:
    check_id(dag_id, "dag_id")
    return [s.DagTask.model_validate(t) for t in svc.admin.workflow_tasks(dag_id)]


@v1.post("/dags/{dag_id}/cancel", response_model=s.DagActionOut, tags=["dags"])
def cancel_dag(dag_id: int, svc: Svc, _: Principal = AdminScope) -> s.DagActionOut:
    check_id(dag_id, "dag_id")
    return s.DagActionOut(dag_id=dag_id, **svc.admin.cancel_workflow(dag_id))


@v1.post("/dags/{dag_id}/retry", response_model=s.DagActionOut, tags=["dags"])
def retry_dag(
    dag_id: int, svc: Svc, body: s.RetryIn | None = None, _: Principal = AdminScope
) -> s.DagActionOut:
    check_id(dag_id, "dag_id")
    more = body.attempts if body is not None else None
    return s.DagActionOut(dag_id=dag_id, **svc.admin.retry_workflow(dag_id, attempts=more))


# -- dead letter ---------------------------------------------------------------------------------


@v1.get("/dead-letter", response_model=list[s.DlqEntry], tags=["dead letter"])
def list_dead_letter(
    svc: Svc,
    queue: Annotated[str | None, Query(max_length=128)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
    _: Principal = Read,
) -> list[s.DlqEntry]:
    rows = svc.admin.dlq_list(queue=queue, task_type=type, limit=limit)
    return [s.DlqEntry.model_validate(r) for r in rows]


@v1.post("/dead-letter/{task_id}/requeue", response_model=s.RetryOut, tags=["dead letter"])
def requeue_one(
    task_id: int, svc: Svc, body: s.RetryIn | None = None, _: Principal = AdminScope
) -> s.RetryOut:
    check_id(task_id)
    more = body.attempts if body is not None else None
    return s.RetryOut(id=task_id, max_attempts=svc.admin.dlq_requeue(task_id, attempts=more))


@v1.post("/dead-letter/requeue", response_model=s.RequeueOut, tags=["dead letter"])
def requeue_all(body: s.RequeueIn, svc: Svc, _: Principal = AdminScope) -> s.RequeueOut:
    """Requeue every entry matching the filters (none: all of them)."""
    ids = svc.admin.dlq_requeue_all(
        queue=body.queue, task_type=body.task_type, attempts=body.attempts
    )
    return s.RequeueOut(requeued=ids)


@v1.delete("/dead-letter", response_model=s.PurgeOut, tags=["dead letter"])
def purge_dead_letter(
    svc: Svc,
    queue: Annotated[str | None, Query(max_length=128)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    older_than_seconds: Annotated[
        float | None, Query(alias="olderThanSeconds", ge=0, le=100 * 366 * 86400)
    ] = None,
    _: Principal = AdminScope,
) -> s.PurgeOut:
    older = timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    n = svc.admin.dlq_purge(older_than=older, queue=queue, task_type=type)
    return s.PurgeOut(deleted=n)


# -- workers -------------------------------------------------------------------------------------


@v1.get("/workers", response_model=list[s.WorkerOut], tags=["workers"])
def list_workers(
    svc: Svc, all: Annotated[bool, Query()] = False, _: Principal = Read
) -> list[s.WorkerOut]:
    return [s.WorkerOut.model_validate(w) for w in svc.admin.workers(all_=all)]


@v1.post("/workers/{name}/pause", response_model=s.WorkerStatusOut, tags=["workers"])
def pause_worker(name: str, svc: Svc, _: Principal = AdminScope) -> s.WorkerStatusOut:
    return s.WorkerStatusOut.model_validate(svc.admin.pause_worker(name))


@v1.post("/workers/{name}/resume", response_model=s.WorkerStatusOut, tags=["workers"])
def resume_worker(name: str, svc: Svc, _: Principal = AdminScope) -> s.WorkerStatusOut:
    return s.WorkerStatusOut.model_validate(svc.admin.resume_worker(name))


# -- schedules -----------------------------------------------------------------------------------


def _schedule_out(r: dict[str, Any]) -> s.ScheduleOut:
    every = r.get("every")
    return s.ScheduleOut.model_validate(
        {**r, "every_seconds": every.total_seconds() if every is not None else None}
    )


@v1.get("/schedules", response_model=list[s.ScheduleOut], tags=["schedules"])
def list_schedules(svc: Svc, _: Principal = Read) -> list[s.ScheduleOut]:
    return [_schedule_out(r) for r in svc.admin.schedules()]


@v1.put("/schedules", response_model=s.ApplyOut, tags=["schedules"])
def apply_schedules(body: s.SchedulesIn, svc: Svc, _: Principal = AdminScope) -> s.ApplyOut:
    """Sync these schedules (the YAML file's fields) into the database, all or nothing."""
    from pgsched.errors import CronError
    from pgsched.schedule_file import ScheduleDef

    defs = []
    seen: set[str] = set()
    for i, item in enumerate(body.schedules):
        try:
            d = ScheduleDef(**item)
        except PydanticError as e:
            err = e.errors()[0]
            loc = ["body", "schedules", i, *err["loc"]]
            raise RequestValidationError(
                [{"type": err["type"], "loc": tuple(loc), "msg": err["msg"]}]
            ) from None
        except (CronError, TypeError) as e:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body", "schedules", i), "msg": str(e)}]
            ) from None
        if d.name in seen:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", "schedules", i, "name"),
                        "msg": f"duplicate name {d.name!r}",
                    }
                ]
            )
        seen.add(d.name)
        defs.append(d)
    report = svc.admin.apply_schedules(defs, prune=body.prune, dry_run=body.dry_run)
    return s.ApplyOut(**report.as_dict(), dry_run=body.dry_run)


@v1.post("/schedules/{name}/pause", response_model=s.WorkerStatusOut, tags=["schedules"])
def pause_schedule(name: str, svc: Svc, _: Principal = AdminScope) -> s.WorkerStatusOut:
    svc.admin.pause_schedule(name)
    return s.WorkerStatusOut(name=name, status="paused")


@v1.post("/schedules/{name}/resume", response_model=s.WorkerStatusOut, tags=["schedules"])
def resume_schedule(name: str, svc: Svc, _: Principal = AdminScope) -> s.WorkerStatusOut:
    svc.admin.resume_schedule(name)
    return s.WorkerStatusOut(name=name, status="enabled")


# -- statistics ----------------------------------------------------------------------------------


@v1.get("/stats", response_model=s.StatsOut, tags=["stats"])
def stats(svc: Svc, hours: Hours = 1.0, _: Principal = Read) -> s.StatsOut:
    """Counts by queue and status, oldest ready age, and over the window: throughput, failure
    rate and execution-time percentiles (ms)."""
    return s.StatsOut.model_validate(svc.admin.stats(window=timedelta(hours=hours)))
