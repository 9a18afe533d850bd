"""One PostgreSQL server per test session (fsync off), a migrated template database, and a fresh
database per test cloned from it. Runs as root too: the server then runs as user 'pgsched'.

Also what tests share: in-process workers (make_worker, Events) and worker processes (spawn),
and the leak checks every test passes: no pgsched thread and no connection to its database
outlives it."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched import migrate
from pgsched.config import Settings
from pgsched.registry import Registry
from pgsched.server import EphemeralServer, password_file
from pgsched.worker import Worker

# The test server's password reaches child processes through $PGPASSFILE: set it before any
# test module copies os.environ for its subprocesses.
password_file()

# Worker settings for in-process worker tests: quick heartbeats and retries, no load ceiling.
FAST = Settings(
    heartbeat_interval=0.2,
    heartbeat_timeout=3,
    poll_interval=1,
    cpu_ceiling=100,
    memory_ceiling=100,
    backoff_base=0.01,
    backoff_cap=0.05,
    grace=5,
    log_level="warning",
)

TEMPLATE = "pgsched_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EphemeralServer]:
    server = EphemeralServer(durable=False, settings={"max_connections": "300"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate.upgrade(server.url(TEMPLATE))
        yield server
    finally:
        server.stop()


def new_database(server: EphemeralServer, template: str) -> str:
    """A new database of the test server, a copy of ``template``; its name. Random, not
    counted: test modules that import this file get a copy of it of their own."""
    name = f"t{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def drop_database(server: EphemeralServer, name: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Seconds a test's connections may take to go once it ended (a worker's last statements,
# a killed process's backend noticing its client is gone).
LEAK_WAIT = 10.0


def _leftover_backends(server: EphemeralServer, name: str) -> list[str]:
    """The backends still connected to database ``name``: application, state, last query."""
    with psycopg.connect(server.url(), autocommit=True) as c:
        rows = c.execute(
            "SELECT pid, application_name, state, left(query, 60) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [f"pid {pid} {app or '?'} {state}: {query}" for pid, app, state, query in rows]


# The tests whose connections must all be gone when they end: the worker's (a worker closes
# every connection it opens when it stops). Elsewhere in-process CLI commands keep theirs
# until the process exits.
WORKER_TEST_MODULES = ("test_worker", "test_claim_weighting", "test_queue_model", "test_prune")
WORKER_FIXTURES = ("make_worker", "spawn")


def _checks_connections(request: pytest.FixtureRequest) -> bool:
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    return module.startswith(WORKER_TEST_MODULES) or any(
        f in request.fixturenames for f in WORKER_FIXTURES
    )


@pytest.fixture
def dsn(pg_server: EphemeralServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of this test's own (commits, LISTEN and processes are fine). In the
    worker's tests, the test fails if a connection to it (a worker's, a LISTEN) outlives the
    test and the fixtures it used."""
    name = new_database(pg_server, TEMPLATE)
    yield pg_server.url(name)
    left: list[str] = []
    if _checks_connections(request):
        deadline = time.monotonic() + LEAK_WAIT
        while (left := _leftover_backends(pg_server, name)) and time.monotonic() < deadline:
            time.sleep(0.05)
    drop_database(pg_server, name)
    assert not left, f"connections outlived the test: {left}"


@pytest.fixture
def empty_dsn(pg_server: EphemeralServer) -> Iterator[str]:
    """A database with no pgsched schema."""
    name = new_database(pg_server, "template1")
    yield pg_server.url(name)
    drop_database(pg_server, name)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def _pgsched_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pgsched-") and t.is_alive()}


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every pgsched thread a test starts ends with it (all of them are daemons, so they are
    found by name), and so does any other thread that would keep the process alive."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_WAIT
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and (not t.daemon or t in _pgsched_threads())
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test leaked threads: {sorted(t.name for t in leaked)}"


# -- in-process workers ----------------------------------------------------------------------


class Events:
    """Collects the worker's events so tests wait on signals, not sleeps."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        with self.lock:
            self.items.append((name, fields))

    def count(self, name: str, **match: Any) -> int:
        with self.lock:
            return sum(
                1
                for n, f in self.items
                if n == name and all(f.get(k) == v for k, v in match.items())
            )


@pytest.fixture
def make_worker(dsn: str) -> Iterator[Callable[..., tuple[Worker, Events]]]:
    """Start in-process workers (FAST settings, an empty registry unless given); each is
    stopped when the test ends."""
    workers: list[Worker] = []

    def make(**kw: Any) -> tuple[Worker, Events]:
        ev = Events()
        kw.setdefault("settings", FAST)
        kw.setdefault("registry", Registry())
        w = Worker(dsn, on_event=ev, **kw)
        workers.append(w)
        return w.start(), ev

    yield make
    for w in workers:
        w.stop(timeout=15)


# -- worker processes -------------------------------------------------------------------------

PGSCHED = str(Path(sys.executable).parent / "pgsched")
# `pgsched worker` processes: quick heartbeats (a hang is seen 5 s after the last beat) and
# retries, no load ceiling.
WORKER_ENV = {
    **os.environ,
    "PGSCHED_HEARTBEAT_INTERVAL": "0.3",
    "PGSCHED_HEARTBEAT_TIMEOUT": "5",
    "PGSCHED_POLL_INTERVAL": "1",
    "PGSCHED_CPU_CEILING": "100",
    "PGSCHED_MEMORY_CEILING": "100",
    "PGSCHED_BACKOFF_BASE": "0.05",
    "PGSCHED_BACKOFF_CAP": "0.1",
    "PGSCHED_LOG_LEVEL": "info",
}


@pytest.fixture
def spawn(dsn: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `pgsched worker ARGS` processes; each is killed when the test ends. Output goes
    to tmp_path/worker<N>.log, stdout to ``stdout`` instead if given, stderr to
    tmp_path/``stderr`` if given."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str,
        stdout: Any = None,
        stderr: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(tmp_path / f"worker{len(procs)}.log", "wb"))
            err = files.enter_context(open(tmp_path / stderr, "wb")) if stderr else None
            p = subprocess.Popen(
                [PGSCHED, "--dsn", dsn, "worker", *args],
                env=WORKER_ENV if env is None else env,
                stdout=log if stdout is None else stdout,
                stderr=subprocess.STDOUT if err is None else err,
                cwd=tmp_path,
            )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def python_for(user: pwd.struct_passwd) -> str | None:
    """An interpreter of this version that ``user`` can run (a pyenv under /root is not one)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        try:
            res = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:  # not there, or not reachable by the user
            continue
        if res.returncode == 0 and res.stdout.strip() == version:
            return candidate
    return None


def q(dsn: str, sql: str, *args: Any) -> Any:
    """The first column of the first row of ``sql`` on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(sql, args or None).fetchone()
        return None if row is None else row[0]
