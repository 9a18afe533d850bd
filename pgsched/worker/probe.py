"""`pgsched worker --http-port N`: /health/live and /health/ready for a supervisor's probes.

Live: the process answers. Ready: the worker is registered, its control connection is up and
it is not stopping (Worker.ready); 503 otherwise. A daemon thread of the standard library's
HTTP server, bound to loopback unless told otherwise; it reads two attributes and touches no
database, so a probe costs the worker nothing.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgsched.worker.runner import Worker


class Probe:
    def __init__(self, worker: Worker, port: int, host: str = "127.0.0.1") -> None:
        self.worker = worker
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/health/live":
                    probe._answer(self, 200, {"status": "UP"})
                elif path == "/health/ready":
                    ok = bool(probe.worker.ready)
                    probe._answer(
                        self,
                        200 if ok else 503,
                        {"status": "UP" if ok else "DOWN", "worker": probe.worker.name},
                    )
                else:
                    probe._answer(self, 404, {"error": f"no route {path}"})

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would flood the worker's log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="pgsched-probe", daemon=True
        )

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
