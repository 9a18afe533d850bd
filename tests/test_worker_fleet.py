"""Several idle workers on a backlog drain it together without waiting for the fallback poll
(a claim cut short by load weighting must not put a worker to sleep while work is due)."""

from __future__ import annotations

from typing import Any

from pgsched.client import Client
from pgsched.worker.load import LoadSampler
from tests.conftest import FAST, wait_until


def test_fleet_drains_backlog_without_the_fallback_poll(dsn: str, make_worker: Any) -> None:
    settings = FAST.model_copy(update={"poll_interval": 60.0, "cpu_ceiling": 95.0})

    # The host reads fully busy, all of it the workers' own work (as on a small CI machine
    # running them beside the server): under the ceiling, since a worker's own load is not load.
    # Injected, so other processes on the test host cannot push a real reading over it.
    def busy_with_own_work() -> LoadSampler:
        return LoadSampler(host_cpu=lambda: 100.0, own_cpu=lambda: 100.0, memory=lambda: 10.0)

    for i in range(4):
        make_worker(
            settings=settings, name=f"fleet-{i}", concurrency=10, load_sampler=busy_with_own_work()
        )
    client = Client(dsn)
    client.submit_many([client.spec("noop", {"i": i}) for i in range(3000)])
    # With a 60 s fallback poll, a worker that wrongly went idle would leave tasks for a minute.
    wait_until(
        lambda: len(client.list(status="succeeded", limit=5000)) == 3000,
        30,
        message="the fleet to drain the backlog",
    )
