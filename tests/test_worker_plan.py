"""The claim statement keeps its index plan over a large backlog (claim-path.md: one shape
flipped to a sequential scan at 500+ per batch)."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql as psql

from pgsched.sql import Q, Query, to_positional
from pgsched.worker.connections import CLAIM_SESSION


def claim_params(queues: list[str], slots: int) -> dict[str, object]:
    """The claim's parameters as worker "w" sends them (weighted, no ceilings in the way)."""
    return {
        "worker": "w",
        "queues": queues,
        "task_types": ["noop", "dummy"],
        "slots": slots,
        "weighted": True,
        "cpu_ceiling": 100.0,
        "memory_ceiling": 100.0,
        "now": None,
    }


@pytest.mark.parametrize(
    ("slots", "queues"), [(10, ["default"]), (1000, ["default"]), (1000, ["default", "other"])]
)
def test_claim_uses_ready_index(conn: psycopg.Connection, slots: int, queues: list[str]) -> None:
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', (i % 5), now() - i * interval '1 ms'"
        " FROM generate_series(1, 50000) i"
    )
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, status, finished_at)"
        " SELECT 'noop', 'succeeded', now() FROM generate_series(1, 20000)"
    )
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    conn.execute("ANALYZE pgsched.tasks")
    conn.execute("SET plan_cache_mode = force_custom_plan")
    params = claim_params(queues, slots)
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q.claim_tasks.sql, params))
    assert "tasks_ready_idx" in plan, plan
    assert "Seq Scan on tasks" not in plan, plan
    assert "Sort Key: c.priority" not in plan, plan  # the index gives claim order
    rows = Q.claim_tasks.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert len(rows) == slots
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)


def plan_then_fill(
    conn: psycopg.Connection, query: Query, params: dict[str, object], fill: str, analyzed: bool
) -> None:
    """Run ``fill``, then ANALYZE; or plan ``query`` generically first, over the empty table,
    and fill it after (no ANALYZE since): the two ways a session's generic plan comes to be."""
    if analyzed:
        conn.execute(fill)
        conn.execute("ANALYZE pgsched.tasks")
    else:
        explain_generic(conn, query, params)  # plans it now, over an empty table
        conn.execute(fill)


def explain_generic(
    conn: psycopg.Connection, query: Query, params: dict[str, object], options: str = ""
) -> str:
    """EXPLAIN the plan the worker's claim connection runs: the statement prepared once (here
    as generic_q, on the first call) and planned without its parameter values
    (connections.CLAIM_SESSION: force_generic_plan, no sequential scans); later calls reuse that
    plan."""
    sql, names = to_positional(query.sql)
    for name, value in re.findall(r"-c (\w+)=(\w+)", CLAIM_SESSION):
        conn.execute(f"SET {name} = {value}")
    if not conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = 'generic_q'").fetchone():
        conn.execute(f"PREPARE generic_q AS {sql}")
    args = psql.SQL(", ").join(psql.Literal(params[n]) for n in names).as_string(conn)
    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {options} EXECUTE generic_q({args})"))
    assert re.search(r"\(\$\d+\b", plan), plan  # parameters, not values: a generic plan
    return plan


@pytest.mark.parametrize("analyzed", [True, False])
@pytest.mark.parametrize(
    ("slots", "queues"), [(10, ["default"]), (1000, ["default"]), (1000, ["default", "other"])]
)
def test_generic_claim_plan_uses_ready_index(
    conn: psycopg.Connection, slots: int, queues: list[str], analyzed: bool
) -> None:
    """The claim connection plans the claim once per session, without the parameters' values:
    that plan must walk the ready index too, whether it was made over a large analyzed backlog
    or over an empty table that 50,000 tasks then filled (no ANALYZE since)."""
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    params = claim_params(queues, slots)
    fill = (
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', (i % 5), now() - i * interval '1 ms'"
        " FROM generate_series(1, 50000) i"
    )
    plan_then_fill(conn, Q.claim_tasks, params, fill, analyzed)
    plan = explain_generic(conn, Q.claim_tasks, params, "(ANALYZE)")
    assert "tasks_ready_idx" in plan, plan
    assert "Seq Scan on tasks" not in plan, plan
    assert "Sort Key: c.priority" not in plan, plan
    assert re.search(rf"Update on tasks t .*rows={slots}\b", plan), plan


