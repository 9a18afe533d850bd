"""The probe `fleet-bouncer`: a fleet of busy `pgsched worker` processes on one PostgreSQL
through PgBouncer in transaction mode (Debian's package, `make pgbouncer`).

Every worker's DSN is the pooler's (claims and completions go through it) and its direct DSN
the server's (LISTEN, the liveness and waker locks), prepared statements off, as
docs/operations.md says for PgBouncer before 1.21; capacities 1, 2, 3, 4 in turn;
heartbeat every 1 s, timeout 5 s (bench E's). The fleet size is FLEET (environment
`BENCH_FLEET`, default 200). Measured:

- start: the workers that came up, their RSS (median and sum) and the server's connections
  (pg_stat_activity, by application name: pooled or direct);
- drain: DRAIN built-in `dummy` tasks of BODY_MS each, submitted at once: the fleet's rate and
  the most connections seen during it;
- pickup: PACE tasks/s of the same for PACE_S seconds: from the task's creation to the start of
  its first attempt (task_executions), p50 and p99;
- recovery: the fleet filled with HOLD_MS tasks, then KILL workers killed at once (SIGKILL):
  from the kill to the moment every task they ran is finished by another worker (median and
  the last), and to the first new attempt of each.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import time

import psycopg
from h_idle import rss_mib
from harness import PGSCHED_PY, ROOT, Probe, Proc, child_pids, pct

from pgsched.client import Client
from pgsched.server.pooler import ephemeral_pgbouncer

FLEET = int(os.environ.get("BENCH_FLEET", "200"))
POOL = 20  # server connections PgBouncer keeps for the database (default_pool_size)
BODY_MS = 20
DRAIN = 20_000
PACE, PACE_S = 200, 15
HOLD_MS = 30_000
KILL = 20
SETTLE_S = 3


def host_address() -> str:
    """This host's first non-loopback IPv4 address (127.0.0.1 when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _connections(c: psycopg.Connection, db: str) -> dict[str, int]:
    rows = c.execute(
        "SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "GROUP BY 1",
        (db,),
    ).fetchall()
    return {name or "(none)": int(n) for name, n in rows}


def _wait_done(c: psycopg.Connection, ids: list[int], timeout: float) -> float | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = c.execute(
            "SELECT count(*) FROM pgsched.tasks WHERE id = ANY(%s) AND status <> 'succeeded'",
            (ids,),
        ).fetchone()[0]
        if left == 0:
            return time.time()
        time.sleep(0.05)
    return None


