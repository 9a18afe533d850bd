"""The worker engine in-process: claim/complete loop, retries, timeouts, cancel, pause."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from pgsched.client import Client
from pgsched.config import Settings
from pgsched.db import ADVISORY_NAMESPACE, WORKER_LOCK_NAMESPACE
from pgsched.registry import Registry
from pgsched.worker import Worker
from pgsched.worker.waker import Role
from tests.conftest import FAST, Events, wait_until


def status_of(conn: psycopg.Connection, task_id: int) -> str:
    return Client(conn.info.dsn, check=False).get(task_id)["status"]


@pytest.mark.parametrize("writers", [1, 3])
def test_drains_noop_tasks(dsn: str, make_worker: Any, writers: int) -> None:
    """One completion writer (the default) and several writing batches in parallel: each
    task is written once, by one of them."""
    with Client(dsn) as c:
        ids = [c.submit("noop") for _ in range(300)]
    settings = Settings(**{**FAST.model_dump(), "completion_writers": writers})
    _w, ev = make_worker(concurrency=50, settings=settings)
    wait_until(lambda: ev.count("task_succeeded") == 300, 20, message="300 successes")
    with Client(dsn) as c:
        rows = [c.get(i) for i in ids]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(len(r["history"]) == 1 and r["history"][0]["outcome"] == "success" for r in rows)


def one(conn: psycopg.Connection, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args or None).fetchone()
    return None if row is None else row[0]


def test_retries_then_dead_letter(dsn: str, conn: psycopg.Connection, make_worker: Any) -> None:
    reg = Registry()
    calls: list[int] = []

    @reg.task("flaky", backoff_base=0.01, backoff_cap=0.02)
    def flaky(payload: Any, ctx: Any) -> None:
        calls.append(ctx.attempt)
        raise ValueError("boom")

    tid = Client(dsn).submit("flaky", {}, max_attempts=3)
    _w, ev = make_worker(registry=reg)
    wait_until(lambda: ev.count("task_failed", task_id=tid), 10, message="task failed")
    assert calls == [1, 2, 3]
    t = Client(dsn).get(tid)
    assert t["status"] == "failed" and t["attempts"] == 3
    assert [h["outcome"] for h in t["history"]] == ["failure"] * 3
    assert "ValueError: boom" in t["last_error"]
    dl = conn.execute(
        "SELECT attempts, last_error FROM pgsched.dead_letter WHERE task_id = %s", (tid,)
    ).fetchone()
    assert dl[0] == 3 and "boom" in dl[1]


def test_bad_payload_fails_permanently_not_the_worker(dsn: str, make_worker: Any) -> None:
    c = Client(dsn)
    bad = c.submit("dummy", {"sleepDurationMs": "soon"}, max_attempts=5)
    good = c.submit("dummy", {"sleepDurationMs": 1})
    _w, ev = make_worker()
    wait_until(
        lambda: ev.count("task_failed", task_id=bad) and ev.count("task_succeeded", task_id=good),
        10,
        message="both tasks done",
    )
    t = c.get(bad)
    assert t["status"] == "failed" and t["attempts"] == 1
    assert "sleepDurationMs" in t["last_error"]
    unknown = c.submit("dummy", {"nope": 1})
    wait_until(lambda: ev.count("task_failed", task_id=unknown), 10)
    assert "nope" in c.get(unknown)["last_error"]


def test_dummy_should_fail_is_retried(dsn: str, make_worker: Any) -> None:
    tid = Client(dsn).submit("dummy", {"shouldFail": True}, max_attempts=2)
    _w, ev = make_worker()
    wait_until(lambda: ev.count("task_failed", task_id=tid), 10)
    assert [h["outcome"] for h in Client(dsn).get(tid)["history"]] == ["failure", "failure"]


def test_timeout_is_recorded_and_retried(dsn: str, make_worker: Any) -> None:
    reg = Registry()
    release = threading.Event()

    @reg.task("stuck", timeout=0.3)
    def stuck(payload: Any) -> str:
        release.wait(10)  # a sync body cannot be killed: it is abandoned, its result dropped
        return "late"

    tid = Client(dsn).submit("stuck", {}, max_attempts=2)
    _w, ev = make_worker(registry=reg, concurrency=2)
    wait_until(lambda: ev.count("task_failed", task_id=tid), 10)
    release.set()
    t = Client(dsn).get(tid)
    assert [h["outcome"] for h in t["history"]] == ["timeout", "timeout"]
    assert t["result"] is None


def test_async_task_and_context(dsn: str, make_worker: Any) -> None:
    reg = Registry()

    @reg.task("async_job")
    async def async_job(payload: Any, ctx: Any) -> dict[str, Any]:
        import asyncio

        ctx.progress(0.5)
        ctx.checkpoint({"step": ctx.attempt})
        await asyncio.sleep(0.01)
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return {"got": payload["x"], "previous": ctx.last_checkpoint}

    tid = Client(dsn).submit("async_job", {"x": 7}, backoff_base="PT0.01S")
    _w, ev = make_worker(registry=reg)
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 10)
    t = Client(dsn).get(tid)
    assert t["result"] == {"got": 7, "previous": {"step": 2}}
    assert t["checkpoint"] == {"step": 2} and t["progress"] == 1


def test_cancel_running_task(dsn: str, make_worker: Any) -> None:
    c = Client(dsn)
    tid = c.submit("dummy", {"sleepDurationMs": 30000})
    _w, ev = make_worker()
    wait_until(lambda: ev.count("task_claimed", task_id=tid), 10)
    assert c.cancel(tid) == "cancel_requested"
    wait_until(lambda: ev.count("task_cancelled", task_id=tid), 2, message="cancel within 1s")
    t = c.get(tid)
    assert t["status"] == "cancelled"
    assert [h["outcome"] for h in t["history"]] == ["cancelled"]


def test_sql_insert_wakes_idle_worker_and_delayed_task_is_on_time(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    slow = Settings(**{**FAST.model_dump(), "poll_interval": 60})
    _w, ev = make_worker(settings=slow)
    wait_until(lambda: ev.count("worker_started"), 5)
    tid = one(conn, "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id")
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 2, message="woken by NOTIFY")
    tid = one(
        conn,
        "INSERT INTO pgsched.tasks (task_type, run_at) VALUES "
        "('noop', now() + interval '700 milliseconds') RETURNING id",
    )
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 3)
    late = one(
        conn,
        "SELECT extract(epoch FROM started_at - run_at) FROM pgsched.all_tasks WHERE id = %s",
        tid,
    )
    # Claimed on the waker's timer (the task's run_at), not on the 60 s fallback poll; how
    # the timer is set is tested through the waker's inputs in tests/test_worker_waker.py.
    assert 0 <= late < 2, f"delayed task started {late:.3f}s after its run_at"


def test_shell_only_on_allow_shell_worker(dsn: str, make_worker: Any) -> None:
    c = Client(dsn)
    tid = c.submit("shell", {"command": "echo hello; echo oops >&2; exit 0"}, queue="shell")
    _w1, ev1 = make_worker(name="plain", queues=["shell"])
    wait_until(lambda: ev1.count("worker_started"), 5)
    assert c.get(tid)["status"] == "pending"
    _w2, ev2 = make_worker(name="shell-ok", allow_shell=True, queues=["shell"])
    wait_until(lambda: ev2.count("task_succeeded", task_id=tid), 10)
    t = c.get(tid)
    assert t["result"]["exit_code"] == 0 and t["result"]["stdout"] == "hello\n"
    assert ev1.count("task_claimed", task_id=tid) == 0


def test_shell_timeout_kills_process_group(dsn: str, make_worker: Any, tmp_path: Any) -> None:
    marker = tmp_path / "survived"
    c = Client(dsn)
    tid = c.submit(
        "shell",
        {"command": f"(sleep 1.5; touch {marker}) & sleep 30"},
        timeout="PT0.3S",
        max_attempts=1,
        queue="shell",
    )
    _w, ev = make_worker(allow_shell=True, queues=["shell"])
    wait_until(lambda: ev.count("task_failed", task_id=tid), 10)
    assert [h["outcome"] for h in c.get(tid)["history"]] == ["timeout"]

    time.sleep(1.6)  # the background child would have written the marker by now
    assert not marker.exists()


def test_pause_and_resume_via_row_and_notify(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    _w, ev = make_worker(name="pausable")
    wait_until(lambda: ev.count("worker_started"), 5)
    conn.execute("UPDATE pgsched.workers SET status = 'paused' WHERE name = 'pausable'")
    conn.execute("SELECT pg_notify('pgsched_control', 'pausable')")
    wait_until(lambda: ev.count("worker_paused"), 1, message="paused within 1s")
    tid = Client(dsn).submit("noop")
    conn.execute("UPDATE pgsched.workers SET status = 'active' WHERE name = 'pausable'")
    assert Client(dsn).get(tid)["status"] == "pending"
    conn.execute("SELECT pg_notify('pgsched_control', 'pausable')")
    wait_until(lambda: ev.count("worker_resumed"), 1, message="resumed within 1s")
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 5)


def test_name_held_by_live_worker_is_refused(dsn: str, make_worker: Any) -> None:
    from pgsched.errors import WorkerNameTaken

    make_worker(name="dup")
    with pytest.raises(WorkerNameTaken, match="dup"):
        Worker(dsn, FAST, name="dup", registry=Registry()).start()


def test_survives_terminated_connections(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    c = Client(dsn)
    ids = [c.submit("dummy", {"sleepDurationMs": 20}) for _ in range(60)]
    _w, ev = make_worker(name="sturdy", concurrency=4)
    wait_until(lambda: ev.count("task_succeeded") >= 10, 10)
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    wait_until(lambda: ev.count("reconnected"), 10, message="worker reconnects")
    conn = psycopg.connect(dsn, autocommit=True)
    c = Client(dsn)  # the old one's session was terminated too
    wait_until(
        lambda: (
            one(
                conn2 := psycopg.connect(dsn, autocommit=True),
                "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'succeeded'",
            )
            == len(ids)
            and not conn2.close()
        ),
        30,
        interval=0.2,
        message="every task succeeded",
    )
    assert all(c.get(i)["status"] == "succeeded" for i in ids)
    assert one(conn, "SELECT status FROM pgsched.workers WHERE name = 'sturdy'") == "active"


def test_graceful_stop_hands_back_unfinished(dsn: str, conn: psycopg.Connection) -> None:
    c = Client(dsn)
    quick = c.submit("dummy", {"sleepDurationMs": 100})
    slow = c.submit("dummy", {"sleepDurationMs": 30000})
    ev = Events()
    w = Worker(dsn, FAST, name="leaving", registry=Registry(), grace=0.5, on_event=ev).start()
    wait_until(lambda: ev.count("task_claimed") == 2, 5)
    w.stop(timeout=15)
    assert c.get(quick)["status"] == "succeeded"
    t = c.get(slow)
    assert (t["status"], t["attempts"], t["assigned_worker"]) == ("pending", 0, None)
    assert one(conn, "SELECT status FROM pgsched.workers WHERE name = 'leaving'") == "stopped"


def test_one_insert_does_not_stampede_idle_workers(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    quiet = Settings(**{**FAST.model_dump(), "poll_interval": 60})
    workers = [make_worker(settings=quiet, name=f"idle{i}") for i in range(20)]
    # Every worker's first claim finds nothing; then one of them holds the waker lock.
    wait_until(lambda: all(e.count("claim_ran") >= 1 for _w, e in workers), 10)
    wait_until(
        lambda: (
            one(
                conn,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = %s::int::oid",
                WORKER_LOCK_NAMESPACE,
            )
            == 1
        ),
        5,
        message="one waker",
    )
    before = sum(e.count("claim_ran") for _w, e in workers)
    tid = one(conn, "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id")
    wait_until(lambda: any(e.count("task_succeeded", task_id=tid) for _w, e in workers), 5)
    claims_run = sum(e.count("claim_ran") for _w, e in workers) - before
    assert 1 <= claims_run <= 2, f"{claims_run} workers ran a claim for one insert"


def test_vacant_waker_role_is_taken_within_a_heartbeat(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    """A paused waker lets go of its lock with no '!waker' notification. The idle workers try
    the lock with each heartbeat, so a new waker claims what was inserted meanwhile within a
    heartbeat, not at their fallback poll (60 s here)."""
    quiet = Settings(**{**FAST.model_dump(), "poll_interval": 60})
    workers = [make_worker(settings=quiet, name=f"idle{i}") for i in range(3)]
    wait_until(lambda: all(e.count("claim_ran") >= 1 for _w, e in workers), 10)
    # The waker's session also holds its worker's liveness lock (objid = workers.id).
    waker = (
        "SELECT w.name FROM pg_locks k JOIN pg_locks l ON l.pid = k.pid"
        " AND l.locktype = 'advisory' AND l.classid = %s::int::oid"
        " JOIN pgsched.workers w ON w.id = l.objid::int"
        " WHERE k.locktype = 'advisory' AND k.granted AND k.classid = %s::int::oid"
    )
    ns = (ADVISORY_NAMESPACE, WORKER_LOCK_NAMESPACE)
    wait_until(lambda: len(conn.execute(waker, ns).fetchall()) == 1, 5, message="one waker")
    name = one(conn, waker, *ns)
    conn.execute("UPDATE pgsched.workers SET status = 'paused' WHERE name = %s", (name,))
    conn.execute("SELECT pg_notify('pgsched_control', %s)", (name,))
    wait_until(
        lambda: one(conn, waker, *ns) not in (None, name),
        2,
        interval=0.05,
        message="another worker takes the role",
    )
    tid = one(conn, "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id")
    wait_until(
        lambda: any(e.count("task_succeeded", task_id=tid) for _w, e in workers),
        5,
        message="the new waker claims the task",
    )


def test_a_worker_holding_a_task_beats_on_the_busy_pace(dsn: str, make_worker: Any) -> None:
    """The control thread picks the busy pace from the executor's table of running tasks:
    ten beats while a task is held take ~1 s at 0.1 s, ~10 s on the idle pace. The paces
    themselves are tested with the time passed in (tests/test_worker_pace.py)."""
    paced = Settings(
        **{**FAST.model_dump(), "heartbeat_interval": 0.1, "idle_heartbeat_interval": 2.0}
    )
    reg = Registry()
    release = threading.Event()

    @reg.task("hold")
    def hold(payload: Any, ctx: Any) -> None:
        release.wait(10)

    _w, ev = make_worker(settings=paced, registry=reg)
    tid = Client(dsn).submit("hold")
    wait_until(lambda: ev.count("task_claimed", task_id=tid), 5)
    n = ev.count("heartbeat")
    wait_until(lambda: ev.count("heartbeat") >= n + 10, 5, message="ten beats on the busy pace")
    release.set()
    wait_until(lambda: ev.count("task_succeeded", task_id=tid), 5)


def test_burst_worker_exits_while_another_worker_holds_the_waker_role(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    """A burst worker that runs out of work with tasks still running must look again and exit,
    whoever holds the waker lock. The idle worker here holds it but can claim nothing (its
    memory ceiling is below any real reading), so the tasks are the burst worker's."""
    deaf = Settings(**{**FAST.model_dump(), "memory_ceiling": 0.001})
    _idle, idle_ev = make_worker(settings=deaf, name="holder")
    wait_until(lambda: idle_ev.count("claim_ran") >= 1 and idle_ev.count("heartbeat") >= 2, 10)
    lock = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s::int::oid"
    )
    wait_until(lambda: one(conn, lock, WORKER_LOCK_NAMESPACE) == 1, 5, message="a waker")
    c = Client(dsn)
    ids = [c.submit("dummy", {"sleepDurationMs": 300}) for _ in range(2)]
    ev = Events()
    burst = Worker(
        dsn, FAST, name="burst", registry=Registry(), concurrency=4, burst=True, on_event=ev
    )
    done = threading.Thread(target=burst.run, daemon=True)
    done.start()
    done.join(timeout=10)
    alive = done.is_alive()
    if alive:
        burst.stop(timeout=15)
    assert not alive, "the burst worker did not exit"
    assert ev.count("worker_burst_done") == 1
    assert [c.get(i)["status"] for i in ids] == ["succeeded"] * 2, ev.items


