"""`pgsched submit|status|list|cancel|retry`: the task-facing commands.

Each command prints people-friendly rich output, or JSON with ``--json`` (read commands), and
turns every pgsched error into one ``error:`` line with exit code 1 (failed operation) or 2
(bad input). ``--workflow`` variants delegate to :mod:`pgsched.cli.workflow`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from pgsched.cli.common import (
    ATTEMPTS_RANGE,
    ID_RANGE,
    JsonOpt,
    console,
    err_console,
    exits_on_error,
    fmt_time,
    parse_int,
    parse_payload,
    print_json,
    print_notifications,
    state,
)
from pgsched.durations import format_duration, parse_duration, parse_instant
from pgsched.errors import UsageError
from pgsched.models import KEY_MAX_BYTES, STATUSES

if TYPE_CHECKING:
    from pgsched.client import Client
    from pgsched.models import TaskSpec

commands = typer.Typer()

PRIORITY_RANGE = (-1000, 1000)


# -- submit ------------------------------------------------------------------------------------


@commands.command("submit")
@exits_on_error
def submit_cmd(
    task_type: str = typer.Argument(None, metavar="TYPE", help="Task type (e.g. shell, http)."),
    payload: str = typer.Option(
        None, "--payload", "-p", help="JSON payload, or @FILE to read it from a file."
    ),
    queue: str = typer.Option(None, "--queue", "-q", help="Queue (default: the queue setting)."),
    priority: str = typer.Option(None, "--priority", help="-1000..1000, higher runs first [0]."),
    delay: str = typer.Option(None, "--delay", help="Run after this long: 30s, 5m, 2h, 1h30m."),
    at: str = typer.Option(None, "--at", help="Run at this ISO-8601 time (no offset: UTC)."),
    max_attempts: str = typer.Option(
        None, "--max-attempts", help="1..1000 (default: the max_attempts setting)."
    ),
    timeout: str = typer.Option(None, "--timeout", help="Per-attempt time limit: 30s, 5m."),
    key: str = typer.Option(
        None, "--key", help="Idempotency key: the same key again prints the first id."
    ),
    workflow: Path = typer.Option(
        None, "--workflow", help="Submit a workflow (DAG) file instead of one task."
    ),
) -> None:
    """Submit a task and print its id alone (so `id=$(pgsched submit ...)` works)."""
    if workflow is not None:
        if task_type is not None:
            raise UsageError("give TYPE or --workflow FILE, not both")
        from pgsched.cli.workflow import submit_workflow

        submit_workflow(workflow)
        return
    if task_type is None:
        raise UsageError("missing TYPE (or --workflow FILE)")
    if delay is not None and at is not None:
        raise UsageError("--delay and --at: give one or the other, not both")
    options: dict[str, Any] = {
        "priority": parse_int("--priority", priority, PRIORITY_RANGE),
        "max_attempts": parse_int("--max-attempts", max_attempts, ATTEMPTS_RANGE),
        "delay": parse_duration(delay, "--delay") if delay is not None else None,
        "run_at": parse_instant(at, "--at") if at is not None else None,
        "timeout": parse_duration(timeout, "--timeout") if timeout is not None else None,
        "key": key,
    }
    if queue is not None:
        options["queue"] = queue
    client = state.client()
    # Validate before connecting, so bad input never touches the database.
    if key is not None and len(key.encode("utf-8", "surrogatepass")) > KEY_MAX_BYTES:
        raise UsageError(f"--key: too long: at most {KEY_MAX_BYTES} bytes (UTF-8)")
    spec = client.spec(task_type, parse_payload(payload), **options)
    task_id, created = client.submit_spec(spec)
    if not created:
        _warn_if_key_differs(client, task_id, spec)
    print(task_id)


def _warn_if_key_differs(client: Client, task_id: int, spec: TaskSpec) -> None:
    """The key already named a task: say so on stderr when that task is not this one (another
    type, queue or payload), since nothing was submitted."""
    try:
        have = client.get(task_id)
    except Exception:  # the warning is a courtesy; the id printed is right either way
        return
    differs = [
        name
        for name, mine in (
            ("type", spec.task_type),
            ("queue", spec.queue),
            ("payload", spec.payload),
        )
        if have.get({"type": "task_type"}.get(name, name)) != mine
    ]
    if differs:
        err_console.print(
            f"warning: --key {spec.idempotency_key!r} already names task {task_id}, whose "
            f"{' and '.join(differs)} differ from this submission: nothing was submitted",
            markup=False,
            highlight=False,
        )


# -- status ------------------------------------------------------------------------------------


@commands.command("status")
@exits_on_error
def status_cmd(
    task_id: str = typer.Argument(None, metavar="[ID]", help="A task id; none: the overview."),
    workflow: str = typer.Option(None, "--workflow", metavar="ID", help="Show a workflow."),
    json: bool = JsonOpt,
) -> None:
    """Overview of queues and workers, or one task with its attempt history."""
    if workflow is not None:
        if task_id is not None:
            raise UsageError("give ID or --workflow ID, not both")
        from pgsched.cli.workflow import show_workflow

        show_workflow(parse_int("--workflow", workflow, ID_RANGE), json)
        return
    client = state.client()
    if task_id is not None:
        task = client.get(parse_int("ID", task_id, ID_RANGE))
        if json:
            print_json(task)
        else:
            _print_task(task)
        return
    # The latest alert notifications and their delivery state (none without alert rules).
    notifications = state.admin().alert_notifications(limit=5)
    summary: dict[str, Any] = {**client.summary(), "notifications": notifications}
    if json:
        print_json(summary)
    else:
        _print_summary(summary)
        if summary["notifications"]:
            print_notifications(summary["notifications"], title="recent notifications")


def _print_summary(s: dict[str, Any]) -> None:
    counts: dict[str, dict[str, int]] = s["counts"]
    if not counts:
        console.print("no tasks")
    else:
        statuses = [st for st in STATUSES if any(st in c for c in counts.values())]
        table = Table(title="tasks by queue")
        table.add_column("queue")
        for st in statuses:
            table.add_column(st, justify="right")
        table.add_column("oldest ready", justify="right")
        for q, c in sorted(counts.items()):
            oldest = s["oldest_ready"].get(q)
            table.add_row(
                q,
                *(str(c.get(st, 0)) for st in statuses),
                format_duration(oldest["age_s"]) if oldest else "-",
            )
        console.print(table)
    if s["workers"]:
        table = Table(title="workers")
        for col in ("name", "host", "status", "queues", "running", "cpu %", "mem %", "heartbeat"):
            table.add_column(col)
        for w in s["workers"]:
            table.add_row(
                w["name"],
                w["host"],
                w["status"],
                ",".join(w["queues"] or []),
                f"{w['current_task_count']}/{w['max_task_capacity']}",
                f"{w['cpu_usage']:.0f}",
                f"{w['memory_usage']:.0f}",
                format_duration(w["heartbeat_age_s"]) + " ago",
            )
        console.print(table)
    else:
        console.print("no workers")
    for u in s["unserved"]:
        console.print(
            f"[yellow]warning:[/] {u['n']} ready task(s) of type {escape(repr(u['task_type']))} "
            f"in queue {escape(repr(u['queue']))}: no live worker runs them",
            highlight=False,
            soft_wrap=True,
            markup=True,
        )


def _print_task(task: dict[str, Any]) -> None:
    history = task.pop("history", [])
    table = Table(title=f"task {task['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in task.items():
        if v is None:
            shown = "-"
        elif k in ("payload", "result", "checkpoint"):
            shown = json.dumps(v, ensure_ascii=False)
        elif hasattr(v, "astimezone"):
            shown = fmt_time(v)
        elif hasattr(v, "total_seconds"):
            shown = format_duration(v)
        else:
            shown = str(v)
        table.add_row(k, shown)
    console.print(table)
    if not history:
        console.print("no finished attempts")
        return
    h = Table(title="attempts")
    for col in ("attempt", "worker", "started", "finished", "outcome", "duration", "error"):
        h.add_column(col)
    for r in history:
        h.add_row(
            str(r["attempt"]),
            r["worker"] or "-",
            fmt_time(r["started_at"]),
            fmt_time(r["finished_at"]),
            r["outcome"],
            format_duration(r["duration_ms"] / 1000) if r["duration_ms"] is not None else "-",
            (r["error"] or "-").splitlines()[0] if r["error"] else "-",
        )
    console.print(h)


# -- list --------------------------------------------------------------------------------------


@commands.command("list")
@exits_on_error
def list_cmd(
    status: str = typer.Option(None, "--status", "-s", help="One of: " + ", ".join(STATUSES)),
    queue: str = typer.Option(None, "--queue", "-q", help="Only this queue."),
    task_type: str = typer.Option(None, "--type", "-t", help="Only this task type."),
    limit: str = typer.Option("50", "--limit", "-n", help="Most rows shown, newest first."),
    json: bool = JsonOpt,
) -> None:
    """List tasks, newest first."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    rows = state.client().list(
        status=status,
        queue=queue,
        task_type=task_type,
        limit=parse_int("--limit", limit, (1, 1_000_000)),
    )
    if json:
        print_json(rows)
        return
    if not rows:
        console.print("no tasks")
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("queue", min_width=7, overflow="fold")
    table.add_column("type", min_width=8, overflow="fold")
    for col in ("status", "prio", "tries", "run at"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["queue"],
            r["task_type"],
            r["status"],
            str(r["priority"]),
            f"{r['attempts']}/{r['max_attempts']}",
            fmt_time(r["run_at"], "%m-%d %H:%M:%S"),
            (r["last_error"] or "-").splitlines()[0] if r["last_error"] else "-",
        )
    console.print(table)


