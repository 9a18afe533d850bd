"""Schedules, alert rules and workflows: applied from their definitions, paused and resumed,
listed and inspected, each over its own module (pgsched.schedules, pgsched.alerts,
pgsched.workflows)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from pgsched.admin.base import AdminBase
from pgsched.errors import NotFound
from pgsched.sql import Q

if TYPE_CHECKING:
    from pgsched.alerts.config import AlertsFile
    from pgsched.alerts.store import AlertsReport
    from pgsched.schedule_file import ScheduleDef
    from pgsched.schedules import ApplyReport
    from pgsched.workflows import WorkflowDef


class Definitions(AdminBase):
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
        """Sync definitions (pgsched.schedule_file.ScheduleDef) into the database, all or nothing;
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

    def workflows_page(
        self, *, status: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Workflows newest first (keyset: ``before`` = the last id of the previous page)."""
        with self.client.connection() as c, c.cursor(row_factory=dict_row) as cur:
            rows: list[dict[str, Any]] = Q.dash_workflows.run(
                cur, {"status": status, "before": before, "limit": limit}
            )
        return rows
