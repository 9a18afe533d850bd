"""The root typer app: global options, command groups, and the one place errors are printed."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pgsched.cli.common import err_console, error_line, state, with_server_hint

app = typer.Typer(
    name="pgsched",
    help="A distributed task scheduler where PostgreSQL is the only moving part.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from pgsched import __version__

        print(f"pgsched {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    dsn: str = typer.Option(
        None,
        "--dsn",
        help="Database URL (else PGSCHED_DSN, DATABASE_URL, "
        "config file, or the embedded local server).",
    ),
    config: Path = typer.Option(None, "--config", help="Config file (pgsched.toml / .yaml)."),
    profile: str = typer.Option(None, "--profile", help="Named profile in the config file."),
    home: Path = typer.Option(None, "--home", help="Embedded server directory [./.pgsched]."),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    state.reset({"dsn": dsn, "home": home}, str(config) if config else None, profile)


_registered = False


def register_commands() -> None:
    """Add every command to ``app``, in the order ``pgsched --help`` lists them: each command
    module holds its own commands (``commands``) and groups and imports no other command
    module; this is the one place that knows them all. main() calls it, and so does whoever
    invokes ``app`` in-process (tests). Idempotent."""
    global _registered
    if _registered:
        return
    from pgsched.cli import (
        admin,
        alerts,
        demo,
        dlq,
        doctor,
        schedules,
        serve,
        tasks,
        top,
        worker,
        workers,
    )

    for module in (admin, demo, doctor, tasks, schedules, serve, top, worker):
        app.add_typer(module.commands)  # no name: the commands join the root
    app.add_typer(admin.db_app, name="db")
    app.add_typer(alerts.alerts_app, name="alerts")
    app.add_typer(dlq.dlq_app, name="dlq")
    app.add_typer(schedules.schedules_app, name="schedules")
    app.add_typer(serve.tokens_app, name="tokens")
    app.add_typer(workers.workers_app, name="workers")
    _registered = True


def main() -> None:
    from pgsched.errors import PgschedError

    register_commands()
    try:
        rv = app(standalone_mode=False)
    except PgschedError as e:
        err_console.print(error_line(with_server_hint(e)), markup=False)
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(130)
    except typer.TyperException as e:  # click's usage errors: one line, exit 2
        if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
            e.show()  # type: ignore[attr-defined]
        else:
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            err_console.print(error_line(f"{where}{e.format_message()}"), markup=False)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)