# -- ready rows of types the worker does not run are never read ----------------------------------
# A worker's claim, next_due_in and left_behind read one range of tasks_ready_idx per
# (queue, task type) it runs: ready rows of other types, however many and however high their
# priority, add nothing to what they read.

UNRUNNABLE = (
    "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
    " SELECT 'nobody-runs-this', 'default', 1000, now() - interval '1 minute'"
    " FROM generate_series(1, {n})"
)
RUNNABLE = (
    "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
    " SELECT 'noop', 'default', i % 3, now() - interval '1 minute'"
    " FROM generate_series(1, 200) i"
)


def rows_read(plan: str) -> int:
    """Rows the plan's nodes read and threw away (filters, and rows of locked-row checks)."""
    return sum(int(n) for n in re.findall(r"Rows Removed by (?:Filter|Index Recheck): (\d+)", plan))


def top_buffers(plan: str) -> int:
    m = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    assert m, plan
    return int(m.group(1)) + int(m.group(2) or 0)


@pytest.mark.parametrize("analyzed", [True, False])
def test_claim_never_reads_rows_of_types_it_does_not_run(
    conn: psycopg.Connection, analyzed: bool
) -> None:
    """20,000 ready tasks of a type nobody runs, at the top priority of the worker's queue,
    above 200 it runs: the claim connection's claim takes 10 of its own, in claim order, and
    its plan reads no more than it would without them (no rows filtered out, a few pages), no
    sort of the candidates' range. Keyed by queue alone, it walked all 20,000 first."""
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    params = claim_params(["default", "other"], 10)
    plan_then_fill(
        conn, Q.claim_tasks, params, UNRUNNABLE.format(n=20000) + ";" + RUNNABLE, analyzed
    )
    plan = explain_generic(conn, Q.claim_tasks, params, "(ANALYZE, BUFFERS)")
    assert "Seq Scan on tasks" not in plan, plan
    assert "tasks_ready_idx" in plan, plan
    assert "Sort Key: c.priority" not in plan, plan  # each range in claim order from the index
    assert rows_read(plan) == 0, plan
    assert top_buffers(plan) < 200, plan
    assert re.search(r"Update on tasks t .*rows=10\b", plan), plan
    rows = Q.claim_tasks.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert [r["task_type"] for r in rows] == ["noop"] * 10
    assert [r["priority"] for r in rows] == [2] * 10


def test_idle_checks_never_read_rows_of_types_they_do_not_run(conn: psycopg.Connection) -> None:
    """next_due_in and left_behind, as the claim connection runs them, over 20,000 ready and
    20,000 scheduled tasks of a type nobody runs: a few pages each, nothing filtered out."""
    conn.execute(UNRUNNABLE.format(n=20000))
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'nobody-runs-this', 'default', 1000, now() + interval '1 s'"
        " FROM generate_series(1, 20000)"
    )
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " VALUES ('noop', 'default', 0, now() + interval '2 s')"
    )
    conn.execute("ANALYZE pgsched.tasks")
    types = ["noop", "dummy"]
    due = {"queues": ["default", "other"], "task_types": types, "horizon": 5.0, "now": None}
    plan = explain_generic(conn, Q.next_due_in, due, "(ANALYZE, BUFFERS)")
    assert rows_read(plan) < 10, plan  # the recursion's end, not rows
    assert top_buffers(plan) < 100, plan
    assert 1 < Q.next_due_in.run(conn, due) <= 2
    conn.execute("DEALLOCATE generic_q")
    behind = {"queues": ["default", "other"], "task_types": types, "age": 1.0, "now": None}
    plan = explain_generic(conn, Q.left_behind, behind, "(ANALYZE, BUFFERS)")
    assert rows_read(plan) < 10, plan  # the recursion's end, not rows
    assert top_buffers(plan) < 100, plan
    assert Q.left_behind.run(conn, behind) is False


