"""E crash recovery (pgsched): a worker holding tasks is killed with kill -9; the time from the
kill until another (idle, already running) worker starts each of them. Then SIGSTOP: the frozen
worker keeps its session, so only the heartbeat timeout can hand its tasks over.

Peers: not measured, their recovery has no comparable automatic path at these time scales:
PGQueuer re-picks a job whose heartbeat is older than `heartbeat_timeout` (30 s by default),
procrastinate retries stalled jobs only from a periodic task the user writes, Chancy's Recovery
plugin runs on a poll (60 s by default), graphile-worker unlocks a crashed worker's jobs after 4
hours.
"""

from __future__ import annotations

import json
import signal
import statistics
import time

import psycopg
from harness import Ctx, ready_time, worker

HOLD = 4  # tasks the victim holds per trial
HB = ("--heartbeat-interval", "1", "--heartbeat-timeout", "5")  # SIGSTOP trials only
HB_TIMEOUT = 5.0


def submit(url: str, ks: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgsched.tasks (task_type, payload) "
            "SELECT 'hold', jsonb_build_object('k', k, 'hold', 30) FROM unnest(%s::int[]) k",
            (ks,),
        )


def starts(p, ks: set[str], timeout: float) -> dict[str, float]:
    got: dict[str, float] = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(got) < len(ks):
        for line in p.poll_lines(0.02):
            f = line.split()
            if f and f[0] == "START" and f[1] in ks:
                got.setdefault(f[1], float(f[2]))
    return got


def trial(url: str, k0: int, sig: int, extra: tuple[str, ...]) -> tuple[list[float], list[float]]:
    """Seconds from the signal to another worker starting each task the victim held, and the
    same from the victim's last heartbeat (what the heartbeat timeout counts from). The
    rescuer starts after the victim holds its tasks (so it cannot take them first) and is ready
    before the signal."""
    victim = worker("pgsched", url, "--concurrency", "50", *extra)
    rescuer = None
    try:
        ready_time(victim)
        ks = list(range(k0, k0 + HOLD))
        submit(url, ks)
        held = set(starts(victim, {str(k) for k in ks}, 10))
        rescuer = worker("pgsched", url, "--concurrency", "50", *extra)
        ready_time(rescuer)
        time.sleep(0.2)
        t_sig = time.time()
        victim.signal(sig)
        # bounded wait: kill -9 10 s; SIGSTOP the heartbeat timeout + 10 s
        got = starts(rescuer, held, 10 if sig == signal.SIGKILL else HB_TIMEOUT + 10)
        with psycopg.connect(url, autocommit=True) as c:
            (beat,) = c.execute(
                "SELECT extract(epoch FROM last_heartbeat)::float8 FROM pgsched.workers"
                " WHERE pid = %s",
                (victim.p.pid,),
            ).fetchone()
        lost = [float("inf")] * (len(held) - len(got))
        return [got[k] - t_sig for k in held if k in got] + lost, [
            got[k] - beat for k in held if k in got
        ] + lost
    finally:
        # Both go by SIGKILL: a graceful stop of the rescuer would wait out the tasks it
        # holds (its grace, cut at 2 s by stop()), 2 s a trial. Then the trial's tasks go, so
        # the next trial starts on an empty queue, not with a dead rescuer's tasks to recover.
        for p in (victim, rescuer):
            if p is not None:
                p.signal(signal.SIGCONT)
                p.signal(signal.SIGKILL)
                p.stop(5)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "DELETE FROM pgsched.task_executions e USING pgsched.tasks t"
                " WHERE e.task_id = t.id AND t.task_type = 'hold'"
            )
            c.execute("DELETE FROM pgsched.tasks WHERE task_type = 'hold'")


def run(ctx: Ctx, rep: int) -> None:
    if "pgsched" not in ctx.systems:
        return
    for sig, name, trials, extra in (
        (signal.SIGKILL, "kill9", 2 if ctx.quick else 10, ()),
        (signal.SIGSTOP, "sigstop", 1 if ctx.quick else 3, HB),
    ):
        with ctx.cell("E", "pgsched", rep):
            url = ctx.fresh_db("pgsched", "e")
            try:
                times: list[float] = []
                since_beat: list[float] = []
                for i in range(trials):
                    t, b = trial(url, 1000 * (i + 1), sig, extra)
                    times += t
                    since_beat += b
                ok = [t for t in times if t != float("inf")]
                if name == "sigstop" and not ok:  # nobody took them within the wait
                    ctx.record(
                        "E",
                        "pgsched",
                        "sigstop_excess_median",
                        float("inf"),
                        "s",
                        rep,
                        heartbeat_timeout=HB_TIMEOUT,
                        not_started=len(times),
                        note=f"not reassigned within {HB_TIMEOUT + 10:g} s",
                    )
                elif name == "sigstop":
                    ex = [t - HB_TIMEOUT for t in ok]
                    ctx.record(
                        "E",
                        "pgsched",
                        "sigstop_median",
                        statistics.median(ok),
                        "s",
                        rep,
                        heartbeat_timeout=HB_TIMEOUT,
                        samples=len(ok),
                    )
                    ctx.record(
                        "E",
                        "pgsched",
                        "sigstop_excess_median",
                        statistics.median(ex),
                        "s",
                        rep,
                        heartbeat_timeout=HB_TIMEOUT,
                    )
                    ctx.record("E", "pgsched", "sigstop_excess_max", max(ex), "s", rep)
                    # The contract: reassigned at heartbeat_timeout after the last beat + <= 1 s.
                    after = [t - HB_TIMEOUT for t in since_beat if t != float("inf")]
                    ctx.record(
                        "E",
                        "pgsched",
                        "sigstop_after_timeout_median",
                        statistics.median(after),
                        "s",
                        rep,
                        heartbeat_timeout=HB_TIMEOUT,
                        raw=json.dumps([round(t, 3) for t in after]),
                    )
                    ctx.record("E", "pgsched", "sigstop_after_timeout_max", max(after), "s", rep)
                else:
                    ctx.record(
                        "E",
                        "pgsched",
                        "kill9_median",
                        statistics.median(times),
                        "s",
                        rep,
                        samples=len(times),
                        trials=trials,
                        raw=json.dumps([round(t, 3) for t in times]),
                    )
                    ctx.record("E", "pgsched", "kill9_max", max(times), "s", rep)
            finally:
                ctx.drop_db(url)
