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
import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from pgsched.cli.common import console, err_console, exits_on_error, state
from pgsched.durations import format_duration, parse_duration
from pgsched.errors import PgschedError, UsageError
from pgsched.server import die_with_parent, open_private_log

if TYPE_CHECKING:
    from pgsched.alerts.receiver import DemoReceiver

commands = typer.Typer()

WORKERS = (("demo-1", 4), ("demo-2", 4))
WORKER_GRACE = 5.0  # seconds a stopping demo worker lets running tasks finish
STOP_TIMEOUT = 20.0  # then SIGKILL: the reaper recovers what a killed worker held


def worker_command() -> list[str]:
    """How to run `pgsched`: the script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "pgsched"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pgsched.cli.app import main; main()"]


def worker_available() -> bool:
    return importlib.util.find_spec("pgsched.cli.worker") is not None


def schedules_file() -> Path | None:
    """examples/schedules.yaml in the working directory or the source checkout, if present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        f = base / "examples" / "schedules.yaml"
        if f.is_file():
            return f
    return None


def alerts_file() -> Path | None:
    """examples/alerts.yaml, found as schedules_file() finds its file."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        f = base / "examples" / "alerts.yaml"
        if f.is_file():
            return f
    return None


def start_alerts(dsn: str, home: Path) -> DemoReceiver | None:
    """Apply examples/alerts.yaml with its webhook pointed at a local receiver that checks
    each signature and appends what arrives to HOME/alerts.log; the workers get the secret
    through the environment (PGSCHED_WEBHOOK_SECRET), as in a deployment."""
    import secrets

    from pgsched.admin import Admin
    from pgsched.alerts.config import WebhookChannel, load_alerts
    from pgsched.alerts.receiver import DemoReceiver
    from pgsched.client import Client

    path = alerts_file()
    if path is None:
        return None
    secret = os.environ.get("PGSCHED_WEBHOOK_SECRET") or secrets.token_hex(16)
    os.environ["PGSCHED_WEBHOOK_SECRET"] = secret  # inherited by the workers
    log = home / "alerts.log"
    lock = threading.Lock()

    def record(line: str) -> None:
        with lock, open(log, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        receiver.last = line

    receiver = DemoReceiver(secret, record)
    spec = load_alerts(path)
    spec.channels = [
        c.model_copy(update={"url": receiver.url, "url_env": None})
        if isinstance(c, WebhookChannel)
        else c
        for c in spec.channels
    ]
    with Client(dsn) as client:
        Admin(client).apply_alerts(spec)
    receiver.log = log
    return receiver.start()


# -- the sample workload ---------------------------------------------------------------------------


def sample_task(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """One task of the demo's mix: (type, payload, submit options)."""
    r = rng.random()
    quick_retry = {"backoff_base": timedelta(seconds=1), "backoff_cap": timedelta(seconds=3)}
    if r < 0.60:
        return "dummy", {"sleepDurationMs": rng.randint(100, 2000)}, {"priority": rng.randint(0, 5)}
    if r < 0.70:  # fails every attempt: retries, then lands in the dead letter
        return (
            "dummy",
            {"sleepDurationMs": rng.randint(100, 500), "shouldFail": True},
            {"max_attempts": 2, **quick_retry},
        )
    if r < 0.80:  # slow, low priority
        return "dummy", {"sleepDurationMs": rng.randint(3000, 6000)}, {"priority": -5}
    if r < 0.95:
        return "noop", {}, {"priority": 10}
    # A loopback address: http tasks refuse it before connecting (they reach only global
    # addresses unless http_allow says otherwise), so it fails at once, no network involved.
    return (
        "http",
        {"url": "http://127.0.0.1:9/demo", "method": "GET"},
        {"max_attempts": 2, **quick_retry},
    )


