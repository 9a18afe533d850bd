"""What every route of the API depends on: the service (library objects and auth), the scope
checks, the refusal of unknown query parameters, and the shared parameter checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from pgsched.admin import Admin
from pgsched.api.auth import Auth, Principal
from pgsched.client import Client

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


def known_query(request: Request) -> None:
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


def check_id(value: int, name: str = "task_id") -> None:
    if not 1 <= value < 2**63:
        raise RequestValidationError(
            [{"type": "range", "loc": ("path", name), "msg": "must be between 1 and 2^63-1"}]
        )


Hours = Annotated[float, Query(gt=0, le=24 * 366, description="Window in hours")]
