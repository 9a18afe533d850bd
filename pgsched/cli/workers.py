"""`pgsched workers [--json]`, `pgsched workers pause|resume NAME`.

Pausing is a row update plus a NOTIFY on ``pgsched_control`` in the same statement; the worker
listens there and re-reads its row, so a paused worker stops claiming within a second and
finishes what it runs. :func:`connection` is the database session the operator commands share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import typer
from rich.table import Table
from rich.text import Text

from pgsched.cli.app import app
from pgsched.cli.common import JsonOpt, console, exits_on_error, print_json, state
from pgsched.durations import format_duration
from pgsched.errors import InvalidState, NotFound
from pgsched.sql import Q


@contextlib.contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """An autocommit session on the configured database, schema checked, errors translated."""
    from pgsched.db import check_schema, connect, translated

    settings = state.settings
    with translated():
        conn = connect(state.dsn(), timeout=settings.connect_timeout)
    try:
        with translated(conn):
            check_schema(conn)
            yield conn
    finally:
        conn.close()


workers_app = typer.Typer(
    help="Workers: list them with their load, pause or resume one.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(workers_app, name="workers")


def list_workers(conn: psycopg.Connection, *, all_: bool = False) -> list[dict[str, Any]]:
    return Q.workers_list.run(conn, {"all": all_, "now": None})


def heartbeat_style(row: dict[str, Any], timeout: float) -> str:
    if row["status"] in ("stopped", "dead"):
        return "dim"
    age = row["heartbeat_age_s"] or 0.0
    return "red" if age > timeout else "yellow" if age > timeout / 2 else "green"


STATUS_STYLE = {
    "active": "green",
    "paused": "yellow",
    "draining": "cyan",
    "stopped": "dim",
    "dead": "red",
}


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
    with connection() as conn:
        rows = list_workers(conn, all_=all_)
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
            Text(w["status"], style=STATUS_STYLE.get(w["status"], "")),
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


def set_status(conn: psycopg.Connection, name: str, status: str) -> dict[str, Any]:
    """Set an active or paused worker's status and notify it; one-line errors otherwise."""
    row = Q.worker_set_status.run(conn, {"name": name, "status": status})
    if row is not None:
        return row
    current = Q.worker_get.run(conn, {"name": name})
    if current is None:
        raise NotFound(f"no worker named {name!r} (pgsched workers lists them)")
    verb = "pause" if status == "paused" else "resume"
    raise InvalidState(f"cannot {verb} worker {name!r}: it is {current['status']}")


@workers_app.command("pause")
@exits_on_error
def pause_cmd(name: str = typer.Argument(..., help="The worker's name.")) -> None:
    """Stop a worker from claiming; it finishes the tasks it runs."""
    with connection() as conn:
        set_status(conn, name, "paused")
    console.print(f"worker {name} paused (it finishes its running tasks)", highlight=False)


@workers_app.command("resume")
@exits_on_error
def resume_cmd(name: str = typer.Argument(..., help="The worker's name.")) -> None:
    """Let a paused worker claim again."""
    with connection() as conn:
        set_status(conn, name, "active")
    console.print(f"worker {name} active", highlight=False)
