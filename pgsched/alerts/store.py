"""Channels and rules in the database: apply (all or nothing), list, pause, resume, and the
notifications sent with their delivery state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgsched.alerts.config import AlertsFile
from pgsched.db import ADMIN_LOCK_NAMESPACE, translated
from pgsched.errors import NotFound
from pgsched.sql import Q, Query


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> changed fields
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the database, not in the file

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept": self.kept,
        }


@dataclass
class AlertsReport:
    channels: Changes = field(default_factory=Changes)
    rules: Changes = field(default_factory=Changes)

    def as_dict(self) -> dict[str, Any]:
        return {"channels": self.channels.as_dict(), "rules": self.rules.as_dict()}


def _rows(conn: psycopg.Connection[Any], q: Query, params: Any = None) -> Any:
    """What ``q`` returns, read with dict rows whatever the connection's row factory."""
    with conn.cursor(row_factory=dict_row) as cur:
        return q.run(cur, params)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return float(a) == float(b)
    if isinstance(a, timedelta) and isinstance(b, timedelta):
        return a == b
    return bool(a == b)


def apply_alerts(
    conn: psycopg.Connection[Any], spec: AlertsFile, *, prune: bool = False, dry_run: bool = False
) -> AlertsReport:
    """Sync the file's channels and rules in one transaction; ``dry_run`` only reports.
    Without ``prune`` channels and rules that are not in the file are kept."""
    report = AlertsReport()
    with translated(conn), conn.transaction():
        Q.alert_apply_lock.run(conn, {"ns": ADMIN_LOCK_NAMESPACE})
        have_ch = {r["name"]: r for r in _rows(conn, Q.alert_channel_rows)}
        for ch in spec.channels:
            want = {"type": ch.type, "config": ch.config()}
            have = have_ch.get(ch.name)
            if have is None:
                report.channels.added.append(ch.name)
            else:
                diff = [k for k, v in want.items() if have[k] != v]
                if not diff:
                    report.channels.unchanged.append(ch.name)
                    continue
                report.channels.changed[ch.name] = diff
            if not dry_run:
                Q.alert_channel_upsert.run(
                    conn, {"name": ch.name, "type": ch.type, "config": Jsonb(want["config"])}
                )
        have_rules = {r["name"]: r for r in _rows(conn, Q.alert_rule_rows)}
        for rule in spec.rules:
            want = rule.row()
            have = have_rules.get(rule.name)
            if have is None:
                report.rules.added.append(rule.name)
            else:
                diff = [k for k, v in want.items() if not _same(have[k], v)]
                if not diff:
                    report.rules.unchanged.append(rule.name)
                    continue
                report.rules.changed[rule.name] = diff
            if not dry_run:
                Q.alert_rule_upsert.run(conn, dict(want, name=rule.name))
        extra_rules = sorted(set(have_rules) - {r.name for r in spec.rules})
        extra_ch = sorted(set(have_ch) - {c.name for c in spec.channels})
        if prune:
            report.rules.removed, report.channels.removed = extra_rules, extra_ch
            if not dry_run:
                Q.alert_rule_delete.run(conn, {"names": extra_rules})
                Q.alert_channel_delete.run(conn, {"names": extra_ch})
        else:
            report.rules.kept, report.channels.kept = extra_rules, extra_ch
    return report


def list_rules(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with translated(conn):
        rows: list[dict[str, Any]] = _rows(conn, Q.alert_rule_rows)
    return rows


def list_channels(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with translated(conn):
        rows: list[dict[str, Any]] = _rows(conn, Q.alert_channel_rows)
    return rows


def set_paused(conn: psycopg.Connection[Any], name: str, paused: bool) -> None:
    with translated(conn):
        if _rows(conn, Q.alert_rule_set_paused, {"name": name, "paused": paused}) is None:
            raise NotFound(f"no alert rule named {name!r}")


def rule_for_test(conn: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    with translated(conn):
        row: dict[str, Any] | None = _rows(conn, Q.alert_rule_for_test, {"name": name})
    if row is None:
        raise NotFound(f"no alert rule named {name!r}")
    return row


def recent_notifications(
    conn: psycopg.Connection[Any], *, limit: int = 20, rule: str | None = None
) -> list[dict[str, Any]]:
    with translated(conn):
        rows: list[dict[str, Any]] = _rows(
            conn, Q.alert_notifications_recent, {"limit": limit, "rule": rule}
        )
    return rows
