"""The Python API: submit, get, list, cancel, retry, submit_many, summary, and its errors."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgsched import client as client_module
from pgsched.client import SMALL_BATCH, Client
from pgsched.errors import (
    DatabaseUnavailable,
    InvalidState,
    NotMigrated,
    TaskNotFound,
    ValidationError,
)
from pgsched.server import free_port
from pgsched.sql import Q, to_positional


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    with Client(dsn) as c:
        yield c


def count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0]


def test_submit_and_get_with_defaults(client: Client) -> None:
    task_id = client.submit("noop")
    task = client.get(task_id)
    assert (task["task_type"], task["payload"], task["queue"]) == ("noop", {}, "default")
    assert (task["status"], task["priority"], task["max_attempts"]) == ("pending", 0, 3)
    assert task["history"] == []


def test_submit_every_option(client: Client) -> None:
    at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    a = client.submit(
        "email",
        {"to": "ü@b.c", "n": [1, {"x": None}]},
        queue="mail",
        priority=-7,
        run_at=at,
        max_attempts=9,
        timeout=timedelta(seconds=30),
        key="k-every",
        backoff_base=timedelta(seconds=2),
    )
    t = client.get(a)
    assert t["payload"] == {"to": "ü@b.c", "n": [1, {"x": None}]}
    assert (t["queue"], t["priority"], t["run_at"], t["max_attempts"]) == ("mail", -7, at, 9)
    assert (t["timeout"], t["idempotency_key"]) == (timedelta(seconds=30), "k-every")
    assert t["backoff_base"] == timedelta(seconds=2)


def test_delay_moves_run_at(client: Client) -> None:
    before = datetime.now(UTC)
    t = client.get(client.submit("noop", delay=timedelta(hours=2)))
    assert before + timedelta(hours=2) - timedelta(seconds=5) < t["run_at"]
    assert t["run_at"] < datetime.now(UTC) + timedelta(hours=2, seconds=5)


COLUMNS = (
    "task_type",
    "payload",
    "queue",
    "priority",
    "max_attempts",
    "status",
    "attempts",
    "timeout",
    "idempotency_key",
    "backoff_base",
    "backoff_cap",
    "version",
)


@pytest.mark.parametrize(
    ("task_type", "payload", "options"),
    [
        ("noop", None, {}),
        ("t" * 200, {"to": "ü", "n": [1, {"x": None}]}, {"queue": "q" * 128}),
        ("noop", [1, "two"], {"priority": -1000, "max_attempts": 1000}),
        ("noop", "text", {"queue": "mail", "priority": 1000, "max_attempts": 1}),
        ("noop", 3.5, {"priority": True}),  # not exactly an int: the TaskSpec path
    ],
)
def test_common_submit_writes_the_row_the_taskspec_path_writes(
    dsn: str, task_type: str, payload: object, options: dict
) -> None:
    with Client(dsn, default_queue="q1", default_max_attempts=7) as client:
        common = client.submit(task_type, payload, **options)
        # timeout=None is no option at all, but it is not a common one: the TaskSpec path.
        spec_path = client.submit(task_type, payload, timeout=None, **options)
        a, b = client.get(common), client.get(spec_path)
    assert [a[c] for c in COLUMNS] == [b[c] for c in COLUMNS]
    assert abs(a["run_at"] - b["run_at"]) < timedelta(seconds=5)
    assert a["queue"] == options.get("queue", "q1")
    assert a["max_attempts"] == options.get("max_attempts", 7)


def test_common_submit_skips_the_taskspec_only_when_every_value_fits(
    client: Client, conn: psycopg.Connection
) -> None:
    """Client.submit takes its common path (one prepared INSERT, no TaskSpec) only for values
    that TaskSpec would take as they are; the rest go through the TaskSpec, which names what
    is wrong. Seen from the database: the last statement of the client's session."""
    common = to_positional(Q.submit_task_common.sql)[0]
    with client.connection() as c:
        pid = c.info.backend_pid

    def last_statement() -> str:
        sql = "SELECT query FROM pg_stat_activity WHERE pid = %s"
        return conn.execute(sql, (pid,)).fetchone()[0]

    client.submit("noop", None, queue="a", priority=3)
    assert last_statement() == common
    for task_type, payload, options in [
        ("", None, {}),
        ("t" * 201, None, {}),
        ("noop", {"s": "\x00"}, {}),
        ("noop", None, {"queue": None}),
        ("noop", None, {"queue": "q\x00"}),
        ("noop", None, {"priority": 1001}),
        ("noop", None, {"priority": "1"}),
        ("noop", None, {"max_attempts": 0}),
        ("noop", None, {"run_at": None}),
    ]:
        with client.connection() as c:
            c.execute("SELECT 'before'")
        with contextlib.suppress(ValidationError):  # the TaskSpec refused it
            client.submit(task_type, payload, **options)
        assert last_statement() != common, (task_type, options)