class Producer(threading.Thread):
    """Submits about ``rate`` tasks a second, with an occasional burst, until stopped."""

    def __init__(self, dsn: str, rate: float, seed: int | None = None) -> None:
        super().__init__(name="pgsched-demo-producer", daemon=True)
        self.dsn = dsn
        self.rate = rate
        self.stop = threading.Event()
        self.ids: list[int] = []
        self.errors: list[str] = []
        self.rng = random.Random(seed)

    def run(self) -> None:
        from pgsched.client import Client

        with Client(self.dsn) as client:
            while not self.stop.is_set():
                burst = 15 if self.rng.random() < 0.03 else 1
                try:
                    for _ in range(burst):
                        task_type, payload, options = sample_task(self.rng)
                        self.ids.append(client.submit(task_type, payload, **options))
                except PgschedError as e:
                    self.errors.append(str(e))
                    self.stop.wait(1.0)
                self.stop.wait(self.rng.expovariate(self.rate))


# -- the run ---------------------------------------------------------------------------------------


class Demo:
    def __init__(self, dsn: str, home: Path, rate: float) -> None:
        self.dsn = dsn
        self.home = home
        self.producer = Producer(dsn, rate)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.started = time.monotonic()
        self.receiver: DemoReceiver | None = None
        self.token_name: str | None = None  # the dashboard's read token, while it exists

    def start_workers(self) -> None:
        env = {
            **os.environ,
            "PGSCHED_DSN": self.dsn,
            "PGSCHED_GRACE": str(WORKER_GRACE),
            "PGSCHED_HOME": str(self.home),
        }
        env.pop("DATABASE_URL", None)
        schedules = schedules_file()
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i, (name, concurrency) in enumerate(WORKERS):
            cmd = [*worker_command(), "worker", "--name", name, "--concurrency", str(concurrency)]
            if i == 0 and schedules is not None:
                cmd += ["--schedules", str(schedules)]
            log = self.home / f"{name}.log"
            # 0600, and never through a link planted in the home
            with os.fdopen(open_private_log(log), "ab") as out:
                self.procs[name] = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Own session: the terminal's Ctrl-C reaches the demo only, which then
                    # stops the workers with SIGTERM in order.
                    start_new_session=True,
                    preexec_fn=die_with_parent(signal.SIGTERM),
                )
            self.logs[name] = log

    def start_api(self, port: int) -> tuple[str, str]:
        """`pgsched serve --auth` beside the workers, and a read token for it: (URL, token).
        The token is named after this run and revoked when the demo ends."""
        from pgsched.admin import Admin
        from pgsched.client import Client

        self.token_name = f"demo-read-{os.getpid()}"
        with Client(self.dsn) as client:
            token, _ = Admin(client).create_token(self.token_name, ["read"])
        env = {**os.environ, "PGSCHED_DSN": self.dsn, "PGSCHED_HOME": str(self.home)}
        env.pop("DATABASE_URL", None)
        log = self.home / "serve.log"
        with os.fdopen(open_private_log(log), "ab") as out:
            self.api = subprocess.Popen(
                [*worker_command(), "serve", "--auth", "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self.logs["serve"] = log
        return f"http://127.0.0.1:{port}", token

    def stop_api(self) -> None:
        from pgsched.admin import Admin
        from pgsched.client import Client

        api = getattr(self, "api", None)
        if api is not None and api.poll() is None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait()
        name = self.token_name
        if name is not None:
            with contextlib.suppress(PgschedError), Client(self.dsn) as client:
                Admin(client).revoke_token(name)
            self.token_name = None

    def check_workers(self) -> None:
        """Fail in one line if every worker has exited (e.g. refused its options)."""
        if not self.procs or any(p.poll() is None for p in self.procs.values()):
            return
        name, proc = next(iter(self.procs.items()))
        raise PgschedError(
            f"worker {name} exited with code {proc.returncode}: {self.last_log_line(name)}"
        )

    def last_log_line(self, name: str) -> str:
        try:
            lines = self.logs[name].read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1][:200] if lines else "(empty log)"

    def stop_workers(self) -> dict[str, int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        codes: dict[str, int | None] = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                for q in self.procs.values():
                    if q.poll() is None:
                        q.kill()
                        q.wait()
                raise
        return codes

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def status_line(self, s: dict[str, Any]) -> str:
        totals: Counter[str] = Counter()
        for c in s["queues"].values():
            totals.update(c)
        parts = [f"{st} {totals[st]}" for st in ("pending", "running", "retrying") if totals[st]]
        parts += [f"{st} {totals[st]}" for st in ("succeeded", "failed") if totals[st]]
        workers = " ".join(
            f"{w['name']} {w['status']} {w['current_task_count']}/{w['max_task_capacity']}"
            for w in s["workers"]
        )
        tp = s["throughput"]
        return (
            f"[{format_duration(self.elapsed())}] submitted {len(self.producer.ids)} · "
            + (", ".join(parts) or "no tasks")
            + f" · {tp['per_s_10s']:.1f}/s · dead letter {s['dead_letter']}"
            + f" · workers: {workers or 'none yet'}"
        )


def _free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there on loopback, else a free port."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise PgschedError("no free port on 127.0.0.1 for the demo's API")


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
    if not worker_available():
        raise PgschedError("the worker command is not installed (pgsched.cli.worker is missing)")
    if not 0.1 <= rate <= 1000:
        raise UsageError("--rate: must be between 0.1 and 1000 tasks per second")
    seconds = parse_duration(duration, "--duration").total_seconds() if duration else None
    if seconds is not None and seconds <= 0:
        raise UsageError("--duration: must be positive")

    from pgsched import migrate
    from pgsched.db import describe
    from pgsched.server import Cluster

    settings = state.settings
    cluster: Cluster | None = None
    started_server = False
    if settings.dsn:
        dsn = settings.dsn
        console.print(f"using the configured database at {describe(dsn)}", highlight=False)
    else:
        cluster = Cluster(settings.home)
        started_server = not cluster.running()
        console.print(
            f"starting the embedded PostgreSQL in {cluster.home} …", highlight=False, soft_wrap=True
        )
        dsn = cluster.start()
        console.print(f"PostgreSQL at {dsn}", highlight=False, soft_wrap=True)

    demo: Demo | None = None
    summary = None
    try:
        migrate.upgrade(dsn)
        demo = Demo(dsn, Path(settings.home).absolute(), rate)
        demo.home.mkdir(parents=True, exist_ok=True)
        # Before the workers: they inherit the webhook's secret from this process.
        demo.receiver = start_alerts(dsn, demo.home)
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
        url, token = demo.start_api(_free_port(api_port))
        console.print(
            f"API: {url} (docs {url}/docs, metrics {url}/metrics) · read token: {token}\n"
            f"  try: curl -H 'Authorization: Bearer {token}' {url}/api/v1/stats\n"
            f"dashboard: {url}/ui/ (sign in with the read token)",
            highlight=False,
            soft_wrap=True,
        )
        demo.producer.start()
        until = time.monotonic() + seconds if seconds else None
        with _sigterm_as_interrupt():
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the demo ends
                _foreground(demo, dsn, until, no_top, settings.heartbeat_timeout)
            console.print("stopping: producer, then workers (SIGTERM) …", highlight=False)
            demo.producer.stop.set()
            demo.producer.join(timeout=10)
            codes = demo.stop_workers()
            demo.stop_api()
            if demo.receiver is not None:
                demo.receiver.stop()
        summary = _summary(demo, dsn, codes, started_server)
    except KeyboardInterrupt:
        err_console.print("interrupted: workers killed; a restarted worker recovers their tasks")
    finally:
        if demo is not None:
            demo.producer.stop.set()
            for p in [*demo.procs.values(), getattr(demo, "api", None)]:
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
        if cluster is not None and started_server:
            with contextlib.suppress(PgschedError):
                cluster.stop()
    if summary:
        console.print(summary, highlight=False, soft_wrap=True)


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
