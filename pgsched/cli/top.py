"""`pgsched top`: a live view of queues, workers, throughput and recent failures.

One snapshot is a handful of read-only statements on one session (`snapshot`, which is
pgsched.admin.Admin.snapshot); `render` turns
it into rich renderables; `run` refreshes them about once a second until Ctrl-C, a deadline,
or a caller's stop event (the demo runs it in the foreground).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pgsched.admin import Admin
from pgsched.cli.app import app
from pgsched.cli.common import (
    JsonOpt,
    clean,
    console,
    exits_on_error,
    fmt_time,
    note_started_server,
    print_json,
    state,
)
from pgsched.cli.workers import STATUS_STYLE, heartbeat_style
from pgsched.db import describe
from pgsched.durations import format_duration
from pgsched.errors import UsageError
from pgsched.models import STATUSES

FAILURES_SHOWN = 8
CORE = ("pending", "running", "succeeded", "failed")


def snapshot(admin: Admin, failures: int = FAILURES_SHOWN) -> dict[str, Any]:
    """Everything one frame shows, read on one session (pgsched.admin.Admin.snapshot)."""
    return admin.snapshot(failures=failures)


# -- rendering ---------------------------------------------------------------------------------


def bar(percent: float, width: int = 10, label: bool = True) -> Text:
    """A small bar: green below 60%, yellow below 85%, red above."""
    p = max(0.0, min(100.0, float(percent or 0)))
    filled = round(p / 100 * width)
    style = "green" if p < 60 else "yellow" if p < 85 else "red"
    t = Text("█" * filled, style=style)
    t.append("░" * (width - filled), style="dim")
    if label:
        t.append(f"{p:3.0f}%")
    return t


def _queues_table(s: dict[str, Any]) -> RenderableType:
    counts: dict[str, dict[str, int]] = s["queues"]
    if not counts:
        return Text("no tasks yet", style="dim")
    # The core statuses always; the others only while some queue has them (fits 80 columns).
    shown = [st for st in STATUSES if st in CORE or any(c.get(st) for c in counts.values())]
    table = Table(title="queues", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("queue", no_wrap=True, overflow="ellipsis", max_width=20)
    for st in shown:
        table.add_column(st, justify="right", no_wrap=True)
    table.add_column("ready", justify="right", no_wrap=True)
    table.add_column("oldest", justify="right", no_wrap=True)
    for q, c in sorted(counts.items()):
        ready = s["oldest_ready"].get(q)
        age = ready["age_s"] if ready else None
        table.add_row(
            q,
            *(str(c.get(st, 0)) if c.get(st) else Text("0", style="dim") for st in shown),
            str(ready["ready"]) if ready else "0",
            Text(
                format_duration(age) if age is not None else "-",
                style="red" if age and age > 60 else "yellow" if age and age > 5 else "",
            ),
        )
    return table


def _workers_table(s: dict[str, Any], heartbeat_timeout: float) -> RenderableType:
    if not s["workers"]:
        return Text("no workers (start one: pgsched worker)", style="dim")
    table = Table(title="workers", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    # (header, min width, max width): long names and hosts give way first.
    for col, lo, hi in (
        ("name", 6, 16),
        ("status", 8, 8),
        ("host:pid", 8, 22),
        ("queues", 6, 14),
        ("running", 8, 12),
        ("cpu", 8, 8),
        ("mem", 8, 8),
        ("beat", 5, 8),
    ):
        # Only the free-text columns may shrink (rich collapses wrappable columns alone);
        # their values are single words, so they get an ellipsis rather than a second line.
        flexible = col in ("name", "host:pid", "queues")
        table.add_column(col, no_wrap=not flexible, overflow="ellipsis", min_width=lo, max_width=hi)
    for w in s["workers"]:
        cap = max(1, w["max_task_capacity"])
        table.add_row(
            w["name"],
            Text(w["status"], style=STATUS_STYLE.get(w["status"], "")),
            f"{w['host']}:{w['pid']}",
            ",".join(w["queues"] or []),
            Text.assemble(
                bar(100 * w["current_task_count"] / cap, 4, label=False),
                f" {w['current_task_count']}/{w['max_task_capacity']}",
            ),
            bar(w["cpu_usage"], 4),
            bar(w["memory_usage"], 4),
            Text(
                format_duration(w["heartbeat_age_s"]),
                style=heartbeat_style(w, heartbeat_timeout),
            ),
        )
    return table


def _throughput_line(s: dict[str, Any]) -> Text:
    tp = s["throughput"]
    t = Text("finished/s ", style="bold")
    t.append(f"{tp['per_s_10s']:.1f}", style="bold cyan")
    t.append(" (10 s)  ")
    t.append(f"{tp['per_s_1m']:.1f}", style="cyan")
    t.append(" (1 min) · last min ")
    t.append(f"{tp['ok_1m']} ok", style="green")
    t.append(", ")
    t.append(f"{tp['failed_1m']} failed", style="red" if tp["failed_1m"] else "")
    t.append(" · dead letter: ")
    t.append(str(s["dead_letter"]), style="red" if s["dead_letter"] else "")
    return t


def _failures_table(s: dict[str, Any]) -> RenderableType:
    if not s["failures"]:
        return Text("no failed attempts", style="dim")
    lines: list[RenderableType] = [Text("recent failures", style="italic")]
    for f in s["failures"]:
        err = (f["error"] or "-").strip().splitlines()
        line = Text(fmt_time(f["finished_at"], "%H:%M:%S "), style="dim")
        line.append(clean(f"task {f['task_id']} {f['task_type'] or '?'} #{f['attempt']} "))
        line.append(f["outcome"], style="red" if f["outcome"] == "failure" else "yellow")
        line.append(clean(f" on {f['worker'] or '-'} → {f['status'] or 'gone'}: "), style="dim")
        line.append(clean(err[-1]) if err else "-")
        line.no_wrap, line.overflow = True, "ellipsis"
        lines.append(line)
    return Group(*lines)


def render(
    s: dict[str, Any], *, title: str = "pgsched top", heartbeat_timeout: float = 15.0
) -> RenderableType:
    header = Text.assemble(
        (title, "bold"), f"  {s['at'].strftime('%H:%M:%S')}", ("   Ctrl-C to quit", "dim")
    )
    return Group(
        header,
        _queues_table(s),
        _workers_table(s, heartbeat_timeout),
        _throughput_line(s),
        _failures_table(s),
    )


# -- the loop ------------------------------------------------------------------------------------


def run(
    admin: Admin,
    *,
    title: str,
    heartbeat_timeout: float,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    until: float | None = None,
    extra: Callable[[], RenderableType | None] | None = None,
) -> None:
    """Refresh the view every ``interval`` seconds until ``stop`` is set, the monotonic time
    ``until`` passes, or Ctrl-C (which propagates: the caller decides what it means)."""
    stop = stop or threading.Event()

    def frame() -> RenderableType:
        view = render(snapshot(admin), title=title, heartbeat_timeout=heartbeat_timeout)
        more = extra() if extra else None
        return Group(view, more) if more is not None else view

    with Live(frame(), console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set() and (until is None or time.monotonic() < until):
            stop.wait(interval)
            live.update(frame())


@app.command("top")
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
