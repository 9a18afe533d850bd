"""structlog setup: JSON lines when stdout is not a TTY (or log_format=json), console otherwise.

Event names are stable snake_case (``task_claimed``, ``task_succeeded``, ``task_lost``,
``task_completion_rejected``, ``worker_started``...), with bound fields such as task_id,
attempt, worker, queue and duration_ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=lambda *args: SafePrintLogger(stream),
        cache_logger_on_first_use=True,
    )


class SafePrintLogger(structlog.PrintLogger):
    """A PrintLogger whose write never raises into the caller: the worker logs from its claim,
    completion and control threads, and a log line that cannot be written (stdout a closed
    pipe: ``pgsched worker | head``) must not stop any of them. After the first failure the
    stream is dropped: one line says so on stderr, and a broken pipe's descriptor is pointed
    at /dev/null, so the interpreter's flush at exit does not fail either."""

    def msg(self, message: str) -> None:
        if id(self._file) in _DROPPED:
            return
        try:
            super().msg(message)
        except (OSError, ValueError) as e:  # EPIPE, EIO, ENOSPC; ValueError: a closed file
            self._drop(e)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def _drop(self, e: BaseException) -> None:
        with _DROP_LOCK:
            if id(self._file) in _DROPPED:
                return
            _DROPPED.add(id(self._file))
        if isinstance(e, BrokenPipeError):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._file.fileno())
                os.close(devnull)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if self._file is not sys.stderr:
                print(f"pgsched: log output dropped: {e}", file=sys.stderr, flush=True)


_DROP_LOCK = threading.Lock()
_DROPPED: set[int] = set()  # id() of the streams given up on


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("pgsched").bind(**bound)
