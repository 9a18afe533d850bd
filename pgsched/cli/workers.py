"""`pgsched workers [--json]`, `pgsched workers pause|resume NAME` (pgsched.admin.Admin).

Pausing is a row update plus a NOTIFY on ``pgsched_control`` in the same statement; the worker
listens there and re-reads its row, so a paused worker stops claiming within a second and
finishes what it runs.
"""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from pgsched.cli.common import (
    WORKER_STATUS_STYLE,
    JsonOpt,
    console,
    exits_on_error,
    heartbeat_style,
    print_json,
    state,
)
from pgsched.durations import format_duration

workers_app = typer.Typer(
    help="Workers: list them with their load, pause or resume one.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@workers_app.callback()
@exits_on_error
def workers_cmd(
    ctx: typer.Context,
    json: bool = JsonOpt,
    all_: bool = typer.Option(
        False, "--all", help="Include workers that stopped or died over an hour ago."
    ),
) -> None:
    """List workers: status, host, pid, queues, CPU/memory, running/capacity, heartbeat age."""
    if ctx.invoked_subcommand is not None:
        return
    rows = state.admin().workers(all_=all_)
    if json:
        print_json(rows)
        return
    if not rows:
        console.print("no workers")
        return
    timeout = state.settings.heartbeat_timeout
    table = Table()
    columns = ("name", "status", "host", "pid", "queues", "cpu %", "mem %", "running", "heartbeat")
    for col in columns:
        table.add_column(col, justify="right" if col in ("pid", "cpu %", "mem %") else "left")
    for w in rows:
        table.add_row(
            w["name"],
            Text(w["status"], style=WORKER_STATUS_STYLE.get(w["status"], "")),
            w["host"],
            str(w["pid"]),
            ",".join(w["queues"] or []),
            f"{w['cpu_usage']:.0f}",
            f"{w['memory_usage']:.0f}",
            f"{w['current_task_count']}/{w['max_task_capacity']}",
            Text(
                format_duration(w["heartbeat_age_s"]) + " ago",
                style=heartbeat_style(w, timeout),
            ),
        )
    console.print(table)


@workers_app.command("pause")
@exits_on_error
def pause_cmd(name: str = typer.Argument(..., help="The worker's name.")) -> None:
    """Stop a worker from claiming; it finishes the tasks it runs."""
    state.admin().pause_worker(name)
    console.print(f"worker {name} paused (it finishes its running tasks)", highlight=False)


@workers_app.command("resume")
@exits_on_error
def resume_cmd(name: str = typer.Argument(..., help="The worker's name.")) -> None:
    """Let a paused worker claim again."""
    state.admin().resume_worker(name)
    console.print(f"worker {name} active", highlight=False)


@workers_app.command("recover")
@exits_on_error
def recover_cmd(json: bool = JsonOpt) -> None:
    """Hand back now the tasks of dead workers (liveness lock gone or heartbeat past
    heartbeat_timeout), as a live worker's recovery does."""
    out = state.admin().recover()
    if json:
        print_json(out)
        return
    dead = out["dead_workers"]
    console.print(
        f"{len(dead)} dead worker(s){': ' + ', '.join(dead) if dead else ''}; "
        f"{len(out['tasks_recovered'])} task(s) handed back",
        highlight=False,
        markup=False,
    )
