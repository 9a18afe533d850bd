"""The error tree: every exception pgsched defines lives in pgsched.errors, which imports nothing
of pgsched; refusals of the task registry are ValidationErrors naming the field; a built-in
task's failure is stored as its own message."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pgsched
from pgsched import errors
from pgsched.builtins import ShellRunner
from pgsched.config import Settings
from pgsched.registry import Registry, TaskContext
from pgsched.worker.outcome import describe

PACKAGE = Path(pgsched.__file__).parent

# The one exception defined elsewhere: FastAPI's body parsing passes an HTTPException on, so
# this one must be one, and pgsched.errors imports no web framework.
ELSEWHERE = {("pgsched.api.limits", "TooLarge")}


def test_errors_imports_nothing_of_pgsched() -> None:
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [m for m in imported if m and m.split(".")[0] == "pgsched"], imported
    # And at run time: importing it loads no other module of pgsched.
    code = (
        "import sys, pgsched.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('pgsched')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pgsched', 'pgsched.errors']"


def _modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages([str(PACKAGE)], prefix="pgsched.")
        if m.name != "pgsched.__main__"  # importing it runs the CLI
    ]
    assert len(names) > 50, names
    return names


def test_every_exception_class_of_pgsched_is_defined_in_errors() -> None:
    defined_elsewhere = set()
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name != "pgsched.errors":
                defined_elsewhere.add((name, cls_name))
    assert defined_elsewhere == ELSEWHERE


def test_the_old_import_paths_still_give_the_same_classes() -> None:
    from pgsched.cron import CronError
    from pgsched.registry import TaskTimeout
    from pgsched.sql import SqlLoadError

    assert TaskTimeout is errors.TaskTimeout  # public: pgsched.registry.__all__
    assert CronError is errors.CronError
    assert SqlLoadError is errors.SqlLoadError


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"max_attempts": 0}, "max_attempts", "max_attempts: must be between 1 and 1000"),
        ({"max_attempts": 1001}, "max_attempts", "max_attempts: must be between 1 and 1000"),
        ({"timeout": 0}, "timeout", "timeout: must be positive"),
        ({"backoff_base": -1.0}, "backoff_base", "backoff_base: must be positive"),
        ({"backoff_cap": float("-inf")}, "backoff_cap", "backoff_cap: must be positive"),
    ],
)
def test_the_registry_refuses_bad_options_with_a_validation_error(
    options: dict[str, float], field: str, message: str
) -> None:
    reg = Registry()
    with pytest.raises(errors.ValidationError) as caught:
        reg.task("t", **options)  # type: ignore[arg-type]
    assert str(caught.value) == message and caught.value.field == field
    assert caught.value.exit_code == 2 and "t" not in reg


def test_progress_out_of_range_is_a_validation_error_and_saves_nothing() -> None:
    saved: list[object] = []
    ctx = TaskContext({"id": 1, "version": 1}, _saver=lambda *a: saved.append(a))
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(errors.ValidationError, match=r"^progress: must be between 0 and 1$"):
            ctx.progress(bad)
    assert saved == []
    ctx.progress(1)
    assert saved == [(1, 1, 1.0, False, None)]


def test_a_failed_shell_command_is_stored_as_its_own_message() -> None:
    run = ShellRunner(Settings())
    ctx = TaskContext({"queue": "shell"})
    with pytest.raises(errors.FailedWithResult) as caught:
        run({"command": "echo oops >&2; exit 3"}, ctx, threading.Event())
    assert caught.value.result["exit_code"] == 3
    # The message names the task type; a class name in front of it would say nothing more.
    assert describe(caught.value) == "shell: exit code 3: oops"
    assert describe(RuntimeError("dummy: failing")) == "RuntimeError: dummy: failing"
    assert describe(errors.DeliveryFailed("POST x: 503")) == "DeliveryFailed: POST x: 503"
