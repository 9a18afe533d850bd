"""`pgsched dlq list|requeue|purge`: the dead letter, where tasks go when attempts run out.

Entries are named by their task's id (the id `status`, `retry` and `list` use). Requeueing
puts the task back to pending with a fresh attempt budget (``--attempts`` more tries, default
the max_attempts setting) and deletes the entry: one task goes through Client.retry, `--all`
through one set-based statement (pgsched.admin.Admin).
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from pgsched.cli.common import (
    ATTEMPTS_RANGE,
    ID_RANGE,
    JsonOpt,
    console,
    exits_on_error,
    fmt_time,
    parse_int,
    print_json,
    state,
)
from pgsched.durations import parse_duration
from pgsched.errors import UsageError

dlq_app = typer.Typer(
    help="The dead letter: tasks whose attempts ran out. List, requeue, purge.",
    no_args_is_help=True,
)

QueueOpt = typer.Option(None, "--queue", "-q", help="Only this queue.")
TypeOpt = typer.Option(None, "--type", "-t", help="Only this task type.")


@dlq_app.command("list")
@exits_on_error
def list_cmd(
    limit: str = typer.Option("50", "--limit", "-n", help="Most entries shown, newest first."),
    queue: str = QueueOpt,
    task_type: str = TypeOpt,
    json: bool = JsonOpt,
) -> None:
    """List dead-letter entries, newest first (--json includes payloads)."""
    n = parse_int("--limit", limit, (1, 1_000_000))
    rows = state.admin().dlq_list(queue=queue, task_type=task_type, limit=n)
    if json:
        print_json(rows)
        return
    if not rows:
        console.print("the dead letter is empty")
        return
    table = Table()
    for col in ("task", "queue", "type", "tries", "failed at", "now", "error"):
        # The error takes what is left; the other columns never wrap.
        table.add_column(col, no_wrap=col != "error", min_width=20 if col == "error" else None)
    for r in rows:
        table.add_row(
            str(r["task_id"]),
            r["queue"],
            r["task_type"],
            str(r["attempts"]),
            fmt_time(r["failed_at"], "%m-%d %H:%M:%S"),
            r["task_status"] or "pruned",
            (r["last_error"] or "-").splitlines()[0] if r["last_error"] else "-",
        )
    console.print(table)


@dlq_app.command("requeue")
@exits_on_error
def requeue_cmd(
    task_id: str = typer.Argument(None, metavar="[ID]", help="The task id of an entry."),
    all_: bool = typer.Option(False, "--all", help="Requeue every entry (matching the filters)."),
    attempts: str = typer.Option(
        None, "--attempts", help="Fresh attempts, 1..1000 (default: the max_attempts setting)."
    ),
    queue: str = QueueOpt,
    task_type: str = TypeOpt,
) -> None:
    """Put dead-letter tasks back to pending with a fresh attempt budget; drop their entries."""
    if (task_id is None) == (not all_):
        raise UsageError("give a task ID or --all (one of them)")
    if task_id is not None and (queue or task_type):
        raise UsageError("--queue and --type apply to --all, not to one ID")
    more = parse_int("--attempts", attempts, ATTEMPTS_RANGE)
    if more is None:
        more = state.settings.max_attempts
    if task_id is not None:
        tid = parse_int("ID", task_id, ID_RANGE)
        assert tid is not None
        max_attempts = state.admin().dlq_requeue(tid, attempts=more)
        console.print(
            f"task {tid} is pending again (max attempts now {max_attempts})", highlight=False
        )
        return
    ids = state.admin().dlq_requeue_all(queue=queue, task_type=task_type, attempts=more)
    if not ids:
        console.print("nothing to requeue")
        return
    shown = ", ".join(str(i) for i in ids[:10]) + (", …" if len(ids) > 10 else "")
    console.print(f"requeued {len(ids)} task(s): {shown}", highlight=False)


@dlq_app.command("purge")
@exits_on_error
def purge_cmd(
    older_than: str = typer.Option(
        None, "--older-than", help="Only entries older than this: 7d, 12h, 30m (default: all)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    queue: str = QueueOpt,
    task_type: str = TypeOpt,
) -> None:
    """Delete dead-letter entries (the failed tasks stay until retention prunes them)."""
    filters: dict[str, Any] = {
        "queue": queue,
        "task_type": task_type,
        "older_than": parse_duration(older_than, "--older-than") if older_than else None,
    }
    admin = state.admin()
    n = admin.dlq_purge_count(**filters)
    if n == 0:
        console.print("nothing to purge")
        return
    what = f"{n} dead-letter entr{'y' if n == 1 else 'ies'}"
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"would delete {what}: add --yes to confirm")
        if not typer.confirm(f"delete {what}?"):
            raise typer.Exit(1)
    deleted = admin.dlq_purge(**filters)
    console.print(f"deleted {deleted} dead-letter entr{'y' if deleted == 1 else 'ies'}")
