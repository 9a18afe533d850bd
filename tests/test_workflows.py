"""Workflows: validation (cycles against graphlib), submission in one statement, the progress
trigger driven by plain SQL completions, cancel, retry, parent results."""

from __future__ import annotations

import graphlib
import itertools
import json
import random
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from pgsched.errors import CycleError, InvalidState, ValidationError
from pgsched.workflows import (
    cancel_workflow,
    find_cycle,
    get_workflow,
    layers,
    load_workflow,
    parent_results,
    parse_workflow,
    retry_workflow,
    submit_workflow,
)
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
DIAMOND = {
    "name": "diamond",
    "tasks": [
        {"name": "a", "task_type": "noop"},
        {"name": "b", "task_type": "noop", "depends_on": ["a"]},
        {"name": "c", "task_type": "noop", "depends_on": ["a"]},
        {"name": "d", "task_type": "noop", "depends_on": ["b", "c"]},
    ],
}


# -- pure: cycle detection equals a reference topological sort ----------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(1, 12))
    names = [f"n{i}" for i in range(n)]
    edges = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=25))
    g: dict[str, list[str]] = {x: [] for x in names}
    for child, parent in edges:
        if parent not in g[child]:
            g[child].append(parent)
    return g


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_find_cycle_agrees_with_graphlib(g: dict[str, list[str]]) -> None:
    try:
        list(graphlib.TopologicalSorter(g).static_order())
        has_cycle = False
    except graphlib.CycleError:
        has_cycle = True
    cycle = find_cycle(g)
    assert (cycle is not None) == has_cycle
    if cycle:
        assert cycle[0] == cycle[-1] and len(set(cycle[:-1])) == len(cycle) - 1
        for before, after in itertools.pairwise(cycle):
            assert before in g[after]  # `after` depends on `before`


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_layers_are_longest_paths_and_a_cycle_does_not_break_them(g: dict[str, list[str]]) -> None:
    """Each node's layer is one past its deepest parent's (roots 0). Dependency rows written
    from SQL can close a cycle, which `status --workflow` failed on: every node still gets a
    layer, those on or after a cycle one past every other."""
    depth = layers(g)
    assert set(depth) == set(g)
    up = {n: _ancestors(g, n) for n in g}
    stuck = {n for n in g if any(m in up[m] for m in up[n] | {n})}
    free = set(g) - stuck
    for n in free:
        assert depth[n] == 1 + max((depth[p] for p in g[n]), default=-1)
    assert {depth[n] for n in stuck} <= {1 + max((depth[n] for n in free), default=-1)}


def _ancestors(g: dict[str, list[str]], node: str) -> set[str]:
    seen: set[str] = set()
    todo = [node]
    while todo:
        for p in g[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def test_status_of_a_workflow_whose_dependencies_close_a_cycle_from_sql(
    conn: psycopg.Connection, dsn: str
) -> None:
    from tests.cli import run

    wf = submit_workflow(conn, DIAMOND)
    ids = dict(conn.execute("SELECT workflow_node, id FROM pgsched.all_tasks").fetchall())
    conn.execute(
        "INSERT INTO pgsched.task_dependencies (task_id, depends_on) VALUES (%s, %s)",
        (ids["a"], ids["d"]),
    )
    r = run(dsn, "status", "--workflow", str(wf), "--json")
    assert r.exit_code == 0, r.stderr
    assert {t["name"]: t["layer"] for t in json.loads(r.stdout)["tasks"]} == dict.fromkeys(
        "abcd", 0
    )
    assert run(dsn, "status", "--workflow", str(wf)).exit_code == 0


def test_cycle_error_names_the_cycle() -> None:
    wf = {
        "name": "loop",
        "tasks": [
            {"name": "a", "task_type": "noop", "depends_on": ["c"]},
            {"name": "b", "task_type": "noop", "depends_on": ["a"]},
            {"name": "c", "task_type": "noop", "depends_on": ["b"]},
        ],
    }
    with pytest.raises(CycleError) as info:
        parse_workflow(wf)
    assert str(info.value) == "workflow has a cycle: a -> b -> c -> a"
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([{"name": "a", "task_type": "x"}, {"name": "a", "task_type": "y"}], "duplicate task"),
        ([{"name": "a", "task_type": "x", "depends_on": ["zz"]}], "unknown task 'zz'"),
        ([{"name": "a", "task_type": "x", "depends_on": ["a"]}], "cycle: a -> a"),
        ([{"name": "a"}], "task 'a': task_type: Field required"),
        ([{"name": "a", "task_type": "x", "colour": 1}], "task 'a': colour"),
        ([], "tasks"),
    ],
)
def test_invalid_definitions(tasks: list, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_workflow({"name": "w", "tasks": tasks})


def test_example_files_parse_in_both_shapes() -> None:
    y = load_workflow(ROOT / "examples" / "workflow.yaml")
    j = load_workflow(ROOT / "examples" / "workflow.json")
    assert len(y.tasks) >= 3 and len(j.tasks) >= 3
    raw = json.loads((ROOT / "examples" / "workflow.json").read_text())
    assert "dagName" in raw
    assert any(t.depends_on for t in j.tasks)


# -- database -----------------------------------------------------------------------------------


def _statuses(conn: psycopg.Connection, wf_id: int) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT workflow_node, status FROM pgsched.all_tasks WHERE workflow_id = %s", (wf_id,)
        ).fetchall()
    )


