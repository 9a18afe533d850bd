"""The dead letter: its entries listed and paged, their tasks requeued, entries purged."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from pgsched.admin.base import AdminBase
from pgsched.errors import NotFound, TaskNotFound, ValidationError
from pgsched.sql import Q

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


class DeadLetter(AdminBase):
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
            Q.dlq_reopen.run(c, {"queue": queue, "task_type": task_type})
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
