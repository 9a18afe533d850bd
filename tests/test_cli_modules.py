"""The CLI's modules: a command module imports the shared ones (common, live, workflow) and no
other command module; pgsched/cli/app.py alone assembles them."""

from __future__ import annotations

import ast
from pathlib import Path

import pgsched.cli

CLI = Path(pgsched.cli.__file__).parent
SHARED = {"common", "live", "workflow"}  # helpers: they define no command


def _cli_imports(path: Path) -> set[str]:
    """The pgsched.cli modules that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pgsched.cli":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgsched.cli."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("pgsched.cli.")}
    return found


def test_no_command_module_imports_another() -> None:
    modules = {p.stem: p for p in CLI.glob("*.py") if p.stem not in ("__init__", "app")}
    commands = set(modules) - SHARED
    assert {"tasks", "top", "demo", "workers", "dlq"} <= commands
    for name in sorted(modules):
        crossing = _cli_imports(modules[name]) & commands
        assert not crossing, f"pgsched/cli/{name}.py imports the command module(s) {crossing}"
    assert "app" not in set().union(*(_cli_imports(p) for p in modules.values()))


def test_the_shared_modules_define_no_command() -> None:
    for name in SHARED:
        text = (CLI / f"{name}.py").read_text()
        assert ".command(" not in text and "typer.Typer(" not in text, name