def _wf_status(conn: psycopg.Connection, wf_id: int) -> str:
    return conn.execute("SELECT status FROM pgsched.workflows WHERE id = %s", (wf_id,)).fetchone()[
        0
    ]


def _finish(conn: psycopg.Connection, wf_id: int, node: str, status: str, result=None) -> None:
    """What a worker does, in plain SQL: claim (running), then complete."""
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'running', attempts = attempts + 1, "
        "version = version + 1 WHERE workflow_id = %s AND workflow_node = %s",
        (wf_id, node),
    )
    conn.execute(
        "UPDATE pgsched.tasks SET status = %s, result = %s, finished_at = now(), "
        "version = version + 1 WHERE workflow_id = %s AND workflow_node = %s",
        (status, json.dumps(result) if result is not None else None, wf_id, node),
    )


def _run_to_completion(conn: psycopg.Connection, wf_id: int) -> list[str]:
    """Claim every pending task of the workflow, mark it succeeded, repeat; returns the order."""
    order: list[str] = []
    while True:
        claimed = conn.execute(
            "UPDATE pgsched.tasks SET status = 'running', attempts = attempts + 1, "
            "version = version + 1 WHERE workflow_id = %s AND status = 'pending' "
            "RETURNING id, workflow_node",
            (wf_id,),
        ).fetchall()
        if not claimed:
            return order
        random.shuffle(claimed)
        for task_id, node in claimed:
            conn.execute(
                "UPDATE pgsched.tasks SET status = 'succeeded', finished_at = now(), "
                "result = jsonb_build_object('node', workflow_node), version = version + 1 "
                "WHERE id = %s",
                (task_id,),
            )
            order.append(node)


def test_diamond_runs_in_order_and_passes_results(conn: psycopg.Connection, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched")
        wf = submit_workflow(conn, DIAMOND)
        assert _statuses(conn, wf) == {
            "a": "pending",
            "b": "blocked",
            "c": "blocked",
            "d": "blocked",
        }
        assert [n.payload for n in listener.notifies(timeout=0.3, stop_after=1)] == ["default"]
        _finish(conn, wf, "a", "succeeded", {"rows": 3})
        assert _statuses(conn, wf)["b"] == "pending"
        # The unblocking wakes a worker, in the same transaction as the completion.
        assert [n.payload for n in listener.notifies(timeout=0.3, stop_after=1)] == ["default"]
    _finish(conn, wf, "b", "succeeded", "B")
    assert _statuses(conn, wf)["d"] == "blocked"
    _finish(conn, wf, "c", "succeeded", "C")
    assert _statuses(conn, wf)["d"] == "pending"
    d_id = conn.execute(
        "SELECT id FROM pgsched.all_tasks WHERE workflow_id = %s AND workflow_node = 'd'", (wf,)
    ).fetchone()[0]
    assert parent_results(conn, d_id) == {"b": "B", "c": "C"}
    assert _wf_status(conn, wf) == "running"
    _finish(conn, wf, "d", "succeeded")
    assert _wf_status(conn, wf) == "succeeded"
    shown = get_workflow(conn, wf)
    assert shown["finished_at"] is not None
    assert {t["name"]: t["layer"] for t in shown["tasks"]} == {"a": 0, "b": 1, "c": 1, "d": 2}


def test_failure_cancels_descendants_and_retry_reruns_them(conn: psycopg.Connection) -> None:
    wf = submit_workflow(
        conn,
        {
            "name": "f",
            "tasks": [
                {"name": "a", "task_type": "noop"},
                {"name": "b", "task_type": "noop", "depends_on": "a"},
                {"name": "c", "task_type": "noop", "depends_on": ["b"]},
                {"name": "side", "task_type": "noop"},
            ],
        },
    )
    _finish(conn, wf, "a", "succeeded")
    _finish(conn, wf, "b", "failed")
    conn.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts) "
        "SELECT id, queue, task_type, payload, attempts FROM pgsched.all_tasks "
        "WHERE workflow_id = %s AND workflow_node = 'b'",
        (wf,),
    )
    assert _statuses(conn, wf) == {
        "a": "succeeded",
        "b": "failed",
        "c": "cancelled",
        "side": "pending",
    }
    err = conn.execute(
        "SELECT last_error FROM pgsched.all_tasks WHERE workflow_id = %s AND workflow_node = 'c'",
        (wf,),
    ).fetchone()[0]
    assert err == "upstream failed"
    assert _wf_status(conn, wf) == "failed"
    _finish(conn, wf, "side", "succeeded")
    assert _wf_status(conn, wf) == "failed"

    assert retry_workflow(conn, wf) == {"retried": 2, "pending": 1}
    assert _statuses(conn, wf) == {
        "a": "succeeded",
        "b": "pending",
        "c": "blocked",
        "side": "succeeded",
    }
    assert conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0] == 0
    assert _wf_status(conn, wf) == "running"
    assert _run_to_completion(conn, wf) == ["b", "c"]
    assert _wf_status(conn, wf) == "succeeded"
    with pytest.raises(InvalidState):
        retry_workflow(conn, wf)


