"""Who is looking at the dashboard, and whether a request may change anything.

A browser cannot add ``Authorization: Bearer`` to a page load, so the login page takes the
same token the API does (an API token or a JWT), checks it with the API's own checker
(pgsched.api.auth.Auth) and keeps it in a cookie: HttpOnly (no script reads it), SameSite=Strict
(no other site's page sends it) and Secure behind HTTPS. Every page and action then checks that
cookie exactly as the API checks a bearer token, so a revoked token stops working at the next
request, and the scopes are the API's: ``read`` sees the pages, ``admin`` also sees and uses the
action buttons. A bearer header works too (scripts, tests). With auth off (loopback only) every
request is the anonymous operator with every scope, as in the API.

Actions are POSTs that must carry the ``HX-Request`` header that htmx sends: a page on another
site can make a browser send a plain cross-site POST, but not one with a custom header (that
needs a CORS preflight, which this server never grants). A request whose Origin is another
host is refused as well.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from pgsched.api.auth import ANONYMOUS, Auth, Principal
from pgsched.errors import LoginRequired, Refused

COOKIE = "pgsched_token"


def principal(request: Request) -> Principal:
    """The caller, from the cookie or a bearer header (LoginRequired when neither is valid)."""
    auth: Auth = request.app.state.service.auth
    if not auth.enabled:
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    kind, _, bearer = header.partition(" ")
    token = bearer.strip() if kind.lower() == "bearer" else ""
    token = token or request.cookies.get(COOKIE, "").strip()
    if not token:
        raise LoginRequired("sign in with an API token")
    try:
        # The API's own checker: API tokens by hash, JWTs by key, each refusal logged.
        return auth.identify(request, token)
    except HTTPException as e:
        raise LoginRequired(str(e.detail)) from None


def check_token(request: Request, token: str) -> Principal:
    """The principal of a token typed on the login page (HTTPException 401 when refused)."""
    auth: Auth = request.app.state.service.auth
    if not auth.enabled:
        return ANONYMOUS
    principal = auth.identify(request, token)
    if not principal.allows("read"):
        raise HTTPException(403, f"{principal.kind} {principal.name!r} lacks the 'read' scope")
    return principal


def require_action(request: Request, who: Principal) -> None:
    """An action needs the admin scope, htmx's header and, when the browser says where the
    request comes from, this host as its origin."""
    if request.headers.get("hx-request") != "true":
        raise Refused(400, "actions are sent by the dashboard's buttons (HX-Request header)")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise Refused(403, f"origin {origin} is not this dashboard")
    if not who.allows("admin"):
        raise Refused(403, f"{who.kind} {who.name!r} lacks the 'admin' scope: nothing was changed")


def cookie_args(request: Request) -> dict[str, Any]:
    return {
        "key": COOKIE,
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": "/",
    }
