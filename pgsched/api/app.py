"""`pgsched serve`: the HTTP API (FastAPI), health probes and Prometheus metrics, a thin face
over pgsched.client.Client and pgsched.admin.Admin.

Routes under /api/v1 are the canonical ones; the paths other schedulers use (/api/tasks,
/tasks, /tasks/schedule, /actuator/prometheus) are aliases served by the same handlers, listed
in ALIASES and in the alias table of docs/http.md. Handlers are plain functions (FastAPI runs
them in its thread pool), each borrowing one pooled connection for its statements.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError as PydanticError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgsched.admin import Admin
from pgsched.api import schemas as s
from pgsched.api.auth import Auth, Principal
from pgsched.api.limits import BodyLimit, log_refusal
from pgsched.client import Client
from pgsched.config import Settings
from pgsched.errors import (
    DatabaseUnavailable,
    DuplicateKey,
    InvalidState,
    NotFound,
    NotMigrated,
    PgschedError,
    SchemaTooNew,
    UsageError,
    ValidationError,
)
from pgsched.models import STATUSES, builtin_type_name

log = structlog.get_logger("pgsched.api")

# Alias path -> the canonical route serving it (docs/http.md's alias table says the same).
ALIASES = {
    "POST /api/tasks": "POST /api/v1/tasks",
    "POST /tasks": "POST /api/v1/tasks",
    "GET /tasks": "GET /api/v1/tasks",
    "GET /tasks/{id}": "GET /api/v1/tasks/{id}",
    "DELETE /tasks/{id}": "DELETE /api/v1/tasks/{id}",
    "POST /tasks/schedule": "POST /api/v1/tasks",
    "GET /actuator/prometheus": "GET /metrics",
}

PAGE_MAX = 1000


class Service:
    """What every handler needs: the library objects and the auth checker."""

    def __init__(self, client: Client, admin: Admin, auth: Auth) -> None:
        self.client = client
        self.admin = admin
        self.auth = auth


def _service(request: Request) -> Service:
    service: Service = request.app.state.service  # set by create_app
    return service


Svc = Annotated[Service, Depends(_service)]


def scope(name: str) -> Callable[..., Principal]:
    def check(request: Request, svc: Svc) -> Principal:
        return svc.auth.require(request, name)

    return check


Read = Depends(scope("read"))
Submit = Depends(scope("submit"))
AdminScope = Depends(scope("admin"))


def _known_query(request: Request) -> None:
    """Unknown query parameters are refused (a typo must not silently list everything)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _all_query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", unknown[0]),
                    "msg": f"unknown query parameter (known: {', '.join(sorted(known)) or 'none'})",
                    "input": request.query_params[unknown[0]],
                }
            ]
        )


def _all_query_params(dependant: Any) -> list[Any]:
    out = list(dependant.query_params)
    for d in dependant.dependencies:
        out += _all_query_params(d)
    return out


# -- error responses ---------------------------------------------------------------------------


def _loc(loc: Any) -> str:
    return ".".join(str(p) for p in loc)


def _error(status: int, message: str, request: Request | None = None, **extra: Any) -> JSONResponse:
    if request is not None and 400 <= status < 500:
        log_refusal(request.scope, status, message)
    return JSONResponse({"error": message, **extra}, status_code=status)


def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
    r = _error(exc.status_code, str(exc.detail), request)
    if exc.headers:
        r.headers.update(exc.headers)
    return r


def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            why = e.get("ctx", {}).get("error", msg)
            return _error(400, f"body: malformed JSON: {why}", request)
        errors.append({"loc": loc, "msg": msg, "type": e.get("type")})
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    return _error(422, f"{_loc(first['loc'])}: {first['msg']}", request, errors=errors)


def _on_pgsched(request: Request, exc: PgschedError) -> JSONResponse:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, DatabaseUnavailable | NotMigrated | SchemaTooNew):
        return _error(503, message)
    if isinstance(exc, ValidationError):
        field = getattr(exc, "field", None)
        loc = ["body", field] if field else ["body"]
        return _error(422, message, request, errors=[{"loc": loc, "msg": message}])
    if isinstance(exc, UsageError):
        return _error(422, message, request)
    if isinstance(exc, NotFound):
        return _error(404, message, request)
    if isinstance(exc, InvalidState | DuplicateKey):
        return _error(409, message, request)
    return _error(500, message)