def test_cancel_workflow(conn: psycopg.Connection) -> None:
    wf = submit_workflow(conn, DIAMOND)
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'running', attempts = 1 "
        "WHERE workflow_id = %s AND workflow_node = 'a'",
        (wf,),
    )
    assert cancel_workflow(conn, wf) == {"cancelled": 3, "cancel_requested": 1}
    with psycopg.ClientCursor(conn) as cur:
        row = cur.execute(
            "SELECT status, cancel_requested FROM pgsched.all_tasks "
            "WHERE workflow_id = %s AND workflow_node = 'a'",
            (wf,),
        ).fetchone()
    assert row == ("running", True)
    assert _wf_status(conn, wf) == "cancelled"
    # The worker honours the request: the workflow is then finished, still cancelled.
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'cancelled', version = version + 1 "
        "WHERE workflow_id = %s AND workflow_node = 'a'",
        (wf,),
    )
    finished = conn.execute(
        "SELECT status, finished_at IS NOT NULL FROM pgsched.workflows WHERE id = %s", (wf,)
    ).fetchone()
    assert finished == ("cancelled", True)
    with pytest.raises(InvalidState):
        cancel_workflow(conn, wf)
    assert retry_workflow(conn, wf)["retried"] == 4


def test_a_large_workflow_is_cancelled_and_settled_set_based(conn: psycopg.Connection) -> None:
    """Revision 0008: the cancel's statement runs the progress trigger for none of its rows
    and settles the workflow itself (a finished time as soon as nothing is unfinished);
    another transaction's completions still run it."""
    n = 2000
    chain = {
        "name": "chain",
        "tasks": [
            {"name": f"t{i}", "task_type": "noop", "depends_on": [f"t{i - 1}"] if i else []}
            for i in range(n)
        ],
    }
    wf = submit_workflow(conn, chain)
    assert cancel_workflow(conn, wf) == {"cancelled": n, "cancel_requested": 0}
    row = conn.execute(
        "SELECT status, finished_at IS NOT NULL AS done FROM pgsched.workflows WHERE id = %s",
        (wf,),
    ).fetchone()
    assert tuple(row) == ("cancelled", True)
    by_status = conn.execute(
        "SELECT status, count(*) FROM pgsched.all_tasks WHERE workflow_id = %s GROUP BY status",
        (wf,),
    ).fetchall()
    assert [tuple(r) for r in by_status] == [("cancelled", n)]
    # Outside that transaction the trigger runs again: a failure cancels what is below it.
    other = submit_workflow(conn, DIAMOND)
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'failed', version = version + 1"
        " WHERE workflow_id = %s AND workflow_node = 'a'",
        (other,),
    )
    assert _wf_status(conn, other) == "failed"
    shown = get_workflow(conn, wf)
    assert [t["depends_on"] for t in shown["tasks"][:3]] == [[], ["t0"], ["t1"]]
    assert shown["tasks"][-1]["layer"] == n - 1


def test_cycle_refused_with_no_rows(conn: psycopg.Connection) -> None:
    bad = {
        "name": "bad",
        "tasks": [
            {"name": "x", "task_type": "noop", "depends_on": ["y"]},
            {"name": "y", "task_type": "noop", "depends_on": ["x"]},
        ],
    }
    with pytest.raises(CycleError):
        submit_workflow(conn, bad)
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM pgsched.workflows), (SELECT count(*) FROM pgsched.all_tasks)"
    ).fetchone()
    assert counts == (0, 0)


