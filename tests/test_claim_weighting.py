"""The claim's load-weighted limit against a model of the documented formula: a worker takes
free slots x (its headroom / the best headroom among live workers sharing a queue with free
slots), at least 1 while it has headroom; nothing when paused or above a ceiling; plain free
slots with weighting off. Headroom = 1 - max(cpu / cpu_ceiling, memory / memory_ceiling)."""

from __future__ import annotations

import math
import struct

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsched.sql import Q

CEIL = 90.0
peer = st.fixed_dictionaries({
    "cpu": st.sampled_from([0.0, 10.0, 45.0, 80.0, 89.0, 95.0]),
    "mem": st.sampled_from([0.0, 30.0, 60.0, 91.0]),
    "status": st.sampled_from(["active", "active", "paused", "dead"]),
    "queues": st.sampled_from([["default"], ["other"], ["default", "other"]]),
    "full": st.booleans(),
    "stale": st.booleans(),
})  # fmt: skip


def f32(x: float) -> float:
    """Round to single precision: the load columns and the headroom variables are `real`."""
    return struct.unpack("f", struct.pack("f", x))[0]


def headroom(w: dict) -> float:
    return f32(1 - max(f32(w["cpu"] / CEIL), f32(w["mem"] / CEIL)))


def model(me: dict, peers: list[dict], slots: int, weighted: bool) -> int:
    if me["status"] != "active":
        return 0
    if not weighted:
        return slots
    mine = headroom(me)
    if mine <= 0:
        return 0
    live = [
        headroom(p)
        for p in [me, *peers]
        if p["status"] == "active" and "default" in p["queues"] and not p["full"] and not p["stale"]
    ]
    best = max(live) if live else mine
    # The headrooms are stored as `real`; the share itself is computed in double precision.
    return max(1, math.floor(slots * mine / max(best, mine)))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(me=peer, peers=st.lists(peer, max_size=4), slots=st.integers(1, 40), weighted=st.booleans())
def test_claim_takes_the_weighted_share(
    conn: psycopg.Connection, me: dict, peers: list[dict], slots: int, weighted: bool
) -> None:
    me = me | {"queues": ["default"], "full": False, "stale": False}
    with conn.transaction(force_rollback=True):
        for i, w in enumerate([me, *peers]):
            conn.execute(
                "INSERT INTO pgsched.workers (name, host, pid, status, queues, cpu_usage,"
                " memory_usage, current_task_count, max_task_capacity, last_heartbeat)"
                " VALUES (%s, 'h', 1, %s, %s, %s, %s, %s, 10, now() - %s::interval)",
                (
                    f"w{i}",
                    w["status"],
                    w["queues"],
                    w["cpu"],
                    w["mem"],
                    10 if w["full"] else 0,
                    "1 minute" if w["stale"] else "1 second",
                ),
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
                "heartbeat_timeout": 15.0,
                "now": None,
            },
        )
        assert len(rows) == model(me, peers, slots, weighted)