def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        from pgsched.db import failure_reason

        return _error(503, f"database unavailable: {failure_reason(exc)}")
    log.error("request_failed", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    return _error(500, "internal error (logged by the server)")


class CatchUnexpected:
    """ASGI middleware: an exception no handler took becomes _on_unexpected's 500 here. The
    handler registered for Exception runs in Starlette's outermost middleware, which raises the
    exception again once the response is sent: uvicorn then drops the connection, and the
    client's next request on it (keep-alive, as browsers and pooled clients do) failed with a
    connection reset."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # part of a response is out: too late for another
                raise
            await _on_unexpected(Request(scope), exc)(scope, receive, send)


# -- the app -----------------------------------------------------------------------------------


def create_app(settings: Settings, dsn: str, *, pool_size: int = 8) -> FastAPI:
    """The ASGI app on ``dsn``; its pool opens with the app's lifespan."""
    import contextlib

    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from pgsched.db import lenient_times

    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=pool_size,
        open=False,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(1, int(settings.connect_timeout)),
            # the sessions' time limits, unless behind PgBouncer < 1.21, which refuses them
            **({"options": settings.session_options} if settings.prepared_statements else {}),
        },
        check=ConnectionPool.check_connection,
        # A time Python cannot hold ('infinity', written from SQL) reads as the earliest or
        # latest datetime, as in the CLI's sessions, rather than fail the request.
        configure=lenient_times,
        name="pgsched-serve",
    )
    client = Client(
        dsn,
        connect_timeout=settings.connect_timeout,
        default_queue=settings.queue,
        default_max_attempts=settings.max_attempts,
        prepared_statements=settings.prepared_statements,
        pool=pool,
    )
    admin = Admin(client, heartbeat_timeout=settings.heartbeat_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="pgsched",
        summary="A distributed task scheduler where PostgreSQL is the only moving part",
        lifespan=lifespan,
        dependencies=[Depends(_known_query)],
    )
    app.state.service = Service(client, admin, Auth(settings, admin))
    app.add_middleware(BodyLimit, max_body=settings.api_max_body)
    app.add_middleware(CatchUnexpected)  # outermost of ours: around BodyLimit too
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(PgschedError, _on_pgsched)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
    for router in (v1, aliases, health, metrics_router):
        app.include_router(router)
    from pgsched.web import install as install_dashboard

    install_dashboard(app)  # the web dashboard at / (pgsched/web)
    return app


v1 = APIRouter(prefix="/api/v1")
aliases = APIRouter(include_in_schema=True, tags=["aliases"])

# -- tasks ---------------------------------------------------------------------------------------


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
    _check_id(task_id)
    return _task_out(svc.client.get(task_id))


aliases.get("/tasks/{task_id}", response_model=s.TaskOut)(get_task)


@v1.delete("/tasks/{task_id}", response_model=s.CancelOut, tags=["tasks"])
def cancel_task(task_id: int, svc: Svc, _: Principal = AdminScope) -> s.CancelOut:
    """Cancel: at once if it has not started, else its worker is asked to stop it
    (alias: DELETE /tasks/{id})."""
    _check_id(task_id)
    return s.CancelOut(id=task_id, status=svc.client.cancel(task_id))  # type: ignore[arg-type]


aliases.delete("/tasks/{task_id}", response_model=s.CancelOut)(cancel_task)


@v1.post("/tasks/{task_id}/retry", response_model=s.RetryOut, tags=["tasks"])
def retry_task(
    task_id: int, svc: Svc, body: s.RetryIn | None = None, _: Principal = AdminScope
) -> s.RetryOut:
    """Run a failed or cancelled task again with ``attempts`` more tries."""
    _check_id(task_id)
    more = body.attempts if body is not None else None
    return s.RetryOut(id=task_id, max_attempts=svc.client.retry(task_id, attempts=more))


def _check_id(value: int, name: str = "task_id") -> None:
    if not 1 <= value < 2**63:
        raise RequestValidationError(
            [{"type": "range", "loc": ("path", name), "msg": "must be between 1 and 2^63-1"}]
        )


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
    _check_id(dag_id, "dag_id")
    return _dag_out(svc.admin.workflow_summary(dag_id))


