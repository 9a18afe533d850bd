"""The statements by which pgsched.client.Client puts tasks into pgsched.tasks: the prepared
common-case INSERT, one TaskSpec (with or without an idempotency key), a plain batch in one
INSERT or by COPY, a keyed batch, and one task type's batch with its payloads written as one
JSON text."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from pgsched.db import row_values
from pgsched.errors import InvalidState
from pgsched.models import TaskSpec, check_payload
from pgsched.sql import Q, to_positional


class OneInsert:
    """Client.submit's common case (Client._common) on the client's own autocommit connection:
    the submit_task_common INSERT sent through the libpq wrapper psycopg exposes
    (Connection.pgconn), prepared once per connection, its parameters in text, without
    psycopg's cursor, adaptation and result machinery: less client CPU per call than the same
    INSERT through psycopg (the `submit-call` probe compares the two,
    docs/performance.md#submit-call). The payload goes through the connection's own jsonb
    dumper (so psycopg's set_json_dumps still applies), errors come back as the exceptions
    psycopg raises, and the connection's lock is held as psycopg holds it. Behind PgBouncer in
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


def payloads_json(conn: psycopg.Connection[Any], payloads: list[Any]) -> bytes:
    """The payloads as one JSON array, written once by the connection's jsonb dumper (so
    set_json_dumps applies), checked for what jsonb cannot store: a NUL in any string. A NUL
    comes out of the dumper as the escape \\u0000 (or as itself, from a dumper that does not
    escape it), so only a text holding one of the two is walked payload by payload, to name
    the payload, or to find none (an escaped backslash before "u0000"): walking every payload
    (check_payload) costs more than writing them, searching the written text a small part of
    that."""
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


def insert_spec(c: psycopg.Connection[Any], spec: TaskSpec) -> tuple[int, bool]:
    """One task; (id, created), created False when its idempotency key was held already."""
    params = {
        "task_type": spec.task_type,
        "payload": Jsonb(spec.payload),
        "queue": spec.queue,
        "priority": spec.priority,
        "run_at": spec.run_at,
        "delay": spec.delay or timedelta(0),
        "max_attempts": spec.max_attempts,
        "timeout": spec.timeout,
        "key": spec.idempotency_key,
        "backoff_base": spec.backoff_base,
        "backoff_cap": spec.backoff_cap,
    }
    if spec.idempotency_key is None:
        return int(Q.submit_task_plain.run(c, params)), True
    row = Q.submit_task.run(c, params)
    if row is None:
        # The key's first holder committed while we waited on it: read it now.
        row = Q.submit_task.run(c, params)
    if row is None:
        raise InvalidState(f"idempotency key {spec.idempotency_key!r} is being used concurrently")
    task_id, created = row_values(row)[:2]
    return int(task_id), bool(created)


def has_extras(specs: list[TaskSpec]) -> bool:
    """Whether any spec sets what the plain bulk statements leave to the table's defaults."""
    return any(s.run_at or s.timeout or s.backoff_base or s.backoff_cap for s in specs)


def insert_small(c: psycopg.Connection[Any], specs: list[TaskSpec]) -> list[int]:
    """A plain batch (no keys, no extras) in one autocommit statement: fewer round trips than
    COPY."""
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
    return sorted(row_values(r)[0] for r in rows)


def copy_many(c: psycopg.Connection[Any], specs: list[TaskSpec]) -> list[int]:
    """A batch without keys, where nothing can conflict: reserve the ids, then COPY the rows,
    which streams them instead of holding one JSON document of every payload."""
    # In the caller's transaction as it is: a transaction() block on a connection idle in
    # non-autocommit mode would commit the caller's work.
    with c.transaction() if c.autocommit else contextlib.nullcontext():
        reserved = Q.reserve_task_ids.run(
            c.cursor(row_factory=tuple_row),
            {"n": len(specs), "queues": list({s.queue for s in specs})},
        )
        ids = [r[0] for r in reserved]
        now = reserved[0][1]
        if has_extras(specs):
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


def insert_keyed(c: psycopg.Connection[Any], specs: list[TaskSpec]) -> list[int]:
    """A batch with idempotency keys in one statement; ids in input order, the existing task's
    for a key already held."""
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
    rows = [row_values(r) for r in Q.submit_tasks.run(c, params)]
    if len(rows) == len(specs):
        return sorted(r[0] for r in rows)
    by_key = {r[1]: r[0] for r in rows if r[1] is not None}
    keys = [s.idempotency_key for s in specs if s.idempotency_key not in by_key]
    for r in Q.task_ids_by_keys.run(c, {"keys": keys}):
        r = row_values(r)
        by_key.setdefault(r[1], r[0])
    fresh = iter(sorted(r[0] for r in rows if r[1] is None))
    return [by_key[s.idempotency_key] if s.idempotency_key else next(fresh) for s in specs]


def insert_batch(c: psycopg.Connection[Any], shared: TaskSpec, payloads: list[Any]) -> list[int]:
    """One task per payload, all with ``shared``'s task type and options, in one statement."""
    data = payloads_json(c, payloads)
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
