"""What an operator reads about the queues: counts, throughput and execution times, one frame of
`pgsched top`, /metrics and the health check, the doctor's findings, and the dashboard's views
(queues, throughput series, task search)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from psycopg.rows import dict_row, tuple_row

from pgsched.admin.base import AdminBase
from pgsched.client import ReadyAge
from pgsched.doctor import Finding, Thresholds, diagnose
from pgsched.errors import ValidationError
from pgsched.sql import Q


class Percentiles(TypedDict):
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class Stats(TypedDict):
    """Admin.stats: the counts of `pgsched status` and what finished over a window."""

    window_s: float
    counts: dict[str, dict[str, int]]
    oldest_ready: dict[str, ReadyAge]
    live_workers: int
    dead_letter: int
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    throughput_per_s: float
    failure_rate: float
    duration_ms: Percentiles  # of the attempts finished in the window


def _finite(value: Any) -> float | None:
    """A float read from the database: None for NULL, NaN or infinity (a row the schema allows,
    e.g. a run_at of -infinity, must not break a read)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Observe(AdminBase):
    def counts(self) -> dict[str, dict[str, int]]:
        """{queue: {status: tasks}}."""
        return self.client.summary()["counts"]

    def snapshot(self, *, failures: int = 8, now: datetime | None = None) -> dict[str, Any]:
        """What one frame of `pgsched top` shows, read on one session."""
        with self.client.connection() as c:
            counts: dict[str, dict[str, int]] = {}
            for r in Q.status_counts.run(c):
                counts.setdefault(r["queue"], {})[r["status"]] = r["n"]
            oldest = {
                r["queue"]: {"age_s": _finite(r["age_s"]), "ready": r["ready"]}
                for r in Q.oldest_ready.run(c)
            }
            tp = Q.top_throughput.run(c, {"now": now})
            return {
                "at": datetime.now().astimezone(),
                "queues": counts,
                "oldest_ready": oldest,
                "workers": Q.workers_list.run(c, {"all": False, "now": now}),
                "throughput": {
                    "per_s_10s": round(tp["last_10s"] / 10.0, 2),
                    "per_s_1m": round(tp["last_1m"] / 60.0, 2),
                    "ok_1m": tp["ok_1m"],
                    "failed_1m": tp["failed_1m"],
                },
                "dead_letter": tp["dead_letter"],
                "failures": Q.top_failures.run(c, {"limit": failures}),
            }

    def stats(
        self, *, window: timedelta = timedelta(hours=1), now: datetime | None = None
    ) -> Stats:
        """Counts by queue and status, oldest ready age per queue, and over ``window``: attempts
        finished, throughput, failure rate and execution-time percentiles (ms)."""
        if not timedelta(seconds=1) <= window <= timedelta(days=366):
            raise ValidationError("window: must be between 1 second and 366 days", "window")
        summary = self.client.summary()
        with self.client.connection() as c:
            w = Q.stats_window.run(c, {"window": window, "now": now})
            dead_letter = Q.top_throughput.run(c, {"now": now})["dead_letter"]
        finished = int(w["finished"])
        seconds = window.total_seconds()
        return {
            "window_s": seconds,
            "counts": summary["counts"],
            "oldest_ready": summary["oldest_ready"],
            "live_workers": sum(
                w_["status"] in ("active", "paused", "draining") for w_ in summary["workers"]
            ),
            "dead_letter": dead_letter,
            "finished": finished,
            "succeeded": int(w["succeeded"]),
            "failed": int(w["failed"]),
            "cancelled": int(w["cancelled"]),
            "throughput_per_s": finished / seconds,
            "failure_rate": (int(w["failed"]) / finished) if finished else 0.0,
            "duration_ms": {
                "p50": w["p50_ms"],
                "p90": w["p90_ms"],
                "p99": w["p99_ms"],
                "max": w["max_ms"],
            },
        }

    def doctor(self, thresholds: Thresholds | None = None) -> list[Finding]:
        """What threatens the queue (pgsched.doctor): findings with their fixes. Runs on a
        connection of its own that does not refuse an unmigrated database."""
        from pgsched.db import connect, translated

        c = self.client
        limits: dict[str, Any] = {"options": c.time_limits} if c.time_limits else {}
        with (
            connect(
                c.dsn, timeout=c.connect_timeout, prepare=c.prepared_statements, **limits
            ) as conn,
            translated(conn),
        ):
            return diagnose(
                conn,
                heartbeat_timeout=self.heartbeat_timeout,
                prepared_statements=c.prepared_statements,
                thresholds=thresholds,
            )

    def tasks_by_status(self, ids: Iterable[int]) -> dict[str, int]:
        with self.client.connection() as c:
            return {r["status"]: r["n"] for r in Q.tasks_by_status_of.run(c, {"ids": list(ids)})}

    def health(self) -> dict[str, Any]:
        """Database reachable, schema revision current, live workers: raises the error that
        says what is wrong (DatabaseUnavailable, NotMigrated, SchemaTooNew)."""
        from pgsched.db import check_schema

        with self.client.connection() as c:
            revision = check_schema(c)
            with c.cursor(row_factory=tuple_row) as cur:
                live = int(Q.live_workers.run(cur))
        return {"database": "up", "schema_revision": revision, "live_workers": live}

    def metrics(self, *, now: datetime | None = None) -> dict[str, Any]:
        """What /metrics shows, read in two statements (metrics_scrape and the workers)."""
        with self.client.connection() as c, c.cursor(row_factory=tuple_row) as cur:
            rows = Q.metrics_scrape.run(cur, {"now": now})
            workers = Q.worker_rows.run(c)
        return {"rows": rows, "workers": workers}

    def queue_overview(self, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Per queue: ready, scheduled, retrying, running, blocked, dead_letter counts and
        oldest_ready_s (None: nothing ready)."""
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            rows: list[dict[str, Any]] = Q.dash_queues.run(cur, {"now": now})
        return rows

    def throughput_series(
        self, *, window: timedelta, bucket: timedelta, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Attempts finished and failed per ``bucket`` over the last ``window``, oldest first,
        every bucket present (zeros where nothing finished)."""
        if not timedelta(seconds=1) <= bucket <= window <= timedelta(days=31):
            raise ValidationError("window: buckets of 1 s up to a window of 31 days", "window")
        with (
            self.client.connection() as c,
            c.transaction(),
            c.cursor(row_factory=dict_row) as cur,
        ):
            if now is None:
                now = cur.execute("SELECT now() AS n").fetchall()[0]["n"]
            # The planner takes every attempt for a group of its own (it cannot know that the
            # buckets are at most window/bucket), so with the default work_mem it sorts the
            # window's attempts on disk; with room for its estimate it hashes them in memory.
            cur.execute("SET LOCAL work_mem = '32MB'")
            rows = Q.dash_series.run(cur, {"window": window, "bucket": bucket, "now": now})
        got = {r["at"]: r for r in rows}
        origin = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's origin in dash_series
        step = bucket.total_seconds()
        last = origin + timedelta(seconds=((now - origin).total_seconds() // step) * step)
        n = max(1, int(window.total_seconds() // step))
        out = []
        for i in range(n - 1, -1, -1):
            at = last - bucket * i
            r = got.get(at)
            out.append(
                {"at": at, "finished": r["finished"] if r else 0, "failed": r["failed"] if r else 0}
            )
        return out

    def search_tasks(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        task_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error: str | None = None,
        before: int | None = None,
        limit: int = 50,
        span: int = 200_000,
    ) -> dict[str, Any]:
        """One page of tasks newest first, searching at most ``span`` ids below ``before``
        (None: from the newest). Returns items, next_cursor (pass as ``before`` for the next
        page, None at the end) and searched_to (the lowest id this page looked at): a page with
        fewer than ``limit`` items and a next_cursor means "no more matches down to
        searched_to; search older from next_cursor"."""
        if not 1 <= limit <= 1000:
            raise ValidationError("limit: must be between 1 and 1000", "limit")
        if span < limit:
            raise ValidationError("span: must be at least limit", "span")
        pattern = None
        if error:
            escaped = error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            bounds = Q.dash_task_id_bounds.run(cur)
            if bounds["hi"] is None:
                return {"items": [], "next_cursor": None, "searched_to": None}
            top = min(before, bounds["hi"] + 1) if before is not None else bounds["hi"] + 1
            floor = max(bounds["lo"], top - span)
            items = Q.dash_tasks.run(
                cur,
                {
                    "before": top,
                    "floor": floor,
                    "status": status,
                    "queue": queue,
                    "task_type": task_type,
                    "since": since,
                    "until": until,
                    "error": pattern,
                    "limit": limit,
                },
            )
        # A full page goes on below its last row; a short one below the window it searched.
        nxt = items[-1]["id"] if len(items) == limit else (floor if floor > bounds["lo"] else None)
        return {"items": items, "next_cursor": nxt, "searched_to": floor}
