"""Workers as an operator sees them: listed, paused and resumed, and the dead ones' tasks
recovered."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from pgsched.admin.base import AdminBase
from pgsched.errors import InvalidState, NotFound
from pgsched.sql import Q


class Recovered(TypedDict):
    task_id: int
    status: str  # where the task went: pending, retrying or failed


class Recovery(TypedDict):
    """Admin.recover: the workers found dead and what became of their running tasks."""

    dead_workers: list[str]
    tasks_recovered: list[Recovered]


class Workers(AdminBase):
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
