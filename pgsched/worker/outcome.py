"""What a finished attempt becomes: a Completion (succeeded, retrying with a backoff, failed or
cancelled), as the completion statement writes it."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgsched.durations import DURATION_MAX_S
from pgsched.errors import FailedWithResult, PermanentError, TaskTimeout
from pgsched.worker.supervision import bounded, safe_str

if TYPE_CHECKING:
    from pgsched.worker.executor import Job


@dataclass(slots=True)
class Completion:
    """One finished attempt, as the completion statement takes it."""

    id: int
    version: int
    status: str  # succeeded | retrying | failed | cancelled
    outcome: str  # success | failure | timeout | cancelled
    result: Any = None
    error: str | None = None
    delay: float = 0.0  # seconds until the retry (status retrying)
    duration_ms: float = 0.0
    queue: str = ""
    task_type: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """The worker's backoff, for tasks whose row and task type set none."""

    backoff_base: float
    backoff_cap: float


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (1-based): "equal jitter" exponential backoff,
    uniform in [d/2, d] with d = min(cap, base * 2**(attempt-1)). Half the delay is kept so
    retries never bunch at zero; the other half spreads a thundering herd."""
    d = min(cap, base * (2.0 ** max(0, min(attempt - 1, 62))))
    # run_at = now() + delay must be a timestamp that PostgreSQL and Python both hold: a row's
    # backoff of '1000000 years' (or a non-finite one) would fail the completion with
    # "interval out of range" and leave the task running.
    if not d <= DURATION_MAX_S:  # also NaN
        d = DURATION_MAX_S
    r = rng.random() if rng is not None else random.random()
    return d / 2 + r * d / 2


def outcome(job: Job, exc: BaseException | None, result: Any, policy: RetryPolicy) -> Completion:
    """The completion of ``job``'s attempt, which raised ``exc`` or returned ``result``."""
    row, tt = job.row, job.tt
    c = Completion(
        id=row["id"],
        version=row["version"],
        status="succeeded",
        outcome="success",
        duration_ms=(time.monotonic() - job.started) * 1000,
        queue=row["queue"],
        task_type=row["task_type"],
        attempt=row["attempts"],
    )
    if job.stop_reason == "cancel":
        c.status, c.outcome, c.error = "cancelled", "cancelled", "cancelled by user"
        return c
    if job.stop_reason == "timeout" or isinstance(exc, TaskTimeout):
        c.outcome = "timeout"
        c.error = bounded(safe_str(exc)) if exc else f"timed out after {row.get('timeout_s')}s"
    elif exc is None:
        c.result = result
        return c
    else:
        c.outcome = "failure"
        c.error = describe(exc)
        c.result = getattr(exc, "result", None)
        if isinstance(exc, PermanentError):
            c.status = "failed"
            return c
    max_attempts = row["max_attempts"]
    if tt is not None and tt.max_attempts is not None:
        max_attempts = min(max_attempts, tt.max_attempts)
    if row["attempts"] >= max_attempts:
        c.status = "failed"
        return c
    base = row.get("backoff_base_s") or (tt and tt.backoff_base) or policy.backoff_base
    cap = row.get("backoff_cap_s") or (tt and tt.backoff_cap) or policy.backoff_cap
    c.status = "retrying"
    c.delay = backoff(row["attempts"], base, max(cap, base))
    return c


def unrecordable(job: Job, e: BaseException) -> Completion:
    """The completion of an attempt whose outcome cannot be described (its result or error
    raises when read): that task fails, and no other."""
    return Completion(
        id=job.row["id"],
        version=job.row["version"],
        status="failed",
        outcome="failure",
        error=bounded(f"cannot record the outcome: {type(e).__name__}: {safe_str(e)}"),
        queue=job.row["queue"],
        task_type=job.row["task_type"],
        attempt=job.row["attempts"],
    )


def describe(exc: BaseException) -> str:
    """The error text of a failed attempt: bounded, and made even when the exception's own
    __str__ raises (a raising __str__ must not kill the task's thread and strand its slot).
    pgsched's own task failures are stored as their message alone, which names what failed
    ("shell: exit code 1: ..."); any other exception with its class name first."""
    text = safe_str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, PermanentError | FailedWithResult):
        return bounded(text or name)
    return bounded(f"{name}: {text}" if text else name)
