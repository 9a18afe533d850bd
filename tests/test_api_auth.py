"""Access control of `pgsched serve`: loopback unless auth is on, API tokens with scopes,
JWTs, 401/403 and their log lines; and the worker's --http-port probe."""

from __future__ import annotations

import time

import httpx
import jwt
import psycopg
import pytest
import structlog

from pgsched.admin import Admin
from pgsched.client import Client
from tests.api import error_line, serving
from tests.cli import ok, refused

KEY = "a test secret of at least thirty-two bytes!"


def _tokens(dsn: str) -> dict[str, str]:
    with Client(dsn) as c:
        admin = Admin(c)
        return {
            scope: admin.create_token(f"t-{scope}", [scope])[0]
            for scope in ("read", "submit", "admin")
        }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_and_scopes(dsn: str, conn: psycopg.Connection) -> None:
    tok = _tokens(dsn)
    stored = conn.execute("SELECT token_hash FROM pgsched.api_tokens").fetchall()
    assert all(bytes(h).hex() not in tok.values() for (h,) in stored)
    assert not any(t.encode() in bytes(h) for (h,) in stored for t in tok.values())
    with serving(dsn, api_auth=True) as http, structlog.testing.capture_logs() as logs:
        # No token, a malformed header, an unknown token: 401, and each refusal logged.
        for headers in ({}, {"Authorization": "Basic x"}, _bearer("pgs_nope")):
            r = http.get("/api/v1/tasks", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            error_line(r)
        # read: GETs only
        assert http.get("/api/v1/tasks", headers=_bearer(tok["read"])).status_code == 200
        assert http.get("/metrics", headers=_bearer(tok["read"])).status_code == 200
        r = http.post("/api/v1/tasks", json={"taskType": "x"}, headers=_bearer(tok["read"]))
        assert r.status_code == 403 and "'submit'" in error_line(r)
        # submit: POST tasks, not cancel, not read
        r = http.post("/api/v1/tasks", json={"taskType": "x"}, headers=_bearer(tok["submit"]))
        assert r.status_code == 201
        tid = r.json()["id"]
        assert (
            http.delete(f"/api/v1/tasks/{tid}", headers=_bearer(tok["submit"])).status_code == 403
        )
        assert http.get("/api/v1/tasks", headers=_bearer(tok["submit"])).status_code == 403
        # admin: everything
        assert http.delete(f"/api/v1/tasks/{tid}", headers=_bearer(tok["admin"])).status_code == 200
        assert http.post("/health/recovery", headers=_bearer(tok["admin"])).status_code == 200
        # probes need no token
        assert http.get("/health/live").status_code == 200
        assert http.get("/health/ready").status_code == 200
        assert http.get("/health").status_code == 401
        # revoked: 401 from then on
        with Client(dsn) as c:
            Admin(c).revoke_token("t-read")
        assert http.get("/api/v1/tasks", headers=_bearer(tok["read"])).status_code == 401
    refusals = [e for e in logs if e["event"] == "request_refused"]
    assert [e["status"] for e in refusals] == [401, 401, 401, 403, 403, 403, 401, 401]
    assert all(e["path"] and e["reason"] for e in refusals)
    assert conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 1


def test_jwts(dsn: str) -> None:
    now = int(time.time())

    def make(key: str = KEY, **claims: object) -> str:
        return jwt.encode({"sub": "ci", "exp": now + 60, **claims}, key, algorithm="HS256")

    with serving(dsn, api_jwt_key=KEY, api_jwt_audience="pgsched") as http:
        good = make(scope="read submit", aud="pgsched")
        assert http.get("/api/v1/tasks", headers=_bearer(good)).status_code == 200
        r = http.post("/api/v1/tasks", json={"taskType": "x"}, headers=_bearer(good))
        assert r.status_code == 201
        r = http.post("/health/recovery", headers=_bearer(good))
        assert r.status_code == 403 and "jwt 'ci'" in error_line(r)
        listed = make(scope=["admin"], aud="pgsched")
        assert http.post("/health/recovery", headers=_bearer(listed)).status_code == 200
        for bad in (
            make(scope="read", aud="pgsched", exp=now - 10),  # expired
            make(key="another secret of at least thirty-two bytes", scope="read", aud="pgsched"),
            make(scope="read", aud="someone-else"),
            jwt.encode({"sub": "x", "scope": "admin"}, "", algorithm="none") + "",
            "not.a.jwt",
        ):
            r = http.get("/api/v1/tasks", headers=_bearer(bad))
            assert r.status_code == 401, r.text
            assert error_line(r).startswith(("invalid JWT", "not an API token"))


def test_serve_refuses_a_public_address_without_auth(dsn: str) -> None:
    line = refused(dsn, "serve", "--host", "0.0.0.0", code=2)
    assert "not a loopback address" in line and "--auth" in line
    line = refused(dsn, "serve", "--host", "192.0.2.1", "--no-auth", code=2)
    assert "not a loopback address" in line


def test_tokens_cli(dsn: str, conn: psycopg.Connection) -> None:
    token = ok(dsn, "tokens", "create", "ci", "--scopes", "read,submit").strip()
    assert token.startswith("pgs_") and len(token) > 40
    listed = ok(dsn, "tokens", "list", "--json")
    assert '"ci"' in listed and token not in listed
    assert "exists" in refused(dsn, "tokens", "create", "ci", code=1)
    assert "'write' is not one of" in refused(
        dsn, "tokens", "create", "x", "--scopes", "write", code=2
    )
    ok(dsn, "tokens", "revoke", "ci")
    assert "no live token" in refused(dsn, "tokens", "revoke", "ci", code=1)
    assert conn.execute("SELECT count(*) FROM pgsched.api_tokens").fetchone()[0] == 1


@pytest.mark.slow
def test_worker_http_probe(dsn: str) -> None:
    from conftest import FAST

    from pgsched.worker import Worker
    from pgsched.worker.probe import Probe

    w = Worker(dsn, FAST, name="probed")
    probe = Probe(w, 0).start()
    base = f"http://127.0.0.1:{probe.port}"
    try:
        assert httpx.get(base + "/health/live").status_code == 200
        assert httpx.get(base + "/health/ready").status_code == 503  # not registered yet
        w.start()
        r = httpx.get(base + "/health/ready")
        assert r.status_code == 200 and r.json() == {"status": "UP", "worker": "probed"}
        w.request_stop()
        assert httpx.get(base + "/health/ready").status_code == 503
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        w.stop(timeout=20)
        probe.stop()
