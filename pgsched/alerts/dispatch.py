"""Turning recorded events into notifications, and threshold rules into events.

``dispatch``: one transaction, one dispatcher at a time (the others skip): every (rule, key)
whose min_interval has passed becomes one notification carrying the number of events it
folds, with one delivery task per channel. ``evaluate_thresholds``: each due threshold rule
is claimed by compare-and-set on its next evaluation time, measured and, when over its bound,
recorded as an event, all in one transaction, so a window is evaluated once however many
tickers run.

The notification body (version 1) is what a webhook receives; docs/alerts.md documents it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgsched.alerts.config import DELIVERY_QUEUE, DELIVERY_TYPE
from pgsched.db import ADMIN_LOCK_NAMESPACE
from pgsched.sql import Q, Query

BODY_VERSION = 1
RECENT = 10  # events of a notification kept in its body ("recent", newest first)
BATCH = 500  # (rule, key) pairs one dispatch folds at most


def _rows(conn: psycopg.Connection[Any], q: Query, params: Any = None) -> Any:
    """What ``q`` returns, read with dict rows whatever the connection's row factory."""
    with conn.cursor(row_factory=dict_row) as cur:
        return q.run(cur, params)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def summary(event: str, d: dict[str, Any], count: int = 1) -> str:
    """One line saying what happened (the latest event) and how many the notification folds."""
    task = f"task {d.get('task_id')} ({d.get('task_type')} on {d.get('queue')})"
    error = (d.get("error") or "").splitlines()[0][:200] if d.get("error") else ""
    if event == "task.dead_lettered":
        n = d.get("attempts")
        s = f"{task} failed for good after {n} attempt{'' if n == 1 else 's'}"
        s += f": {error}" if error else ""
    elif event == "task.retrying":
        s = f"{task} failed attempt {d.get('attempts')} of {d.get('max_attempts')}, retrying"
        s += f": {error}" if error else ""
    elif event.startswith("workflow."):
        s = f"workflow {d.get('workflow')} ({d.get('workflow_id')}) {d.get('status')}"
    elif event == "worker.dead":
        s = f"worker {d.get('worker')} on {d.get('host')} was declared dead"
    elif event == "schedule.misfired":
        s = f"schedule {d.get('schedule')} misfired: the tick due at {d.get('due_at')} " + (
            "was skipped" if d.get("skipped") else f"fired late (as {d.get('fired_tick')})"
        )
    elif event.startswith("threshold."):
        s = threshold_text(d)
    else:
        s = event
    if count > 1:
        s += f" (+{count - 1} more)"
    return s


def threshold_text(d: dict[str, Any]) -> str:
    name, value, above, queue = d.get("threshold"), d.get("value"), d.get("above"), d.get("queue")
    if name == "oldest_ready_age":
        return f"the oldest ready task of queue {queue} has waited {value:.0f}s (above {above:g}s)"
    if name == "failure_rate":
        return (
            f"{value:.1f}% of attempts failed in queue {queue} over {d.get('window_s'):g}s "
            f"({d.get('failed'):.0f} of {d.get('total'):.0f}; above {above:g}%)"
        )
    if name == "no_live_worker":
        return f"queue {queue} has {value:.0f} ready tasks and no live worker"
    if name == "dead_letter_size":
        return f"the dead letter holds {value:.0f} tasks of queue {queue} (above {above:g})"
    return f"queue {queue} has {value:.0f} ready tasks (above {above:g})"


def make_body(
    *,
    uid: str,
    rule: str,
    event: str,
    key: str,
    count: int,
    first_at: datetime,
    last_at: datetime,
    created_at: datetime,
    recent: list[dict[str, Any]],
    test: bool = False,
) -> dict[str, Any]:
    latest = recent[0] if recent else {}
    return {
        "version": BODY_VERSION,
        "id": uid,
        "rule": rule,
        "event": event,
        "key": key,
        "count": count,
        "first_at": _iso(first_at),
        "last_at": _iso(last_at),
        "created_at": _iso(created_at),
        "summary": summary(event, latest, count),
        "details": latest,
        "recent": recent,
        "test": test,
    }


def dispatch(conn: psycopg.Connection[Any], now: datetime | None = None) -> list[int]:
    """Fold due events into notifications and their delivery tasks; the notification ids.
    Returns [] when another dispatcher holds the turn."""
    made: list[int] = []
    with conn.transaction():
        if not Q.alert_dispatch_lock.run(conn, {"ns": ADMIN_LOCK_NAMESPACE}):
            return made
        groups = _rows(conn, Q.alert_take_due, {"now": now, "limit": BATCH, "sample": RECENT})
        for g in groups:
            uid = str(uuid.uuid4())
            body = make_body(
                uid=uid,
                rule=g["rule"],
                event=g["event"],
                key=g["key"],
                count=g["count"],
                first_at=g["first_at"],
                last_at=g["last_at"],
                created_at=g["now"],
                recent=list(g["recent"] or []),
            )
            row = _rows(
                conn,
                Q.alert_notify,
                {
                    "uid": uid,
                    "rule_id": g["rule_id"],
                    "rule": g["rule"],
                    "event": g["event"],
                    "key": g["key"],
                    "count": g["count"],
                    "channels": g["channels"],
                    "body": Jsonb(body),
                    "now": now,
                    "task_type": DELIVERY_TYPE,
                },
            )
            made.append(row["id"])
    return made


