"""Shared harness for the benchmarks: one throwaway server, a fresh database per system and run,
worker processes with a ready line, raw records as JSON lines.

Every workload module (a_enqueue.py ... h_idle.py) has ``run(ctx, rep)`` and writes records with
``ctx.record(...)``. ``run.py`` drives them; ``report.py`` turns bench/raw/*.jsonl into RESULTS.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgsched.server import EphemeralServer, server_version

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RAW = BENCH / "raw"
ADAPTERS = BENCH / "adapters"
PGSCHED_PY = str(ROOT / ".venv" / "bin" / "python")
PEERS_PY = str(BENCH / ".venv-peers" / "bin" / "python")
NODE = str(BENCH / "node_modules" / ".bin" / "node")

# Server settings: durability defaults (fsync, synchronous_commit, full_page_writes all on).
# Only sizes are raised: room for the idle fleet's connections, a cache that holds the tables,
# and no checkpoint forced by WAL volume in the middle of a run. pg_stat_statements for profiles.
SERVER_SETTINGS = {
    "max_connections": "400",
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
}


@dataclass(frozen=True)
class System:
    """One queue under test: how to run its adapter and how to read "done" from its tables."""

    name: str
    cmd: tuple[str, ...]  # adapter command prefix (interpreter + script)
    remaining_sql: str  # returns one bool: is any job not finished yet?
    backlog_sql: str  # returns one int: jobs not finished yet
    keeps: str  # what the system keeps after a job ends
    setting: str  # the worker setting used (fastest documented, tried)
    body: str  # the job function the workers run: registered through the ordinary API
    worker_args: tuple[str, ...] = ()


def _py(script: str) -> tuple[str, ...]:
    return (PEERS_PY, str(ADAPTERS / script))


SYSTEMS = {
    "pgsched": System(
        "pgsched",
        (PGSCHED_PY, str(ADAPTERS / "pgsched_adapter.py")),
        "SELECT EXISTS (SELECT 1 FROM pgsched.tasks WHERE status IN "
        "('pending', 'running', 'retrying'))",
        "SELECT count(*) FROM pgsched.tasks WHERE status IN ('pending', 'running', 'retrying')",
        "the task row (status succeeded, finished_at) and one task_executions row per attempt",
        "Worker with concurrency=500 (= batch_size; tried 10 (default), 100, 500, 1000: "
        "10 drains at ~6k/s, 100+ at ~23k/s)",
        '`@task("noop")` `def noop(payload): return None`, on the executor\'s thread pool',
        ("--concurrency", "500"),
    ),
    "pgqueuer": System(
        "pgqueuer",
        _py("peer_pgqueuer.py"),
        "SELECT EXISTS (SELECT 1 FROM pgqueuer)",
        "SELECT count(*) FROM pgqueuer",
        "deletes the job row; appends a pgqueuer_log row (folded into pgqueuer_statistics)",
        "asyncpg driver, batch_size=100 (tried 10 and 100), no concurrency limit",
        '`@qm.entrypoint("noop")` `async def noop(job): pass`, on its event loop',
    ),
    "procrastinate": System(
        "procrastinate",
        _py("peer_procrastinate.py"),
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
        "the job row (status succeeded) and its procrastinate_events rows",
        "PsycopgConnector, concurrency=10 (tried 1, 10, 50), listen_notify on",
        '`@app.task(name="noop")` `async def noop(k=0): pass`, on its event loop',
    ),
    "chancy": System(
        "chancy",
        _py("peer_chancy.py"),
        "SELECT EXISTS (SELECT 1 FROM chancy_jobs WHERE state IN "
        "('pending', 'running', 'retrying'))",
        "SELECT count(*) FROM chancy_jobs WHERE state IN ('pending', 'running', 'retrying')",
        "the job row (state succeeded, completed_at)",
        "AsyncExecutor, concurrency=100, eager_polling, polling_interval=1 s",
        '`@job(queue="default")` `async def noop(k=0): pass`, on the AsyncExecutor',
    ),
    "graphile": System(
        "graphile",
        (NODE, str(ADAPTERS / "peer_graphile.mjs")),
        "SELECT EXISTS (SELECT 1 FROM graphile_worker._private_jobs)",
        "SELECT count(*) FROM graphile_worker._private_jobs",
        "deletes the job row; keeps nothing",
        "concurrentJobs=24, maxPoolSize=25, localQueue.size=500, completeJobBatchDelay=0 "
        "(the documented performance setting)",
        "taskList `noop: async (payload) => {}`, on Node's event loop",
    ),
}
PEERS = ["pgqueuer", "procrastinate", "chancy", "graphile"]


# -- records ------------------------------------------------------------------------------------


@dataclass
class Ctx:
    server: EphemeralServer  # None only for a probe that needs no server (hog-threads)
    quick: bool
    run_id: str
    systems: list[str]
    out: Path
    t0: float = field(default_factory=time.time)
    _n: int = 0
    _templates: set[str] = field(default_factory=set)

    def record(
        self,
        workload: str,
        system: str,
        metric: str,
        value: float,
        unit: str,
        rep: int,
        **extra: object,
    ) -> None:
        rec = {
            "run": self.run_id,
            "workload": workload,
            "system": system,
            "metric": metric,
            "value": value,
            "unit": unit,
            "rep": rep,
            "quick": self.quick,
            "t": round(time.time() - self.t0, 1),  # seconds into the run
            **extra,
        }
        with open(self.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        shown = f"{value:>12.3f}" if isinstance(value, int | float) else f"{value!s:>12}"
        print(f"  {workload:<2} {system:<14} {metric:<34} {shown} {unit}", flush=True)

    @contextlib.contextmanager
    def cell(self, workload: str, system: str, rep: int) -> Iterator[None]:
        """One measurement: a failure is recorded and the run goes on with the next cell."""
        try:
            yield
        except Exception as e:
            print(f"!! {workload} {system}: {e}", flush=True)
            self.record(workload, system, "error", 0, "", rep, error=str(e)[-800:])

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server.url("postgres"), autocommit=True)

    # -- databases: a migrated template per system, a fresh copy per run ----------------------

    def fresh_db(self, system: str, label: str) -> str:
        """A new database for one system and one run, copied from the system's template."""
        tpl = f"tpl_{system}"
        if tpl not in self._templates:
            with self.admin() as c:
                c.execute(f'DROP DATABASE IF EXISTS "{tpl}"')
                c.execute(f'CREATE DATABASE "{tpl}"')
            adapter(system, "setup", self.server.url(tpl), timeout=180)
            self._templates.add(tpl)
        return self.copy_db(tpl, f"{system}_{label}")

    def filled_db(self, system: str, label: str, n: int) -> str:
        """A fresh copy of a database holding n pending no-op tasks of the system (bulk API),
        vacuumed and analyzed. The filled database is built once per run and system and then
        copied (CREATE DATABASE ... TEMPLATE): the slow bulk enqueues run once, not per cell."""
        tpl = f"fill_{system}_{n}"
        if tpl not in self._templates:
            url = self.fresh_db(system, "fill")
            try:
                adapter(system, "enqueue", url, str(n), "bulk", timeout=600)
                with psycopg.connect(url, autocommit=True) as c:
                    c.execute("VACUUM ANALYZE")
                with self.admin() as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{tpl}"')
                    c.execute(f'CREATE DATABASE "{tpl}" TEMPLATE "{url.rsplit("/", 1)[1]}"')
            finally:
                self.drop_db(url)
            self._templates.add(tpl)
        return self.copy_db(tpl, f"{system}_{label}")

    def copy_db(self, template: str, label: str) -> str:
        """A new database copied from `template` (CREATE DATABASE ... TEMPLATE), named after
        `label` and a run-wide counter; returns its URL."""
        self._n += 1
        name = f"{label}_{self._n}".lower()
        with self.admin() as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.server.url(name)

    def drop_db(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Probe:
    """One run of a probe (bench/probes.py): its figures are records like a workload's, with
    the probe's name as the workload."""

    name: str
    ctx: Ctx

    @property
    def server(self) -> EphemeralServer:
        return self.ctx.server

    @property
    def url(self) -> str:
        """The server's `postgres` database, migrated before the probe starts."""
        return self.ctx.server.url("postgres")

    def record(self, metric: str, value: float, unit: str, **extra: object) -> None:
        self.ctx.record(self.name, "pgsched", metric, value, unit, 0, **extra)

    def spread(self, metric: str, values: list[float], unit: str, **extra: object) -> None:
        """The median of `values`, with their min, max and count."""
        lo, med, hi = mmm(values)
        self.record(metric, med, unit, min=lo, max=hi, n=len(values), **extra)


# -- processes -------------------------------------------------------------------------------


def adapter(system: str, *args: str, timeout: float = 300) -> dict:
    """Run an adapter command to completion; it prints one JSON object as its last line."""
    cmd = [*SYSTEMS[system].cmd, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=BENCH)
    if res.returncode != 0:
        raise RuntimeError(f"{system} {args[0]} failed: {res.stderr.strip()[-2000:]}")
    lines = [ln for ln in res.stdout.strip().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


class Proc:
    """A long-running adapter process (worker, producer) whose stdout lines are read as events."""

    def __init__(self, cmd: list[str], env: dict | None = None, pin: str | None = None) -> None:
        if pin is not None:
            cmd = ["taskset", "-c", pin, *cmd]
        # stderr to a file, not a pipe: nothing reads a pipe while the process runs, so one
        # that logged more than the pipe holds (64 kB) would block mid-measurement.
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.p = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            cwd=BENCH,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.buf = b""
        self.lines: list[tuple[float, str]] = []  # (time read, line)

    def poll_lines(self, timeout: float = 0.0) -> list[str]:
        out = []
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        end = time.monotonic() + timeout
        while True:
            r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                s = line.decode(errors="replace")
                self.lines.append((time.time(), s))
                out.append(s)
            if time.monotonic() >= end:
                break
        return out

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def next_line(self, prefix: str, timeout: float = 60) -> str:
        """The next line starting with ``prefix`` not read yet (wait_line finds the first ever)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.p.poll() is None:
            for s in self.poll_lines(min(0.05, max(0.0, end - time.monotonic()))):
                if s.startswith(prefix):
                    return s
        raise RuntimeError(f"no {prefix!r} line within {timeout}s from {self.p.args}")

    def wait_line(self, prefix: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        for _, s in self.lines:
            if s.startswith(prefix):
                return s
        while time.monotonic() < end:
            for s in self.poll_lines(0.05):
                if s.startswith(prefix):
                    return s
            if self.p.poll() is not None:
                self.poll_lines(0.2)
                break
        err = self.stderr_tail() if self.p.poll() is not None else ""
        raise RuntimeError(f"no {prefix!r} line within {timeout}s from {self.p.args}: {err}")

    def stderr_tail(self, n: int = 2000) -> str:
        if self.err.closed:
            return ""
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-n:]

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.p.pid, sig)

    def stop(self, timeout: float = 10) -> None:
        if self.p.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)  # children (executors) of this worker only
        self.err.close()


def worker(
    system: str, url: str, *extra: str, env: dict | None = None, pin: str | None = None
) -> Proc:
    s = SYSTEMS[system]
    return Proc([*s.cmd, "worker", url, *s.worker_args, *extra], env=env, pin=pin)


@contextlib.contextmanager
def workers(
    system: str,
    url: str,
    n: int,
    *extra: str,
    env: dict | None = None,
    pins: list[str | None] | None = None,
) -> Iterator[list[Proc]]:
    procs = [worker(system, url, *extra, env=env, pin=(pins or [None] * n)[i]) for i in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def ready_time(p: Proc, timeout: float = 60) -> float:
    """The worker's ready line is `READY <epoch seconds>`, written once it can claim."""
    return float(p.wait_line("READY", timeout).split()[1])


def wait_done(
    url: str, system: str, timeout: float, interval: float = 0.02, sql: str | None = None
) -> float | None:
    """Poll until no job of the system is unfinished; returns the time of that poll."""
    q = sql or SYSTEMS[system].remaining_sql
    end = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < end:
            if not c.execute(q).fetchone()[0]:
                return time.time()
            time.sleep(interval)
    return None


def scalar(url: str, sql: str, params: tuple = ()) -> object:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(sql, params).fetchone()[0]


# -- numbers ---------------------------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK")


def child_pids(parent: int) -> list[int]:
    """``parent`` and its direct children (from /proc), e.g. a postmaster and its backends."""
    pids = [parent]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of ``pids`` so far, in seconds. From /proc/PID/schedstat (nanoseconds on the
    CPU, counted at every context switch) where the kernel keeps it; else utime + stime from
    /proc/PID/stat, in clock ticks. This kernel samples utime/stime at its timer tick: a
    backend that runs ~0.1 ms at a time is charged whole ticks or nothing, and per process a
    10 s window is off by up to a tick (10 ms); for one heartbeat loop the two ways gave 0.0%
    against 6.7% of a core in the same window. The threads' figures are summed; a thread that
    has already exited is not counted."""
    total = 0.0
    for pid in pids:
        try:  # schedstat is per thread: sum the process's threads (the worker has several)
            ns = 0
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            total += ns / 1e9
            continue
        except (OSError, IndexError, ValueError):
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    """`pgsched serve` on `url`'s database in its own process, on a free loopback port; yields
    its base URL once /health/ready answers 200, and stops it on the way out."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "pgsched"
    env = {**os.environ, "PGSCHED_DSN": url, "PGSCHED_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgsched serve did not become ready (exit {server.poll()})")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def mmm(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


# -- machine and the run's first record ------------------------------------------------------


def machine(server: EphemeralServer | None, fsync_test: bool = True) -> dict:
    """What a figure depends on besides the code: cores, CPU, memory, kernel, the load when the
    run started, and the server (version, binaries; one fdatasync's rate when asked)."""
    info: dict[str, object] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    with open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    info["kernel"] = platform.release()
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if server is None:
        return info
    info["postgres"] = server_version(server.bin_dir)
    info["postgres_bin"] = str(server.bin_dir)
    fsync = server.bin_dir / "pg_test_fsync"
    if fsync_test and fsync.exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run(
                [str(fsync), "-s", "1", "-f", str(BENCH / ".work" / "fsync.tmp")],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            for line in out.splitlines():
                if "fdatasync" in line and "ops/sec" in line:
                    info["pg_test_fsync_fdatasync"] = " ".join(line.split())
                    break
    return info


def versions() -> dict:
    """The versions of pgsched, its psycopg and, when installed, of every peer."""
    import importlib.metadata as m

    out = {}
    if Path(PEERS_PY).exists():  # `--systems pgsched` runs without the peers installed
        res = subprocess.run(
            [
                PEERS_PY,
                "-c",
                "import importlib.metadata as m; import json; print(json.dumps("
                "{p: m.version(p) for p in ('pgqueuer', 'procrastinate', 'chancy', 'asyncpg', "
                "'psycopg')}))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode == 0:
            out.update(json.loads(res.stdout))
        pkg = BENCH / "node_modules" / "graphile-worker" / "package.json"
        if pkg.exists():
            out["graphile-worker"] = json.loads(pkg.read_text())["version"]
            node = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=False)
            out["node"] = node.stdout.strip()
    out["pgsched"] = m.version("pgsched")
    out["psycopg (pgsched)"] = m.version("psycopg")
    return out


def commit() -> str:
    """The checkout's commit, `+` when the code measured (pgsched, its migrations, bench's
    modules) has uncommitted changes; `?` outside a git checkout."""

    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return res.stdout.strip() if res.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD")
    if not head:
        return "?"
    measured = ["pgsched", "migrations", "bench", ":!bench/*.md", ":!bench/report.py"]
    return head + (
        "+" if git("status", "--porcelain", "--untracked-files=no", "--", *measured) else ""
    )


def begin_raw(out: Path, run_id: str, server: EphemeralServer | None, **meta: object) -> float:
    """Write a raw file's first record (the run, the command, the machine, the versions, the
    server's settings); returns the start time for end_raw."""
    RAW.mkdir(exist_ok=True)
    (BENCH / ".work").mkdir(exist_ok=True)
    first = {
        "meta": True,
        "run": run_id,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "commit": commit(),
        "machine": machine(server, fsync_test=bool(meta.pop("fsync_test", False))),
        "versions": versions(),
        "settings": {**server.settings} if server is not None else {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **meta,
    }
    with open(out, "a") as f:
        f.write(json.dumps(first) + "\n")
    return time.time()


def end_raw(out: Path, run_id: str, t0: float) -> None:
    """The last record: the run finished (report.py leaves out a run that did not)."""
    with open(out, "a") as f:
        f.write(json.dumps({"meta_end": True, "run": run_id, "seconds": time.time() - t0}) + "\n")
