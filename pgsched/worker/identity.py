"""Who a worker is, as its statements name it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    name: str
    queues: list[str]
    task_types: list[str]
    concurrency: int
    weighted: bool

    @property
    def signature(self) -> str:
        """Workers of one signature can run the same tasks: they share one waker lock."""
        return ",".join(self.queues) + "|" + ",".join(self.task_types)
