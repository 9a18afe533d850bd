"""A webhook receiver for `pgsched demo`: an HTTP server on 127.0.0.1 that checks each
notification's signature and hands a one-line description of it to a callback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pgsched.alerts.deliver import SIGNATURE_HEADER, verify

MAX_BODY = 1_000_000


class DemoReceiver:
    def __init__(self, secret: str, on_notification: Callable[[str], None]) -> None:
        self.secret = secret
        self.on_notification = on_notification
        self.received = 0
        self.last = ""  # the last notification, described (the caller's on_notification sets it)
        self.log: Path | None = None  # where the caller writes what arrives, if anywhere
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    n = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                except ValueError:
                    n = 0
                body = self.rfile.read(n)
                signed = verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER) or "")
                receiver.received += 1
                receiver.on_notification(describe(body, signed))
                self.send_response(200 if signed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="pgsched-demo-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/pgsched"

    def start(self) -> DemoReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def describe(body: bytes, signed: bool) -> str:
    try:
        n = json.loads(body)
        text = f"{n['rule']} ({n['event']}, {n['count']} folded): {n['summary']}"
    except (ValueError, KeyError, TypeError):
        text = f"{len(body)} bytes that are not a notification"
    return ("signature ok · " if signed else "BAD SIGNATURE · ") + text
