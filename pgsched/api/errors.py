"""How an error becomes a response: a JSON body {"error": ...} with the status that says what
went wrong (422 with the field's path for bad input, 404, 409, 503 while the database is
unavailable, 500 for the unexpected, which is logged)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgsched.api.limits import log_refusal
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

log = structlog.get_logger("pgsched.api")


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


def install(app: FastAPI) -> None:
    """Every error's response on ``app``: the handlers, and CatchUnexpected around the app's
    middleware (add it after them, so it is the outermost)."""
    app.add_middleware(CatchUnexpected)
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(PgschedError, _on_pgsched)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