def test_idle_waker_claims_while_its_control_thread_is_stuck(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    """The idle waker listens on its claim connection too, and claims there: a task inserted
    while the control thread's heartbeat waits on a row lock (any slow statement on the direct
    connection) still starts at once, not at the fallback poll (60 s here)."""
    quiet = Settings(**{**FAST.model_dump(), "poll_interval": 60})
    _w, ev = make_worker(settings=quiet, name="waker")
    wait_until(lambda: ev.count("claim_ran") >= 1 and ev.count("heartbeat") >= 1, 10)
    with psycopg.connect(dsn) as blocker:
        blocker.execute("SELECT 1 FROM pgsched.workers WHERE name = 'waker' FOR UPDATE")
        wait_until(
            lambda: (
                one(
                    conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE"
                    " wait_event_type = 'Lock' AND query LIKE '%%workers%%'",
                )
                == 1
            ),
            5,
            message="the heartbeat waits on the row lock",
        )
        tid = one(conn, "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id")
        wait_until(
            lambda: ev.count("task_succeeded", task_id=tid),
            5,
            message="the task runs while the control thread waits",
        )
        blocker.rollback()


def test_only_the_waker_listens_on_its_claim_connection(
    dsn: str, conn: psycopg.Connection, make_worker: Any
) -> None:
    """Every listening backend is signalled for every notification, so idle workers that are
    not the waker must not listen twice: after a full batch hands the role on, still one."""
    quiet = Settings(**{**FAST.model_dump(), "poll_interval": 60, "batch_size": 2})
    workers = [make_worker(settings=quiet, name=f"idle{i}", concurrency=2) for i in range(3)]
    wait_until(lambda: all(e.count("claim_ran") >= 1 for _w, e in workers), 10)

    def only_the_waker_listens() -> bool:
        listening = [w.name for w, _e in workers if w.waker.listening]
        return listening == [w.name for w, _e in workers if w.waker.role is Role.WAKER] and (
            len(listening) == 1
        )

    wait_until(only_the_waker_listens, 5, message="one claim connection listens")
    c = Client(dsn)
    ids = [c.submit("noop") for _ in range(12)]
    wait_until(lambda: all(c.get(i)["status"] == "succeeded" for i in ids), 10)
    wait_until(lambda: sum(e.count("claim_ran") for _w, e in workers) >= 9, 5)
    wait_until(
        only_the_waker_listens,
        5,
        interval=0.05,
        message="one claim connection listens after the role moved",
    )


def test_wake_interrupts_a_socket_wait() -> None:
    """The claim thread's wait: set() from another thread ends a select() on a socket at once,
    a readable socket ends it unset, and a set before the wait is not lost."""
    import socket

    from pgsched.worker.wake import Wake

    wake, (a, b) = Wake(), socket.socketpair()
    try:
        threading.Timer(0.05, wake.set).start()
        t0 = time.monotonic()
        assert wake.wait(10, sock=a.fileno()) is True
        assert time.monotonic() - t0 < 5
        wake.clear()
        b.send(b"n")
        assert wake.wait(10, sock=a.fileno()) is False
        wake.set()
        assert wake.wait(10, sock=b.fileno()) is True
    finally:
        wake.close()
        a.close()
        b.close()
