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
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from pgsched.config import Settings, time_limits
from pgsched.db import check_schema, connect, resolve_dsn, translated
from pgsched.errors import InvalidState, TaskNotFound, ValidationError
from pgsched.models import MAX_ATTEMPTS_MAX, TaskSpec, check_payload, fits_common, make_spec
from pgsched.sql import Q, to_positional

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

ZERO = timedelta(0)
# Below this many rows a plain autocommit submit_many is one INSERT ... unnest statement; from
# it on, COPY, which streams the rows instead of holding one JSON document of all the payloads.
# Producer alone, rows/s, medians of alternated 2 s runs, TaskSpecs built outside the timing
# (python bench/probes.py bulk, 2026-12-01): 100 rows 31.8k vs COPY 15.7k, 1,000 62.7k vs
# 40.0k, 5,000 69.6k vs 49.1k, 20,000 66.5k vs 49.2k, 100,000 58.7k vs 55.4k.
SMALL_BATCH = 100_000
# The options Client.submit sends without building a TaskSpec (Client._common).
_COMMON = frozenset({"queue", "priority", "max_attempts"})


class _OneInsert:
    """Client.submit's common case (Client._common) on the client's own autocommit connection:
    the submit_task_common INSERT sent through the libpq wrapper psycopg exposes
    (Connection.pgconn), prepared once per connection, its parameters in text, without
    psycopg's cursor, adaptation and result machinery. The payload goes through the connection's
    own jsonb dumper (so psycopg's set_json_dumps still applies), errors come back as the
    exceptions psycopg raises, and the connection's lock is held as psycopg holds it. Against
    the same call through psycopg (Client.submit with conn= an autocommit connection), taking
    turns in chunks of 50 for 30 s on the benchmark server, two runs: 1.13x and 1.16x the calls
    per second, client CPU 167 -> 100 and 165 -> 98 us per call. Behind PgBouncer in
    transaction mode (prepared_statements off) it sends the statement unnamed each time."""

    NAME = b"pgsched_submit_common"

    def __init__(self, conn: psycopg.Connection[Any], prepared: bool) -> None:
        self.conn = conn
        self.encoding = conn.info.encoding
        self.json_cls = conn.adapters.get_dumper(Jsonb, PyFormat.TEXT)
        self.json = self.json_cls(Jsonb, conn)
        sql, self.names = to_positional(Q.submit_task_common.sql)
        self.sql = sql.encode(self.encoding)
        self.name = self.NAME if prepared else None
        if self.name is not None:
            with conn.lock:
                self._check(conn.pgconn.prepare(self.name, self.sql), pq.ExecStatus.COMMAND_OK)

    def run(self, params: dict[str, Any]) -> int:
        """params: Client._common's (str task_type and queue, int priority and max_attempts,
        the payload as given)."""
        cls = self.conn.adapters.get_dumper(Jsonb, PyFormat.TEXT)
        if cls is not self.json_cls:  # set_json_dumps() on the connection since
            self.json_cls, self.json = cls, cls(Jsonb, self.conn)
        values = []
        for k in self.names:
            v = params[k]
            if k == "payload":
                dumped = self.json.dump(Jsonb(v))
                assert dumped is not None  # a Jsonb dumps to text, "null" for None
                values.append(bytes(dumped))
            elif type(v) is str:
                values.append(v.encode(self.encoding))
            else:
                values.append(str(v).encode())
        with self.conn.lock:
            pg = self.conn.pgconn
            res = (
                pg.exec_prepared(self.name, values)
                if self.name is not None
                else pg.exec_params(self.sql, values)
            )
        self._check(res, pq.ExecStatus.TUPLES_OK)
        return int(res.get_value(0, 0))  # type: ignore[arg-type]

    def _check(self, res: pq.abc.PGresult, ok: pq.ExecStatus) -> None:
        if res.status == ok:
            return
        if self.conn.pgconn.status != pq.ConnStatus.OK:
            msg = self.conn.pgconn.get_error_message(self.encoding) or "connection lost"
            raise psycopg.OperationalError(msg)
        raise psycopg.errors.error_from_result(res, encoding=self.encoding)


