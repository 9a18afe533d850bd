"""Real receivers for alert deliveries, in the test process: an HTTP server that records each
request (and answers as the test says: a status, or hanging until released), and an SMTP
server (aiosmtpd) with STARTTLS and AUTH LOGIN over a certificate made for the test."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """``status``: what it answers. With ``hang`` true, each request waits for ``release``
    before answering (a receiver that hangs)."""

    status: int = 200
    hang: bool = False
    requests: list[Request] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                req = Request(self.path, dict(self.headers.items()), self.rfile.read(n))
                with receiver.arrived:
                    receiver.requests.append(req)
                    receiver.arrived.notify_all()
                if receiver.hang:
                    receiver.release.wait(30)
                status = receiver.status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (a timeout, a killed worker)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Request]:
        """Block until ``n`` requests have arrived (fails the test after ``timeout``)."""
        import pytest

        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= n, timeout):
                pytest.fail(f"receiver: {len(self.requests)} requests after {timeout}s, want {n}")
            return list(self.requests)

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl), as (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class SmtpServer:
    """aiosmtpd on a free port: STARTTLS required before AUTH; records each message."""

    def __init__(self, directory: Path, user: str, password: str) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.cert, key = make_certificate(directory)
        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with outer.arrived:
                    outer.messages.append(envelope)
                    outer.arrived.notify_all()
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(),
                password.encode(),
            )
            if ok:
                outer.logins.append(user)
            return AuthResult(success=ok, handled=False)  # False: the server answers 535

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(key))
        # The controller checks its server by connecting to the port it was given: a free
        # port is picked first (port 0 cannot be connected to).
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
        )
        self.controller.start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Any]:
        import pytest

        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= n, timeout):
                pytest.fail(f"smtp: {len(self.messages)} messages after {timeout}s, want {n}")
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()
