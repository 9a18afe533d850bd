"""`pgsched top`: the live view (pgsched/cli/live.py) in the foreground, or one frame of it."""

from __future__ import annotations

import contextlib

import typer

from pgsched.cli.common import (
    JsonOpt,
    console,
    exits_on_error,
    note_started_server,
    print_json,
    state,
)
from pgsched.cli.live import render, run, snapshot
from pgsched.db import describe
from pgsched.errors import UsageError

commands = typer.Typer()


@commands.command("top")
@exits_on_error
def top_cmd(
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between refreshes [1]."),
    json: bool = JsonOpt,
) -> None:
    """Live view: queues, workers and their load, throughput, recent failures."""
    if not 0.1 <= interval <= 3600:
        raise UsageError("--interval: must be between 0.1 and 3600 seconds")
    if json and not once:
        raise UsageError("--json needs --once (one snapshot)")
    settings = state.settings
    title = f"pgsched top · {describe(state.dsn())}"
    admin = state.admin()
    if once:
        s = snapshot(admin)
        if json:
            print_json(s)
        else:
            console.print(render(s, title=title, heartbeat_timeout=settings.heartbeat_timeout))
        return
    snapshot(admin)  # a database without the schema fails here, in one line
    note_started_server()  # now, not when `top` ends
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how `top` ends
        run(admin, title=title, heartbeat_timeout=settings.heartbeat_timeout, interval=interval)
