"""Registering Python functions as task types.

    from pgsched.registry import task

    @task("resize", backoff_base=2, backoff_cap=60, max_attempts=5, timeout=30)
    def resize(payload, ctx):          # ctx is optional; `async def` works too
        ctx.progress(0.5)
        ctx.checkpoint({"done": 10})
        return {"ok": True}            # stored as the task's result (JSON)

A function takes the payload, and optionally a second argument (or a keyword ``ctx``): the
:class:`TaskContext` of the attempt. Raise :class:`pgsched.errors.PermanentError` for a failure
that retrying cannot fix. Per-type settings apply when the task row has none of its own:
``timeout`` (seconds) and ``backoff_base``/``backoff_cap`` (seconds); ``max_attempts`` caps
the row's own max_attempts.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgsched.errors import PermanentError, TaskTimeout, ValidationError
from pgsched.models import MAX_ATTEMPTS_MAX

__all__ = [
    "PermanentError",
    "Registry",
    "TaskContext",
    "TaskTimeout",
    "TaskType",
    "default_registry",
    "task",
]


@dataclass
class TaskType:
    name: str
    fn: Callable[..., Any]
    backoff_base: float | None = None
    backoff_cap: float | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    is_async: bool = False
    wants_ctx: bool = False
    # A task type whose body is trivially short (noop) runs on the claim thread itself instead
    # of a pool thread: no hand-off, no thread switch.
    inline: bool = False
    # Called with (payload, ctx, stop_event) instead of (payload[, ctx]): built-ins that can be
    # stopped (shell kills its process group on timeout or cancel).
    stoppable: bool = False


class Registry:
    """Task types by name. Thread-safe for reading once the worker runs."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def register(self, tt: TaskType) -> TaskType:
        self._types[tt.name] = tt
        return tt

    def task(
        self,
        name: str | None = None,
        *,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if max_attempts is not None and not 1 <= max_attempts <= MAX_ATTEMPTS_MAX:
            raise ValidationError(
                f"max_attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", field="max_attempts"
            )
        for label, v in (
            ("backoff_base", backoff_base),
            ("backoff_cap", backoff_cap),
            ("timeout", timeout),
        ):
            if v is not None and v <= 0:
                raise ValidationError(f"{label}: must be positive", field=label)

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(
                TaskType(
                    name=name or fn.__name__,
                    fn=fn,
                    backoff_base=backoff_base,
                    backoff_cap=backoff_cap,
                    max_attempts=max_attempts,
                    timeout=timeout,
                    is_async=inspect.iscoroutinefunction(fn),
                    wants_ctx=_wants_ctx(fn),
                )
            )
            return fn

        return deco

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def merged(self, other: Registry) -> Registry:
        out = Registry()
        out._types = {**self._types, **other._types}
        return out

    def without(self, *names: str) -> Registry:
        out = Registry()
        out._types = {k: v for k, v in self._types.items() if k not in names}
        return out

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[TaskType]:
        return iter(self._types.values())


def _wants_ctx(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name == "ctx" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


default_registry = Registry()
task = default_registry.task
_STOP_LOCK = threading.Lock()


@dataclass
class TaskContext:
    """What a running attempt can see and do. ``cancelled`` turns true when the task is
    cancelled, times out, or the worker stops; long loops should check it."""

    task: dict[str, Any]
    _saver: Callable[[int, int, float | None, bool, Any], None] | None = None
    _parents: Callable[[int], dict[str, Any]] | None = None
    # Made on first use: a threading.Event per attempt was ~3 us of the ~6 us the claim thread
    # spent per inline no-op task (cProfile, 500-row batches); most bodies never look at it.
    _stop: threading.Event | None = field(default=None, repr=False)
    async_task: asyncio.Task[Any] | None = None

    @property
    def stop_event(self) -> threading.Event:
        """Set when the attempt is cancelled, times out, or the worker stops."""
        ev = self._stop
        if ev is None:
            with _STOP_LOCK:  # the body and a stopper may ask first at the same time
                if self._stop is None:
                    self._stop = threading.Event()
                ev = self._stop
        return ev

    @property
    def cancelled(self) -> bool:
        ev = self._stop
        return ev is not None and ev.is_set()

    @property
    def last_checkpoint(self) -> Any:
        """The checkpoint an earlier attempt saved (None on the first attempt)."""
        return self.task.get("checkpoint")

    @property
    def attempt(self) -> int:
        return int(self.task["attempts"])

    def progress(self, fraction: float) -> None:
        if not 0 <= fraction <= 1:
            raise ValidationError("progress: must be between 0 and 1", field="progress")
        if self._saver is not None:
            self._saver(self.task["id"], self.task["version"], float(fraction), False, None)

    def checkpoint(self, state: Any) -> None:
        """Save JSON-able state; the next attempt receives it as ``ctx.last_checkpoint``."""
        if self._saver is not None:
            self._saver(self.task["id"], self.task["version"], None, True, state)
        self.task["checkpoint"] = state

    def parent_results(self) -> dict[str, Any]:
        """Results of this workflow task's parents, by node name."""
        if self._parents is None:
            return {}
        return self._parents(self.task["id"])
