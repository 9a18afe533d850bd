"""Load weighting: the claim's own-row check, the heartbeat's sums over the peers, the capacity a
worker holds, and a loaded worker that takes less but never nothing (pgsched/worker/share.py)."""

from __future__ import annotations

import math
import threading
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsched.config import Settings
from pgsched.registry import Registry
from pgsched.sql import Q
from pgsched.worker import Worker, share
from pgsched.worker.load import LoadSampler
from tests.conftest import FAST, wait_until

CEIL = 90.0
load = st.sampled_from([0.0, 10.0, 45.0, 80.0, 89.0, 95.0])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    status=st.sampled_from(["active", "paused", "draining", "dead"]),
    cpu=load,
    mem=load,
    slots=st.integers(1, 40),
    weighted=st.booleans(),
)
def test_claim_takes_its_slots_unless_paused_or_above_a_ceiling(
    conn: psycopg.Connection, status: str, cpu: float, mem: float, slots: int, weighted: bool
) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status, queues, cpu_usage,"
            " memory_usage) VALUES ('w0', 'h', 1, %s, '{default}', %s, %s)",
            (status, cpu, mem),
        )
        conn.execute(
            "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 50)"
        )
        rows = Q.claim_tasks.run(
            conn,
            {
                "worker": "w0",
                "queues": ["default"],
                "task_types": ["noop"],
                "slots": slots,
                "weighted": weighted,
                "cpu_ceiling": CEIL,
                "memory_ceiling": CEIL,
                "now": None,
            },
        )
        expected = 0 if status != "active" or (weighted and (cpu > CEIL or mem > CEIL)) else slots
        assert len(rows) == expected


@given(
    concurrency=st.integers(1, 10000),
    cpu=st.floats(0, 100),
    peers=st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 100)), max_size=5),
)
def test_capacity_is_the_part_of_the_fleets_slots_by_share_and_never_zero(
    concurrency: int, cpu: float, peers: list[tuple[int, float]]
) -> None:
    slots = sum(n for n, _ in peers) or None
    shares = sum(share.cpu_share(c) for _, c in peers) if peers else None
    cap = share.capacity(concurrency, cpu, slots, shares)
    assert 1 <= cap <= concurrency
    mine = share.cpu_share(cpu)
    if peers:
        # No other count it may hold ends a burst of the fleet's slots sooner: its tasks at its
        # share, the rest at the peers' summed shares (each side takes more as it frees up).
        total = concurrency + sum(n for n, _ in peers)

        def burst_time(k: int) -> float:
            return max(k / mine, (total - k) / shares)

        best = min(burst_time(k) for k in range(1, concurrency + 1))
        assert burst_time(cap) <= best * (1 + 1e-9)
    else:
        assert cap == concurrency  # alone: all of it
    # Even hosts: as many peers as it likes with its share and its slots, it keeps all of them.
    n = len(peers) or 1
    assert share.capacity(concurrency, cpu, concurrency * n, mine * n) == concurrency


def test_capacity_of_two_workers_of_8_slots_one_at_half_share() -> None:
    """The burst as large as the fleet's slots: the loaded worker holds 5, not 8 x 0.5 = 4 (with
    4 both would finish their first batch together and race for the last 4 tasks)."""
    assert share.capacity(8, 100.0, 8, 1.0) == 5
    assert share.capacity(8, 0.0, 8, 0.5) == 8
    assert share.capacity(8, 3.0, 8, 1.0) == 8  # a little busier than its peer: all its slots
    # The peer's CPUs a little busy: the portion is 5.5, and 5 ends the burst sooner than 6
    # (the peer's 11 at 0.95 take 11.6 task-times, 6 of its own at 0.5 take 12).
    assert share.capacity(8, 100.0, 8, 0.95) == 5
    assert share.capacity(8, 100.0, None, None) == 8
    assert share.capacity(8, 100.0, 8, math.nan) == 8


