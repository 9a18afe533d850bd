"""Probes: /health and its parts (liveness, readiness, workers, statistics, recovery) and the
Prometheus exposition at /metrics (alias /actuator/prometheus)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from pgsched.api import schemas as s
from pgsched.api.auth import Principal
from pgsched.api.deps import AdminScope, Hours, Read, Service, Svc
from pgsched.errors import PgschedError

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
