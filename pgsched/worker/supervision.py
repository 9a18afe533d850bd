"""A worker either makes progress or exits non-zero: every service thread runs under guarded(),
which reports its unexpected death to the worker (Worker._thread_died) instead of letting the
thread vanish while the others keep heartbeating over stranded tasks. And the text a task's
failure leaves behind (its exception's str) is made safely and kept bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

CrashHook = Callable[[str, BaseException], None]

# Characters of a task's error text kept in the task row, its attempt row, its dead letter
# and the log line: the first and last halves, with a marker between (like the shell tail).
ERROR_MAX = 8000


def guarded(target: Callable[..., Any], on_crash: CrashHook | None) -> Callable[..., None]:
    """Wrap a thread's target: an exception that escapes it is handed to ``on_crash`` with
    the thread's name (the worker then stops, non-zero)."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except BaseException as e:
            if on_crash is None:
                raise
            on_crash(threading.current_thread().name, e)

    return run


def safe_str(exc: BaseException) -> str:
    """str(exc), or a stand-in when the exception's own __str__ raises."""
    try:
        return str(exc)
    except BaseException as e:  # any failure of user code's __str__
        return f"<str() of the exception raised {type(e).__name__}>"


def bounded(text: str, limit: int = ERROR_MAX) -> str:
    """``text`` cut to about ``limit`` characters: its head and tail, and how much went."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"
