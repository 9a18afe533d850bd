"""`pgsched worker`: run a worker process until SIGTERM/SIGINT (or, with --burst, until idle)."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from pgsched.cli.app import app
from pgsched.cli.common import exits_on_error, fail, state

# Seconds a worker whose thread died gets to hand its tasks back before the process exits 1
# anyway (what it leaves running, recovery hands on: the process's liveness lock goes with it).
FAILED_STOP_WAIT = 15.0


def _import_app(module: str) -> None:
    """Import the module whose functions register task types; a failure is one clear line."""
    if module.endswith(".py") or "/" in module:
        path = Path(module)
        sys.path.insert(0, str(path.parent.resolve()))
        module = path.stem
    elif "" not in sys.path:
        sys.path.insert(0, "")
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, or any error raised while importing it
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        fail(f"--app {module}: cannot import: {type(e).__name__}: {detail}", 1)


@app.command("worker")
@exits_on_error
def worker_cmd(
    queues: str = typer.Option(None, "--queues", "-q", help="Comma-separated queues [default]."),
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=10000,
        help="Tasks run at once [settings.concurrency].",
    ),
    name: str = typer.Option(
        None, "--name", help="Worker name, unique among live workers [host-pid]."
    ),
    app_module: str = typer.Option(
        None,
        "--app",
        help="Module (or file.py) that registers Python task types with @pgsched.registry.task.",
    ),
    allow_shell: bool = typer.Option(
        False, "--allow-shell", help="Run `shell` tasks (arbitrary commands)."
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit once nothing is left to run."),
    grace: float = typer.Option(
        None,
        "--grace",
        min=0,
        help="Seconds running tasks get to finish on SIGTERM/SIGINT [settings.grace].",
    ),
    schedules: Path = typer.Option(
        None, "--schedules", help="YAML schedules file to run an in-process scheduler for."
    ),
    no_load_weighting: bool = typer.Option(
        False, "--no-load-weighting", help="Claim free slots regardless of the cluster's load."
    ),
) -> None:
    """Run a worker: claim tasks from the queues and run them, until stopped."""
    from pgsched.logging import configure
    from pgsched.worker import Worker

    settings = state.settings
    configure(settings.log_level, settings.log_format)
    if app_module:
        _import_app(app_module)
    qs = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if queues is not None and not qs:
        fail("--queues: give at least one queue name", 2)
    if schedules is not None and not schedules.is_file():
        fail(f"--schedules: file {schedules} does not exist", 2)
    dsn = state.dsn()
    w = Worker(
        dsn,
        settings,
        name=name,
        queues=qs,
        concurrency=concurrency,
        allow_shell=allow_shell,
        weighted=not no_load_weighting,
        burst=burst,
        grace=grace,
    )

    def on_signal(signum: int, frame: Any) -> None:
        immediate = w.stopping
        w.request_stop()  # first: a failing log line must not keep the signal from working
        with contextlib.suppress(Exception):
            w.emit("signal_received", signal=signal.Signals(signum).name, immediate=immediate)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler = None
    w.start()
    try:
        if schedules is not None:
            from pgsched.schedules import Scheduler

            scheduler = Scheduler(dsn, Path(schedules))
            scheduler.start()
        while not w.wait(0.5):
            if w.failure is not None:  # a service thread died: the worker is stopping
                w.wait(FAILED_STOP_WAIT)
                break
    finally:
        if scheduler is not None:
            scheduler.stop()
        if w.failure is None:
            w.stop()
    if w.failure is not None:
        fail(f"worker stopped: {w.failure}", 1)
