"""What an operator does, as a Python API: the dead letter, workers, schedules, workflows,
statistics, recovery and API tokens. The CLI's operator commands and `pgsched serve` are thin
faces over it; tasks themselves (submit, get, list, cancel, retry) are pgsched.client.Client's.

    from pgsched import Client
    from pgsched.admin import Admin
    admin = Admin(Client(dsn))
    admin.dlq_requeue_all(queue="mail")
    admin.pause_worker("host-1234")
    admin.stats(window=timedelta(hours=24))

Every method borrows one connection from the client for its statements (the client's own, or
its pool's), with errors translated into pgsched.errors.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import psycopg
from psycopg.rows import dict_row, tuple_row

from pgsched.client import Client, ReadyAge
from pgsched.doctor import Finding, Thresholds, diagnose
from pgsched.errors import InvalidState, NotFound, TaskNotFound, ValidationError
from pgsched.models import MAX_ATTEMPTS_MAX
from pgsched.sql import Q

if TYPE_CHECKING:
    from pgsched.alerts.config import AlertsFile
    from pgsched.alerts.store import AlertsReport
    from pgsched.config import Settings
    from pgsched.schedules import ApplyReport, ScheduleDef
    from pgsched.workflows import WorkflowDef

SCOPES = ("read", "submit", "admin")
TOKEN_PREFIX = "pgs_"


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


class Recovered(TypedDict):
    task_id: int
    status: str  # where the task went: pending, retrying or failed


class Recovery(TypedDict):
    """Admin.recover: the workers found dead and what became of their running tasks."""

    dead_workers: list[str]
    tasks_recovered: list[Recovered]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _finite(value: Any) -> float | None:
    """A float read from the database: None for NULL, NaN or infinity (a row the schema allows,
    e.g. a run_at of -infinity, must not break a read)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def encode_dlq_cursor(entry: Mapping[str, Any]) -> str:
    """A dead-letter page's cursor: its last entry's failed_at (microseconds since 1970, UTC)
    and dead-letter id, as '<microseconds>.<id>'."""
    return f"{(entry['failed_at'] - _EPOCH) // _US}.{entry['dead_letter_id']}"


def decode_dlq_cursor(text: str) -> tuple[datetime, int]:
    """The (failed_at, id) a cursor names; ValidationError (field 'cursor') if it does not
    parse or is out of range."""
    micros, dot, ident = text.strip().partition(".")
    bad = ValidationError("cursor: not a dead-letter page cursor", "cursor")
    if not dot or len(micros) > 20 or len(ident) > 19:
        raise bad
    try:
        us, n = int(micros), int(ident)
        at = _EPOCH + us * _US
    except (ValueError, OverflowError):
        raise bad from None
    if not 1 <= n < 2**63 or not micros.lstrip("-").isdigit() or not ident.isdigit():
        raise bad
    return at, n