def test_many_queues_and_types_cost_an_index_descent_each(conn: psycopg.Connection) -> None:
    """A worker of 10 queues x 20 types over a backlog of one pair: the claim reads a few pages
    per pair (one descent into an empty range), never a scan of the backlog."""
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 't7', 'q3', i % 5, now() - interval '1 minute' FROM generate_series(1, 50000) i"
    )
    conn.execute("ANALYZE pgsched.tasks")
    params = claim_params([f"q{i}" for i in range(10)], 100)
    params["task_types"] = [f"t{i}" for i in range(20)]
    plan = explain_generic(conn, Q.claim_tasks, params, "(ANALYZE, BUFFERS)")
    assert "Seq Scan on tasks" not in plan, plan
    assert rows_read(plan) == 0, plan
    # ~3 pages per pair (the priority walk's first probe), and the rows claimed
    assert ready_index_buffers(plan) < 200 * 4 + 100, plan
    assert re.search(r"Update on tasks t .*rows=100\b", plan), plan


def ready_index_buffers(plan: str, scan: str = "Scan") -> int:
    """Pages read by every scan of tasks_ready_idx in an EXPLAIN (ANALYZE, BUFFERS): each
    node's own Buffers line, before the next node starts (a node never executed has none).
    ``scan``: only nodes of that kind ("Index Only Scan": the priority walk's probes)."""
    total, in_scan = 0, False
    for i, line in enumerate(plan.splitlines()):
        if "->" in line or i == 0:  # a node's first line
            in_scan = re.search(f"{scan}(?: Backward)? using tasks_ready_idx", line) is not None
        elif in_scan and (m := re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", line)):
            total += int(m.group(1)) + int(m.group(2) or 0)
            in_scan = False
    return total


@pytest.mark.parametrize("priorities", [1, 5])
def test_claim_stops_at_the_first_task_not_yet_due(
    conn: psycopg.Connection, priorities: int
) -> None:
    """An idle worker's claim beside 50,000 tasks due tomorrow (in 1 or 5 priorities) and 3 due
    now reads a few pages per priority, not the tasks due tomorrow. Before PostgreSQL 18,
    `run_at <= now` bounds the index scan only with the priority fixed: over the whole
    range it filtered every future task, on every claim."""
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, priority, run_at)"
        " SELECT 'noop', i %% %s, now() + interval '1 day' FROM generate_series(1, 50000) i",
        (priorities,),
    )
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, priority, run_at)"
        " SELECT 'noop', i, now() - interval '1 s' FROM generate_series(-1, 1) i"
    )
    conn.execute("ANALYZE pgsched.tasks")
    params = claim_params(["default"], 10)
    for generic in (True, False):  # the claim connection's plan, and one planned per call
        with conn.transaction(force_rollback=True):  # EXPLAIN ANALYZE claims them
            plan = (
                explain_generic(conn, Q.claim_tasks, params, "(ANALYZE, BUFFERS)")
                if generic
                else "\n".join(
                    r[0]
                    for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + Q.claim_tasks.sql, params)
                )
            )
        assert rows_read(plan) == 0, plan
        assert re.search(r"Update on tasks t .*rows=3\b", plan), plan
        assert ready_index_buffers(plan) < 20 * (priorities + 3), plan
    rows = Q.claim_tasks.run(conn.cursor(row_factory=psycopg.rows.dict_row), params)
    assert sorted(r["priority"] for r in rows) == [-1, 0, 1]


