"""One PostgreSQL server per test session (fsync off), a migrated template database, and a fresh
database per test cloned from it. Runs as root too: the server then runs as user 'pgsched'."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgsched import migrate
from pgsched.config import Settings
from pgsched.server import EphemeralServer, password_file

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
_counter = itertools.count()


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


def _new_database(server: EphemeralServer, template: str) -> str:
    # A random part too: a test module that imports this file as tests.conftest gets a second
    # copy of the counter, and two copies must not pick the same name.
    name = f"t{os.getpid()}_{next(_counter)}_{os.urandom(3).hex()}"
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def _drop_database(server: EphemeralServer, name: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def dsn(pg_server: EphemeralServer) -> Iterator[str]:
    """A migrated database of this test's own (commits, LISTEN and processes are fine)."""
    name = _new_database(pg_server, TEMPLATE)
    yield pg_server.url(name)
    _drop_database(pg_server, name)


@pytest.fixture
def empty_dsn(pg_server: EphemeralServer) -> Iterator[str]:
    """A database with no pgsched schema."""
    name = _new_database(pg_server, "template1")
    yield pg_server.url(name)
    _drop_database(pg_server, name)


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


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"
