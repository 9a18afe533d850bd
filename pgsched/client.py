"""The Python API application code uses: submit, get, list, cancel, retry, status.

from pgsched import Client
client = Client("postgresql://...")          # or Client.from_settings(load_settings().settings)
task_id = client.submit("email", {"to": "a@b.c"}, queue="mail")

with psycopg.connect(dsn) as conn:            # enqueue inside your own transaction:
    ...                                       # a rollback leaves no task
    client.submit("email", {...}, conn=conn)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from pgsched import inserts
from pgsched.config import Settings, time_limits
from pgsched.db import check_schema, connect, resolve_dsn, row_values, translated
from pgsched.errors import InvalidState, TaskNotFound, ValidationError
from pgsched.inserts import OneInsert
from pgsched.models import MAX_ATTEMPTS_MAX, TaskSpec, fits_common, make_spec
from pgsched.sql import Q

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# Below this many rows a plain autocommit submit_many is one INSERT ... unnest statement, faster
# than COPY at every size the `bulk` probe measures (docs/performance.md#bulk); from it on, COPY,
# which streams the rows instead of holding one JSON document of all the payloads in memory.
SMALL_BATCH = 100_000
# The options Client.submit sends without building a TaskSpec (Client._common).
_COMMON = frozenset({"queue", "priority", "max_attempts"})


# The time limits of Settings' defaults, for a Client made without settings.
DEFAULT_TIME_LIMITS = time_limits(
    *(
        Settings.model_fields[f].default
        for f in ("statement_timeout", "lock_timeout", "idle_in_transaction_timeout")
    )
)


class ReadyAge(TypedDict):
    age_s: float  # how long the oldest ready task of the queue has waited
    ready: int  # tasks ready to run now


class Summary(TypedDict):
    """What `pgsched status` shows (Client.summary)."""

    counts: dict[str, dict[str, int]]  # queue -> status -> tasks
    oldest_ready: dict[str, ReadyAge]  # by queue
    workers: list[dict[str, Any]]  # rows of the worker_rows statement
    unserved: list[dict[str, Any]]  # rows of the unserved_types statement


class Client:
    """Thread-safe for separate calls; each call borrows one short-lived or given connection."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        default_queue: str = "default",
        default_max_attempts: int = 3,
        check: bool = True,
        prepared_statements: bool = True,
        pool: ConnectionPool[Any] | None = None,
        time_limits: str | None = DEFAULT_TIME_LIMITS,
    ) -> None:
        """``pool``: a psycopg_pool.ConnectionPool (autocommit, dict rows) to borrow a connection
        from for each call, instead of the client's one connection (`pgsched serve` passes one,
        so concurrent requests do not queue on one session). ``time_limits``: libpq options
        giving the client's own connection its statement, lock and idle-in-transaction
        timeouts (Settings.session_options; None: the server's). A connection passed as
        ``conn=`` keeps its own."""
        self.dsn = dsn
        self.pool = pool
        self.prepared_statements = prepared_statements
        self.time_limits = time_limits if prepared_statements else None  # PgBouncer refuses them
        self.connect_timeout = connect_timeout
        self.default_queue = default_queue
        self.default_max_attempts = default_max_attempts
        self._conn: psycopg.Connection[Any] | None = None
        self._fast: OneInsert | None = None
        self._lock = threading.Lock()  # one connection, and one PREPARE on it, for all threads
        self._checked = not check

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> Client:
        return cls(
            resolve_dsn(settings),
            connect_timeout=settings.connect_timeout,
            default_queue=settings.queue,
            default_max_attempts=settings.max_attempts,
            prepared_statements=settings.prepared_statements,
            time_limits=settings.session_options,
            **kw,
        )

    # -- connections ---------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and self._checked:
            return conn
        with self._lock:  # threads starting at once share one connection
            if self._conn is None or self._conn.closed:
                self._conn = connect(
                    self.dsn,
                    timeout=self.connect_timeout,
                    prepare=self.prepared_statements,
                    options=self.time_limits or None,  # None: no options parameter
                )
            if not self._checked:
                with translated():
                    check_schema(self._conn)
                self._checked = True
            return self._conn

    @contextlib.contextmanager
    def _use(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        """The caller's connection (its transaction, untouched) or ours (autocommit)."""
        if conn is not None:
            with translated():
                yield conn
            return
        if self.pool is not None:
            with translated(), self._pooled(self.pool) as c, translated(c):
                yield c
            return
        with translated():
            own = self._connection()
        with translated(own):
            try:
                yield own
            except psycopg.OperationalError:
                own.close()  # reconnect next time
                raise

    @contextlib.contextmanager
    def _pooled(self, pool: ConnectionPool[Any]) -> Iterator[psycopg.Connection[Any]]:
        from psycopg_pool import PoolTimeout

        from pgsched.errors import DatabaseUnavailable

        try:
            cm = pool.connection(timeout=self.connect_timeout)
            c = cm.__enter__()
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"no database connection within {self.connect_timeout:g} s"
            ) from None
        try:
            if not self._checked:
                check_schema(c)
                self._checked = True
            yield c
        except BaseException as e:
            cm.__exit__(type(e), e, e.__traceback__)
            raise
        else:
            cm.__exit__(None, None, None)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one operation (autocommit, dict rows, schema checked, errors
        translated): the pool's, or the client's own. pgsched.admin.Admin runs on it."""
        with self._use(None) as c:
            yield c

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ----------------------------------------------------------------------------

    def spec(self, task_type: str, payload: Any = None, **options: Any) -> TaskSpec:
        options.setdefault("queue", self.default_queue)
        options.setdefault("max_attempts", self.default_max_attempts)
        if "key" in options:
            options["idempotency_key"] = options.pop("key")
        return make_spec(task_type=task_type, payload={} if payload is None else payload, **options)

    def submit(
        self,
        task_type: str,
        payload: Any = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        """Submit one task and return its id. Options: queue, priority, run_at, delay,
        max_attempts, timeout, key (idempotency), backoff_base, backoff_cap."""
        params = self._common(task_type, payload, options)
        if params is not None:
            with self._use(conn) as c:
                if conn is None and self.pool is None:  # prepared once on our connection
                    return self._one_insert(c).run(params)
                params["payload"] = Jsonb(params["payload"])
                return int(Q.submit_task_common.run(c, params))
        return self.submit_spec(self.spec(task_type, payload, **options), conn=conn)[0]

    def _one_insert(self, own: psycopg.Connection[Any]) -> OneInsert:
        """The prepared common-case INSERT on our connection (made again with a new one)."""
        fast = self._fast
        if fast is not None and fast.conn is own:
            return fast
        with self._lock:
            if self._fast is None or self._fast.conn is not own:
                self._fast = OneInsert(own, self.prepared_statements)
            return self._fast

    def _common(
        self, task_type: Any, payload: Any, options: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The parameters of a submit with at most queue, priority and max_attempts, all of
        exactly the types TaskSpec takes and within its limits; else None, and the TaskSpec
        path checks (and names what is wrong). Building no TaskSpec is most of the difference
        between the `submit-call` probe's Client.submit and its TaskSpec path
        (docs/performance.md#submit-call)."""
        if not options.keys() <= _COMMON:
            return None
        queue = options.get("queue", self.default_queue)
        priority = options.get("priority", 0)
        max_attempts = options.get("max_attempts", self.default_max_attempts)
        if payload is None:
            payload = {}
        if not fits_common(task_type, payload, queue, priority, max_attempts):
            return None
        return {
            "task_type": task_type,
            "payload": payload,
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
        }

    def submit_spec(
        self, spec: TaskSpec, *, conn: psycopg.Connection[Any] | None = None
    ) -> tuple[int, bool]:
        """Submit; return (id, created). created is False when the idempotency key existed."""
        with self._use(conn) as c:
            return inserts.insert_spec(c, spec)

    def submit_many(
        self, specs: Iterable[TaskSpec], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """Bulk submit: one INSERT, or COPY for a large batch without keys; ids in input order
        (existing ids for known keys)."""
        specs = list(specs)
        if not specs:
            return []
        if any(s.delay for s in specs):
            raise ValidationError("delay: submit_many takes run_at, not delay", "delay")
        with self._use(conn) as c:
            if any(s.idempotency_key for s in specs):
                return inserts.insert_keyed(c, specs)
            if len(specs) < SMALL_BATCH and c.autocommit and not inserts.has_extras(specs):
                return inserts.insert_small(c, specs)
            return inserts.copy_many(c, specs)

    def submit_batch(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> list[int]:
        """One task of ``task_type`` per payload, all with the same options (submit's, except
        key and delay), checked once: submit_many without a TaskSpec per task, in one
        statement whatever the size. Ids in payload order."""
        for name in ("key", "delay"):
            if name in options:
                raise ValidationError(
                    f"{name}: submit_batch takes no {name}; use submit_many", name
                )
        shared = self.spec(task_type, **options)
        payloads = [{} if p is None else p for p in payloads]
        if not payloads:
            return []
        with self._use(conn) as c:
            return inserts.insert_batch(c, shared, payloads)

    # -- reading -------------------------------------------------------------------------------

    def get(self, task_id: int, *, conn: psycopg.Connection[Any] | None = None) -> dict[str, Any]:
        with self._use(conn) as c, c.cursor(row_factory=dict_row) as cur:
            row: dict[str, Any] | None = Q.get_task.run(cur, {"id": task_id})
            if row is None:
                raise TaskNotFound(task_id)
            row["history"] = Q.task_history.run(cur, {"id": task_id})
        return row

    def list(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        task_type: str | None = None,
        limit: int = 50,
        before: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Tasks newest first. Pages: ``before`` = the last id of the previous page (keyset:
        every page costs the same), or ``offset`` rows skipped."""
        if limit < 1:
            raise ValidationError("limit: must be at least 1", "limit")
        if offset < 0:
            raise ValidationError("offset: must not be negative", "offset")
        with self._use(None) as c, c.cursor(row_factory=dict_row) as cur:
            rows: list[dict[str, Any]] = Q.list_tasks.run(
                cur,
                {
                    "status": status,
                    "queue": queue,
                    "task_type": task_type,
                    "limit": limit,
                    "before": before,
                    "offset": offset,
                },
            )
        return rows

    def summary(self) -> Summary:
        """What `pgsched status` shows: counts by queue and status, oldest ready task per queue,
        workers with their load, and ready work that no live worker can run."""
        with self._use(None) as c, c.cursor(row_factory=dict_row) as cur:
            counts: dict[str, dict[str, int]] = {}
            for r in Q.status_counts.run(cur):
                counts.setdefault(r["queue"], {})[r["status"]] = r["n"]
            return {
                "counts": counts,
                "oldest_ready": {
                    r["queue"]: {"age_s": float(r["age_s"]), "ready": r["ready"]}
                    for r in Q.oldest_ready.run(cur)
                },
                "workers": Q.worker_rows.run(cur),
                "unserved": Q.unserved_types.run(cur),
            }

    # -- changing state ------------------------------------------------------------------------

    def cancel(self, task_id: int) -> str:
        """Cancel: returns 'cancelled', or 'cancel_requested' for a running task."""
        with self._use(None) as c:
            row = Q.cancel_task.run(c, {"id": task_id})
            if row is None:
                return self._refuse(c, task_id, "cancel")
        row = row_values(row)
        return "cancel_requested" if row[2] else "cancelled"

    def retry(self, task_id: int, *, attempts: int | None = None) -> int:
        """Run a failed or cancelled task again with ``attempts`` more tries; returns its
        new max_attempts."""
        extra = self.default_max_attempts if attempts is None else attempts
        if not 1 <= extra <= MAX_ATTEMPTS_MAX:
            raise ValidationError(f"attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", "attempts")
        with self._use(None) as c:
            Q.reopen_task.run(c, {"id": task_id})
            row = Q.retry_task.run(c, {"id": task_id, "extra": extra})
            if row is None:
                with c.cursor(row_factory=tuple_row) as cur:
                    used = Q.task_attempts.run(cur, {"id": task_id})
                if used is not None and used >= MAX_ATTEMPTS_MAX:
                    raise InvalidState(
                        f"cannot retry task {task_id}: it has used {used} attempts, the most a "
                        "task may have (submit it again as a new task)"
                    )
                return self._refuse(c, task_id, "retry")
        return int(row_values(row)[2])

    def _refuse(self, c: psycopg.Connection[Any], task_id: int, verb: str) -> NoReturn:
        # A tuple cursor: :scalar reads row[0], which a dict_row connection does not have.
        with c.cursor(row_factory=tuple_row) as cur:
            status = Q.task_status.run(cur, {"id": task_id})
        if status is None:
            raise TaskNotFound(task_id)
        raise InvalidState(f"cannot {verb} task {task_id}: it is {status}")