def fleet_bouncer(p: Probe) -> None:
    server, db = p.server, "postgres"
    direct = server.url(db)
    # The workers reach PgBouncer by the host's own address, as they would a pooler on another
    # host.
    with ephemeral_pgbouncer(server, db, POOL, 10 * FLEET, listen=host_address()) as pooled:
        env = {
            "PGSCHED_DSN": pooled + "?application_name=fleet-pooled",
            "PGSCHED_DIRECT_DSN": direct + "?application_name=fleet-direct",
            "PGSCHED_PREPARED_STATEMENTS": "false",
            "PGSCHED_LOG_LEVEL": "warning",
            "PGSCHED_HEARTBEAT_INTERVAL": "1",
            "PGSCHED_HEARTBEAT_TIMEOUT": "5",
        }
        exe = ROOT / ".venv" / "bin" / "pgsched"
        cmd = [str(exe)] if exe.exists() else [PGSCHED_PY, "-m", "pgsched.cli.app"]
        caps = [1 + i % 4 for i in range(FLEET)]
        fleet: list[Proc] = []
        try:
            t0 = time.monotonic()
            for i, cap in enumerate(caps):
                fleet.append(Proc([*cmd, "worker", "-c", str(cap), "--name", f"f{i}"], env=env))
            with psycopg.connect(direct, autocommit=True) as c:
                active = 0
                while time.monotonic() - t0 < 420:
                    active = c.execute(
                        "SELECT count(*) FROM pgsched.workers WHERE status = 'active'"
                    ).fetchone()[0]
                    if active >= FLEET or all(w.p.poll() is not None for w in fleet):
                        break
                    time.sleep(0.5)
                    print(f"  {active} of {FLEET} workers up", end="\r", flush=True)
                up = time.monotonic() - t0
                time.sleep(SETTLE_S)
                alive = [w for w in fleet if w.p.poll() is None]
                p.record("workers up", active, "workers", asked=FLEET, alive=len(alive))
                p.record("time for the fleet to come up", up, "s")
                slots = sum(cap for cap, w in zip(caps, fleet, strict=True) if w.p.poll() is None)
                p.record("slots (capacities 1-4 in turn)", slots, "slots")
                rss = [rss_mib(w.p.pid) for w in alive]
                p.record("worker RSS, median", statistics.median(rss), "MiB")
                p.record("worker RSS, the fleet's sum", sum(rss), "MiB")
                pg_rss = sum(rss_mib(pid) for pid in child_pids(server.proc.pid))
                p.record("PostgreSQL RSS, all processes (shared buffers counted per process)",
                         pg_rss, "MiB")  # fmt: skip
                idle = _connections(c, db)
                p.record("server connections, idle fleet", sum(idle.values()), "conns", **idle)

                # drain: DRAIN tasks at once
                with Client(pooled, prepared_statements=False) as client:
                    t_in = time.time()
                    ids: list[int] = []
                    for s in range(0, DRAIN, 1000):
                        ids += client.submit_batch(
                            "dummy", [{"sleepDurationMs": BODY_MS}] * min(1000, DRAIN - s)
                        )
                    most = sum(_connections(c, db).values())
                    end = time.monotonic() + 300
                    t_done = None
                    while time.monotonic() < end:
                        most = max(most, sum(_connections(c, db).values()))
                        left = c.execute(
                            "SELECT count(*) FROM pgsched.tasks WHERE status IN "
                            "('pending', 'running', 'retrying')"
                        ).fetchone()[0]
                        if left == 0:
                            t_done = time.time()
                            break
                        time.sleep(0.2)
                    if t_done is None:
                        raise RuntimeError(f"the fleet did not drain {DRAIN} tasks in 300 s")
                    p.record(f"fleet drain, {DRAIN} tasks of {BODY_MS} ms", DRAIN / (t_done - t_in),
                             "tasks/s", seconds=round(t_done - t_in, 2))  # fmt: skip
                    p.record("server connections, most during the drain", most, "conns")
                    ran_on = c.execute(
                        "SELECT count(DISTINCT worker) FROM pgsched.task_executions"
                    ).fetchone()[0]
                    p.record("workers that ran a task in the drain", ran_on, "workers")

                    # pickup at a pace the fleet keeps up with
                    first = c.execute("SELECT coalesce(max(id), 0) FROM pgsched.tasks").fetchone()[
                        0
                    ]
                    t = time.monotonic()
                    for k in range(PACE * PACE_S):
                        if (due := t + k / PACE) > time.monotonic():
                            time.sleep(due - time.monotonic())
                        client.submit("dummy", {"sleepDurationMs": BODY_MS})
                    time.sleep(2)
                    lat = [
                        float(v)
                        for (v,) in c.execute(
                            "SELECT extract(epoch FROM min(e.started_at) - t.created_at) * 1000 "
                            "FROM pgsched.tasks t JOIN pgsched.task_executions e "
                            "ON e.task_id = t.id WHERE t.id > %s GROUP BY t.id, t.created_at",
                            (first,),
                        ).fetchall()
                    ]
                    p.record(f"pickup p50, {PACE} tasks/s", pct(lat, 50), "ms", n=len(lat))
                    p.record(f"pickup p99, {PACE} tasks/s", pct(lat, 99), "ms", n=len(lat))

                    # recovery: every slot busy, then KILL workers killed at once
                    first = c.execute("SELECT coalesce(max(id), 0) FROM pgsched.tasks").fetchone()[
                        0
                    ]
                    client.submit_batch("dummy", [{"sleepDurationMs": HOLD_MS}] * slots)
                    # until nine in ten slots run one (30 s at most: load weighting may keep
                    # slots empty on a busy host); the victims are workers that hold tasks
                    end, running = time.monotonic() + 30, 0
                    while time.monotonic() < end and running < 0.9 * slots:
                        running = c.execute(
                            "SELECT count(*) FROM pgsched.tasks WHERE id > %s "
                            "AND status = 'running'",
                            (first,),
                        ).fetchone()[0]
                        time.sleep(0.2)
                    holding = {
                        r[0]
                        for r in c.execute(
                            "SELECT DISTINCT assigned_worker FROM pgsched.tasks WHERE id > %s "
                            "AND status = 'running'",
                            (first,),
                        ).fetchall()
                    }
                    live = [
                        (i, w)
                        for i, w in enumerate(fleet)
                        if w.p.poll() is None and f"f{i}" in holding
                    ]
                    victims = random.Random(7).sample(live, min(KILL, len(live)))
                    names = [f"f{i}" for i, _ in victims]
                    t_kill = time.time()
                    for _, w in victims:
                        w.signal(signal.SIGKILL)
                    held = [
                        int(r[0])
                        for r in c.execute(
                            "SELECT id FROM pgsched.tasks WHERE assigned_worker = ANY(%s) "
                            "AND id > %s AND status = 'running'",
                            (names, first),
                        ).fetchall()
                    ]
                    t_all = _wait_done(c, held, 120)
                    rows = c.execute(
                        "SELECT t.id, t.finished_at, min(e.started_at) FILTER "
                        "(WHERE e.worker <> ALL(%s)) FROM pgsched.tasks t "
                        "JOIN pgsched.task_executions e ON e.task_id = t.id "
                        "WHERE t.id = ANY(%s) GROUP BY t.id",
                        (names, held),
                    ).fetchall()
                    done_s = [r[1].timestamp() - t_kill for r in rows if r[1] is not None]
                    again_s = [r[2].timestamp() - t_kill for r in rows if r[2] is not None]
                    p.record("recovery: tasks the killed workers held", len(held), "tasks",
                             killed=len(victims), running_at_kill=running,
                             all_done=t_all is not None)  # fmt: skip
                    if again_s:
                        p.spread("recovery: kill -> started again elsewhere", again_s, "s")
                    if done_s:
                        p.spread(f"recovery: kill -> done elsewhere ({HOLD_MS} ms body)",
                                 done_s, "s")  # fmt: skip
                    if t_all is not None:
                        p.record("recovery: kill -> the last of them done", t_all - t_kill, "s")
        finally:
            for w in fleet:
                w.signal(signal.SIGTERM)
            for w in fleet:
                w.stop(5)