def test_idempotency_key_returns_the_first_id(client: Client, conn: psycopg.Connection) -> None:
    first, created = client.submit_spec(client.spec("email", {"v": 1}, key="same"))
    again, created_again = client.submit_spec(client.spec("email", {"v": 2}, key="same"))
    assert (again, created, created_again) == (first, True, False)
    assert client.get(first)["payload"] == {"v": 1}
    assert count(conn) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"priority": 1001},
        {"priority": -1001},
        {"max_attempts": 0},
        {"max_attempts": 1001},
        {"timeout": timedelta(0)},
        {"queue": ""},
        {"key": ""},
        {"delay": timedelta(seconds=1), "run_at": datetime.now(UTC)},
        {"run_at": datetime(2030, 1, 1)},  # no time zone
    ],
)
def test_invalid_submissions_write_nothing(
    client: Client, conn: psycopg.Connection, options: dict
) -> None:
    with pytest.raises(ValidationError) as info:
        client.submit("noop", **options)
    assert "\n" not in str(info.value)
    assert count(conn) == 0


def test_empty_type_and_nul_are_refused(client: Client, conn: psycopg.Connection) -> None:
    with pytest.raises(ValidationError, match="task_type"):
        client.submit("")
    with pytest.raises(ValidationError, match="payload"):
        client.submit("noop", {"s": "a\x00b"})
    assert count(conn) == 0


def test_submit_inside_the_callers_transaction(client: Client, dsn: str) -> None:
    with psycopg.connect(dsn) as own:  # not autocommit: one transaction
        rolled = client.submit("email", {"to": "x"}, conn=own)
        assert own.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 1
        own.rollback()
        assert own.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 0
        kept = client.submit("email", {"to": "y"}, conn=own)
        with pytest.raises(TaskNotFound):  # not visible to others before the commit
            client.get(kept)
        own.commit()
    assert client.get(kept)["payload"] == {"to": "y"}
    with pytest.raises(TaskNotFound):
        client.get(rolled)


def test_submit_many_keeps_input_order_and_keys(client: Client, conn: psycopg.Connection) -> None:
    existing = client.submit("noop", key="k1")
    specs = [
        client.spec("a", {"i": 0}),
        client.spec("b", {"i": 1}, key="k1"),
        client.spec("c", {"i": 2}, key="k2", queue="q2", priority=5),
        client.spec("d", {"i": 3}),
    ]
    ids = client.submit_many(specs)
    assert ids[1] == existing
    assert len(set(ids)) == 4
    for i, task_id in enumerate(ids):
        t = client.get(task_id)
        if i != 1:
            assert t["payload"] == {"i": i}
            assert t["task_type"] == "abcd"[i]
    assert client.get(ids[2])["queue"] == "q2"
    assert count(conn) == 4
    again = client.submit_many(specs)  # keyed specs: the same ids; the others: new tasks
    assert again[1:3] == ids[1:3]
    assert again[0] not in ids and again[3] not in ids and again[0] < again[3]
    assert [client.get(i)["task_type"] for i in again] == ["a", "noop", "c", "d"]
    assert count(conn) == 6
    assert client.submit_many([]) == []