def test_the_priority_walk_skips_what_a_held_snapshot_keeps(dsn: str) -> None:
    """Under a held snapshot, the ready index keeps an entry for every task claimed since, at
    the start of its priority (the oldest run_at), and each scan from there visits all of
    them. The walk looks for priorities from the other end of each, the newest tasks, so the
    claim goes through them once (its scan of the priority), not twice."""
    with (
        psycopg.connect(dsn, autocommit=True) as c,
        psycopg.connect(dsn, autocommit=True) as holder,
    ):
        c.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT txid_current(), count(*) FROM pgsched.tasks")
        for _ in range(2):
            c.execute(
                "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 10000)"
            )
            c.execute(
                "UPDATE pgsched.tasks SET status = 'running', attempts = 1, started_at = now(),"
                " assigned_worker = 'w' WHERE status = 'pending'"
            )
            c.execute("DELETE FROM pgsched.tasks")
        c.execute("INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 5)")
        c.execute("ANALYZE pgsched.tasks")
        params = claim_params(["default"], 10)
        with c.transaction(force_rollback=True):
            plan = explain_generic(c, Q.claim_tasks, params, "(ANALYZE, BUFFERS)")
        assert re.search(r"Update on tasks t .*rows=5\b", plan), plan
        assert ready_index_buffers(plan, "Index Only Scan") < 20, plan
        holder.rollback()


