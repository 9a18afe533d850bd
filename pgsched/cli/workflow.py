"""Workflow commands' bodies. `pgsched submit|status|cancel|retry --workflow` (pgsched/cli/tasks.py)
delegate here; the work itself is in pgsched.admin.Admin (over pgsched.workflows)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from rich.table import Table
from rich.text import Text

from pgsched.cli.common import console, fmt_time, print_json, short_time, state
from pgsched.durations import format_duration

STATUS_STYLE = {
    "blocked": "dim",
    "pending": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "red",
}


def submit_workflow(path: Path) -> None:
    """Validate the file, insert the workflow in one statement, print its id alone."""
    from pgsched import workflows

    definition = workflows.load_workflow(path)
    wf_id = state.admin().submit_workflow(definition)
    sys.stdout.write(f"{wf_id}\n")


def show_workflow(workflow_id: int, as_json: bool) -> None:
    """The DAG as a layered table (indent = longest path from a root), each task's state and
    timing; ``as_json``: the workflow and its tasks for scripts."""
    wf = state.admin().workflow(workflow_id)
    if as_json:
        print_json(wf)
        return
    tasks = wf["tasks"]
    done = sum(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks)
    took = _took(wf["created_at"], wf["finished_at"])
    head = Text.assemble(
        (f"workflow {wf['id']} ", "bold"),
        (repr(wf["name"]), "bold"),
        ": ",
        (wf["status"], STATUS_STYLE.get(wf["status"], "")),
        f"  ({done}/{len(tasks)} tasks finished, created {fmt_time(wf['created_at'])}",
        f", took {took})" if wf["finished_at"] else ")",
    )
    console.print(head)
    columns = ("task", "id", "type", "status", "tries", "started", "took", "after")
    rows: list[tuple[str, ...]] = []
    for t in sorted(tasks, key=lambda t: (t["layer"], t["name"])):
        status = t["status"] + (" (cancel requested)" if t["cancel_requested"] else "")
        rows.append(
            (
                _indent(t["layer"]) + t["name"],
                str(t["id"]),
                t["task_type"],
                status,
                f"{t['attempts']}/{t['max_attempts']}",
                short_time(t["started_at"]),
                _took(t["started_at"], t["finished_at"]) if t["started_at"] else "-",
                ", ".join(t["depends_on"]) or "-",
            )
        )
    if len(rows) > TABLE_MAX:
        _plain_rows(columns, rows)
    else:
        table = Table(show_edge=False, pad_edge=False)
        for col in columns[:-1]:
            table.add_column(
                col,
                justify="right" if col in ("id", "tries") else "left",
                no_wrap=col in ("task", "status", "tries", "started", "took"),
            )
        table.add_column("after", overflow="fold")
        for row in rows:
            status = row[3].split(" ", 1)[0]
            table.add_row(*row[:3], Text(row[3], style=STATUS_STYLE.get(status, "")), *row[4:])
        console.print(table)
    errors = [t for t in tasks if t["status"] in ("failed", "cancelled") and t["last_error"]]
    for t in errors[:ERRORS_SHOWN]:
        console.print(
            Text(f"{t['name']}: {t['last_error'].splitlines()[0]}", style="dim"),
            highlight=False,
        )
    if len(errors) > ERRORS_SHOWN:
        console.print(
            Text(f"... and {len(errors) - ERRORS_SHOWN} more (--json lists them all)", "dim")
        )


# Indentation shows a task's layer up to this depth; deeper ones (a long chain) are indented
# no further and say their layer: each row as wide as its depth made a 10k-task chain a
# table of 20k-character rows, which took rich most of a minute to lay out.
INDENT_MAX = 12
ERRORS_SHOWN = 20


# Past this many tasks the rows are plain aligned text: rich lays a table out at ~2.7 ms a
# row (a 10k-task workflow took 27 s to print).
TABLE_MAX = 300


def _plain_rows(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [min(40, max(len(c), *(len(r[i]) for r in rows))) for i, c in enumerate(columns)]
    right = {"id", "tries"}

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, (col, cell) in enumerate(zip(columns, cells, strict=True)):
            if i == len(columns) - 1:
                out.append(cell)
            elif col in right:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return " ".join(out).rstrip()

    text = "\n".join([line(columns), *(line(r) for r in rows)])
    console.out(text, highlight=False)


def _indent(layer: int) -> str:
    if layer <= INDENT_MAX:
        return "  " * layer
    return "  " * INDENT_MAX + f"[{layer}] "


def cancel_workflow(workflow_id: int) -> None:
    counts = state.admin().cancel_workflow(workflow_id)
    msg = f"workflow {workflow_id}: cancelled {counts['cancelled']} task(s)"
    if counts["cancel_requested"]:
        msg += f", asked {counts['cancel_requested']} running task(s) to stop"
    console.print(msg, highlight=False)


def retry_workflow(workflow_id: int) -> None:
    res = state.admin().retry_workflow(workflow_id, attempts=state.settings.max_attempts)
    console.print(
        f"workflow {workflow_id}: retrying {res['retried']} task(s), "
        f"{res['pending']} ready now, the rest after their parents",
        highlight=False,
    )


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    if end is None:
        from datetime import UTC

        return format_duration(datetime.now(UTC) - start) + "…"
    return format_duration(end - start)


__all__ = ["cancel_workflow", "retry_workflow", "show_workflow", "submit_workflow"]
