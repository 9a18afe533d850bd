"""API tokens: created (shown once, stored as a hash), listed, revoked and looked up."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

import psycopg

from pgsched.admin.base import AdminBase
from pgsched.errors import InvalidState, NotFound, ValidationError
from pgsched.sql import Q

SCOPES = ("read", "submit", "admin")
TOKEN_PREFIX = "pgs_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens(AdminBase):
    def create_token(self, name: str, scopes: Iterable[str]) -> tuple[str, dict[str, Any]]:
        """A new token (shown once: only its hash is stored) and its row."""
        scopes = list(dict.fromkeys(scopes))
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValidationError(
                f"scopes: {bad[0]!r} is not one of {', '.join(SCOPES)}"
                if bad
                else f"scopes: give at least one of {', '.join(SCOPES)}",
                "scopes",
            )
        if not name or len(name) > 200 or "\x00" in name:
            raise ValidationError("name: must be a non-empty name of at most 200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.client.connection() as c:
            try:
                row = Q.token_create.run(
                    c, {"name": name, "hash": hash_token(token), "scopes": scopes}
                )
            except psycopg.errors.UniqueViolation:
                msg = f"a live token named {name!r} exists (revoke it first)"
                raise InvalidState(msg) from None
        return token, row

    def tokens(self, *, all_: bool = False) -> list[dict[str, Any]]:
        with self.client.connection() as c:
            rows: list[dict[str, Any]] = Q.token_list.run(c, {"all": all_})
        return rows

    def revoke_token(self, name: str) -> None:
        with self.client.connection() as c:
            if Q.token_revoke.run(c, {"name": name}) is None:
                raise NotFound(f"no live token named {name!r} (pgsched tokens list shows them)")

    def token_scopes(self, token: str) -> tuple[str, list[str]] | None:
        """(name, scopes) of a live token, or None."""
        with self.client.connection() as c:
            row = Q.token_lookup.run(c, {"hash": hash_token(token)})
        return None if row is None else (row["name"], list(row["scopes"]))