def test_submit_many_inside_a_rolled_back_transaction(client: Client, dsn: str) -> None:
    with psycopg.connect(dsn) as own:
        client.submit_many([client.spec("a"), client.spec("b")], conn=own)
        own.rollback()
        assert own.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 0


def test_submit_many_refuses_delay(client: Client) -> None:
    with pytest.raises(ValidationError, match="delay"):
        client.submit_many([client.spec("a", delay=timedelta(seconds=1))])


def test_get_unknown(client: Client) -> None:
    with pytest.raises(TaskNotFound, match="no task with id 424242"):
        client.get(424242)


def test_list_filters(client: Client, conn: psycopg.Connection) -> None:
    a = client.submit("a", queue="q1")
    b = client.submit("b", queue="q1")
    c = client.submit("a", queue="q2")
    conn.execute("UPDATE pgsched.tasks SET status = 'succeeded' WHERE id = %s", (b,))
    assert [r["id"] for r in client.list()] == [c, b, a]
    assert [r["id"] for r in client.list(queue="q1")] == [b, a]
    assert [r["id"] for r in client.list(task_type="a")] == [c, a]
    assert [r["id"] for r in client.list(status="succeeded")] == [b]
    assert [r["id"] for r in client.list(status="pending", queue="q2")] == [c]
    assert [r["id"] for r in client.list(limit=1)] == [c]
    with pytest.raises(ValidationError):
        client.list(limit=0)


def test_cancel_pending_and_running(client: Client, conn: psycopg.Connection) -> None:
    pending = client.submit("noop")
    assert client.cancel(pending) == "cancelled"
    t = client.get(pending)
    assert (t["status"], t["finished_at"] is not None) == ("cancelled", True)
    with pytest.raises(InvalidState, match="it is cancelled"):
        client.cancel(pending)

    running = client.submit("noop")
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'running', attempts = 1, assigned_worker = 'w1'"
        " WHERE id = %s",
        (running,),
    )
    assert client.cancel(running) == "cancel_requested"
    t = client.get(running)
    assert (t["status"], t["cancel_requested"]) == ("running", True)
    with pytest.raises(TaskNotFound):
        client.cancel(999999)


def test_retry_failed_task(client: Client, conn: psycopg.Connection) -> None:
    task_id = client.submit("noop", max_attempts=2)
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'failed', attempts = 2, finished_at = now()"
        " WHERE id = %s",
        (task_id,),
    )
    conn.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts)"
        " VALUES (%s, 'default', 'noop', '{}', 2)",
        (task_id,),
    )
    assert client.retry(task_id, attempts=3) == 5
    t = client.get(task_id)
    assert (t["status"], t["max_attempts"], t["finished_at"]) == ("pending", 5, None)
    assert conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0] == 0
    with pytest.raises(InvalidState, match="it is pending"):
        client.retry(task_id)
    with pytest.raises(ValidationError):
        client.retry(task_id, attempts=0)
    with pytest.raises(TaskNotFound):
        client.retry(999999)


def test_retry_cancelled_uses_default_attempts(client: Client) -> None:
    task_id = client.submit("noop")
    client.cancel(task_id)
    assert client.retry(task_id) == 3  # attempts 0 + default 3


def test_summary(client: Client, conn: psycopg.Connection) -> None:
    client.submit("email", queue="mail")
    client.submit("email", queue="mail")
    client.submit("noop")
    client.submit("noop", delay=timedelta(hours=1))  # not ready yet
    client.submit("report", queue="mail", delay=timedelta(hours=1))  # not ready: no warning
    conn.execute(
        "INSERT INTO pgsched.workers (name, host, pid, queues, task_types, max_task_capacity)"
        " VALUES ('w1', 'h', 1, '{default}', '{noop}', 4)"
    )
    s = client.summary()
    assert s["counts"] == {"mail": {"pending": 3}, "default": {"pending": 2}}
    assert s["oldest_ready"]["mail"]["ready"] == 2
    assert s["oldest_ready"]["default"]["ready"] == 1
    assert [w["name"] for w in s["workers"]] == ["w1"]
    assert s["unserved"] == [{"queue": "mail", "task_type": "email", "n": 2}]


