"""The executor: runs claimed tasks' bodies and keeps the table of what runs here.

- sync functions run on a pool of ``concurrency`` threads. The worker's own loops (claim,
  completion, control) are threads too and spend their time in blocking psycopg calls, which
  release the GIL, so a CPU-bound task slows them by GIL hand-offs (5 ms switch interval) but
  never stalls them. A Python thread cannot be killed: on timeout or cancel the attempt is
  recorded at once (timeout / cancelled), its later result is discarded, and the thread is
  abandoned (a fresh pool thread replaces it so capacity stays the same; ``ctx.cancelled``
  tells a cooperative body to return).
- ``async def`` functions run as tasks on one event loop thread; timeout and cancel cancel them.
- trivially short built-ins (noop) run inline on the claim thread.
Threads rather than asyncio for the worker's own loops: in no-op drains the blocking claim
loop ran ~31k tasks/s against ~26k for asyncio, and one asyncio Task per task costs ~6 us, so
asyncio serves async bodies only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgsched.errors import PermanentError, TaskTimeout
from pgsched.registry import Registry, TaskContext, TaskType
from pgsched.worker.decode import undecodable
from pgsched.worker.outcome import Completion, RetryPolicy, outcome, unrecordable
from pgsched.worker.supervision import CrashHook, guarded

# The longest the timeout monitor sleeps at once. A deadline further away (a timeout of
# centuries, from a row or a task type) is simply not reached: Condition.wait() raises
# OverflowError beyond threading.TIMEOUT_MAX, which would end the monitor, and no later task
# would time out.
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
    future: concurrent.futures.Future[Any] | None = None  # an async body's, to cancel it

    @property
    def id(self) -> int:
        return int(self.row["id"])


class Executor:
    """Runs the bodies of claimed rows; ``done`` takes each finished attempt's Completion,
    ``freed`` is told when a slot frees up (not for inline bodies: they run on the claim
    thread, which is not waiting). A task stopped by the shutdown is handed back instead: it
    waits in ``handed_back`` for the worker to release it."""

    def __init__(
        self,
        concurrency: int,
        policy: RetryPolicy,
        registry: Registry,
        context: Callable[[dict[str, Any]], TaskContext],
        done: Callable[[Completion], None],
        freed: Callable[[], None],
        emit: Callable[..., None],
        on_crash: CrashHook | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.policy = policy
        self._registry = registry
        self._context = context
        self._done = done
        self._freed = freed
        self._emit = emit
        self._on_crash = on_crash
        self._running: dict[int, Job] = {}
        self.handed_back: list[Job] = []
        # Two locks, so the claim thread's bookkeeping of the table never waits on a pool
        # thread taking a job (a contended lock may cost a GIL switch interval, 5 ms).
        self._table_lock = threading.Lock()  # _running, handed_back
        self._lock = threading.Lock()  # a job's fields, the pool and the event loop
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

    @property
    def running(self) -> int:
        """Attempts running here (not yet finished)."""
        return len(self._running)

    def running_ids(self) -> set[int]:
        with self._table_lock:
            return set(self._running)

    def run(self, rows: list[dict[str, Any]]) -> None:
        """Start an attempt for each claimed row."""
        now = time.monotonic()
        for row in rows:
            tt = self._registry.get(row["task_type"])
            timeout = row["timeout_s"] or (tt.timeout if tt is not None else None)
            job = Job(
                row,
                tt,
                self._context(row),
                started=now,
                deadline=None if not timeout else now + timeout,
            )
            with self._table_lock:
                self._running[job.id] = job
            self._emit(
                "task_claimed",
                "debug",
                task_id=job.id,
                queue=row["queue"],
                task_type=row["task_type"],
                attempt=row["attempts"],
            )
            self.submit(job)

    def cancel(self, task_id: int, version: int) -> bool:
        """Stop the attempt of ``task_id`` as cancelled (False: it does not run here)."""
        with self._table_lock:
            job = self._running.get(task_id)
        if job is None:
            return False
        job.row["version"] = version
        self.stop_job(job, "cancel")
        return True

    def stop_all(self, reason: str) -> None:
        with self._table_lock:
            jobs = list(self._running.values())
        for job in jobs:
            self.stop_job(job, reason)

    def submit(self, job: Job) -> None:
        tt = job.tt
        if job.deadline is not None:
            with self._timer_cv:
                heapq.heappush(self._timers, (job.deadline, next(self._seq), job))
                self._timer_cv.notify()
        if tt is None:
            name = job.row["task_type"]
            self.finalize(job, exc=PermanentError(f"no handler for task type {name!r}"))
        elif bad := undecodable(job.row):
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
            with self._table_lock:
                self._running.pop(job.id, None)
                self.handed_back.append(job)
            self._freed()
            return
        try:
            completion = outcome(job, exc, result, self.policy)
        except Exception as e:  # what the task left cannot be described: fail that task only
            completion = unrecordable(job, e)
        with self._table_lock:
            self._running.pop(job.id, None)
        self._done(completion)
        if job.tt is None or not job.tt.inline:
            # An inline body runs on the claim thread, which is not waiting: skipping this
            # call (~3 us: Condition + notify_all) halves its per-task Python cost.
            self._freed()
