"""Running the CLI in-process (typer's CliRunner) the way every CLI test does."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from pgsched.cli import app as cli_app

cli_app.register_commands()
runner = CliRunner()


def run(dsn: str, *args: str, input: str | None = None) -> Any:
    result = runner.invoke(cli_app.app, ["--dsn", dsn, *args], input=input)
    # Only a deliberate exit is acceptable: any other exception is a traceback for the user.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(dsn: str, *args: str) -> str:
    r = run(dsn, *args)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r.stdout


def refused(dsn: str, *args: str, code: int) -> str:
    """Run a command that must fail: exit ``code``, one ``error:`` line on stderr, no stdout."""
    r = run(dsn, *args)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert r.stdout == ""
    return lines[0]