TASKS = st.lists(
    st.tuples(
        st.sampled_from(["default", "q2", "q3"]),
        st.sampled_from(["noop", "dummy", "other"]),
        st.integers(-2, 2),  # priority
        st.integers(-3, 3),  # run_at, seconds from now
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tasks=TASKS,
    queues=st.lists(st.sampled_from(["default", "q2", "q3", "none"]), min_size=1, unique=True),
    types=st.lists(st.sampled_from(["noop", "dummy", "other"]), min_size=1, unique=True),
    slots=st.integers(1, 12),
)
def test_claim_takes_what_one_ordered_query_takes(
    dsn: str,
    tasks: list[tuple[str, str, int, int]],
    queues: list[str],
    types: list[str],
    slots: int,
) -> None:
    """The claim merges its (queue, type) ranges into claim order: it takes exactly the first
    `slots` tasks of the plain ordered query over all of them (priority, then run_at, then id),
    whatever order it returns them in."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("TRUNCATE pgsched.tasks, pgsched.workers CASCADE")
        c.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
        now = c.execute("SELECT now()").fetchone()[0]
        for queue, task_type, priority, offset in tasks:
            c.execute(
                "INSERT INTO pgsched.tasks (queue, task_type, priority, run_at)"
                " VALUES (%s, %s, %s, %s + %s * interval '1 s')",
                (queue, task_type, priority, now, offset),
            )
        want = [
            r[0]
            for r in c.execute(
                "SELECT id FROM pgsched.all_tasks WHERE status IN ('pending', 'retrying')"
                " AND queue = ANY(%s) AND task_type = ANY(%s) AND run_at <= %s"
                " ORDER BY priority DESC, run_at, id LIMIT %s",
                (queues, types, now, slots),
            )
        ]
        params = claim_params(queues, slots) | {"task_types": types, "now": now}
        rows = Q.claim_tasks.run(c.cursor(row_factory=psycopg.rows.dict_row), params)
        assert sorted(r["id"] for r in rows) == sorted(want)


def test_generic_next_due_in_plan_walks_the_index(conn: psycopg.Connection) -> None:
    t = conn.execute("SELECT now()").fetchone()[0]  # the time the statements are asked at
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', (i %% 7) - 3, %s::timestamptz + interval '1 day'"
        "        + i * interval '1 ms'"
        " FROM generate_series(1, 50000) i",
        (t,),
    )
    conn.execute("ANALYZE pgsched.tasks")
    params = {"queues": ["default", "other"], "task_types": ["noop"], "horizon": 5.0, "now": t}
    plan = explain_generic(conn, Q.next_due_in, params, "(ANALYZE, BUFFERS)")
    assert "Seq Scan" not in plan, plan
    hits = int(re.search(r"Buffers: shared hit=(\d+)", plan).group(1))
    assert hits < 200, plan


NAIVE_DUE = """SELECT extract(epoch FROM min(run_at) - %(now)s::timestamptz)::float8
FROM pgsched.all_tasks WHERE status IN ('pending', 'retrying') AND queue = ANY(%(queues)s)
  AND task_type = ANY(%(task_types)s) AND attempts < max_attempts
  AND run_at > %(now)s::timestamptz
  AND run_at <= %(now)s::timestamptz + make_interval(secs => %(horizon)s)"""


def test_next_due_in_walks_the_index(conn: psycopg.Connection) -> None:
    """A big scheduled backlog must not make every idle claim scan it: the plain min(run_at)
    aggregate was a seq scan of all future rows (103 ms at 1M rows)."""
    t = conn.execute("SELECT now()").fetchone()[0]  # the time the statements are asked at
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', (i %% 7) - 3, %s::timestamptz + interval '1 day'"
        "        + i * interval '1 ms'"
        " FROM generate_series(1, 50000) i",
        (t,),
    )
    conn.execute("ANALYZE pgsched.tasks")
    params = {"queues": ["default", "other"], "task_types": ["noop"], "horizon": 5.0, "now": t}
    plan = "\n".join(
        r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + Q.next_due_in.sql, params)
    )
    assert "Seq Scan" not in plan, plan
    hits = int(re.search(r"Buffers: shared hit=(\d+)", plan).group(1))  # the top node's
    assert hits < 200, plan  # a few probes per priority, not the 50k rows
    assert Q.next_due_in.run(conn, params) is None  # nothing within 5 s
    due = Q.next_due_in.run(conn, params | {"horizon": 2 * 86400.0})
    assert 86400 < due < 86400.01  # the first task: 1 day and 1 ms after t


@pytest.mark.parametrize("seed", range(5))
def test_next_due_in_matches_a_plain_min(conn: psycopg.Connection, seed: int) -> None:
    """Same answer as the obvious query over mixed queues, types, priorities, statuses,
    exhausted attempts (on finished rows: the schema refuses a ready one without an attempt
    left, revision 0007), past and future run_at."""
    conn.execute("SELECT setseed(%s)", (seed / 10,))
    conn.execute("""INSERT INTO pgsched.tasks
        (task_type, queue, priority, status, run_at, attempts, max_attempts)
        SELECT (ARRAY['noop', 'dummy', 'other'])[1 + floor(random() * 3)::int],
               (ARRAY['default', 'q2', 'q3'])[1 + floor(random() * 3)::int],
               floor(random() * 9)::int - 4,
               x.status,
               now() + (random() * 20 - 5) * interval '1 s',
               CASE WHEN x.status IN ('pending', 'retrying') THEN least(x.a, 2) ELSE x.a END, 3
        FROM generate_series(1, 300),
             LATERAL (SELECT floor(random() * 4)::int AS a,
                             (ARRAY['pending', 'retrying', 'succeeded', 'failed'])
                                 [1 + floor(random() * 4)::int] AS status) x""")
    conn.execute(
        "UPDATE pgsched.tasks SET finished_at = now() WHERE status IN ('succeeded', 'failed')"
    )
    now = conn.execute("SELECT now() + interval '1 s'").fetchone()[0]
    for queues in (["default"], ["q2", "q3"], ["default", "q2", "q3", "none"]):
        for types in (["noop"], ["noop", "dummy"], ["absent"]):
            for horizon in (0.5, 3.0, 30.0):
                p = {"queues": queues, "task_types": types, "horizon": horizon, "now": now}
                want = conn.execute(NAIVE_DUE, p).fetchone()[0]
                got = Q.next_due_in.run(conn, p)
                assert got == pytest.approx(want), (p, got, want)


@pytest.mark.parametrize("analyzed", [True, False])
def test_generic_completion_plan_looks_up_the_key(conn: psycopg.Connection, analyzed: bool) -> None:
    """The completion connections also plan once per session (Connections.completer): a
    batch of 500 finds its rows through the key index, whether the plan was made over an
    analyzed table of 50,000 tasks or over an empty one that they then filled, and joins them
    to the batch by hash, whether it moves them (finished) or updates them (retrying)."""
    fill = "INSERT INTO pgsched.tasks (task_type) SELECT 'noop' FROM generate_series(1, 50000)"
    empty = {
        "worker": "w",
        "now": None,
        "ids": [0],
        "versions": [0],
        "statuses": ["succeeded"],
        "outcomes": ["success"],
        "results": [None],
        "errors": [None],
        "delays": [0.0],
        "durations": [1.0],
    }
    plan_then_fill(conn, Q.complete_tasks, empty, fill, analyzed)
    # Finished tasks move out (a DELETE), retried ones stay (an UPDATE): both find their rows
    # through the key.
    for status, change in (("succeeded", "Delete"), ("retrying", "Update")):
        rows = conn.execute(
            "UPDATE pgsched.tasks SET status = 'running', attempts = 1, version = version + 1,"
            " assigned_worker = 'w', started_at = now()"
            " WHERE id IN (SELECT id FROM pgsched.tasks WHERE status = 'pending'"
            " ORDER BY id DESC LIMIT 500)"
            " RETURNING id, version"
        ).fetchall()
        n = len(rows)
        params = {
            **empty,
            "ids": [r[0] for r in rows],
            "versions": [r[1] for r in rows],
            "statuses": [status] * n,
            "outcomes": ["success" if status == "succeeded" else "failure"] * n,
            "results": [None] * n,
            "errors": [None] * n,
            "delays": [0.0] * n,
            "durations": [1.0] * n,
        }
        plan = explain_generic(conn, Q.complete_tasks, params, "(ANALYZE)")
        assert "tasks_pkey" in plan, plan
        assert "Seq Scan on tasks" not in plan, plan
        assert re.search(rf"{change} on tasks t(_1)? .*rows=500\b", plan), plan
        # The batch against itself in a nested loop compared every pair (500 x 500 rows).
        assert "Nested Loop" not in plan, plan


# -- no JIT, no disabled scan: on every supported server ------------------------------------------
# PostgreSQL compiles a plan whose estimated cost passes jit_above_cost (100,000) on every
# execution where the server has LLVM (100-200 ms). Before 18, a sequential scan disabled by
# enable_seqscan = off costs 1e10 instead of disappearing, which is enough. auto_explain shows
# every plan, nested ones (inside pgsched's functions and triggers) too.


def plans_of(conn: psycopg.Connection, run: Callable[[], object]) -> list[str]:
    """The plans of every statement ``run`` executes on ``conn``, nested ones included."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    for setting, value in (
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_level", "notice"),
        ("client_min_messages", "notice"),
    ):
        conn.execute(f"SET {setting} = {value}")
    run()
    conn.execute("SET auto_explain.log_min_duration = -1")
    return [n for n in notices if "plan:" in n]


