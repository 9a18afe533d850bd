"""Who may call the API: bearer tokens with scopes.

Two kinds of token, told apart by their prefix:
- API tokens (``pgs_...``, `pgsched tokens create`): looked up by their SHA-256 in
  ``pgsched.api_tokens``; their scopes are stored with them.
- JWTs, verified with the configured key (``api_jwt_key``, algorithms ``api_jwt_algorithms``,
  audience ``api_jwt_audience`` if set; ``exp`` is checked when present); scopes come from the
  ``api_jwt_scope_claim`` claim, a space-separated string or a list.

Scopes: ``read`` (GET), ``submit`` (POST tasks and dags), ``admin`` (everything, including
cancel, retry, the dead letter, workers, schedules and recovery). With auth off (the default,
only allowed on a loopback address) every request is allowed. Every refusal (401, 403) is
logged as ``request_refused`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from fastapi import HTTPException, Request

from pgsched.admin import Admin
from pgsched.admin.tokens import SCOPES, TOKEN_PREFIX
from pgsched.config import Settings


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    kind: str = "token"

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(SCOPES), "none")


def auth_enabled(settings: Settings) -> bool:
    return settings.api_auth or settings.api_jwt_key is not None


class Auth:
    def __init__(self, settings: Settings, admin: Admin) -> None:
        self.enabled = auth_enabled(settings)
        self.settings = settings
        self.admin = admin
        self.algorithms = [a.strip() for a in settings.api_jwt_algorithms.split(",") if a.strip()]

    def require(self, request: Request, scope: str) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            self._refuse(request, 401, "missing bearer token (Authorization: Bearer ...)")
        principal = self.identify(request, token.strip())
        if not principal.allows(scope):
            self._refuse(
                request, 403, f"{principal.kind} {principal.name!r} lacks the {scope!r} scope"
            )
        return principal

    def identify(self, request: Request, token: str) -> Principal:
        """Who a token names: an API token by its hash, else a JWT by the configured key.
        HTTPException 401 when it names no one (the dashboard's sign-in uses it too)."""
        if token.startswith(TOKEN_PREFIX):
            found = self.admin.token_scopes(token)
            if found is None:
                self._refuse(request, 401, "unknown or revoked API token")
            name, scopes = found
            return Principal(name, frozenset(scopes), "token")
        if self.settings.api_jwt_key is None:
            self._refuse(request, 401, "not an API token, and no JWT key is configured")
        return self._jwt(request, token)

    def _jwt(self, request: Request, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self.settings.api_jwt_key,
                algorithms=self.algorithms,
                audience=self.settings.api_jwt_audience,
            )
        except jwt.PyJWTError as e:
            self._refuse(request, 401, f"invalid JWT: {str(e).splitlines()[0] if str(e) else e}")
        raw = claims.get(self.settings.api_jwt_scope_claim, [])
        scopes = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        name = str(claims.get("sub") or "jwt")
        return Principal(name, frozenset(str(x) for x in scopes), "jwt")

    def _refuse(
        self, request: Request, status: int, reason: str, who: Principal | None = None
    ) -> NoReturn:
        """Raise the 401/403; the app's HTTPException handler logs it (request_refused)."""
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        raise HTTPException(status, reason, headers=headers)