def test_cpu_share_counts_half_a_busy_cpu() -> None:
    assert share.cpu_share(0) == 1.0
    assert share.cpu_share(30) == 0.7
    assert share.cpu_share(100) == share.cpu_share(80) == 0.5
    assert share.cpu_share(math.nan) == 0.5


def test_heartbeat_sums_the_slots_and_shares_of_live_peers_of_its_queues(
    conn: psycopg.Connection,
) -> None:
    rows = [  # name, status, queues, cpu, heartbeat age
        ("me", "active", "{default}", 90.0, "0 s", 10),
        ("busy", "active", "{default,other}", 40.0, "1 s", 3),  # share 0.6
        ("other-queue", "active", "{other}", 0.0, "1 s", 100),
        ("stale", "active", "{default}", 0.0, "1 minute", 100),
        ("paused", "paused", "{default}", 0.0, "1 s", 100),
        ("hog", "active", "{default}", 99.0, "1 s", 4),  # share 0.5
    ]
    for name, status, queues, cpu, age, slots in rows:
        conn.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status, queues, cpu_usage,"
            " last_heartbeat, max_task_capacity)"
            " VALUES (%s, 'h', 1, %s, %s, %s, now() - %s::interval, %s)",
            (name, status, queues, cpu, age, slots),
        )
    me = conn.execute("SELECT id FROM pgsched.workers WHERE name = 'me'").fetchone()[0]
    params = {
        "id": me,
        "cpu": 90.0,
        "memory": 1.0,
        "running": 0,
        "capacity": 10,
        "queues": ["default"],
        "heartbeat_timeout": 15.0,
        "ns": None,
        "waker_signature": None,
        "now": None,
    }
    row = Q.heartbeat.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert row["other_slots"] == 7
    assert abs(row["other_shares"] - 1.1) < 1e-6
    conn.execute("UPDATE pgsched.workers SET status = 'dead' WHERE name IN ('busy', 'hog')")
    row = Q.heartbeat.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert row["other_slots"] is None and row["other_shares"] is None  # nobody to compare with


def test_a_loaded_worker_holds_its_share_and_never_nothing(dsn: str) -> None:
    """Two workers of 4 slots: one reads its CPUs fully held by another process, the other
    reads them idle. The loaded one holds at most round(8 x 0.5 / 1.5) = 3 tasks at once, and
    runs some of the burst: it neither stalls nor takes as much as the free one."""
    running = {"loaded": 0, "free": 0}
    peak = {"loaded": 0, "free": 0}
    done = {"loaded": 0, "free": 0}
    lock = threading.Lock()
    gate = threading.Event()

    def start(who: str, other_load: float) -> Worker:
        reg = Registry()

        @reg.task("hold")
        def hold(payload: dict[str, Any]) -> None:
            with lock:
                running[who] += 1
                peak[who] = max(peak[who], running[who])
            gate.wait(0.05)  # long enough that a worker fills its slots while these run
            with lock:
                running[who] -= 1
                done[who] += 1

        sampler = LoadSampler(host_cpu=lambda: other_load, own_cpu=lambda: 0.0, memory=lambda: 1.0)
        s = Settings(**{**FAST.model_dump(), "heartbeat_interval": 0.1})
        w = Worker(dsn, s, name=who, registry=reg, concurrency=4, load_sampler=sampler)
        return w.start()

    loaded = start("loaded", 100.0)
    free = start("free", 0.0)
    try:
        wait_until(lambda: loaded.capacity == 3, 10, message="the loaded worker's share")
        assert free.capacity == 4
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(
                "INSERT INTO pgsched.tasks (task_type) SELECT 'hold' FROM generate_series(1, 60)"
            )
        wait_until(lambda: done["loaded"] + done["free"] == 60, 30, message="all tasks done")
        assert 1 <= peak["loaded"] <= 3, peak
        assert done["loaded"] >= 1 and done["free"] > done["loaded"], done
    finally:
        loaded.stop(timeout=15)
        free.stop(timeout=15)