def assert_cheap(plans: list[str]) -> None:
    assert plans, "auto_explain showed no plan"
    for plan in plans:
        assert "JIT:" not in plan, plan
        assert "Disabled: true" not in plan, plan  # 18 counts disabled nodes
        costs = [float(c) for c in re.findall(r"cost=[\d.]+\.\.([\d.]+)", plan)]
        assert max(costs, default=0) < 100_000, plan  # below every JIT threshold


@pytest.fixture
def seeded(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("LOAD 'auto_explain'")
    conn.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w', 'h', 1)")
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, priority, run_at)"
        " SELECT 'noop', 'default', (i % 5), now() - i * interval '1 ms'"
        " FROM generate_series(1, 50000) i"
    )
    conn.execute(
        "INSERT INTO pgsched.tasks (task_type, status, finished_at)"
        " SELECT 'noop', 'succeeded', now() FROM generate_series(1, 20000)"
    )
    conn.execute("ANALYZE pgsched.tasks")
    assert conn.execute("SHOW jit").fetchone()[0] == "on"  # the servers' default, kept here
    return conn


@pytest.mark.parametrize("session", ["claim connection", "no startup options"])
def test_worker_statements_never_compile(seeded: psycopg.Connection, session: str) -> None:
    """The claim (with pgsched.claim_limit inside), next_due_in, the completion and the burst
    check, with jit on: on the claim connection's settings but jit (generic plans, no
    sequential scans), and as a pooler that refuses startup options runs them (none set)."""
    conn = seeded
    generic = session == "claim connection"
    if generic:
        for name, value in re.findall(r"-c (\w+)=(\w+)", CLAIM_SESSION):
            if name != "jit":
                conn.execute(f"SET {name} = {value}")
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    claim = claim_params(["default", "other"], 500)
    due = {"queues": ["default"], "task_types": ["noop"], "horizon": 5.0, "now": None}
    limit = {"worker": "w", "weighted": True, "cpu_ceiling": 95.0, "memory_ceiling": 95.0}
    for _ in range(6):  # past psycopg's prepare threshold: the generic plans are in use
        rows = plans_of(conn, lambda: Q.claim_tasks.run(cur, claim))
        assert_cheap(rows)
        assert_cheap(plans_of(conn, lambda: Q.next_due_in.run(cur, due)))
        assert_cheap(plans_of(conn, lambda: Q.claim_limit.run(cur, limit)))
    claimed = Q.claim_tasks.run(cur, claim)
    n = len(claimed)
    done = {
        "worker": "w",
        "now": None,
        "ids": [r["id"] for r in claimed],
        "versions": [r["version"] for r in claimed],
        "statuses": ["succeeded"] * n,
        "outcomes": ["success"] * n,
        "results": [None] * n,
        "errors": [None] * n,
        "delays": [0.0] * n,
        "durations": [1.0] * n,
    }
    assert_cheap(plans_of(conn, lambda: Q.complete_tasks.run(cur, done)))


