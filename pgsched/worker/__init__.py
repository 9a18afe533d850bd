"""The worker engine: ``Worker(dsn, settings, name=..., queues=..., concurrency=...)``."""

from pgsched.worker.runner import Worker

__all__ = ["Worker"]