# -- cancel / retry ----------------------------------------------------------------------------


def _one_target(task_id: str | None, workflow: str | None) -> tuple[int, bool]:
    """The id given, and whether it is a workflow's: a task ID or --workflow ID, one of them."""
    if task_id is not None and workflow is None:
        return parse_int("ID", task_id, ID_RANGE), False
    if workflow is not None and task_id is None:
        return parse_int("--workflow", workflow, ID_RANGE), True
    raise UsageError("give a task ID or --workflow ID (one of them)")


@commands.command("cancel")
@exits_on_error
def cancel_cmd(
    task_id: str = typer.Argument(None, metavar="[ID]", help="The task to cancel."),
    workflow: str = typer.Option(None, "--workflow", metavar="ID", help="Cancel a workflow."),
) -> None:
    """Cancel a task: at once if it has not started, else ask its worker to stop it."""
    tid, is_workflow = _one_target(task_id, workflow)
    if is_workflow:
        from pgsched.cli.workflow import cancel_workflow

        cancel_workflow(tid)
        return
    outcome = state.client().cancel(tid)
    if outcome == "cancelled":
        console.print(f"task {tid} cancelled", highlight=False)
    else:
        console.print(
            f"task {tid} is running: cancel request sent (its worker stops it)",
            highlight=False,
        )


@commands.command("retry")
@exits_on_error
def retry_cmd(
    task_id: str = typer.Argument(None, metavar="[ID]", help="A failed or cancelled task."),
    attempts: str = typer.Option(
        None, "--attempts", help="More attempts, 1..1000 (default: the max_attempts setting)."
    ),
    workflow: str = typer.Option(None, "--workflow", metavar="ID", help="Retry a workflow."),
) -> None:
    """Run a failed or cancelled task again (its dead-letter copy is removed)."""
    tid, is_workflow = _one_target(task_id, workflow)
    if is_workflow:
        if attempts is not None:
            raise UsageError("--attempts applies to a task, not to --workflow")
        from pgsched.cli.workflow import retry_workflow

        retry_workflow(tid)
        return
    more = parse_int("--attempts", attempts, ATTEMPTS_RANGE)
    max_attempts = state.client().retry(tid, attempts=more)
    console.print(f"task {tid} is pending again (max attempts now {max_attempts})", highlight=False)