def test_not_migrated(empty_dsn: str) -> None:
    with Client(empty_dsn) as c, pytest.raises(NotMigrated, match="run pgsched migrate"):
        c.submit("noop")


def test_unreachable_database_names_host_and_port_quickly() -> None:
    port = free_port()
    start = time.monotonic()
    with (
        Client(f"postgresql://u@127.0.0.1:{port}/x", connect_timeout=2) as c,
        pytest.raises(DatabaseUnavailable) as info,
    ):
        c.get(1)
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "\n" not in str(info.value)


def test_submit_many_copy_paths_keep_order_and_fields(client: Client, dsn: str) -> None:
    from datetime import UTC, datetime

    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    plain = client.submit_many([client.spec("p", {"i": i}, priority=i) for i in range(5)])
    timed = client.submit_many(
        [
            client.spec("t", {"i": 0}, run_at=at, timeout=timedelta(seconds=30)),
            client.spec("t", {"i": 1}),
        ]
    )
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT id, payload->>'i', priority, run_at <= now(), run_at, timeout "
            "FROM pgsched.all_tasks ORDER BY id"
        ).fetchall()
    by_id = {r[0]: r for r in rows}
    assert [by_id[i][1] for i in plain] == ["0", "1", "2", "3", "4"]
    assert [by_id[i][2] for i in plain] == [0, 1, 2, 3, 4]
    assert all(by_id[i][3] for i in plain)  # the run_at default: now
    assert by_id[timed[0]][4] == at and by_id[timed[0]][5] == timedelta(seconds=30)
    assert by_id[timed[1]][3] and by_id[timed[1]][5] is None


