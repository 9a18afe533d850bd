"""End to end: an in-process pgsched.worker.Worker runs a diamond workflow to completion; each
task sees its parents' results, and a failure upstream cancels what depends on it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.registry import Registry
from pgsched.workflows import get_workflow, submit_workflow
from tests.conftest import FAST, wait_until


def _registry(seen: list[tuple[str, dict]]) -> Registry:
    reg = Registry()

    @reg.task("step")
    def step(payload: Any, ctx: Any) -> dict[str, Any]:
        parents = ctx.parent_results()
        seen.append((payload["node"], parents))
        if payload.get("fail"):
            raise ValueError("boom")
        return {"node": payload["node"], "sum": 1 + sum(p["sum"] for p in parents.values())}

    return reg


def _diamond(fail_b: bool = False) -> dict[str, Any]:
    def t(name: str, deps: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "task_type": "step",
            "payload": {"node": name, **extra},
            "depends_on": deps,
            "max_attempts": 1,
        }

    return {
        "name": "diamond",
        "tasks": [t("a", []), t("b", ["a"], fail=fail_b), t("c", ["a"]), t("d", ["b", "c"])],
    }


@pytest.mark.parametrize("fail_b", [False, True])
def test_worker_runs_a_diamond(dsn: str, fail_b: bool) -> None:
    from pgsched.worker import Worker

    seen: list[tuple[str, dict]] = []
    wf = submit_workflow(dsn, _diamond(fail_b))
    w = Worker(dsn, FAST, registry=_registry(seen), concurrency=4).start()
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            wait_until(
                lambda: c.execute(
                    "SELECT status <> 'running' AND finished_at IS NOT NULL "
                    "FROM pgsched.workflows WHERE id = %s",
                    (wf,),
                ).fetchone()[0],
                timeout=20,
                message="the workflow to finish",
            )
    finally:
        w.stop(timeout=15)
    shown = get_workflow(dsn, wf)
    status = {t["name"]: t["status"] for t in shown["tasks"]}
    order = [n for n, _ in seen]
    if not fail_b:
        assert shown["status"] == "succeeded"
        assert set(status.values()) == {"succeeded"}
        assert order[0] == "a" and order[-1] == "d" and sorted(order) == ["a", "b", "c", "d"]
        d = next(t for t in shown["tasks"] if t["name"] == "d")
        assert d["result"] == {"node": "d", "sum": 5}  # a=1, b=c=2, d=1+2+2
        assert dict(seen)["d"].keys() == {"b", "c"}
    else:
        assert shown["status"] == "failed"
        assert status == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": "cancelled"}
        assert "d" not in order
