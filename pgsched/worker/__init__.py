"""The worker engine: ``Worker(dsn, settings, name=..., queues=..., concurrency=...)``.

``Worker`` is imported on first use, so that the scheduler and the alert ticker can use this
package's supervision helpers without loading the whole engine."""

from typing import Any

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from pgsched.worker.runner import Worker

        return Worker
    raise AttributeError(f"module 'pgsched.worker' has no attribute {name!r}")
