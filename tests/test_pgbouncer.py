"""Through PgBouncer in transaction mode: submits, claims and completions go through the pooler,
LISTEN and the worker's session locks through the direct DSN (PGSCHED_DIRECT_DSN)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsched.client import Client
from pgsched.server import EphemeralServer
from pgsched.server.pooler import PGBOUNCER, ephemeral_pgbouncer
from tests.conftest import FAST, Events, wait_until

pytestmark = pytest.mark.skipif(
    not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


@pytest.fixture
def bouncer_dsn(dsn: str, pg_server: EphemeralServer) -> Iterator[str]:
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    assert isinstance(database, str)
    with ephemeral_pgbouncer(pg_server, database, pool=4, clients=100) as url:
        yield url


def test_worker_and_client_through_pgbouncer_transaction_mode(dsn: str, bouncer_dsn: str) -> None:
    from pgsched.worker import Worker

    settings = FAST.model_copy(update={"prepared_statements": False, "direct_dsn": dsn})
    client = Client(bouncer_dsn, prepared_statements=False)
    ids = [client.submit("noop", {"i": i}) for i in range(50)]  # well past psycopg's 5 runs
    ids += client.submit_many([client.spec("noop", {"i": i}) for i in range(200)])
    ev = Events()
    worker = Worker(bouncer_dsn, settings, name="via-bouncer", concurrency=20, on_event=ev).start()
    try:
        wait_until(
            lambda: client.list(status="succeeded", limit=1000).__len__() == len(ids),
            30,
            message="every task to succeed through the pooler",
        )
        # A task inserted later still wakes the worker: LISTEN runs on the direct connection.
        late = client.submit("noop")
        wait_until(
            lambda: client.get(late)["status"] == "succeeded",
            10,
            message="a later insert to wake the worker",
        )
    finally:
        worker.stop(timeout=15)
    with psycopg.connect(dsn) as c:
        assert (
            c.execute(
                "SELECT count(*) FROM pgsched.task_executions WHERE outcome = 'success'"
            ).fetchone()[0]
            == len(ids) + 1
        )


def test_a_worker_behind_pgbouncer_wakes_by_listen_on_its_direct_connection(
    dsn: str, bouncer_dsn: str
) -> None:
    """Claims and completions go through the pooler and only the worker's session connection
    is direct; an idle worker whose fallback poll never comes (an hour) still runs a task
    submitted through the pooler: the notification reached its LISTEN on that connection."""
    from psycopg.conninfo import make_conninfo

    from pgsched.worker import Worker

    direct = make_conninfo(dsn, application_name="pgsched-direct")
    pooled = make_conninfo(bouncer_dsn, application_name="pgsched-pooled")
    settings = FAST.model_copy(
        update={"prepared_statements": False, "direct_dsn": direct, "poll_interval": 3600}
    )
    client = Client(pooled, prepared_statements=False)
    ev = Events()
    worker = Worker(pooled, settings, name="listens-direct", concurrency=4, on_event=ev).start()
    try:
        first = client.submit("noop")
        wait_until(lambda: client.get(first)["status"] == "succeeded", 30, message="a first task")
        # idle: the claim after the first task came back empty, the next one waits on LISTEN
        wait_until(lambda: ev.count("claim_ran", got=0) >= 1, 30, message="an empty claim")
        with psycopg.connect(dsn, autocommit=True) as c:
            apps = dict(
                c.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name LIKE 'pgsched-%' GROUP BY 1"
                ).fetchall()
            )
        # one direct session (LISTEN, locks); the rest are the pooler's server connections
        assert apps.get("pgsched-direct") == 1, apps
        assert 1 <= apps.get("pgsched-pooled", 0) <= 4, apps
        late = [client.submit("noop", {"i": i}) for i in range(3)]
        wait_until(
            lambda: all(client.get(t)["status"] == "succeeded" for t in late),
            30,
            message="tasks submitted through the pooler to wake the idle worker",
        )
    finally:
        worker.stop(timeout=15)
    with psycopg.connect(dsn) as c:
        ran = c.execute(
            "SELECT count(*) FROM pgsched.task_executions WHERE worker = 'listens-direct' "
            "AND outcome = 'success'"
        ).fetchone()[0]
    assert ran == 4
