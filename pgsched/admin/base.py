"""What every part of pgsched.admin.Admin stands on: the client whose connections it borrows."""

from __future__ import annotations

from pgsched.client import Client
from pgsched.errors import ValidationError
from pgsched.models import MAX_ATTEMPTS_MAX


class AdminBase:
    client: Client
    heartbeat_timeout: float  # seconds without a heartbeat before a worker counts as dead

    def _attempts(self, attempts: int | None) -> int:
        """The tries a requeue or retry adds: the client's default when None, checked."""
        extra = self.client.default_max_attempts if attempts is None else attempts
        if not 1 <= extra <= MAX_ATTEMPTS_MAX:
            raise ValidationError(f"attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", "attempts")
        return extra
