"""What an operator does, as a Python API: the dead letter, workers, schedules, workflows,
statistics, recovery and API tokens. The CLI's operator commands and `pgsched serve` are thin
faces over it; tasks themselves (submit, get, list, cancel, retry) are pgsched.client.Client's.

    from pgsched import Client
    from pgsched.admin import Admin
    admin = Admin(Client(dsn))
    admin.dlq_requeue_all(queue="mail")
    admin.pause_worker("host-1234")
    admin.stats(window=timedelta(hours=24))

Every method borrows one connection from the client for its statements (the client's own, or
its pool's), with errors translated into pgsched.errors. Each concern has its module here, and
Admin puts them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsched.admin.deadletter import DeadLetter
from pgsched.admin.definitions import Definitions
from pgsched.admin.observe import Observe
from pgsched.admin.tokens import Tokens
from pgsched.admin.workers import Workers
from pgsched.client import Client

if TYPE_CHECKING:
    from pgsched.config import Settings


class Admin(Workers, DeadLetter, Definitions, Observe, Tokens):
    def __init__(self, client: Client, *, heartbeat_timeout: float = 15.0) -> None:
        self.client = client
        self.heartbeat_timeout = heartbeat_timeout

    @classmethod
    def from_settings(cls, settings: Settings, client: Client | None = None) -> Admin:
        return cls(
            client or Client.from_settings(settings),
            heartbeat_timeout=settings.heartbeat_timeout,
        )
