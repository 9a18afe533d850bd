"""The http task's connection: a connect and a request that a stop or the attempt's deadline
ends at once (pgsched.builtins.HttpRunner uses it; imported only when an http task runs)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream


class StoppableBackend(httpcore.SyncBackend):
    """httpcore's network backend with a connect that a stop or the attempt's deadline ends
    within 50 ms (a non-blocking connect, polled), and that keeps the socket's descriptor so
    the watchdog can shut it down while a request waits for headers or a body."""

    def __init__(self, stop: threading.Event, deadline: float) -> None:
        self.stop = stop
        self.deadline = deadline
        self.fd: int | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            while err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                if self.stop.is_set() or time.monotonic() > self.deadline:
                    raise httpcore.ConnectTimeout("connect: stopped or out of time")
                _, writable, _ = select.select([], [sock], [], 0.05)
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise httpcore.ConnectError(os.strerror(err))
            sock.setblocking(True)
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.fd = sock.fileno()
        return SyncStream(sock)


def transport(backend: StoppableBackend) -> httpx.HTTPTransport:
    """httpx's transport over a pool that connects through ``backend``."""
    transport = httpx.HTTPTransport(trust_env=False)
    # HTTPTransport takes no network backend, so its pool is replaced by one that has ours
    # (httpx is pinned in the lock file; tests/test_security.py's http tests run this path).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=1,
        network_backend=backend,
    )
    return transport


def watch(
    backend: StoppableBackend, deadline: float, stop: threading.Event, done: threading.Event
) -> None:
    """Shut the request's socket down when the attempt's deadline passes or it is stopped:
    a read blocked on a server that sends no headers, or trickles its body, returns at once.
    (A connect in progress ends by itself: it polls the same two conditions.)"""
    while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
        if stop.is_set() or time.monotonic() > deadline:
            if backend.fd is not None:
                with contextlib.suppress(OSError):
                    sock = socket.socket(fileno=os.dup(backend.fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
            return