class Admin:
    def __init__(self, client: Client, *, heartbeat_timeout: float = 15.0) -> None:
        self.client = client
        self.heartbeat_timeout = heartbeat_timeout

    @classmethod
    def from_settings(cls, settings: Settings, client: Client | None = None) -> Admin:
        return cls(
            client or Client.from_settings(settings),
            heartbeat_timeout=settings.heartbeat_timeout,
        )

    def _attempts(self, attempts: int | None) -> int:
        extra = self.client.default_max_attempts if attempts is None else attempts
        if not 1 <= extra <= MAX_ATTEMPTS_MAX:
            raise ValidationError(f"attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", "attempts")
        return extra

    # -- workers -------------------------------------------------------------------------------

    def workers(self, *, all_: bool = False, now: datetime | None = None) -> list[dict[str, Any]]:
        """Live workers with their load (and those gone in the last hour, or all with all_)."""
        with self.client.connection() as c:
            rows: list[dict[str, Any]] = Q.workers_list.run(c, {"all": all_, "now": now})
        return rows

    def pause_worker(self, name: str) -> dict[str, Any]:
        """Stop a worker from claiming; it finishes what it runs (notified at once)."""
        return self._set_worker_status(name, "paused")

    def resume_worker(self, name: str) -> dict[str, Any]:
        return self._set_worker_status(name, "active")

    def _set_worker_status(self, name: str, status: str) -> dict[str, Any]:
        with self.client.connection() as c:
            row = Q.worker_set_status.run(c, {"name": name, "status": status})
            if row is not None:
                return {"name": row["name"], "status": row["status"]}
            current = Q.worker_get.run(c, {"name": name})
        if current is None:
            raise NotFound(f"no worker named {name!r} (pgsched workers lists them)")
        verb = "pause" if status == "paused" else "resume"
        raise InvalidState(f"cannot {verb} worker {name!r}: it is {current['status']}")

    # -- the dead letter -----------------------------------------------------------------------

    def dlq_list(
        self, *, queue: str | None = None, task_type: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Entries newest first, with their task's current status (None: pruned)."""
        if limit < 1:
            raise ValidationError("limit: must be at least 1", "limit")
        with self.client.connection() as c:
            rows: list[dict[str, Any]] = Q.dlq_list.run(
                c, {"queue": queue, "task_type": task_type, "limit": limit}
            )
        return rows

    def dlq_requeue(self, task_id: int, *, attempts: int | None = None) -> int:
        """One entry's task back to pending with ``attempts`` more tries; its new max_attempts."""
        more = self._attempts(attempts)
        with self.client.connection() as c:
            if Q.dlq_entry.run(c, {"task_id": task_id}) is None:
                raise NotFound(
                    f"no dead-letter entry for task {task_id} (pgsched dlq list shows them)"
                )
            try:
                max_attempts = self.client.retry(task_id, attempts=more)
            except TaskNotFound:
                raise NotFound(
                    f"task {task_id} no longer exists (pruned): pgsched dlq purge removes its entry"
                ) from None
            Q.dlq_wake.run(c, {"ids": [task_id]})
        return max_attempts

    def dlq_requeue_all(
        self,
        *,
        queue: str | None = None,
        task_type: str | None = None,
        attempts: int | None = None,
    ) -> list[int]:
        """Every matching entry's task back to pending, in one statement; their ids."""
        more = self._attempts(attempts)
        with self.client.connection() as c:
            rows = Q.dlq_requeue_all.run(c, {"queue": queue, "task_type": task_type, "extra": more})
            ids = [r["id"] for r in rows]
            if ids:
                Q.dlq_wake.run(c, {"ids": ids})
        return ids

    def _purge_params(
        self, older_than: timedelta | None, queue: str | None, task_type: str | None
    ) -> dict[str, Any]:
        if older_than is not None and older_than < timedelta(0):
            raise ValidationError("older_than: must not be negative", "older_than")
        return {"older_than": older_than, "queue": queue, "task_type": task_type, "now": None}

    def dlq_purge_count(
        self,
        *,
        older_than: timedelta | None = None,
        queue: str | None = None,
        task_type: str | None = None,
    ) -> int:
        """How many entries dlq_purge with the same filters would delete."""
        with self.client.connection() as c:
            return int(
                Q.dlq_purge_count.run(c, self._purge_params(older_than, queue, task_type))["n"]
            )

    def dlq_purge(
        self,
        *,
        older_than: timedelta | None = None,
        queue: str | None = None,
        task_type: str | None = None,
    ) -> int:
        """Delete entries (the failed tasks stay until retention prunes them); how many."""
        with self.client.connection() as c:
            return int(Q.dlq_purge.run(c, self._purge_params(older_than, queue, task_type)))

    # -- schedules -----------------------------------------------------------------------------

    def schedules(self) -> list[dict[str, Any]]:
        from pgsched.schedules import list_schedules

        with self.client.connection() as c:
            return list_schedules(c)

    def pause_schedule(self, name: str) -> None:
        from pgsched.schedules import pause_schedule

        with self.client.connection() as c:
            pause_schedule(c, name)

    def resume_schedule(self, name: str) -> None:
        from pgsched.schedules import resume_schedule

        with self.client.connection() as c:
            resume_schedule(c, name)

    def apply_schedules(
        self, defs: list[ScheduleDef], *, prune: bool = False, dry_run: bool = False
    ) -> ApplyReport:
        """Sync definitions (pgsched.schedules.ScheduleDef) into the database, all or nothing;
        returns the ApplyReport."""
        from pgsched.schedules import apply_schedules

        with self.client.connection() as c:
            return apply_schedules(c, defs, prune=prune, dry_run=dry_run)

    # -- alerts --------------------------------------------------------------------------------

    def apply_alerts(
        self, spec: AlertsFile, *, prune: bool = False, dry_run: bool = False
    ) -> AlertsReport:
        """Sync an alerts file (pgsched.alerts.config.AlertsFile) into the database, all or
        nothing; returns the AlertsReport."""
        from pgsched.alerts.store import apply_alerts

        with self.client.connection() as c:
            return apply_alerts(c, spec, prune=prune, dry_run=dry_run)

    def alert_rules(self) -> list[dict[str, Any]]:
        from pgsched.alerts.store import list_rules

        with self.client.connection() as c:
            return list_rules(c)

    def alert_channels(self) -> list[dict[str, Any]]:
        from pgsched.alerts.store import list_channels

        with self.client.connection() as c:
            return list_channels(c)

    def pause_alert(self, name: str) -> None:
        from pgsched.alerts.store import set_paused

        with self.client.connection() as c:
            set_paused(c, name, True)

    def resume_alert(self, name: str) -> None:
        from pgsched.alerts.store import set_paused

        with self.client.connection() as c:
            set_paused(c, name, False)

    def alert_notifications(
        self, *, limit: int = 20, rule: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest notifications, newest first, each with its deliveries' state."""
        from pgsched.alerts.store import recent_notifications

        with self.client.connection() as c:
            return recent_notifications(c, limit=limit, rule=rule)

    def test_alert(self, name: str) -> list[dict[str, Any]]:
        """Send a sample notification of rule ``name`` to each of its channels, now, from this
        process (its environment holds the secrets); one result per channel."""
        from datetime import UTC

        from pgsched.alerts.deliver import send
        from pgsched.alerts.dispatch import sample_body
        from pgsched.alerts.store import rule_for_test

        with self.client.connection() as c:
            rule = rule_for_test(c, name)
        body = sample_body(rule, datetime.now(UTC))
        results = []
        for ch in rule["channel_defs"]:
            try:
                send(ch["type"], ch["config"], body)
                results.append({"channel": ch["name"], "ok": True, "error": None})
            except Exception as e:
                results.append({"channel": ch["name"], "ok": False, "error": str(e)})
        missing = sorted(set(rule["channels"]) - {ch["name"] for ch in rule["channel_defs"]})
        results += [{"channel": m, "ok": False, "error": "no such channel"} for m in missing]
        return results

    # -- workflows -----------------------------------------------------------------------------

    def submit_workflow(self, definition: Mapping[str, Any] | WorkflowDef) -> int:
        from pgsched import workflows

        wf = workflows.parse_workflow(definition)  # checked before any connection
        with self.client.connection() as c:
            return workflows.submit_workflow(c, wf)

    def workflow(self, workflow_id: int) -> dict[str, Any]:
        """The workflow with its tasks (each with depends_on and layer)."""
        from pgsched import workflows

        with self.client.connection() as c:
            return workflows.get_workflow(c, workflow_id)

    def workflow_summary(self, workflow_id: int) -> dict[str, Any]:
        """The workflow row with its task counts by outcome."""
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            row: dict[str, Any] | None = Q.workflow_summary.run(cur, {"id": workflow_id})
        if row is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        return row

    def workflow_tasks(self, workflow_id: int) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.workflow(workflow_id)["tasks"]
        return tasks

    def cancel_workflow(self, workflow_id: int) -> dict[str, int]:
        from pgsched import workflows

        with self.client.connection() as c:
            return workflows.cancel_workflow(c, workflow_id)

    def retry_workflow(self, workflow_id: int, *, attempts: int | None = None) -> dict[str, int]:
        from pgsched import workflows

        with self.client.connection() as c:
            return workflows.retry_workflow(c, workflow_id, attempts=self._attempts(attempts))

    # -- statistics and recovery ---------------------------------------------------------------

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

    def recover(self, *, now: datetime | None = None) -> Recovery:
        """Hand back now the tasks of workers that are dead (liveness lock gone or heartbeat
        older than heartbeat_timeout), as a worker's recovery does."""
        from pgsched.worker import reaper

        with self.client.connection() as c:
            dead, lost = reaper.reap(c, heartbeat_timeout=self.heartbeat_timeout, now=now)
            if dead:
                Q.notify_queue.run(c, {"payload": "!waker"})  # their waker lock may be gone
        return {
            "dead_workers": dead,
            "tasks_recovered": [{"task_id": r["task_id"], "status": r["status"]} for r in lost],
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

    # -- what the web dashboard reads (pgsched/web) ------------------------------------------

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

    def dead_letter_page(
        self,
        *,
        queue: str | None = None,
        task_type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """One page of dead-letter entries newest first, strictly older than ``cursor`` (None:
        from the newest). Returns items and next_cursor (pass it back for the next page; None
        on the last page). The cursor names the page's last entry by (failed_at, id), so a page
        stays right while entries are requeued or purged meanwhile."""
        if not 1 <= limit <= 1000:
            raise ValidationError("limit: must be between 1 and 1000", "limit")
        at: Any = "infinity"
        last_id = 2**63 - 1
        if cursor is not None:
            at, last_id = decode_dlq_cursor(cursor)
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            rows = Q.dash_dead_letter.run(
                cur,
                {
                    "at": at,
                    "id": last_id,
                    "queue": queue,
                    "task_type": task_type,
                    "limit": limit + 1,
                },
            )
        items = rows[:limit]
        nxt = encode_dlq_cursor(items[-1]) if len(rows) > limit else None
        return {"items": items, "next_cursor": nxt}

    def workflows_page(
        self, *, status: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Workflows newest first (keyset: ``before`` = the last id of the previous page)."""
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            rows: list[dict[str, Any]] = Q.dash_workflows.run(
                cur, {"status": status, "before": before, "limit": limit}
            )
        return rows

    # -- API tokens ----------------------------------------------------------------------------

    def create_token(self, name: str, scopes: Iterable[str]) -> tuple[str, dict[str, Any]]:
        """A new token (shown once: only its hash is stored) and its row."""
        scopes = list(dict.fromkeys(scopes))
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValidationError(
                f"scopes: {bad[0]!r} is not one of {', '.join(SCOPES)}"
                if bad
                else f"scopes: give at least one of {', '.join(SCOPES)}",
                "scopes",
            )
        if not name or len(name) > 200 or "\x00" in name:
            raise ValidationError("name: must be a non-empty name of at most 200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.client.connection() as c:
            try:
                row = Q.token_create.run(
                    c, {"name": name, "hash": hash_token(token), "scopes": scopes}
                )
            except psycopg.errors.UniqueViolation:
                msg = f"a live token named {name!r} exists (revoke it first)"
                raise InvalidState(msg) from None
        return token, row

    def tokens(self, *, all_: bool = False) -> list[dict[str, Any]]:
        with self.client.connection() as c:
            rows: list[dict[str, Any]] = Q.token_list.run(c, {"all": all_})
        return rows

    def revoke_token(self, name: str) -> None:
        with self.client.connection() as c:
            if Q.token_revoke.run(c, {"name": name}) is None:
                raise NotFound(f"no live token named {name!r} (pgsched tokens list shows them)")

    def token_scopes(self, token: str) -> tuple[str, list[str]] | None:
        """(name, scopes) of a live token, or None."""
        with self.client.connection() as c:
            row = Q.token_lookup.run(c, {"hash": hash_token(token)})
        return None if row is None else (row["name"], list(row["scopes"]))
