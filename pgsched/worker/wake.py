"""The claim thread's alarm: an event that its wait can also end on a readable socket."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Wake:
    """A threading.Event whose wait() can also watch a socket (the claim connection's).

    set() writes to a socket pair only while a waiter is in select(), so the calls made per
    finished task cost no system call."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._selecting = False
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def set(self) -> None:
        self._event.set()
        if self._selecting:
            with contextlib.suppress(OSError):  # full: the waiter wakes anyway; closed: none
                self._w.send(b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float | None = None, sock: int | None = None) -> bool:
        """True once set; with ``sock``, also returns (False) when that socket is readable."""
        if sock is None:
            return self._event.wait(timeout)
        self._selecting = True  # before the check: a set() after it writes to the pair
        try:
            if not self._event.is_set():
                own = self._r.fileno()
                ready, _, _ = select.select([own, sock], [], [], timeout)
                if own in ready:
                    with contextlib.suppress(OSError):
                        self._r.recv(4096)
        finally:
            self._selecting = False
        return self._event.is_set()

    def close(self) -> None:
        self._r.close()
        self._w.close()
