"""Running task bodies: one concurrency model, threads.

- sync functions run on a pool of ``concurrency`` threads. The worker's own loops (claim,
  completion, heartbeat/LISTEN) are threads too and spend their time in blocking psycopg calls,
  which release the GIL, so a CPU-bound task slows them by GIL hand-offs (5 ms switch interval)
  but never stalls them. A Python thread cannot be killed: on timeout or cancel the attempt is
  recorded at once (timeout / cancelled), its later result is discarded, and the thread is
  abandoned (a fresh pool thread replaces it so capacity stays the same; ``ctx.cancelled``
  tells a cooperative body to return).
- ``async def`` functions run as tasks on one event loop thread; timeout and cancel cancel them.
- trivially short built-ins (noop) run inline on the claim thread.
Measured in no-op drains: blocking psycopg beat asyncio for the claim loop
(~31k vs ~26k tasks/s), and one asyncio Task per task costs ~6 us, so asyncio is used only
for async bodies.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgsched.errors import PermanentError
from pgsched.registry import TaskContext, TaskTimeout, TaskType
from pgsched.worker.claim import Completion, Undecodable, backoff
from pgsched.worker.supervision import CrashHook, bounded, guarded, safe_str

# The longest the timeout monitor sleeps at once. A deadline further away (a timeout of
# centuries, from a row or a task type) is simply not reached: Condition.wait() raises
# OverflowError beyond threading.TIMEOUT_MAX, and that killed the monitor, so no later task
# timed out either.
_MAX_TIMER_WAIT = 3600.0


@dataclass(eq=False)
class Job:
    row: dict[str, Any]
    tt: TaskType | None
    ctx: TaskContext
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    stop_reason: str | None = None  # timeout | cancel | shutdown
    finalized: bool = False
    on_thread: bool = False
    abandoned: bool = False
    handback: bool = False
    future: Any = None

    @property
    def id(self) -> int:
        return int(self.row["id"])


@dataclass(frozen=True)
class RetryPolicy:
    backoff_base: float
    backoff_cap: float


class Executor:
    def __init__(
        self,
        concurrency: int,
        policy: RetryPolicy,
        on_finished: Callable[[Job, Completion | None], None],
        on_crash: CrashHook | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.policy = policy
        self._on_finished = on_finished
        self._on_crash = on_crash
        self._lock = threading.Lock()
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._timers: list[tuple[float, int, Job]] = []
        self._timer_cv = threading.Condition()
        self._seq = itertools.count()
        self._closing = False
        self._monitor = threading.Thread(
            target=guarded(self._watch, on_crash), name="pgsched-timeouts", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._spawn()
        self._monitor.start()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=guarded(self._pool_loop, self._on_crash), name="pgsched-task", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever, name="pgsched-async", daemon=True
                )
                self._loop_thread.start()
            return self._loop

    def close(self) -> None:
        """Stop the pool threads (abandoned ones end on their own: they are daemons)."""
        self._closing = True
        for _ in self._threads:
            self._q.put(None)
        with self._timer_cv:
            self._timer_cv.notify_all()
        for t in list(self._threads):
            t.join(timeout=1.0)
        self._monitor.join(timeout=1.0)
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=1.0)
            if not self._loop_thread.is_alive():
                self._loop.close()

    # -- running -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        tt = job.tt
        if job.deadline is not None:
            with self._timer_cv:
                heapq.heappush(self._timers, (job.deadline, next(self._seq), job))
                self._timer_cv.notify()
        if tt is None:
            name = job.row["task_type"]
            self.finalize(job, exc=PermanentError(f"no handler for task type {name!r}"))
        elif bad := _undecodable(job.row):
            self.finalize(job, exc=PermanentError(bad))
        elif tt.inline:
            self._run_sync(job)
        elif tt.is_async:
            loop = self._ensure_loop()
            job.future = asyncio.run_coroutine_threadsafe(self._run_async(job), loop)
        else:
            self._q.put(job)

    def _call(self, job: Job) -> Any:
        tt = job.tt
        assert tt is not None
        payload = job.row["payload"]
        if tt.stoppable:
            return tt.fn(payload, job.ctx, job.ctx.stop_event)
        if tt.wants_ctx:
            return tt.fn(payload, job.ctx)
        return tt.fn(payload)

    def _run_sync(self, job: Job) -> None:
        try:
            result = self._call(job)
        except BaseException as e:
            self.finalize(job, exc=e)
        else:
            self.finalize(job, result=result)

    async def _run_async(self, job: Job) -> None:
        try:
            await self._run_async_inner(job)
        except BaseException as e:  # the bookkeeping after the body, not the body itself
            if self._on_crash is None:
                raise
            self._on_crash("pgsched-async", e)

    async def _run_async_inner(self, job: Job) -> None:
        job.ctx.async_task = asyncio.current_task()
        try:
            result = await self._call(job)
        except asyncio.CancelledError:
            self.finalize(job, exc=TaskTimeout("cancelled"))  # no-op: the stopper finalized
        except BaseException as e:
            self.finalize(job, exc=e)
        else:
            self.finalize(job, result=result)

    def _pool_loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            with self._lock:
                if job.finalized:
                    continue
                job.on_thread = True
            self._run_sync(job)
            with self._lock:
                if job.abandoned:
                    return  # a replacement thread took this one's place

    # -- stopping ------------------------------------------------------------------------------

    def stop_job(self, job: Job, reason: str) -> None:
        """Stop a running attempt now: timeout, cancel, or shutdown (hand it back)."""
        with self._lock:
            if job.finalized:
                return
            job.stop_reason = reason
            if job.on_thread and not self._closing:
                job.abandoned = True
                self._spawn()
        job.ctx.stop_event.set()
        if job.future is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(job.future.cancel)
        self.finalize(job)

    def _watch(self) -> None:
        while not self._closing:
            with self._timer_cv:
                while not self._closing:
                    now = time.monotonic()
                    if self._timers and self._timers[0][0] <= now:
                        _, _, job = heapq.heappop(self._timers)
                        break
                    wait = min(self._timers[0][0] - now, _MAX_TIMER_WAIT) if self._timers else None
                    self._timer_cv.wait(wait)
                else:
                    return
            if not job.finalized:
                self.stop_job(job, "timeout")

    # -- outcome -------------------------------------------------------------------------------

    def finalize(self, job: Job, *, exc: BaseException | None = None, result: Any = None) -> None:
        """First caller wins: the body returning, the timeout monitor, a cancel, shutdown."""
        with self._lock:
            if job.finalized:
                return
            job.finalized = True
        if job.stop_reason == "shutdown":
            job.handback = True
            self._on_finished(job, None)
            return
        try:
            completion = self.outcome(job, exc, result)
        except Exception as e:  # what the task left cannot be described: fail that task only
            completion = Completion(
                id=job.row["id"],
                version=job.row["version"],
                status="failed",
                outcome="failure",
                error=bounded(f"cannot record the outcome: {type(e).__name__}: {safe_str(e)}"),
                queue=job.row["queue"],
                task_type=job.row["task_type"],
                attempt=job.row["attempts"],
            )
        self._on_finished(job, completion)

    def outcome(self, job: Job, exc: BaseException | None, result: Any) -> Completion:
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
            c.error = _describe(exc)
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
        base = row.get("backoff_base_s") or (tt and tt.backoff_base) or self.policy.backoff_base
        cap = row.get("backoff_cap_s") or (tt and tt.backoff_cap) or self.policy.backoff_cap
        c.status = "retrying"
        c.delay = backoff(row["attempts"], base, max(cap, base))
        return c


def _describe(exc: BaseException) -> str:
    """The error text of a failed attempt: bounded, and made even when the exception's own
    __str__ raises (that used to kill the task's thread, stranding the task and its slot)."""
    text = safe_str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, PermanentError) or type(exc).__module__ == "pgsched.builtins":
        return bounded(text or name)
    return bounded(f"{name}: {text}" if text else name)


def _undecodable(row: dict[str, Any]) -> str | None:
    """Why this claimed row's payload or checkpoint cannot be handed to a task (None: it can).
    Such a task fails for good: another attempt would read the same value."""
    for column in ("payload", "checkpoint"):
        v = row.get(column)
        if isinstance(v, Undecodable):
            return f"the task's {column} cannot be decoded: {v.error}"
    return None