def test_alternate_json_shape(conn: psycopg.Connection) -> None:
    wf = submit_workflow(
        conn,
        {
            "dagName": "alt",
            "tasks": [
                {"taskName": "one", "type": "noop", "payload": {"k": 1}},
                {"taskName": "two", "type": "noop", "dependencies": ["one"]},
            ],
        },
    )
    shown = get_workflow(conn, wf)
    assert shown["name"] == "alt"
    assert [(t["name"], t["depends_on"]) for t in shown["tasks"]] == [("one", []), ("two", ["one"])]


# -- random DAGs against the real server --------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 30))
    tasks = []
    for i in range(n):
        parents = (
            draw(st.lists(st.integers(0, i - 1), max_size=min(i, 4), unique=True)) if i else []
        )
        tasks.append(
            {"name": f"t{i}", "task_type": "noop", "depends_on": [f"t{p}" for p in parents]}
        )
    order = draw(st.permutations(range(n)))
    return {"name": "random", "tasks": [tasks[i] for i in order]}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dag=dags(), seed=st.integers(0, 2**16))
def test_random_dags_run_each_task_once_after_its_parents(
    conn: psycopg.Connection, dag: dict, seed: int
) -> None:
    random.seed(seed)
    wf = submit_workflow(conn, dag)
    order = _run_to_completion(conn, wf)
    assert sorted(order) == sorted(t["name"] for t in dag["tasks"])  # each exactly once
    pos = {name: i for i, name in enumerate(order)}
    for t in dag["tasks"]:
        for p in t["depends_on"]:
            assert pos[p] < pos[t["name"]]
    assert _wf_status(conn, wf) == "succeeded"


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dag=dags(), data=st.data())
def test_random_graphs_with_a_cycle_write_nothing(
    conn: psycopg.Connection, dag: dict, data: st.DataObject
) -> None:
    tasks = dag["tasks"]
    names = [t["name"] for t in tasks]
    # Close a cycle: an edge from a node back to one of its ancestors (or itself).
    by = {t["name"]: t for t in tasks}
    child = data.draw(st.sampled_from(names))
    ancestors, todo = set(), [child]
    while todo:
        for p in by[todo.pop()]["depends_on"]:
            if p not in ancestors:
                ancestors.add(p)
                todo.append(p)
    target = data.draw(st.sampled_from(sorted(ancestors | {child})))
    by[target]["depends_on"] = [*by[target]["depends_on"], child]
    before = conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0]
    with pytest.raises(CycleError):
        submit_workflow(conn, dag)
    assert conn.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == before


def test_concurrent_parent_completions_unblock_the_child(dsn: str) -> None:
    """Two parents finishing in concurrent transactions: the child is not left blocked."""
    import threading

    with psycopg.connect(dsn, autocommit=True) as c:
        wf = submit_workflow(c, DIAMOND)
        _finish(c, wf, "a", "succeeded")
        c.execute(
            "UPDATE pgsched.tasks SET status = 'running' WHERE workflow_id = %s "
            "AND workflow_node IN ('b', 'c')",
            (wf,),
        )
    first_done = threading.Event()
    errors: list[BaseException] = []

    def complete(node: str, hold: threading.Event | None) -> None:
        try:
            with psycopg.connect(dsn) as c2:
                c2.execute(
                    "UPDATE pgsched.tasks SET status = 'succeeded', version = version + 1 "
                    "WHERE workflow_id = %s AND workflow_node = %s",
                    (wf, node),
                )
                if hold is not None:
                    first_done.set()
                    hold.wait(10)
                c2.commit()
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    release = threading.Event()
    t1 = threading.Thread(target=complete, args=("b", release))
    t1.start()
    first_done.wait(10)
    # c's completion starts while b's transaction is still open (uncommitted), then waits.
    t2 = threading.Thread(target=complete, args=("c", None))
    t2.start()
    with psycopg.connect(dsn, autocommit=True) as c:
        wait_until(
            lambda: c.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0],
            message="c's completion waiting for b's",
        )
    release.set()
    t1.join(10)
    t2.join(10)
    assert not errors
    with psycopg.connect(dsn, row_factory=dict_row) as c:
        st_ = c.execute(
            "SELECT status FROM pgsched.all_tasks WHERE workflow_id = %s AND workflow_node = 'd'",
            (wf,),
        ).fetchone()
    assert st_["status"] == "pending"