@pytest.mark.parametrize("limit", [1001, 1000])  # one statement / COPY
def test_submit_many_notifies_each_queue_once_at_commit(
    client: Client, dsn: str, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk paths notify per queue themselves (the row trigger skips their rows); nothing
    twice, and the ids come back in input order. 1,000 rows, SMALL_BATCH on either side."""
    assert SMALL_BATCH > 1001  # both paths are real at this size
    monkeypatch.setattr(client_module, "SMALL_BATCH", limit)
    n = 1000
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        ids = client.submit_many(
            [
                client.spec("noop", {"i": i}, queue="q1" if i % 3 else "q2", priority=i % 7)
                for i in range(n)
            ]
        )
        got = sorted(n.payload for n in listener.notifies(timeout=0.5))
        rows = dict(
            listener.execute(
                "SELECT id, (payload->>'i')::int * 10 + priority FROM pgsched.all_tasks"
            ).fetchall()
        )
    assert got == ["q1", "q2"]
    assert [rows[i] for i in ids] == [i * 10 + i % 7 for i in range(n)]
    assert ids == sorted(ids)


def test_inserts_after_submit_many_in_the_callers_transaction_still_notify(
    client: Client, dsn: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn) as own:
        listener.execute("LISTEN pgsched")
        client.submit_many([client.spec("noop", {}, queue="bulk")] * 5, conn=own)
        own.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('noop', 'later')")
        own.execute("SELECT pgsched.submit('noop', queue => 'viasubmit')")
        assert list(listener.notifies(timeout=0.2)) == []  # not committed yet
        own.commit()
        got = sorted(n.payload for n in listener.notifies(timeout=0.5))
    assert got == ["bulk", "later", "viasubmit"]


PAYLOADS = [
    {"s": 'quote " backslash \\ brace } comma ,'},
    "a bare string",
    [1, [2, {}]],
    {"u": "é € 😀", "n": None},
    3.5,
    True,
    {},
]


@pytest.mark.parametrize("keyed", [False, True])  # one JSON array through either statement
def test_submit_many_payloads_arrive_as_sent(client: Client, dsn: str, keyed: bool) -> None:
    specs = [
        client.spec("noop", p, **({"key": f"k{i}"} if keyed else {}))
        for i, p in enumerate(PAYLOADS)
    ]
    ids = client.submit_many(specs)
    with psycopg.connect(dsn, autocommit=True) as c:
        got = dict(c.execute("SELECT id, payload FROM pgsched.all_tasks").fetchall())
    assert [got[i] for i in ids] == PAYLOADS


@pytest.mark.parametrize("n", [3, 10_000])  # one statement at any size
def test_submit_batch_shares_the_options_and_keeps_the_order(
    client: Client, dsn: str, n: int
) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        ids = client.submit_batch(
            "resize", [{"i": i} for i in range(n)], queue="img", priority=4, max_attempts=7
        )
        got = [n.payload for n in listener.notifies(timeout=0.5)]
        rows = listener.execute(
            "SELECT id, payload, task_type, queue, priority, max_attempts, status"
            " FROM pgsched.all_tasks ORDER BY id"
        ).fetchall()
    assert got == ["img"]
    assert ids == [r[0] for r in rows]
    assert [r[1] for r in rows] == [{"i": i} for i in range(n)]
    assert {r[2:] for r in rows} == {("resize", "img", 4, 7, "pending")}


def test_submit_batch_takes_the_timed_options(client: Client, conn: psycopg.Connection) -> None:
    at = datetime(2031, 1, 1, tzinfo=UTC)
    ids = client.submit_batch("noop", [None, {"a": 1}], run_at=at, timeout=timedelta(seconds=9))
    rows = conn.execute(
        "SELECT id, payload, run_at, timeout FROM pgsched.all_tasks ORDER BY id"
    ).fetchall()
    assert rows == [
        (ids[0], {}, at, timedelta(seconds=9)),
        (ids[1], {"a": 1}, at, timedelta(seconds=9)),
    ]


@pytest.mark.parametrize(
    ("task_type", "payloads", "options", "field"),
    [
        ("", [{}], {}, "task_type"),
        ("noop", [{}], {"priority": 5000}, "priority"),
        ("noop", [{}], {"queue": ""}, "queue"),
        ("noop", [{}, {"s": "a\x00b"}], {}, "payload 1"),
        ("noop", [{}, {}, {"a\x00": 1}], {}, "payload 2"),  # in a key
        ("noop", [{"s": "\\u0000"}, [["\x00"]]], {}, "payload 1"),  # an escape's text, then a NUL
        ("noop", [{}], {"key": "k"}, "key"),
        ("noop", [{}], {"delay": timedelta(seconds=1)}, "delay"),
        ("noop", [], {"max_attempts": 0}, "max_attempts"),  # options are checked even for none
    ],
)
def test_submit_batch_refuses_bad_input_and_writes_nothing(
    client: Client,
    conn: psycopg.Connection,
    task_type: str,
    payloads: list,
    options: dict,
    field: str,
) -> None:
    with pytest.raises(ValidationError) as info:
        client.submit_batch(task_type, payloads, **options)
    assert str(info.value).startswith(field + ":")
    assert "\n" not in str(info.value)
    assert count(conn) == 0


def test_submit_batch_stores_the_text_of_an_escape_as_it_is(client: Client, dsn: str) -> None:
    """A backslash before "u0000" is no NUL: the payloads' JSON holds "\\\\u0000" there, which
    the NUL search finds, and the payloads walked one by one show none."""
    payloads = [{"s": "\\u0000"}, {"\\u0000": ["x\\\\u0000"]}]
    ids = client.submit_batch("noop", payloads)
    with psycopg.connect(dsn, autocommit=True) as c:
        got = dict(c.execute("SELECT id, payload FROM pgsched.all_tasks").fetchall())
    assert [got[i] for i in ids] == payloads


def test_submit_batch_writes_the_payloads_with_the_connections_json_dumps(
    client: Client, dsn: str
) -> None:
    """set_json_dumps on the caller's connection applies, as it does for every other call."""

    def dumps(obj: object) -> str:
        return json.dumps(obj, default=lambda o: o.isoformat())

    at = datetime(2031, 2, 3, tzinfo=UTC)
    with psycopg.connect(dsn, autocommit=True) as own:
        psycopg.types.json.set_json_dumps(dumps, own)
        ids = client.submit_batch("noop", [{"at": at}], conn=own)
        assert own.execute(
            "SELECT payload FROM pgsched.all_tasks WHERE id = %s", ids
        ).fetchone() == ({"at": at.isoformat()},)


def test_submit_batch_in_the_callers_transaction(client: Client, dsn: str) -> None:
    """Rolled back with the caller's work; committed, it notifies its queue once, and the
    caller's later inserts in the same transaction notify too."""
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn) as own:
        listener.execute("LISTEN pgsched")
        client.submit_batch("noop", [{"i": i} for i in range(10)], conn=own)
        own.rollback()
        assert own.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 0
        own.rollback()
        client.submit_batch("noop", [{"i": i} for i in range(10)], queue="bulk", conn=own)
        own.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('noop', 'later')")
        assert list(listener.notifies(timeout=0.2)) == []  # not committed yet
        own.commit()
        got = sorted(n.payload for n in listener.notifies(timeout=0.5))
    assert got == ["bulk", "later"]


