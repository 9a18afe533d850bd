"""The database restarts under a running worker: it reconnects and carries on, nothing lost."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsched import migrate
from pgsched.client import Client
from pgsched.server import EphemeralServer
from tests.conftest import PGSCHED, WORKER_ENV, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server() -> Iterator[EphemeralServer]:
    """A server of this test's own: restarting the session's would disturb other tests."""
    with EphemeralServer() as server:
        yield server


def count(dsn: str, sql: str) -> int:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
            return c.execute(sql).fetchone()[0]
    except psycopg.OperationalError:
        return -1  # the server is restarting


def test_worker_survives_a_database_restart(own_server: EphemeralServer, tmp_path: Path) -> None:
    dsn = own_server.url()
    migrate.upgrade(dsn)
    client = Client(dsn)
    first = [client.submit("dummy", {"sleepDurationMs": 200}) for _ in range(30)]
    client.close()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [PGSCHED, "--dsn", dsn, "worker", "--name", "w", "--concurrency", "4"],
            env=WORKER_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: (
                    count(dsn, "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'succeeded'")
                    >= 4
                ),
                30,
                message="the first tasks to finish",
            )
            own_server.restart(downtime=3)  # sessions cut mid-batch; reconnects fail a while
            client = Client(dsn)
            second = [client.submit("dummy", {"sleepDurationMs": 10}) for _ in range(10)]
            client.close()
            total = len(first) + len(second)
            wait_until(
                lambda: (
                    count(dsn, "SELECT count(*) FROM pgsched.all_tasks WHERE status = 'succeeded'")
                    == total
                ),
                60,
                message="every task, before and after the restart, to succeed",
            )
            assert worker.poll() is None, "the worker exited instead of reconnecting"
            assert (
                count(
                    dsn,
                    "SELECT count(*) FROM (SELECT task_id FROM pgsched.task_executions"
                    " WHERE outcome = 'success' GROUP BY task_id"
                    " HAVING count(*) > 1) d",
                )
                == 0
            )
        finally:
            worker.terminate()
            worker.wait(30)
