"""`pgsched worker`: run a worker process until SIGTERM/SIGINT (or, with --burst, until idle)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from pgsched.cli.common import exits_on_error, fail, note_started_server, state
from pgsched.durations import parse_duration
from pgsched.worker.supervision import safe_str

if TYPE_CHECKING:
    from pgsched.config import Settings
    from pgsched.worker.probe import Probe
    from pgsched.worker.runner import Worker

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


# The command's options, declared apart so that the command reads as what it does.
QueuesOpt = typer.Option(None, "--queues", "-q", help="Comma-separated queues [default].")
ConcurrencyOpt = typer.Option(
    None,
    "--concurrency",
    "-c",
    min=1,
    max=10000,
    help="Tasks run at once [settings.concurrency].",
)
NameOpt = typer.Option(None, "--name", help="Worker name, unique among live workers [host-pid].")
AppOpt = typer.Option(
    None,
    "--app",
    help="Module (or file.py) that registers Python task types with @pgsched.registry.task.",
)
AllowShellOpt = typer.Option(False, "--allow-shell", help="Run `shell` tasks (arbitrary commands).")
BurstOpt = typer.Option(False, "--burst", help="Exit once nothing is left to run.")
GraceOpt = typer.Option(
    None,
    "--grace",
    help="How long running tasks get to finish on SIGTERM/SIGINT: 30, 30s, 2m [settings.grace].",
)
SchedulesOpt = typer.Option(
    None, "--schedules", help="YAML schedules file to run an in-process scheduler for."
)
NoAlertsOpt = typer.Option(
    False,
    "--no-alerts",
    help="Run no alert ticker here (alert rules still need one somewhere in the fleet).",
)
NoLoadWeightingOpt = typer.Option(
    False, "--no-load-weighting", help="Claim free slots regardless of the cluster's load."
)
HttpPortOpt = typer.Option(
    None,
    "--http-port",
    min=0,
    max=65535,
    help="Serve /health/live and /health/ready on 127.0.0.1:PORT for a supervisor.",
)


@commands.command("worker")
@exits_on_error
def worker_cmd(
    queues: str = QueuesOpt,
    concurrency: int = ConcurrencyOpt,
    name: str = NameOpt,
    app_module: str = AppOpt,
    allow_shell: bool = AllowShellOpt,
    burst: bool = BurstOpt,
    grace: str = GraceOpt,
    schedules: Path = SchedulesOpt,
    no_alerts: bool = NoAlertsOpt,
    no_load_weighting: bool = NoLoadWeightingOpt,
    http_port: int = HttpPortOpt,
) -> None:
    """Run a worker: claim tasks from the queues and run them, until stopped."""
    from pgsched.logging import configure
    from pgsched.worker import Worker

    settings = state.settings
    configure(settings.log_level, settings.log_format)
    if app_module:
        _import_app(app_module)
    qs, grace_s = _checked_options(queues, schedules, grace)
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
    _stop_on_signals(w)
    probe = _start_probe(w, http_port) if http_port is not None else None
    w.start()
    note_started_server()  # now: a worker may run for days
    try:
        _run(w, dsn, settings, schedules, alerts=not no_alerts and not burst)
    finally:
        if w.failure is None:
            w.stop()
        if probe is not None:
            probe.stop()
    if w.failure is not None:
        fail(f"worker stopped: {w.failure}", 1)


def _checked_options(
    queues: str | None, schedules: Path | None, grace: str | None
) -> tuple[list[str] | None, float | None]:
    """The queues and the grace in seconds; a bad option (or schedules file) is one line, exit
    2, before the worker starts."""
    qs = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if queues is not None and not qs:
        fail("--queues: give at least one queue name", 2)
    if schedules is not None and not schedules.is_file():
        fail(f"--schedules: file {schedules} does not exist", 2)
    # Parsed here, not by typer: nan, inf or 1e12 are one line naming --grace.
    grace_s = parse_duration(grace, "--grace").total_seconds() if grace is not None else None
    if schedules is not None:
        from pgsched.schedules import load_schedules

        load_schedules(schedules)
    return qs, grace_s


def _stop_on_signals(w: Worker) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        immediate = w.stopping
        w.request_stop()  # first: a failing log line must not keep the signal from working
        with contextlib.suppress(Exception):
            w.emit("signal_received", signal=signal.Signals(signum).name, immediate=immediate)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _start_probe(w: Worker, http_port: int) -> Probe:
    from pgsched.worker.probe import Probe

    try:
        probe = Probe(w, http_port)
    except OSError as e:
        fail(f"--http-port {http_port}: cannot listen: {e.strerror or e}", 1)
    probe.start()
    return probe


def _run(w: Worker, dsn: str, settings: Settings, schedules: Path | None, alerts: bool) -> None:
    """Run the worker's companions (scheduler, alert ticker) beside it until it stops."""
    scheduler = None
    ticker = None
    try:
        if schedules is not None:
            from pgsched.schedules import Scheduler

            # The scheduler's thread is supervised like the worker's own: its death stops
            # the worker, exit 1.
            scheduler = Scheduler(dsn, Path(schedules), on_crash=w.report_crash)
            scheduler.start()
        if alerts:
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
