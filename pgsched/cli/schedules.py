"""`pgsched schedules apply|list|pause|resume` and `pgsched scheduler FILE`."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import typer
from rich.markup import escape
from rich.table import Table

from pgsched.cli.common import (
    JsonOpt,
    console,
    exits_on_error,
    note_started_server,
    print_json,
    short_time,
    state,
)
from pgsched.durations import format_duration

commands = typer.Typer()

schedules_app = typer.Typer(
    help="Recurring schedules defined in YAML (each tick creates exactly one task).",
    no_args_is_help=True,
)


@schedules_app.command("apply")
@exits_on_error
def apply_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="YAML file of schedules."),
    prune: bool = typer.Option(False, "--prune", help="Remove schedules not in the file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    json: bool = JsonOpt,
) -> None:
    """Sync the file's schedules into the database (all or nothing)."""
    from pgsched.schedules import load_schedules

    defs = load_schedules(file)
    report = state.admin().apply_schedules(defs, prune=prune, dry_run=dry_run)
    if json:
        print_json(dict(report.as_dict(), dry_run=dry_run))
        return
    verb = "would be " if dry_run else ""
    for name in report.added:
        console.print(f"[green]+[/] {escape(name)} {verb}added", highlight=False, markup=True)
    for name, fields in report.changed.items():
        console.print(
            f"[yellow]~[/] {escape(name)} {verb}changed ({', '.join(fields)})",
            highlight=False,
            markup=True,
        )
    for name in report.removed:
        console.print(f"[red]-[/] {escape(name)} {verb}removed", highlight=False, markup=True)
    for name in report.kept:
        console.print(f"  {name} not in the file, kept (use --prune to remove)", highlight=False)
    console.print(
        f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} "
        f"removed, {len(report.unchanged)} unchanged" + (" (dry run)" if dry_run else ""),
        highlight=False,
    )


@schedules_app.command("list")
@exits_on_error
def list_cmd(json: bool = JsonOpt) -> None:
    """Every schedule with its state and last and next fire times."""
    rows = state.admin().schedules()
    if json:
        print_json(rows)
        return
    if not rows:
        console.print("no schedules (load some with: pgsched schedules apply FILE)")
        return
    now = datetime.now(UTC)
    table = Table(show_edge=False, pad_edge=False)
    for col in ("name", "when", "task type", "queue", "state", "misfire", "last", "next"):
        table.add_column(col, no_wrap=col != "queue")
    for r in rows:
        when = f"every {_every(r['every'])}" if r["every"] else r["cron"]
        if r["cron"] and r["timezone"] != "UTC":
            when += f" ({r['timezone']})"
        st = "paused" if r["paused"] else ("enabled" if r["enabled"] else "disabled")
        nxt = "-"
        if r["next_tick"] is not None and st == "enabled":
            nxt = f"{short_time(r['next_tick'])} ({_relative(r['next_tick'] - now)})"
        misfire = r["misfire"] + (f" ≤{r['misfire_cap']}" if r["misfire"] == "all" else "")
        table.add_row(
            r["name"],
            when,
            r["task_type"],
            r["queue"],
            st,
            misfire,
            short_time(r["last_tick"]),
            nxt,
        )
    console.print(table)


@schedules_app.command("pause")
@exits_on_error
def pause_cmd(name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Stop creating tasks for a schedule (until resume)."""
    state.admin().pause_schedule(name)
    console.print(f"paused {name}", highlight=False)


@schedules_app.command("resume")
@exits_on_error
def resume_cmd(name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Resume a paused schedule at its next tick (ticks missed while paused are skipped)."""
    state.admin().resume_schedule(name)
    console.print(f"resumed {name}", highlight=False)


@commands.command("scheduler")
@exits_on_error
def scheduler_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="YAML file of schedules."),
) -> None:
    """Apply FILE and tick every schedule in the foreground until SIGTERM/SIGINT. Run as many
    as you like: each tick still creates exactly one task."""
    from pgsched.schedules import Scheduler

    sched = Scheduler(state.dsn(), file, settings=state.settings)
    report = sched.apply()
    note_started_server()  # now, not when the scheduler stops
    console.print(
        f"scheduler: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.unchanged)} unchanged; ticking (Ctrl-C to stop)",
        highlight=False,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        sched.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sched.run()


def _relative(td: timedelta) -> str:
    s = td.total_seconds()
    return "due" if s <= 0 else "in " + _every(timedelta(seconds=max(1, round(s))))


def _every(td: timedelta) -> str:
    s = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return format_duration(td)
