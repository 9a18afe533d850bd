"""A database that accepts the TCP connection but never answers: the command gives up after
connect_timeout with one line naming host and port (no hang, no traceback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PGSCHED = Path(sys.executable).with_name("pgsched")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback listener that accepts connections and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, name="silent-server")
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def test_silent_server_gives_up_after_connect_timeout(silent_port: int) -> None:
    dsn = f"postgresql://nobody@127.0.0.1:{silent_port}/x"
    started = time.monotonic()
    res = subprocess.run(
        [str(PGSCHED), "--dsn", dsn, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PGSCHED_CONNECT_TIMEOUT": "2"},
    )
    took = time.monotonic() - started
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: cannot connect to PostgreSQL at 127.0.0.1:{silent_port}")
    assert "timeout" in lines[0].lower()
    # It waited for the timeout (not a refusal) and did not hang past it.
    assert 1.5 < took < 30, took
