"""Workflows (DAGs): tasks that run once every parent has succeeded.

    from pgsched.workflows import submit_workflow
    wf_id = submit_workflow(dsn, {
        "name": "etl",
        "tasks": [
            {"name": "extract", "task_type": "http", "payload": {"url": "https://..."}},
            {"name": "transform", "task_type": "dummy", "depends_on": ["extract"]},
            {"name": "load", "task_type": "dummy", "depends_on": ["transform"]},
        ],
    })

Also accepted: ``{"dagName": ..., "description": ..., "tasks": [{"taskName", "type",
"dependencies", "payload"}]}``.
Everything is checked before a row is written (duplicate names, unknown dependencies, cycles),
and the workflow is inserted by one statement. Progress happens in the database: a trigger on
``pgsched.tasks`` unblocks children, cancels the descendants of a failed task and keeps the
workflow's status, whoever completes the task.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgsched.db import check_schema, connect, translated
from pgsched.errors import CycleError, InvalidState, NotFound, UsageError, ValidationError
from pgsched.models import (
    MAX_ATTEMPTS_MAX,
    JsonPayload,
    MaxAttempts,
    Name,
    NoNul,
    Priority,
    QueueName,
    TaskTypeName,
    TextDuration,
    builtin_type_name,
)
from pgsched.sql import Q

MAX_WORKFLOW_TASKS = 10_000  # tasks in one workflow


class WorkflowTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    task_type: TaskTypeName
    payload: JsonPayload = Field(default_factory=dict)
    queue: QueueName | None = None
    priority: Priority | None = None
    max_attempts: MaxAttempts | None = None
    timeout: TextDuration | None = None
    depends_on: list[str] = Field(default_factory=list)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _deps(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else (v or [])


class WorkflowDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1), NoNul]
    description: Annotated[str, Field(max_length=10_000), NoNul] | None = None
    # One statement inserts the whole DAG: a bound keeps one submission from holding a
    # transaction (and the workflow trigger's work) without limit.
    tasks: list[WorkflowTask] = Field(min_length=1, max_length=MAX_WORKFLOW_TASKS)


# -- reading and checking definitions -----------------------------------------------------------

_ALT_TASK_KEYS = {"taskName": "name", "type": "task_type", "dependencies": "depends_on"}


def normalize(data: Mapping[str, Any]) -> dict[str, Any]:
    """The native shape, from either the native or the ``dagName``/``taskName`` shape."""
    if not isinstance(data, Mapping):
        raise ValidationError("workflow: expected a mapping with name and tasks")
    if "dagName" not in data:
        return dict(data)
    out = {k: v for k, v in data.items() if k != "dagName"}
    out["name"] = data["dagName"]
    tasks = []
    for t in data.get("tasks") or []:
        if isinstance(t, Mapping):
            t = {_ALT_TASK_KEYS.get(k, k): v for k, v in t.items()}
            if isinstance(t.get("task_type"), str):
                t["task_type"] = builtin_type_name(t["task_type"])
        tasks.append(t)
    out["tasks"] = tasks
    return out


def parse_workflow(data: Mapping[str, Any] | WorkflowDef) -> WorkflowDef:
    """Validate a definition: fields, duplicate names, unknown dependencies, cycles."""
    from pydantic import ValidationError as PydanticError

    if isinstance(data, WorkflowDef):
        wf = data
    else:
        try:
            wf = WorkflowDef.model_validate(normalize(data))
        except PydanticError as e:
            err = e.errors()[0]
            loc = list(err["loc"])
            where = "workflow"
            if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
                tasks = data.get("tasks") or []
                raw = tasks[loc[1]] if loc[1] < len(tasks) else {}
                tname = raw.get("name") or raw.get("taskName") if isinstance(raw, Mapping) else None
                where = f"task {tname!r}" if tname else f"task #{loc[1] + 1}"
                loc = loc[2:]
            field = ".".join(str(p) for p in loc)
            msg = str(err["msg"]).removeprefix("Value error, ")
            if field and msg.startswith((field + ".", field + "[")):
                field = ""  # the message names the place inside the field
            raise ValidationError(f"{where}: {field + ': ' if field else ''}{msg}") from None
    seen: set[str] = set()
    for t in wf.tasks:
        if t.name in seen:
            raise ValidationError(f"workflow: duplicate task name {t.name!r}", "name")
        seen.add(t.name)
    for t in wf.tasks:
        for d in t.depends_on:
            if d not in seen:
                raise ValidationError(
                    f"task {t.name!r}: depends on unknown task {d!r}", "depends_on"
                )
    cycle = find_cycle({t.name: list(dict.fromkeys(t.depends_on)) for t in wf.tasks})
    if cycle:
        raise CycleError(cycle)
    return wf


def load_workflow(path: Path | str) -> WorkflowDef:
    """Read a workflow file (YAML, or JSON: YAML reads both) and validate it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise UsageError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {str(e).splitlines()[0]}"
        ) from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to read") from None
    try:
        return parse_workflow(data)
    except CycleError:
        raise
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in ``node -> parents`` as a path of names in edge order ending where it starts
    (``['a', 'b', 'c', 'a']``: a runs before b, b before c, c before a), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for root in graph:
        if color[root] != WHITE:
            continue
        # Iterative DFS over parent edges; `stack` holds (node, iterator over its parents).
        path = [root]
        color[root] = GREY
        stack: list[Iterator[str]] = [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = BLACK
                stack.pop()
                continue
            if color.get(nxt, BLACK) == GREY:
                cyc = [*path[path.index(nxt) :], nxt]
                return cyc[::-1]  # parents-walk reversed: the order in which tasks would run
            if color.get(nxt, BLACK) == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return None


# -- database ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _connection(conn_or_dsn: psycopg.Connection[Any] | str) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(conn_or_dsn, str):
        with translated():
            c = connect(conn_or_dsn)
        with c, translated(c):
            check_schema(c)
            yield c
    else:
        with translated(conn_or_dsn):
            yield conn_or_dsn


def submit_workflow(
    conn_or_dsn: psycopg.Connection[Any] | str, definition: Mapping[str, Any] | WorkflowDef
) -> int:
    """Validate, then insert the workflow in one statement; returns its id."""
    wf = parse_workflow(definition)
    children = [t.name for t in wf.tasks for _ in dict.fromkeys(t.depends_on)]
    parents = [d for t in wf.tasks for d in dict.fromkeys(t.depends_on)]
    params = {
        "name": wf.name,
        "description": wf.description,
        "nodes": [t.name for t in wf.tasks],
        "task_types": [t.task_type for t in wf.tasks],
        "payloads": [Jsonb(t.payload) for t in wf.tasks],
        "queues": [t.queue for t in wf.tasks],
        "priorities": [t.priority for t in wf.tasks],
        "max_attempts": [t.max_attempts for t in wf.tasks],
        "timeouts": [t.timeout for t in wf.tasks],
        "statuses": ["blocked" if t.depends_on else "pending" for t in wf.tasks],
        "children": children,
        "parents": parents,
    }
    with _connection(conn_or_dsn) as c, c.transaction(), c.cursor(row_factory=tuple_row) as cur:
        Q.workflow_watch_client.run(cur)  # a client killed mid-insert: the insert stops too
        return int(Q.workflow_insert.run(cur, params))


def get_workflow(conn_or_dsn: psycopg.Connection[Any] | str, workflow_id: int) -> dict[str, Any]:
    """The workflow row with its tasks (each with ``depends_on`` and ``layer``)."""
    with _connection(conn_or_dsn) as c, c.transaction(), c.cursor(row_factory=dict_row) as cur:
        Q.workflow_watch_client.run(cur)
        wf: dict[str, Any] | None = Q.workflow_get.run(cur, {"id": workflow_id})
        if wf is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        tasks = Q.workflow_tasks.run(cur, {"id": workflow_id})
    depth = layers({t["name"]: t["depends_on"] for t in tasks})
    for t in tasks:
        t["layer"] = depth.get(t["name"], 0)
    wf["tasks"] = tasks
    return wf


def layers(graph: Mapping[str, list[str]]) -> dict[str, int]:
    """Longest distance from a root for each node (roots are layer 0), in one pass over the
    graph in topological order. A definition with a cycle is refused, but dependency rows
    written from SQL can close one: its nodes, and those after them, go one layer past the
    rest, so that reading such a workflow does not fail."""
    waiting = {n: {p for p in parents if p in graph} for n, parents in graph.items()}
    children: dict[str, list[str]] = {}
    for n, parents in waiting.items():
        for p in parents:
            children.setdefault(p, []).append(n)
    ready = [n for n, parents in waiting.items() if not parents]
    out: dict[str, int] = {}
    while ready:
        n = ready.pop()
        out[n] = 1 + max((out[p] for p in graph[n] if p in out), default=-1)
        for c in children.get(n, []):
            waiting[c].discard(n)
            if not waiting[c]:
                ready.append(c)
    after = 1 + max(out.values(), default=-1)
    return {n: out.get(n, after) for n in graph}


def cancel_workflow(conn_or_dsn: psycopg.Connection[Any] | str, workflow_id: int) -> dict[str, int]:
    """Cancel every unfinished task; running ones get a cancel request. Returns the counts."""
    with _connection(conn_or_dsn) as c, c.transaction(), c.cursor(row_factory=dict_row) as cur:
        wf = Q.workflow_lock.run(cur, {"id": workflow_id})
        if wf is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        Q.workflow_mark_cancelled.run(cur, {"id": workflow_id})
        # Set-based: the progress trigger stands aside for this transaction (every unfinished
        # task is cancelled here anyway), and the workflow is settled once, below.
        Q.workflow_watch_client.run(cur)
        Q.workflow_bulk.run(cur, {"on": "on"})
        counts = Q.workflow_cancel_tasks.run(cur, {"id": workflow_id})
        Q.workflow_bulk.run(cur, {"on": "off"})
        Q.workflow_settle.run(cur, {"id": workflow_id})
        if not counts["cancelled"] and not counts["cancel_requested"]:
            raise InvalidState(f"cannot cancel workflow {workflow_id}: it is {wf['status']}")
    return dict(counts)


def retry_workflow(
    conn_or_dsn: psycopg.Connection[Any] | str, workflow_id: int, *, attempts: int = 3
) -> dict[str, int]:
    """Run the failed and cancelled tasks again (with ``attempts`` more tries each)."""
    if not 1 <= attempts <= MAX_ATTEMPTS_MAX:
        raise ValidationError(f"attempts: must be between 1 and {MAX_ATTEMPTS_MAX}", "attempts")
    with _connection(conn_or_dsn) as c, c.transaction(), c.cursor(row_factory=dict_row) as cur:
        wf = Q.workflow_lock.run(cur, {"id": workflow_id})
        if wf is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        Q.workflow_watch_client.run(cur)
        res = Q.workflow_retry.run(cur, {"id": workflow_id, "extra": attempts})
        if not res["retried"]:
            raise InvalidState(
                f"cannot retry workflow {workflow_id}: it is {wf['status']} "
                "with no failed or cancelled task"
            )
    return {"retried": res["retried"], "pending": res["pending"]}


def parent_results(conn: psycopg.Connection[Any], task_id: int) -> dict[str, Any]:
    """{parent node name: its result} for a workflow task (empty outside workflows)."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return {r["name"]: r["result"] for r in Q.parent_results.run(cur, {"id": task_id})}
