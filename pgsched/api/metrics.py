"""The Prometheus exposition of /metrics, written by prometheus_client from what the database
holds at scrape time (pgsched.admin.Admin.metrics): nothing is counted in the process, so every
replica of `pgsched serve` reports the same values.

Metrics (all prefixed ``pgsched_``):
- ``tasks{queue,status}``: queue depth of the live statuses (pending, retrying, running,
  blocked);
- ``oldest_ready_age_seconds{queue}``: how long the oldest task that could run now has waited;
- ``task_attempts_total{outcome}``: attempts finished, by outcome (success, failure, timeout,
  lost, cancelled);
- ``tasks_succeeded_total``, ``tasks_failed_total`` (ended failed: a dead-letter row),
  ``task_retries_total`` (failed attempts that were retried);
- ``task_duration_seconds``: histogram of attempts' execution time;
- ``workers_live``, ``worker_running_tasks{worker}``, ``worker_capacity{worker}``,
  ``worker_cpu_percent{worker}``, ``worker_memory_percent{worker}``;
- ``dead_letter_size``; ``schedule_lag_seconds{schedule}`` (how late a due tick is).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
LIVE = ("active", "paused", "draining")


class _Snapshot(Collector):
    """A collector over one scrape's rows."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        depth, oldest, lag, counters, dead_letter = _read_rows(self.data["rows"])
        yield depth
        yield oldest
        yield from _outcomes(counters)
        yield _histogram(counters)
        yield lag
        yield GaugeMetricFamily(
            "pgsched_dead_letter_size", "Entries in the dead letter", value=dead_letter
        )
        yield from _workers(self.data["workers"])


def _read_rows(
    rows: list[tuple[str, str, str, float]],
) -> tuple[
    GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, dict[tuple[str, str], float], float
]:
    """The scrape's rows (metric, label, label, value) as the queue depth, oldest-ready and
    schedule-lag gauges, the counters by (name, label), and the dead letter's size."""
    depth = GaugeMetricFamily(
        "pgsched_tasks", "Tasks by queue and live status", labels=["queue", "status"]
    )
    oldest = GaugeMetricFamily(
        "pgsched_oldest_ready_age_seconds",
        "Age of the oldest task ready to run, by queue",
        labels=["queue"],
    )
    lag = GaugeMetricFamily(
        "pgsched_schedule_lag_seconds",
        "How far past its due tick each schedule is (0: on time)",
        labels=["schedule"],
    )
    counters: dict[tuple[str, str], float] = {}
    dead_letter = 0.0
    for metric, a, b, value in rows:
        if metric == "depth":
            depth.add_metric([a, b], value)
        elif metric == "oldest_ready":
            oldest.add_metric([a], value)
        elif metric == "counter":
            counters[(a, b)] = value
        elif metric == "dead_letter":
            dead_letter = value
        elif metric == "schedule_lag":
            lag.add_metric([a], value)
    return depth, oldest, lag, counters, dead_letter


def _outcomes(counters: dict[tuple[str, str], float]) -> Iterator[Metric]:
    """Attempts by outcome, and the tasks that succeeded, ended failed or were retried."""
    attempts = CounterMetricFamily(
        "pgsched_task_attempts", "Attempts finished, by outcome", labels=["outcome"]
    )
    by_outcome = {
        o: counters.get(("attempts", o), 0.0)
        for o in ("success", "failure", "timeout", "lost", "cancelled")
    }
    for o, v in by_outcome.items():
        attempts.add_metric([o], v)
    failed_tasks = counters.get(("dead_lettered", ""), 0.0)
    failed_attempts = by_outcome["failure"] + by_outcome["timeout"] + by_outcome["lost"]
    yield attempts
    yield CounterMetricFamily(
        "pgsched_tasks_succeeded", "Tasks that succeeded", value=by_outcome["success"]
    )
    yield CounterMetricFamily(
        "pgsched_tasks_failed",
        "Tasks that ended failed (attempts exhausted or not retryable)",
        value=failed_tasks,
    )
    yield CounterMetricFamily(
        "pgsched_task_retries",
        "Failed attempts that were retried",
        value=max(0.0, failed_attempts - failed_tasks),
    )


def _workers(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """The live workers' count and each one's load."""
    workers = [w for w in rows if w["status"] in LIVE]
    yield GaugeMetricFamily(
        "pgsched_workers_live", "Workers active, paused or draining", value=len(workers)
    )
    for name, help_, key in (
        ("pgsched_worker_running_tasks", "Tasks a worker runs", "current_task_count"),
        ("pgsched_worker_capacity", "Tasks a worker may run at once", "max_task_capacity"),
        ("pgsched_worker_cpu_percent", "CPU used on a worker's host", "cpu_usage"),
        ("pgsched_worker_memory_percent", "Memory used on a worker's host", "memory_usage"),
    ):
        g = GaugeMetricFamily(name, help_, labels=["worker", "status"])
        for w in workers:
            g.add_metric([w["name"], w["status"]], float(w[key] or 0))
        yield g


# The histogram's bucket bounds, seconds: the same list as pgsched.count_attempts() (0006).
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _histogram(counters: dict[tuple[str, str], float]) -> HistogramMetricFamily:
    per_bound: dict[float, float] = {}
    for (name, label), v in counters.items():
        if name == "duration_bucket" and label != "+Inf":
            per_bound[float(label)] = per_bound.get(float(label), 0.0) + v
    total = 0.0
    buckets = []
    for bound in BOUNDS:
        total += per_bound.get(bound, 0.0)
        buckets.append((repr(bound), total))
    total += counters.get(("duration_bucket", "+Inf"), 0.0)
    buckets.append(("+Inf", total))
    return HistogramMetricFamily(
        "pgsched_task_duration_seconds",
        "Execution time of finished attempts",
        buckets=buckets,
        sum_value=counters.get(("duration_sum_ms", ""), 0.0) / 1000.0,
    )


def exposition(data: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(data))
    return generate_latest(registry)
