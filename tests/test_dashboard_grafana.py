"""deploy/grafana/pgsched.json against what /metrics really exports: every panel's query names
series that a live `pgsched serve` writes (scraped after a real worker ran, failed and retried
tasks), with labels those series carry; and the dashboard covers what an operator watches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from pgsched.client import Client
from tests.api import serving
from tests.conftest import wait_until
from tests.dashboard import Gates, seed, worker

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "pgsched.json"
METRIC = re.compile(r"\b(pgsched_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(pgsched_[a-z0-9_]+)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels the scraper adds (Prometheus's target labels), not pgsched's.
TARGET_LABELS = {"instance", "job"}


def _queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        out += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return out


def _scrape(dsn: str, conn: psycopg.Connection) -> dict[str, set[str]]:
    """{sample name: its label names} from a real /metrics after real work."""
    gates = Gates(fail_once={"r1"})
    seed(dsn, conn, gates)  # successes, failures into the dead letter, a schedule
    with Client(dsn) as c:
        retried = c.submit("flaky", {"key": "r1"}, max_attempts=3, backoff_base=0.01)
        # Ready whatever the worker does: a type it does not run (the ready-age series).
        c.submit("run-by-no-worker")
    with worker(dsn, gates, "scraped-worker"):
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT attempts FROM pgsched.all_tasks WHERE id = %s", (retried,)
                ).fetchone()[0]
                >= 1
            ),
            timeout=20,
            message="a failed attempt to be retried",
        )
        with gates.lock:
            gates.fail_once.clear()
        with serving(dsn) as http:
            text = http.get("/metrics").text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, set()).update(s.labels)
    return samples


def test_every_panel_queries_series_that_metrics_exports(
    dsn: str, conn: psycopg.Connection
) -> None:
    samples = _scrape(dsn, conn)
    queries = _queries()
    used: set[str] = set()
    for title, expr in queries:
        names = set(METRIC.findall(expr))
        assert names, f"{title!r}: {expr!r} names no pgsched metric"
        for name in names:
            assert name in samples, f"{title!r}: {name} is not exported by /metrics"
        used |= names
        for name, matchers in SELECTOR.findall(expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in samples[name], f"{title!r}: {name} has no label {label!r}"
        known = set().union(*(samples[n] for n in names)) | TARGET_LABELS
        for group in GROUPING.findall(expr):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                assert label in known, f"{title!r}: no series in {expr!r} has label {label!r}"
    # What the operator watches: queue depth, oldest age, throughput, failure and retry rates,
    # execution-time quantiles, workers, dead letter.
    for needed in (
        "pgsched_tasks",
        "pgsched_oldest_ready_age_seconds",
        "pgsched_task_attempts_total",
        "pgsched_tasks_failed_total",
        "pgsched_task_retries_total",
        "pgsched_task_duration_seconds_bucket",
        "pgsched_workers_live",
        "pgsched_worker_cpu_percent",
        "pgsched_dead_letter_size",
    ):
        assert needed in used, f"no panel shows {needed}"
    assert any("histogram_quantile(0.99" in e for _, e in queries)


def test_the_dashboard_file_is_importable_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] == "pgsched"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource"]
