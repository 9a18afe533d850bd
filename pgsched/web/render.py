"""How the dashboard answers: its Jinja2 environment and filters, ``render`` for a whole page,
``page`` for a handler that needs a signed-in user, and the small helpers pages and actions
share."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import escape

from pgsched.api.auth import Principal
from pgsched.durations import format_duration
from pgsched.errors import LoginRequired
from pgsched.web.session import principal

PAGE_SIZE = 50
POLL = "every 2s"

env = Environment(
    loader=PackageLoader("pgsched.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(max(0.0, float(seconds)))


def _since(value: datetime | None, now: datetime) -> str:
    return "-" if value is None else format_duration(max(0.0, (now - value).total_seconds()))


def _until(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = (value - now).total_seconds()
    return ("in " if seconds >= 0 else "late ") + format_duration(abs(seconds))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _pct(value: float | None, whole: float | None = 100.0) -> float:
    if not value or not whole:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(value) / float(whole)))


env.filters.update(ts=_ts, age=_age, json=_json, pct=_pct, duration=format_duration)


def render(
    request: Request, name: str, who: Principal | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    now = datetime.now(UTC)
    body = env.get_template(name).render(
        request=request,
        who=who,
        can_admin=who is not None and who.allows("admin"),
        auth_on=request.app.state.service.auth.enabled,
        now=now,
        since=lambda v: _since(v, now),
        until=lambda v: _until(v, now),
        poll=POLL,
        **ctx,
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def page(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Wraps a page handler: no valid credentials -> the login page."""

    @functools.wraps(fn)
    def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            who = principal(request)
        except LoginRequired as e:
            return to_login(request, e.reason)
        return fn(request, who, *args, **kwargs)

    # FastAPI reads the signature: hide the injected principal.
    sig = inspect.signature(fn)
    params = [p for n, p in sig.parameters.items() if n != "who"]
    wrapped.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapped


def to_login(request: Request, reason: str) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/ui/login?" + urlencode({"next": target})
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def not_found(request: Request, who: Principal | None, message: str, back: str) -> HTMLResponse:
    return render(
        request, "error.html", who, status=404, title="Not found", message=message, back=back
    )


def int_id(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if 1 <= n < 2**63 else None


def esc(text: str) -> str:
    return str(escape(text))
