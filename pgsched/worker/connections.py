"""The worker's connections to PostgreSQL, and the session settings each kind runs with.

Four kinds, each with one owner: the claimer's claim connection, the completer's writer
connections, the control thread's *direct* connection (never through a pooler: it holds
session-level advisory locks and LISTENs), and the auxiliary connection on which task bodies
save progress and checkpoints and read their parents' results.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import DictRow

from pgsched.config import Settings
from pgsched.db import connect
from pgsched.registry import TaskContext
from pgsched.worker.decode import fast_json
from pgsched.worker.load import LoadSampler

# Session settings of the worker's connections. plan_cache_mode=force_custom_plan: psycopg
# prepares a statement after 5 runs, and PostgreSQL may then switch to a generic plan; one
# claim shape fell from ~19k to ~4.5k tasks/s that way. jit = off: every statement a worker
# runs is an indexed lookup or a batch of at most batch_size rows, which JIT compilation
# (100-200 ms a statement where the server has LLVM) never pays back, and a plan whose
# estimated cost passes jit_above_cost is compiled on every execution. Behind a pooler that
# refuses startup options the statements run without JIT all the same: their estimated costs
# stay far below the thresholds (tests/test_worker_plan.py checks both ways).
SESSION = "-c plan_cache_mode=force_custom_plan -c jit=off"
# The claim and completion connections plan each statement once per session (generic plans):
# planning the claim again for every claim costs ~0.2 ms, a fifth of an idle worker's pickup,
# and planning the completion again ~0.4 ms of server CPU per batch, paid per task whenever
# tasks trickle in one at a time. A generic plan is made once, maybe over an empty table, where
# the cheapest way to find the claimed ids is a sequential scan, which would then read the whole
# backlog on every claim (12 ms a claim over 50,000 tasks): sequential scans are off there.
# That costs nothing else: every statement these connections run has an index plan, so the
# 1e10 that PostgreSQL before 18 adds to a disabled scan's cost never enters one of their plans
# (tests/test_worker_plan.py asserts it for each of them, on every supported server).
CLAIM_SESSION = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off"


def is_local(conn: psycopg.Connection[DictRow]) -> bool:
    """Whether ``conn``'s server runs on this host (a Unix socket or a loopback address)."""
    host = conn.info.hostaddr or conn.info.host
    return host.startswith("/") or host in ("localhost", "::1") or host.startswith("127.")


class Connections:
    """Opens the worker's connections; counts the server backends of those on this host as
    the worker's own load (load.BackendCpu), so a worker that keeps its host's server busy
    does not weigh itself down."""

    def __init__(self, dsn: str, direct_dsn: str, settings: Settings, sampler: LoadSampler):
        self.dsn = dsn
        self.direct_dsn = direct_dsn
        self.settings = settings
        # The waker LISTENs on its claim connection too, where that connection is direct (not
        # through a pooler): a notification then wakes the claim thread on the very backend
        # that runs the claim.
        self.claim_listens = direct_dsn == dsn
        self._backends: weakref.WeakSet[psycopg.Connection[DictRow]] = weakref.WeakSet()
        self._backends_lock = threading.Lock()
        sampler.watch_backends(self.backend_pids)
        self._aux: psycopg.Connection[DictRow] | None = None
        self._aux_lock = threading.Lock()

    def _options(self, options: str) -> dict[str, Any]:
        if not self.settings.prepared_statements:
            # Behind PgBouncer in transaction mode: no prepared statements, and no startup
            # `options` (it refuses them); unprepared statements always get custom plans.
            return {"timeout": self.settings.connect_timeout, "prepare": False, "lenient": False}
        options = f"{options} {self.settings.session_options}"  # time limits (settings)
        return {"timeout": self.settings.connect_timeout, "options": options, "lenient": False}

    def pooled(self, options: str = SESSION) -> psycopg.Connection[DictRow]:
        conn = connect(self.dsn, **self._options(options))
        self._watch(conn)
        fast_json(conn)  # claim-thread CPU per 40k tasks 0.365 -> 0.34 s
        return conn

    def claim(self, on_notify: Callable[[psycopg.Notify], None]) -> psycopg.Connection[DictRow]:
        conn = self.pooled(CLAIM_SESSION)
        conn.add_notify_handler(on_notify)  # heard while the waker listens there
        return conn

    def completer(self) -> psycopg.Connection[DictRow]:
        return self.pooled(CLAIM_SESSION)

    def direct(self, on_notify: Callable[[psycopg.Notify], None]) -> psycopg.Connection[DictRow]:
        conn = connect(self.direct_dsn, **self._options(SESSION))
        self._watch(conn)
        conn.add_notify_handler(on_notify)
        return conn

    def _watch(self, conn: psycopg.Connection[DictRow]) -> None:
        if is_local(conn):
            with self._backends_lock:
                self._backends.add(conn)

    def backend_pids(self) -> set[int]:
        with self._backends_lock:
            return {c.info.backend_pid for c in self._backends if not c.closed}

    # -- what task bodies reach through their TaskContext ------------------------------------

    def task_context(self, row: dict[str, Any]) -> TaskContext:
        return TaskContext(row, self._save_progress, self._parent_results)

    def _aux_conn(self) -> psycopg.Connection[DictRow]:
        if self._aux is None or self._aux.closed:
            self._aux = self.pooled()
        return self._aux

    def _save_progress(
        self,
        task_id: int,
        version: int,
        progress: float | None,
        set_checkpoint: bool,
        checkpoint: Any,
    ) -> None:
        from psycopg.types.json import Jsonb

        from pgsched.sql import Q

        with self._aux_lock:
            Q.task_progress.run(
                self._aux_conn(),
                {
                    "id": task_id,
                    "version": version,
                    "progress": progress,
                    "set_checkpoint": set_checkpoint,
                    "checkpoint": None if checkpoint is None else Jsonb(checkpoint),
                },
            )

    def _parent_results(self, task_id: int) -> dict[str, Any]:
        from pgsched.workflows import parent_results

        with self._aux_lock:
            return parent_results(self._aux_conn(), task_id)

    def close(self) -> None:
        if self._aux is not None:
            self._aux.close()