def next_wake(conn: psycopg.Connection[Any], now: datetime | None = None) -> float | None:
    """Seconds until the ticker has work (0: now), or None for nothing scheduled."""
    row = _rows(conn, Q.alert_next_wake, {"now": now})
    if row is None or row["next_at"] is None:
        return None
    wait: timedelta = row["next_at"] - row["now"]
    return max(0.0, wait.total_seconds())


# -- thresholds ----------------------------------------------------------------------------------


def evaluate_thresholds(
    conn: psycopg.Connection[Any], now: datetime | None = None, *, heartbeat_timeout: float = 15.0
) -> int:
    """Evaluate every due threshold rule this ticker wins; returns the events recorded."""
    recorded = 0
    for rule in _rows(conn, Q.alert_thresholds_due, {"now": now}):
        with conn.transaction():
            won = Q.alert_threshold_advance.run(
                conn, {"id": rule["id"], "expected": rule["next_eval"], "now": now}
            )
            if won is None:
                continue  # another ticker evaluates this window
            for queue, data in measure(conn, rule, now, heartbeat_timeout):
                Q.alert_threshold_event.run(
                    conn, {"rule_id": rule["id"], "key": queue, "now": now, "data": Jsonb(data)}
                )
                recorded += 1
    return recorded


def measure(
    conn: psycopg.Connection[Any],
    rule: dict[str, Any],
    now: datetime | None,
    heartbeat_timeout: float,
) -> list[tuple[str, dict[str, Any]]]:
    """(queue, event data) for every queue over the rule's bound."""
    name, above = rule["threshold"], float(rule["above"])
    base = {"queues": rule["queues"], "task_types": rule["task_types"], "now": now}
    out: list[tuple[str, dict[str, Any]]] = []

    def over(queue: str, value: float, **extra: Any) -> None:
        if value > above:
            data = {"threshold": name, "queue": queue, "value": value, "above": above}
            data.update(window_s=rule["window_s"], **extra)
            out.append((queue, data))

    if name in ("ready_depth", "oldest_ready_age", "no_live_worker"):
        ready = _rows(conn, Q.alert_measure_ready, base)
        if name == "no_live_worker":
            live = {
                r["queue"]
                for r in _rows(
                    conn,
                    Q.alert_measure_live_queues,
                    {"now": now, "heartbeat_timeout": heartbeat_timeout},
                )
            }
            for r in ready:
                # The delivery queue is served by the alert tickers, not by workers' queues.
                if r["queue"] not in live and r["queue"] != DELIVERY_QUEUE:
                    over(r["queue"], r["depth"])
        else:
            for r in ready:
                value = r["depth"] if name == "ready_depth" else r["oldest_s"]
                over(r["queue"], value, depth=r["depth"], oldest_s=r["oldest_s"])
    elif name == "failure_rate":
        params = dict(base, window_s=rule["window_s"], delivery_type=DELIVERY_TYPE)
        for r in _rows(conn, Q.alert_measure_failures, params):
            if r["total"] >= rule["min_attempts"]:
                rate = 100 * r["failed"] / r["total"]
                over(r["queue"], rate, failed=r["failed"], total=r["total"])
    elif name == "dead_letter_size":
        for r in _rows(conn, Q.alert_measure_dead_letter, base):
            over(r["queue"], r["size"])
    return out


# -- samples (`pgsched alerts test`) -------------------------------------------------------------

_SAMPLES: dict[str, dict[str, Any]] = {
    "task": {
        "task_id": 0,
        "queue": "default",
        "task_type": "example",
        "attempts": 3,
        "max_attempts": 3,
        "error": "RuntimeError: a sample error",
        "workflow_id": None,
        "workflow": None,
        "next_run_at": None,
    },
    "workflow": {"workflow_id": 0, "workflow": "example", "status": "failed", "created_at": None},
    "worker.dead": {
        "worker": "example-1",
        "host": "example",
        "pid": 0,
        "queues": ["default"],
        "last_heartbeat": None,
    },
    "schedule.misfired": {
        "schedule": "example",
        "queue": "default",
        "task_type": "example",
        "misfire": "once",
        "due_at": None,
        "fired_tick": None,
        "skipped": True,
        "next_tick": None,
    },
}


def sample_body(rule: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A notification like the ones ``rule`` sends, marked test: true."""
    if rule["threshold"]:
        event = f"threshold.{rule['threshold']}"
        data: dict[str, Any] = {
            "threshold": rule["threshold"],
            "queue": "default",
            "value": float(rule["above"] or 0) + 1,
            "above": float(rule["above"] or 0),
            "window_s": 60.0,
            "failed": 1.0,
            "total": 1.0,
        }
    else:
        event = rule["event"]
        kind = event.split(".")[0] if event.startswith(("task.", "workflow.")) else event
        data = dict(_SAMPLES[kind])
        if event == "workflow.succeeded":
            data["status"] = "succeeded"
    key = str(data.get(rule["group_by"], ""))
    return make_body(
        uid=str(uuid.uuid4()),
        rule=rule["name"],
        event=event,
        key=key,
        count=1,
        first_at=now,
        last_at=now,
        created_at=now,
        recent=[data],
        test=True,
    )