def test_users_sessions_never_compile(seeded: psycopg.Connection) -> None:
    """What runs in a user's session with JIT on: pgsched.submit(), the insert trigger of a
    plain INSERT, and the workflow trigger when a workflow task is finished from SQL."""
    conn = seeded
    assert_cheap(plans_of(conn, lambda: conn.execute("SELECT pgsched.submit('noop', '{}')")))
    assert_cheap(
        plans_of(conn, lambda: conn.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('x')"))
    )
    wf = conn.execute("INSERT INTO pgsched.workflows (name) VALUES ('wf') RETURNING id").fetchone()[
        0
    ]
    a, b = (
        r[0]
        for r in conn.execute(
            "INSERT INTO pgsched.tasks (task_type, workflow_id, status) VALUES"
            " ('noop', %s, 'running'), ('noop', %s, 'blocked') RETURNING id",
            (wf, wf),
        )
    )
    conn.execute(
        "INSERT INTO pgsched.task_dependencies (task_id, depends_on) VALUES (%s, %s)", (b, a)
    )
    assert_cheap(
        plans_of(
            conn,
            lambda: conn.execute(
                "UPDATE pgsched.tasks SET status = 'succeeded', finished_at = now() WHERE id = %s",
                (a,),
            ),
        )
    )
    assert conn.execute("SELECT status FROM pgsched.all_tasks WHERE id = %s", (b,)).fetchone()[
        0
    ] == ("pending")
