"""Every exception pgsched defines. The CLI prints ``str(error)`` on one line; nothing else is
shown. This module imports nothing of pgsched, so any module may import it: turning a psycopg
error into one of these is pgsched.db's work (db.translate)."""

from __future__ import annotations


class PgschedError(Exception):
    """Base of every error pgsched raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(PgschedError):
    """Bad input from the user: a malformed payload, an unknown option value, a bad file."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class ValidationError(UsageError):
    """A value that the database would refuse, caught before any row is written."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatabaseUnavailable(PgschedError):
    def __init__(self, message: str, host: str | None = None, port: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class TimedOut(DatabaseUnavailable):
    """A statement passed the session's statement_timeout or lock_timeout (or was cancelled):
    it was rolled back. Handled as the database being unavailable for it."""


class NotMigrated(PgschedError):
    def __init__(self, message: str = "the database has no pgsched schema: run pgsched migrate"):
        super().__init__(message)


class SchemaTooNew(PgschedError):
    pass


class ServerTooOld(PgschedError):
    pass


class ServerError(PgschedError):
    """The embedded local server could not be found, started or stopped."""


class PermissionDenied(PgschedError):
    """The database role lacks a privilege the command needs (exit 1)."""


class NotFound(PgschedError):
    pass


class TaskNotFound(NotFound):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


class InvalidState(PgschedError):
    """The operation does not apply to the object's current state (e.g. retry a running task)."""


class DuplicateKey(PgschedError):
    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class WorkerNameTaken(PgschedError):
    """A live worker holds the name a new worker asked for."""


class WorkerDied(PgschedError):
    """A service thread of the worker died; the worker stopped (the CLI exits 1)."""


class CycleError(ValidationError):
    def __init__(self, path: list[str]) -> None:
        super().__init__("workflow has a cycle: " + " -> ".join(path))
        self.path = path


class PermanentError(PgschedError):
    """Raised by a task body (or a payload check) for a failure that retrying cannot fix: the
    task goes straight to ``failed`` and the dead letter, whatever attempts are left."""


class TaskTimeout(PgschedError):
    """A task body's own time limit ran out (e.g. the shell payload's ``timeout``): the attempt
    is recorded as ``timeout``. Importable from pgsched.registry too, where task code finds it."""


class FailedWithResult(PgschedError):
    """A built-in task's attempt failed with something to keep (the shell's exit code and
    output, the HTTP status and body): the attempt's result is ``result``, and it is retried as
    any failure is. Its message names the task type and is stored without the class name."""

    def __init__(self, message: str, result: dict[str, object]) -> None:
        super().__init__(message)
        self.result = result


class DeliveryFailed(PgschedError):
    """An alert's send that may succeed if tried again (the receiver was down, slow, or said
    5xx): the ``pgsched.alert`` attempt is retried with the channel's backoff."""


class CronError(ValueError):
    """An invalid cron expression, interval or time zone (message without the schedule). A
    ValueError, so that a pydantic validator that meets it reports it as the field's error."""


class SqlLoadError(Exception):
    """A ``.sql`` file of pgsched's own is malformed (pgsched.sql refuses to load it). A defect
    of the package, not of anyone's input: outside PgschedError, so that it shows a traceback."""


# The dashboard's refusals (pgsched.web): each becomes a page or an HTTP status, never a
# traceback. Plain exceptions: they are the web layer's answers, not errors of the database.


class LoginRequired(Exception):
    """No valid credentials: a page answers with the login page (a redirect to it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """An action that may not run: its status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
