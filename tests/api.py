"""`pgsched serve` for tests: the real app under uvicorn on a free loopback port, in a thread,
on the test's own database."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from pgsched.api.app import create_app
from pgsched.config import Settings


@contextlib.contextmanager
def serving(
    dsn: str, *, routes: dict[str, Any] | None = None, **settings: Any
) -> Iterator[httpx.Client]:
    """``routes``: extra GET routes (path: function) on the app, for tests of its middleware."""
    app = create_app(Settings(dsn=dsn, **settings), dsn)
    for path, fn in (routes or {}).items():
        app.add_api_route(path, fn)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def error_line(r: httpx.Response) -> str:
    """The refusal's one line: a JSON object whose 'error' is a single line, no traceback."""
    body = r.json()
    assert isinstance(body["error"], str) and "\n" not in body["error"], body
    assert "Traceback" not in r.text
    return body["error"]
