"""`pgsched alerts apply|list|pause|resume|test|history|run`."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from pgsched.cli.common import (
    JsonOpt,
    console,
    exits_on_error,
    fmt_time,
    note_started_server,
    print_json,
    print_notifications,
    state,
)
from pgsched.durations import format_duration

alerts_app = typer.Typer(
    help="Alert rules and channels defined in YAML (webhook, Slack, email), and what was sent.",
    no_args_is_help=True,
)


@alerts_app.command("apply")
@exits_on_error
def apply_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="YAML file of channels and rules."),
    prune: bool = typer.Option(
        False, "--prune", help="Remove channels and rules that are not in the file."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    json: bool = JsonOpt,
) -> None:
    """Sync the file's channels and rules into the database (all or nothing)."""
    from pgsched.alerts.config import load_alerts

    spec = load_alerts(file)
    report = state.admin().apply_alerts(spec, prune=prune, dry_run=dry_run)
    if json:
        print_json(dict(report.as_dict(), dry_run=dry_run))
        return
    verb = "would be " if dry_run else ""
    for kind, ch in (("channel", report.channels), ("rule", report.rules)):
        for name in ch.added:
            console.print(
                f"[green]+[/] {kind} {escape(name)} {verb}added", highlight=False, markup=True
            )
        for name, fields in ch.changed.items():
            console.print(
                f"[yellow]~[/] {kind} {escape(name)} {verb}changed ({', '.join(fields)})",
                highlight=False,
                markup=True,
            )
        for name in ch.removed:
            console.print(
                f"[red]-[/] {kind} {escape(name)} {verb}removed", highlight=False, markup=True
            )
        for name in ch.kept:
            console.print(
                f"  {kind} {name} not in the file, kept (use --prune to remove)", highlight=False
            )
    r, c = report.rules, report.channels
    console.print(
        f"rules: {len(r.added)} added, {len(r.changed)} changed, {len(r.removed)} removed, "
        f"{len(r.unchanged)} unchanged; channels: {len(c.added)} added, {len(c.changed)} "
        f"changed, {len(c.removed)} removed, {len(c.unchanged)} unchanged"
        + (" (dry run)" if dry_run else ""),
        highlight=False,
    )


def _what(r: dict[str, Any]) -> str:
    if r["event"]:
        return str(r["event"])
    above = r["above"]
    bound = (
        format_duration(above)
        if r["threshold"] == "oldest_ready_age"
        else (f"{above:g}%" if r["threshold"] == "failure_rate" else f"{above:g}")
    )
    return f"{r['threshold']} > {bound} / {format_duration(r['time_window'])}"


def _filters(r: dict[str, Any]) -> str:
    parts = [
        f"{label}={','.join(v)}"
        for label, v in (("queue", r["queues"]), ("type", r["task_types"]), ("wf", r["workflows"]))
        if v
    ]
    return " ".join(parts) or "-"


@alerts_app.command("list")
@exits_on_error
def list_cmd(json: bool = JsonOpt) -> None:
    """Every rule with its filters, channels, state and last notification; then the channels."""
    admin = state.admin()
    rules, channels = admin.alert_rules(), admin.alert_channels()
    if json:
        print_json({"rules": rules, "channels": channels})
        return
    if not rules and not channels:
        console.print("no alert rules (load some with: pgsched alerts apply FILE)")
        return
    table = Table(show_edge=False, pad_edge=False, title="rules")
    for col in ("name", "when", "filters", "key", "every", "channels", "state", "pending", "last"):
        table.add_column(col)
    for r in rules:
        table.add_row(
            r["name"],
            _what(r),
            _filters(r),
            r["group_by"],
            format_duration(r["min_interval"]),
            ",".join(r["channels"]),
            "paused" if r["paused"] else "active",
            str(r["pending"]),
            fmt_time(r["last_sent_at"]),
        )
    console.print(table)
    table = Table(show_edge=False, pad_edge=False, title="channels")
    for col in ("name", "type", "to", "queue", "attempts"):
        table.add_column(col)
    for ch in channels:
        cfg = ch["config"]
        to = cfg.get("url") or (f"${cfg['url_env']}" if cfg.get("url_env") else "")
        if ch["type"] == "email":
            to = f"{', '.join(cfg['to'])} via {cfg['host']}:{cfg['port']}"
        table.add_row(ch["name"], ch["type"], to, cfg["queue"], str(cfg["max_attempts"]))
    console.print(table)


@alerts_app.command("pause")
@exits_on_error
def pause_cmd(name: str = typer.Argument(..., metavar="RULE")) -> None:
    """Stop recording events for a rule (until resume)."""
    state.admin().pause_alert(name)
    console.print(f"paused {name}", highlight=False)


@alerts_app.command("resume")
@exits_on_error
def resume_cmd(name: str = typer.Argument(..., metavar="RULE")) -> None:
    """Record events for a paused rule again; what it had folded is sent at the next look."""
    state.admin().resume_alert(name)
    console.print(f"resumed {name}", highlight=False)


@alerts_app.command("test")
@exits_on_error
def test_cmd(name: str = typer.Argument(..., metavar="RULE"), json: bool = JsonOpt) -> int:
    """Send a sample notification (test: true) of RULE to each of its channels, from this
    process and now; exit 1 if any channel failed."""
    results = state.admin().test_alert(name)
    if json:
        print_json(results)
    else:
        for r in results:
            if r["ok"]:
                console.print(
                    f"[green]sent[/] {escape(r['channel'])}", highlight=False, markup=True
                )
            else:
                console.print(
                    f"[red]failed[/] {escape(r['channel'])}: {escape(str(r['error']))}",
                    highlight=False,
                    markup=True,
                )
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)
    return 0


@alerts_app.command("history")
@exits_on_error
def history_cmd(
    rule: str = typer.Option(None, "--rule", help="Only this rule's notifications."),
    limit: int = typer.Option(20, "--limit", min=1, max=10000),
    json: bool = JsonOpt,
) -> None:
    """The latest notifications with the delivery state of each channel."""
    rows = state.admin().alert_notifications(limit=limit, rule=rule)
    if json:
        print_json(rows)
        return
    print_notifications(rows)


@alerts_app.command("run")
@exits_on_error
def run_cmd() -> None:
    """Run an alert ticker in the foreground (every `pgsched worker` runs one already):
    evaluate threshold rules, turn recorded events into notifications and deliver them, as a
    worker of the delivery queue only (for fleets whose workers run with --no-alerts)."""
    from pgsched.alerts.config import DELIVERY_QUEUE
    from pgsched.alerts.ticker import AlertTicker
    from pgsched.registry import Registry
    from pgsched.worker import Worker

    settings = state.settings
    # A worker that runs nothing itself: its row and liveness lock are what the ticker claims
    # deliveries as, so the deliveries of a process that dies are recovered.
    w = Worker(
        state.dsn(),
        settings,
        name=f"{socket.gethostname()}-{os.getpid()}-alerts",
        queues=[DELIVERY_QUEUE],
        concurrency=1,
        registry=Registry(),
    )
    w.start()
    ticker = AlertTicker(state.dsn(), settings=settings, on_crash=w.report_crash, worker=w.name)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        ticker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.print("alert ticker running (Ctrl-C to stop)")
    note_started_server()  # now, not when the ticker stops
    try:
        ticker.run()
    finally:
        w.stop()
