"""`pgsched demo` (what `make demo` runs): the whole system on one machine, live.

Starts the embedded local server (unless a DSN is configured), migrates, starts two worker
processes and `pgsched serve --auth` (printing its URL and a read token), feeds them a stream
of sample tasks from a producer thread (quick and slow `dummy` tasks, some that fail until they
reach the dead letter, `noop`s, and `http` calls to a local address, which http tasks refuse),
and shows `pgsched top` until Ctrl-C or ``--duration``. Then it stops the producer, sends
SIGTERM to the workers (they finish or hand back their tasks), stops the server if it started
it, and prints a one-line summary.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from pgsched.cli.common import console, err_console, exits_on_error, state
from pgsched.demo import Demo, free_api_port, start_alerts
from pgsched.durations import format_duration, parse_duration
from pgsched.errors import PgschedError, UsageError

if TYPE_CHECKING:
    from pgsched.server import Cluster

commands = typer.Typer()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to the demo ends it like Ctrl-C (CI, `timeout`, process managers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@commands.command("demo")
@exits_on_error
def demo_cmd(
    duration: str = typer.Option(
        None, "--duration", help="Stop by itself after this long: 30, 30s, 2m (default: Ctrl-C)."
    ),
    no_top: bool = typer.Option(
        False, "--no-top", help="Print a status line every few seconds instead of the live view."
    ),
    rate: float = typer.Option(3.0, "--rate", help="Tasks submitted per second, on average."),
    api_port: int = typer.Option(
        8080, "--api-port", min=0, max=65535, help="Port of the demo's pgsched serve [8080]."
    ),
) -> None:
    """Run the embedded server, two workers, a task producer and the live view."""
    if not 0.1 <= rate <= 1000:
        raise UsageError("--rate: must be between 0.1 and 1000 tasks per second")
    seconds = parse_duration(duration, "--duration").total_seconds() if duration else None
    if seconds is not None and seconds <= 0:
        raise UsageError("--duration: must be positive")

    from pgsched import migrate

    settings = state.settings
    dsn, cluster = _database()
    started_server = cluster is not None
    demo: Demo | None = None
    summary = None
    try:
        migrate.upgrade(dsn)
        demo = Demo(dsn, Path(settings.home).absolute(), rate)
        _start(demo, api_port)
        until = time.monotonic() + seconds if seconds else None
        with _sigterm_as_interrupt():
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the demo ends
                _foreground(demo, dsn, until, no_top, settings.heartbeat_timeout)
            console.print("stopping: producer, then workers (SIGTERM) …", highlight=False)
            codes = demo.stop()
        summary = _summary(demo, dsn, codes, started_server)
    except KeyboardInterrupt:
        err_console.print("interrupted: workers killed; a restarted worker recovers their tasks")
    finally:
        if demo is not None:
            demo.kill()
        if cluster is not None:
            with contextlib.suppress(PgschedError):
                cluster.stop()
    if summary:
        console.print(summary, highlight=False, soft_wrap=True)


def _database() -> tuple[str, Cluster | None]:
    """The configured database, or the embedded server, started: its DSN, and the cluster
    when the demo started it (and so stops it at the end)."""
    from pgsched.db import describe
    from pgsched.server import Cluster

    settings = state.settings
    if settings.dsn:
        console.print(f"using the configured database at {describe(settings.dsn)}", highlight=False)
        return settings.dsn, None
    cluster = Cluster(settings.home)
    started_server = not cluster.running()
    console.print(
        f"starting the embedded PostgreSQL in {cluster.home} …", highlight=False, soft_wrap=True
    )
    dsn = cluster.start()
    console.print(f"PostgreSQL at {dsn}", highlight=False, soft_wrap=True)
    return dsn, cluster if started_server else None


def _start(demo: Demo, port: int) -> None:
    """The alerts receiver, the workers, the API and the producer, each announced."""
    demo.home.mkdir(parents=True, exist_ok=True)
    # Before the workers: they inherit the webhook's secret from this process.
    demo.receiver = start_alerts(demo.dsn, demo.home)
    if demo.receiver is not None:
        console.print(
            f"alerts: examples/alerts.yaml applied; its webhook posts to {demo.receiver.url},"
            f" which writes what arrives to {demo.receiver.log}",
            highlight=False,
            soft_wrap=True,
        )
    demo.start_workers()
    console.print(
        "workers: "
        + ", ".join(f"{n} (pid {p.pid}, log {demo.logs[n]})" for n, p in demo.procs.items()),
        highlight=False,
        soft_wrap=True,
    )
    url, token = demo.start_api(free_api_port(port))
    console.print(
        f"API: {url} (docs {url}/docs, metrics {url}/metrics) · read token: {token}\n"
        f"  try: curl -H 'Authorization: Bearer {token}' {url}/api/v1/stats\n"
        f"dashboard: {url}/ui/ (sign in with the read token)",
        highlight=False,
        soft_wrap=True,
    )
    demo.producer.start()


def _foreground(
    demo: Demo, dsn: str, until: float | None, no_top: bool, heartbeat_timeout: float
) -> None:
    from pgsched.admin import Admin
    from pgsched.cli import live
    from pgsched.client import Client

    with Client(dsn) as client:
        admin = Admin(client)
        if not no_top:
            stop = threading.Event()

            def extra() -> Text:
                demo.check_workers()
                alerts = ""
                if demo.receiver is not None and demo.receiver.received:
                    alerts = f"\nalerts received: {demo.receiver.received} · last: "
                    alerts += demo.receiver.last
                return Text(
                    f"demo: {len(demo.producer.ids)} tasks submitted in "
                    f"{format_duration(demo.elapsed())} · worker logs in {demo.home}" + alerts,
                    style="dim",
                )

            live.run(
                admin,
                title="pgsched demo",
                heartbeat_timeout=heartbeat_timeout,
                until=until,
                stop=stop,
                extra=extra,
            )
            return
        while until is None or time.monotonic() < until:
            demo.check_workers()
            line = demo.status_line(live.snapshot(admin, failures=0))
            console.print(line, highlight=False, soft_wrap=True)
            if demo.receiver is not None and demo.receiver.received:
                console.print(
                    f"alerts: {demo.receiver.received} received, last: {demo.receiver.last}",
                    highlight=False,
                    soft_wrap=True,
                )
            wait = 2.0 if until is None else max(0.0, min(2.0, until - time.monotonic()))
            time.sleep(wait)
            if wait == 0:
                break


def _summary(demo: Demo, dsn: str, codes: dict[str, int | None], started_server: bool) -> str:
    from pgsched.admin import Admin
    from pgsched.client import Client

    with Client(dsn) as client:
        by_status = Admin(client).tasks_by_status(demo.producer.ids)
    order = ("succeeded", "failed", "retrying", "pending", "running", "cancelled", "blocked")
    outcome = ", ".join(f"{by_status[s]} {s}" for s in order if by_status.get(s)) or "none ran"
    clean = all(c == 0 for c in codes.values())
    workers = "workers stopped cleanly" if clean else f"worker exit codes {codes}"
    alerts = ""
    if demo.receiver is not None:
        alerts = f"; {demo.receiver.received} alert notifications received"
    return (
        f"demo: {len(demo.producer.ids)} tasks submitted in {format_duration(demo.elapsed())}: "
        f"{outcome}; {workers}{alerts}" + ("; server stopped" if started_server else "")
    )