def test_submit_on_its_own_connection_prepares_once(
    client: Client, conn: psycopg.Connection
) -> None:
    """Client.submit's common case goes through one statement prepared on the client's
    connection (pgsched.inserts.OneInsert) and stores what it was given."""
    payload = {"s": "naïve ☃ \\ \" '", "n": [1, 2.5, None, True], "d": {"x": {}}}
    ids = [
        client.submit("noop", payload, queue="q2", priority=-7, max_attempts=9) for _ in range(8)
    ]
    row = conn.execute(
        "SELECT task_type, payload, queue, priority, max_attempts, status"
        " FROM pgsched.all_tasks WHERE id = %s",
        (ids[-1],),
    ).fetchone()
    assert row == ("noop", payload, "q2", -7, 9, "pending")
    assert len(set(ids)) == 8
    with client.connection() as c:
        names = [r["name"] for r in c.execute("SELECT name FROM pg_prepared_statements")]
    assert names == ["pgsched_submit_common"]


def test_submit_errors_come_back_as_psycopg_raises_them(
    client: Client, conn: psycopg.Connection
) -> None:
    conn.execute("ALTER TABLE pgsched.tasks ADD CONSTRAINT no_bad CHECK (task_type <> 'bad')")
    client.submit("noop")
    with pytest.raises(psycopg.errors.CheckViolation) as e:
        client.submit("bad")
    assert e.value.diag.constraint_name == "no_bad"
    assert client.submit("noop") > 0  # the connection is fine after an error
    assert count(conn) == 2


def test_submit_after_its_connection_was_lost(client: Client, conn: psycopg.Connection) -> None:
    client.submit("noop")
    with client.connection() as c:
        pid = c.info.backend_pid
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(DatabaseUnavailable, match="lost the database connection"):
        for _ in range(3):  # the termination may land after the next call has been answered
            client.submit("noop")
            time.sleep(0.2)
    assert client.submit("noop") > 0  # a new connection, the statement prepared again there
    with client.connection() as c:
        assert c.info.backend_pid != pid


def test_submit_uses_the_connections_json_dumps(client: Client, conn: psycopg.Connection) -> None:
    import json
    from decimal import Decimal

    from psycopg.types.json import set_json_dumps

    client.submit("noop")
    with client.connection() as c:
        set_json_dumps(lambda v: json.dumps(v, default=str), c)
    task_id = client.submit("noop", {"price": Decimal("1.10")})
    assert client.get(task_id)["payload"] == {"price": "1.10"}


def test_submit_from_threads_at_once(client: Client, conn: psycopg.Connection) -> None:
    """Threads sharing one Client: the statement is prepared once on the shared connection."""
    import threading

    ids: list[int] = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        ids.extend(client.submit("noop", {"t": threading.get_ident()}) for _ in range(20))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 160 == count(conn)
