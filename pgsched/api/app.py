"""`pgsched serve`: the HTTP API (FastAPI), health probes and Prometheus metrics, a thin face
over pgsched.client.Client and pgsched.admin.Admin.

Routes under /api/v1 are the canonical ones (pgsched.api.tasks and pgsched.api.operate); the
paths other schedulers use (/api/tasks, /tasks, /tasks/schedule, /actuator/prometheus) are
aliases served by the same handlers, listed in ALIASES and in the alias table of docs/http.md.
Handlers are plain functions (FastAPI runs them in its thread pool), each borrowing one pooled
connection for its statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI

from pgsched.admin import Admin
from pgsched.api import errors, health, operate, tasks
from pgsched.api.auth import Auth
from pgsched.api.deps import Service, known_query
from pgsched.api.limits import BodyLimit
from pgsched.client import Client
from pgsched.config import Settings

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

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


def _pool(settings: Settings, dsn: str, size: int) -> ConnectionPool[Any]:
    """The app's connection pool (closed: the app's lifespan opens it)."""
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from pgsched.db import lenient_times

    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
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


def create_app(settings: Settings, dsn: str, *, pool_size: int = 8) -> FastAPI:
    """The ASGI app on ``dsn``; its pool opens with the app's lifespan."""
    pool = _pool(settings, dsn, pool_size)
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
        dependencies=[Depends(known_query)],
    )
    app.state.service = Service(client, admin, Auth(settings, admin))
    app.add_middleware(BodyLimit, max_body=settings.api_max_body)
    errors.install(app)  # its middleware the outermost of ours: around BodyLimit too
    for router in (tasks.v1, operate.v1, tasks.aliases, health.health, health.metrics_router):
        app.include_router(router)
    from pgsched.web import install as install_dashboard

    install_dashboard(app)  # the web dashboard at / (pgsched/web)
    return app
