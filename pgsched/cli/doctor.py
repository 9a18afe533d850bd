"""`pgsched doctor [--json]`: what threatens the queue in production, each with its fix
(pgsched.doctor). Exit 1 when any finding is a problem."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from pgsched.cli.common import JsonOpt, console, exits_on_error, print_json, state

commands = typer.Typer()

STYLE = {"ok": "green", "warn": "yellow", "problem": "bold red"}


@commands.command("doctor")
@exits_on_error
def doctor_cmd(
    json: bool = JsonOpt,
    xact_age: float = typer.Option(
        300.0,
        "--xact-age",
        min=0,
        max=86400 * 365,
        help="Seconds a transaction may hold a snapshot before it is a problem.",
    ),
) -> None:
    """Check the xmin horizon, dead rows and sizes of pgsched's tables, tasks running on gone
    workers, the schema revision and server settings (JIT, autovacuum, connections)."""
    from pgsched.doctor import Thresholds

    findings = state.admin().doctor(Thresholds(xact_age_s=xact_age))
    problems = sum(f.level == "problem" for f in findings)
    if json:
        print_json([f.as_dict() for f in findings])
    else:
        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("", "check", "finding", "fix"):
            table.add_column(col, overflow="fold")
        for f in findings:
            table.add_row(
                Text(f.level, style=STYLE[f.level]),
                Text(f.check),
                Text(f.finding),
                Text(f.fix or ""),
            )
        console.print(table)
        console.print(
            Text(f"{problems} problem(s)", style="bold red")
            if problems
            else Text("no problems", style="green")
        )
    if problems:
        raise typer.Exit(1)
