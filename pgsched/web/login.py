"""Signing in to the dashboard with an API token (kept in a cookie) and out again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from pgsched.web.render import esc, render
from pgsched.web.session import COOKIE, check_token, cookie_args

router = APIRouter(include_in_schema=False)


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str | None, Query()] = None) -> Response:
    return render(request, "login.html", None, nav="login", next=_safe_next(next), error=None)


class LoginIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096)
    next: str | None = Field(default=None, max_length=2048)


@router.post("/ui/login", response_class=HTMLResponse)
def login(request: Request, body: LoginIn) -> Response:
    target = _safe_next(body.next)
    try:
        check_token(request, body.token.strip())
    except HTTPException as e:
        return HTMLResponse(
            f'<p class="flash error" role="alert">{esc(str(e.detail))}</p>',
            status_code=e.status_code,
        )
    r = Response(status_code=204, headers={"HX-Redirect": target})
    r.set_cookie(value=body.token.strip(), **cookie_args(request))
    return r


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    r = Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
    r.delete_cookie(COOKIE, path="/")
    return r


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: a login never sends the browser elsewhere."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"
