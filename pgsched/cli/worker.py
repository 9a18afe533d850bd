"""`pgsched worker`: run a worker process until SIGTERM/SIGINT (or, with --burst, until idle)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import signal
import sys
from pathlib import Path
from types import FrameType

import typer

from pgsched.cli.common import exits_on_error, fail, note_started_server, state
from pgsched.durations import parse_duration
from pgsched.worker.supervision import safe_str

commands = typer.Typer()

# Seconds a worker whose thread died gets to hand its tasks back before the process exits 1
# anyway (what it leaves running, recovery hands on: the process's liveness lock goes with it).
FAILED_STOP_WAIT = 15.0


def _import_app(module: str) -> None:
    """Import the module whose functions register task types; a failure is one clear line.

    The current directory (or the file's) goes at the end of sys.path, never ahead of the
    installed packages: a stray file named like one of them in the working directory is not
    imported in its place. A file is loaded from exactly that path."""
    try:
        if module.endswith(".py") or "/" in module:
            path = Path(module).resolve()
            if str(path.parent) not in sys.path:
                sys.path.append(str(path.parent))  # for the file's own sibling imports
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"no module at {path}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = mod
            spec.loader.exec_module(mod)
            return
        if "" not in sys.path:
            sys.path.append("")
        importlib.import_module(module)
    except SystemExit as e:  # sys.exit() in the module: one line, and exit 1, not its code
        fail(f"--app {module}: cannot import: it called sys.exit({e.code!r})", 1)
    except Exception as e:  # ImportError, or any error raised while importing it
        text = safe_str(e).strip()
        detail = text.splitlines()[0] if text else type(e).__name__
        fail(f"--app {module}: cannot import: {type(e).__name__}: {detail}", 1)


@commands.command("worker")
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
    grace: str = typer.Option(
        None,
        "--grace",
        help="How long running tasks get to finish on SIGTERM/SIGINT: 30, 30s, 2m "
        "[settings.grace].",
    ),
    schedules: Path = typer.Option(
        None, "--schedules", help="YAML schedules file to run an in-process scheduler for."
    ),
    no_alerts: bool = typer.Option(
        False,
        "--no-alerts",
        help="Run no alert ticker here (alert rules still need one somewhere in the fleet).",
    ),
    no_load_weighting: bool = typer.Option(
        False, "--no-load-weighting", help="Claim free slots regardless of the cluster's load."
    ),
    http_port: int = typer.Option(
        None,
        "--http-port",
        min=0,
        max=65535,
        help="Serve /health/live and /health/ready on 127.0.0.1:PORT for a supervisor.",
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
    # Parsed here, not by typer: nan, inf or 1e12 are one line naming --grace.
    grace_s = parse_duration(grace, "--grace").total_seconds() if grace is not None else None
    scheduler = None
    if schedules is not None:
        from pgsched.schedules import load_schedules

        load_schedules(schedules)  # a bad file: one line, exit 2, before the worker starts
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
        grace=grace_s,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        immediate = w.stopping
        w.request_stop()  # first: a failing log line must not keep the signal from working
        with contextlib.suppress(Exception):
            w.emit("signal_received", signal=signal.Signals(signum).name, immediate=immediate)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ticker = None
    probe = None
    if http_port is not None:
        from pgsched.worker.probe import Probe

        try:
            probe = Probe(w, http_port)
        except OSError as e:
            fail(f"--http-port {http_port}: cannot listen: {e.strerror or e}", 1)
        probe.start()
    w.start()
    note_started_server()  # now: a worker may run for days
    try:
        if schedules is not None:
            from pgsched.schedules import Scheduler

            # The scheduler's thread is supervised like the worker's own: its death stops
            # the worker, exit 1.
            scheduler = Scheduler(dsn, Path(schedules), on_crash=w.report_crash)
            scheduler.start()
        if not no_alerts and not burst:
            from pgsched.alerts.ticker import AlertTicker

            # Supervised like the scheduler: its death stops the worker, exit 1. It delivers
            # notifications on threads of its own, as this worker (recovered with its tasks).
            ticker = AlertTicker(
                dsn, settings=settings, on_crash=w.report_crash, worker=w.name
            ).start()
        while not w.wait(0.5):
            if w.failure is not None:  # a service thread died: the worker is stopping
                w.wait(FAILED_STOP_WAIT)
                break
    finally:
        if ticker is not None:
            ticker.stop()
        if scheduler is not None:
            scheduler.stop()
        if w.failure is None:
            w.stop()
        if probe is not None:
            probe.stop()
    if w.failure is not None:
        fail(f"worker stopped: {w.failure}", 1)
