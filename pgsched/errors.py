"""The one error tree. The CLI prints ``str(error)`` on one line; nothing else is shown."""

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


# Check constraints by name -> what to tell the user (the field comes first).
CONSTRAINT_MESSAGES: dict[str, str] = {
    "tasks_queue_valid": "queue: must be a non-empty name of at most 128 characters",
    "tasks_task_type_valid": "task_type: must be a non-empty name of at most 200 characters",
    "tasks_status_valid": "status: not one of blocked, pending, running, succeeded, retrying, "
    "failed, cancelled",
    "tasks_priority_range": "priority: must be between -1000 and 1000",
    "tasks_attempts_range": "attempts: must be between 0 and max_attempts",
    "tasks_max_attempts_range": "max_attempts: must be between 1 and 1000",
    "tasks_timeout_positive": "timeout: must be positive",
    "tasks_backoff_base_positive": "backoff_base: must be positive",
    "tasks_backoff_cap_positive": "backoff_cap: must be positive",
    "tasks_progress_range": "progress: must be between 0 and 1",
    "tasks_timeout_bounded": "timeout: must be at most 100 years",
    "tasks_backoff_base_bounded": "backoff_base: must be at most 100 years",
    "tasks_backoff_cap_bounded": "backoff_cap: must be at most 100 years",
    "schedules_timeout_bounded": "timeout: must be at most 100 years",
    "schedules_every_bounded": "every: must be at most 100 years",
    "tasks_run_at_range": "run_at: must be between 1900-01-01 and 9999-01-01 (UTC)",
    "tasks_ready_has_attempts": "attempts: a pending or retrying task needs an attempt left "
    "(attempts below max_attempts)",
    "tasks_blocked_in_workflow": "status: only a workflow's task can be blocked",
    "tasks_payload_size": "payload: larger than the limit (pgsched.max_payload_bytes(), 1 MiB "
    "unless changed)",
    "schedules_payload_size": "payload: larger than the limit (pgsched.max_payload_bytes(), "
    "1 MiB unless changed)",
    "schedules_every_minimum": "every: must be at least 1s",
    "schedules_misfire_cap_range": "misfire_cap: must be at most 10000",
}


def translate(exc: BaseException) -> PgschedError | None:
    """Map a psycopg error to a domain error, by constraint name; None if it is not ours."""
    import psycopg
    from psycopg import errors as pge

    if isinstance(exc, PgschedError):
        return exc
    if isinstance(exc, pge.InsufficientPrivilege) and exc.diag.constraint_name == (
        "shell_needs_pgsched_shell"
    ):
        return PermissionDenied(str(exc.diag.message_primary))  # the trigger's own line
    if isinstance(exc, pge.InsufficientPrivilege):
        # Without the connection at hand (db.translated names the privilege when it has it).
        return PermissionDenied(
            (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
            + ": the role lacks a privilege this command needs"
        )
    missing = pge.UndefinedTable | pge.InvalidSchemaName | pge.UndefinedFunction
    if isinstance(exc, missing) and "pgsched" in str(exc):
        return NotMigrated()
    if isinstance(exc, pge.CheckViolation | pge.UniqueViolation | pge.ForeignKeyViolation):
        name = exc.diag.constraint_name or ""
        if name in CONSTRAINT_MESSAGES:
            return ValidationError(CONSTRAINT_MESSAGES[name], field=name.split("_")[1])
        if isinstance(exc, pge.UniqueViolation):
            return DuplicateKey(f"already exists ({name}): {exc.diag.message_detail}", name)
    if isinstance(exc, pge.InvalidTextRepresentation | pge.InvalidDatetimeFormat):
        return ValidationError(str(exc.diag.message_primary or exc))
    if isinstance(exc, pge.QueryCanceled | pge.LockNotAvailable):
        primary = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        return TimedOut(f"the database gave up on the statement: {primary}; nothing was changed")
    if isinstance(exc, psycopg.OperationalError):
        from pgsched.db import failure_reason

        return DatabaseUnavailable(f"lost the database connection: {failure_reason(exc)}")
    return None


class PermanentError(PgschedError):
    """Raised by a task body (or a payload check) for a failure that retrying cannot fix: the
    task goes straight to ``failed`` and the dead letter, whatever attempts are left."""
