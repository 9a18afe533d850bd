"""The parts of `pgsched demo`: the sample workload and the thread that submits it, the worker
and `pgsched serve` processes the demo runs (with their logs in the home), and the local
receiver that examples/alerts.yaml's webhook is pointed at. The command itself, and what it
shows, is in pgsched/cli/demo.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgsched.durations import format_duration
from pgsched.errors import PgschedError
from pgsched.server import die_with_parent, open_private_log

if TYPE_CHECKING:
    from pgsched.alerts.receiver import DemoReceiver

WORKERS = (("demo-1", 4), ("demo-2", 4))
WORKER_GRACE = 5.0  # seconds a stopping demo worker lets running tasks finish
STOP_TIMEOUT = 20.0  # then SIGKILL: the reaper recovers what a killed worker held


def worker_command() -> list[str]:
    """How to run `pgsched`: the script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "pgsched"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pgsched.cli.app import main; main()"]


def example_file(name: str) -> Path | None:
    """examples/NAME in the working directory or the source checkout, if present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        f = base / "examples" / name
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

    path = example_file("alerts.yaml")
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
        schedules = example_file("schedules.yaml")
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i, (name, concurrency) in enumerate(WORKERS):
            cmd = [*worker_command(), "worker", "--name", name, "--concurrency", str(concurrency)]
            if i == 0 and schedules is not None:
                cmd += ["--schedules", str(schedules)]
            self.procs[name] = self._spawn(name, cmd, env)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``cmd`` with its output in HOME/NAME.log (0600, and never through a link planted in
        the home), in a session of its own: the terminal's Ctrl-C reaches the demo only, which
        then stops its processes with SIGTERM in order."""
        log = self.home / f"{name}.log"
        with os.fdopen(open_private_log(log), "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self.logs[name] = log
        return proc

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
        self.api = self._spawn(
            "serve", [*worker_command(), "serve", "--auth", "--port", str(port)], env
        )
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

    def stop(self) -> dict[str, int | None]:
        """In order: the producer, the workers (SIGTERM: they finish or hand back their tasks),
        the API and its token, the alerts receiver. The workers' exit codes."""
        self.producer.stop.set()
        self.producer.join(timeout=10)
        codes = self.stop_workers()
        self.stop_api()
        if self.receiver is not None:
            self.receiver.stop()
        return codes

    def kill(self) -> None:
        """Kill what still runs (the demo was interrupted, or failed)."""
        self.producer.stop.set()
        for p in [*self.procs.values(), getattr(self, "api", None)]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

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


def free_api_port(preferred: int) -> int:
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