@v1.get("/dags/{dag_id}/tasks", response_model=list[s.DagTask], tags=["dags"])
def get_dag_tasks(dag_id: int, svc: Svc, _: Principal = Read) -> list[s.DagTask]:
    _check_id(dag_id, "dag_id")
    return [s.DagTask.model_validate(t) for t in svc.admin.workflow_tasks(dag_id)]


@v1.post("/dags/{dag_id}/cancel", response_model=s.DagActionOut, tags=["dags"])
def cancel_dag(dag_id: int, svc: Svc, _: Principal = AdminScope) -> s.DagActionOut:
    _check_id(dag_id, "dag_id")
    return s.DagActionOut(dag_id=dag_id, **svc.admin.cancel_workflow(dag_id))


@v1.post("/dags/{dag_id}/retry", response_model=s.DagActionOut, tags=["dags"])
def retry_dag(
    dag_id: int, svc: Svc, body: s.RetryIn | None = None, _: Principal = AdminScope
) -> s.DagActionOut:
    _check_id(dag_id, "dag_id")
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
    _check_id(task_id)
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
    from pgsched.schedules import ScheduleDef

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

Hours = Annotated[float, Query(gt=0, le=24 * 366, description="Window in hours")]


@v1.get("/stats", response_model=s.StatsOut, tags=["stats"])
def stats(svc: Svc, hours: Hours = 1.0, _: Principal = Read) -> s.StatsOut:
    """Counts by queue and status, oldest ready age, and over the window: throughput, failure
    rate and execution-time percentiles (ms)."""
    return s.StatsOut.model_validate(svc.admin.stats(window=timedelta(hours=hours)))


# -- health --------------------------------------------------------------------------------------

health = APIRouter(prefix="/health", tags=["health"])


def _health(svc: Service) -> tuple[int, s.HealthOut]:
    try:
        h = svc.admin.health()
    except PgschedError as e:
        return 503, s.HealthOut(status="DOWN", database="down", error=str(e).splitlines()[0])
    return 200, s.HealthOut(status="UP", **h)


@health.get("", response_model=s.HealthOut)
def health_all(svc: Svc, _: Principal = Read) -> Response:
    """Database reachable, schema revision current, live workers (503 when not)."""
    code, body = _health(svc)
    return JSONResponse(body.model_dump(by_alias=True, exclude_none=True), status_code=code)


@health.get("/live")
def live() -> dict[str, str]:
    """The process answers (no database access): for a liveness probe."""
    return {"status": "UP"}


@health.get("/ready", response_model=s.HealthOut)
def ready(svc: Svc) -> Response:
    """503 while the database is unreachable or not migrated: for a readiness probe."""
    code, body = _health(svc)
    return JSONResponse(body.model_dump(by_alias=True, exclude_none=True), status_code=code)


@health.get("/workers", response_model=list[s.WorkerOut])
def health_workers(svc: Svc, _: Principal = Read) -> list[s.WorkerOut]:
    return [s.WorkerOut.model_validate(w) for w in svc.admin.workers()]


@health.get("/metrics", response_model=s.StatsOut)
def health_metrics(svc: Svc, hours: Hours = 24.0, _: Principal = Read) -> s.StatsOut:
    return s.StatsOut.model_validate(svc.admin.stats(window=timedelta(hours=hours)))


@health.post("/recovery", response_model=s.RecoveryOut)
def recovery(svc: Svc, _: Principal = AdminScope) -> s.RecoveryOut:
    """Hand back now the tasks of dead workers."""
    return s.RecoveryOut.model_validate(svc.admin.recover())


# -- Prometheus ----------------------------------------------------------------------------------

metrics_router = APIRouter(tags=["metrics"])


@metrics_router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: Svc, _: Principal = Read) -> Response:
    """Prometheus exposition (alias: /actuator/prometheus), read from the database."""
    from pgsched.api.metrics import CONTENT_TYPE, exposition

    return Response(exposition(svc.admin.metrics()), media_type=CONTENT_TYPE)


metrics_router.get("/actuator/prometheus", response_class=PlainTextResponse)(metrics)