def _payloads_json(conn: psycopg.Connection[Any], payloads: list[Any]) -> bytes:
    """The payloads as one JSON array, written once by the connection's jsonb dumper (so
    set_json_dumps applies), checked for what jsonb cannot store: a NUL in any string. A NUL
    comes out of the dumper as the escape \\u0000 (or as itself, from a dumper that does not
    escape it), so only a text holding one of the two is walked payload by payload, to name
    the payload, or to find none (an escaped backslash before "u0000"). Walking every payload
    (check_payload) took 15.4 ms per 20,000 small ones, writing them 8.2 ms, the search 0.16 ms;
    20 calls of 1,000 on the benchmark server, 10 rounds alternated with the walk: 142.2k ->
    171.2k rows/s (medians)."""
    cls = conn.adapters.get_dumper(Jsonb, PyFormat.TEXT)
    try:
        data = bytes(cls(Jsonb, conn).dump(Jsonb(payloads)) or b"[]")
    except (TypeError, ValueError, RecursionError):  # a date, a huge integer, depth
        for i, p in enumerate(payloads):
            check_payload(p, f"payload {i}")  # names the payload and what is wrong
        raise
    # Walked too when the text may hold NaN/Infinity (json writes them bare, jsonb refuses
    # them) or a surrogate escape (\\ud800-\\udfff: only a lone one is refused).
    if (
        b"\\u0000" in data
        or b"\x00" in data
        or b"NaN" in data
        or b"Infinity" in data
        or b"\\ud" in data
    ):
        for i, p in enumerate(payloads):
            check_payload(p, f"payload {i}")
    return data


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
        self._fast: _OneInsert | None = None
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

    def _one_insert(self, own: psycopg.Connection[Any]) -> _OneInsert:
        """The prepared common-case INSERT on our connection (made again with a new one)."""
        fast = self._fast
        if fast is not None and fast.conn is own:
            return fast
        with self._lock:
            if self._fast is None or self._fast.conn is not own:
                self._fast = _OneInsert(own, self.prepared_statements)
            return self._fast

    def _common(
        self, task_type: Any, payload: Any, options: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The parameters of a submit with at most queue, priority and max_attempts, all of
        exactly the types TaskSpec takes and within its limits; else None, and the TaskSpec
        path checks (and names what is wrong). Skipping the TaskSpec saved 20-40 µs of client
        CPU per call in four of five runs of bench/probes.py submit-call."""
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
        params = {
            "task_type": spec.task_type,
            "payload": Jsonb(spec.payload),
            "queue": spec.queue,
            "priority": spec.priority,
            "run_at": spec.run_at,
            "delay": spec.delay or ZERO,
            "max_attempts": spec.max_attempts,
            "timeout": spec.timeout,
            "key": spec.idempotency_key,
            "backoff_base": spec.backoff_base,
            "backoff_cap": spec.backoff_cap,
        }
        if spec.idempotency_key is None:
            with self._use(conn) as c:
                return int(Q.submit_task_plain.run(c, params)), True
        with self._use(conn) as c:
            row = Q.submit_task.run(c, params)
            if row is None:
                # The key's first holder committed while we waited on it: read it now.
                row = Q.submit_task.run(c, params)
        if row is None:
            raise InvalidState(
                f"idempotency key {spec.idempotency_key!r} is being used concurrently"
            )
        task_id, created = _tuple(row)[:2]
        return int(task_id), bool(created)

    def submit_many(
        self, specs: Iterable[TaskSpec], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """Bulk submit in one statement; ids in input order (existing ids for known keys)."""
        specs = list(specs)
        if not specs:
            return []
        if any(s.delay for s in specs):
            raise ValidationError("delay: submit_many takes run_at, not delay", "delay")
        if not any(s.idempotency_key for s in specs):
            if (
                len(specs) < SMALL_BATCH
                and (conn is None or conn.autocommit)
                and not any(s.run_at or s.timeout or s.backoff_base or s.backoff_cap for s in specs)
            ):
                return self._insert_small(specs, conn)
            return self._copy_many(specs, conn)
        params = {
            "task_types": [s.task_type for s in specs],
            "payloads": Jsonb([s.payload for s in specs]),
            "queues": [s.queue for s in specs],
            "priorities": [s.priority for s in specs],
            "run_ats": [s.run_at for s in specs],
            "max_attempts": [s.max_attempts for s in specs],
            "timeouts": [s.timeout for s in specs],
            "keys": [s.idempotency_key for s in specs],
        }
        with self._use(conn) as c:
            rows = [_tuple(r) for r in Q.submit_tasks.run(c, params)]
            if len(rows) == len(specs):
                return sorted(r[0] for r in rows)
            by_key = {r[1]: r[0] for r in rows if r[1] is not None}
            keys = [s.idempotency_key for s in specs if s.idempotency_key not in by_key]
            for r in Q.task_ids_by_keys.run(c, {"keys": keys}):
                r = _tuple(r)
                by_key.setdefault(r[1], r[0])
        fresh = iter(sorted(r[0] for r in rows if r[1] is None))
        return [by_key[s.idempotency_key] if s.idempotency_key else next(fresh) for s in specs]

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
            data = _payloads_json(c, payloads)
            rows = Q.submit_tasks_batch.run(
                c.cursor(row_factory=tuple_row),
                {
                    "task_type": shared.task_type,
                    "payloads": Jsonb(payloads, dumps=lambda _: data),
                    "queue": shared.queue,
                    "priority": shared.priority,
                    "run_at": shared.run_at,
                    "max_attempts": shared.max_attempts,
                    "timeout": shared.timeout,
                    "backoff_base": shared.backoff_base,
                    "backoff_cap": shared.backoff_cap,
                },
            )
            if not c.autocommit:  # the caller's transaction goes on: its inserts notify again
                Q.end_bulk_notified.run(c)
        return sorted(r[0] for r in rows)

    def _insert_small(
        self, specs: list[TaskSpec], conn: psycopg.Connection[Any] | None
    ) -> list[int]:
        """A small plain batch in one autocommit statement (fewer round trips than COPY)."""
        with self._use(conn) as c:
            rows = Q.submit_tasks_small.run(
                c,
                {
                    "task_types": [s.task_type for s in specs],
                    "payloads": Jsonb([s.payload for s in specs]),
                    "queues": [s.queue for s in specs],
                    "priorities": [s.priority for s in specs],
                    "max_attempts": [s.max_attempts for s in specs],
                },
            )
        return sorted(_tuple(r)[0] for r in rows)

    def _copy_many(self, specs: list[TaskSpec], conn: psycopg.Connection[Any] | None) -> list[int]:
        """Without keys nothing can conflict: reserve the ids, then COPY (the fastest way in)."""
        with self._use(conn) as c, c.transaction() if c.autocommit else contextlib.nullcontext():
            # In the caller's transaction as it is: a transaction() block on a connection
            # idle in non-autocommit mode would commit the caller's work.
            reserved = Q.reserve_task_ids.run(
                c.cursor(row_factory=tuple_row),
                {"n": len(specs), "queues": list({s.queue for s in specs})},
            )
            ids = [r[0] for r in reserved]
            now = reserved[0][1]
            if any(s.run_at or s.timeout or s.backoff_base or s.backoff_cap for s in specs):
                Q.copy_tasks.run(
                    c,
                    [
                        (
                            i,
                            s.task_type,
                            Jsonb(s.payload),
                            s.queue,
                            s.priority,
                            s.run_at or now,
                            s.max_attempts,
                            s.timeout,
                            s.backoff_base,
                            s.backoff_cap,
                        )
                        for i, s in zip(ids, specs, strict=True)
                    ],
                )
            else:
                Q.copy_tasks_plain.run(
                    c,
                    [
                        (i, s.task_type, Jsonb(s.payload), s.queue, s.priority, s.max_attempts)
                        for i, s in zip(ids, specs, strict=True)
                    ],
                )
            if not c.autocommit:  # the caller's transaction goes on: its inserts notify again
                Q.end_bulk_notified.run(c)
        return ids

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
        row = _tuple(row)
        return "cancel_requested" if row[2] else "cancelled"

    def retry(self, task_id: int, *, attempts: int | None = None) -> int:
        """Run a failed or cancelled task again with ``attempts`` more tries; returns its
        new max_attempts."""
        extra = self.default_max_attempts if attempts is None else attempts
        if not 1 <= extra <= MAX_ATTEMPTS_MAX:
            raise ValidationError(f"attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", "attempts")
        with self._use(None) as c:
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
        return int(_tuple(row)[2])

    def _refuse(self, c: psycopg.Connection[Any], task_id: int, verb: str) -> NoReturn:
        # A tuple cursor: :scalar reads row[0], which a dict_row connection does not have.
        with c.cursor(row_factory=tuple_row) as cur:
            status = Q.task_status.run(cur, {"id": task_id})
        if status is None:
            raise TaskNotFound(task_id)
        raise InvalidState(f"cannot {verb} task {task_id}: it is {status}")


def _tuple(row: Any) -> tuple[Any, ...]:
    """A row's values, whichever row factory the connection it was read on has."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)
