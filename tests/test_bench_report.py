"""bench/report.py's target rows, on records shaped as bench/j_dashboard.py writes them: J's
row ("every dashboard page < 300 ms on 1M task rows and 100k attempts") names the slowest page
and is met only when every page is under the bound."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def report():
    sys.path.insert(0, str(BENCH))
    try:
        import report as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def _records(pages: dict[str, float]) -> list[dict]:
    recs = [
        {"workload": "J", "system": "pgsched", "metric": f"page p50 {name}", "value": v,
         "unit": "ms", "rep": 0}
        for name, v in pages.items()
    ]  # fmt: skip
    recs.append(
        {"workload": "J", "system": "pgsched", "metric": "slowest page p50 (1M tasks, 100k "
         "attempts)", "value": max(pages.values()), "unit": "ms", "rep": 0}
    )  # fmt: skip
    return recs


def _j_row(report, recs: list[dict]) -> list[str]:
    rows = report.targets(report.medians(recs))
    return [r for r in rows if r.startswith("| J every dashboard page")]


def test_j_target_met_when_every_page_is_under_300_ms(report) -> None:
    [row] = _j_row(report, _records({"overview": 41.0, "tasks": 12.5, "dead letter": 290.0}))
    assert "3 of 3 pages under; slowest: dead letter 290 ms" in row
    assert row.endswith("| met |")


def test_j_target_not_met_when_one_page_is_over(report) -> None:
    [row] = _j_row(report, _records({"overview": 41.0, "tasks deep": 301.0}))
    assert "1 of 2 pages under; slowest: tasks deep 301 ms" in row
    assert row.endswith("| **not met** |")


def test_j_target_not_measured_without_j(report) -> None:
    [row] = _j_row(report, [])
    assert "| not measured | – |" in row


def test_results_md_shows_the_j_row(report, tmp_path: Path, monkeypatch) -> None:
    raw = tmp_path / "run.jsonl"
    meta = {"meta": True, "machine": {}, "systems": ["pgsched"], "quick": True}
    lines = [meta, *_records({"overview": 20.0, "workers": 3.0})]
    raw.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    monkeypatch.setattr(report, "BENCH", tmp_path)  # RESULTS.md written there, not in bench/
    text = report.write([raw]).read_text()
    assert "| J every dashboard page's server time < 300 ms" in text
    assert "2 of 2 pages under; slowest: overview 20.0 ms | met |" in text
