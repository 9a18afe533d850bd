"""`pgsched db start|stop|status|url`, `pgsched migrate`, `pgsched config`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from pgsched.cli.common import JsonOpt, console, exits_on_error, print_json, state

if TYPE_CHECKING:
    from pgsched.server import Cluster

commands = typer.Typer()

db_app = typer.Typer(
    help="The embedded local PostgreSQL server under $PGSCHED_HOME.", no_args_is_help=True
)


def _cluster() -> Cluster:
    from pgsched.server import Cluster

    return Cluster(state.settings.home)


@db_app.command("start")
@exits_on_error
def db_start() -> None:
    """Start the embedded server (creating it on first use); idempotent."""
    url = _cluster().start()
    console.print(f"running: {url}", highlight=False, soft_wrap=True)  # one line: a URL


@db_app.command("stop")
@exits_on_error
def db_stop() -> None:
    """Stop the embedded server (fast shutdown: sessions end, committed data is safe)."""
    stopped = _cluster().stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
@exits_on_error
def db_status(json: bool = JsonOpt) -> None:
    """Whether the embedded server runs, where, and which PostgreSQL version."""
    st = _cluster().status()
    if json:
        print_json(st.__dict__)
        return
    if st.version is None:
        console.print(
            f"no embedded server in {st.requested_home or st.home} (pgsched db start creates one)"
        )
        raise typer.Exit(1)
    state_word = "running" if st.running else "stopped"
    console.print(
        f"{state_word}: PostgreSQL {st.version} in {st.home}, port {st.port}, pid {st.pid or '-'}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"data: {st.data}", highlight=False, soft_wrap=True)
    console.print(f"binaries: {st.bin_dir or 'not recorded yet'}", highlight=False, soft_wrap=True)
    if st.requested_home is not None:
        console.print(
            f"(for {st.requested_home}: the server user cannot reach it, so the cluster "
            "lives in a directory of root's)",
            highlight=False,
            soft_wrap=True,
        )
    if not st.running:
        raise typer.Exit(1)


@db_app.command("url")
@exits_on_error
def db_url() -> None:
    """Print the embedded server's connection URL (for psql, DATABASE_URL, ...)."""
    print(_cluster().url())


@commands.command("migrate")
@exits_on_error
def migrate_cmd(
    sql: bool = typer.Option(False, "--sql", help="Print the SQL instead of running it."),
    downgrade: str = typer.Option(
        None,
        "--downgrade",
        metavar="REVISION",
        help="Go back to REVISION ('base' removes everything).",
    ),
) -> None:
    """Create or upgrade the pgsched schema; safe to run from many hosts at once."""
    from pgsched import migrate

    if sql:
        dsn = state.settings.dsn or "postgresql://localhost/pgsched"
        print(migrate.upgrade_sql(dsn), end="")
        return
    dsn = state.dsn()
    if downgrade:
        migrate.downgrade(dsn, downgrade)
        console.print(f"downgraded to {downgrade}")
        return
    before = migrate.current(dsn)
    migrate.upgrade(dsn, lock_timeout=state.settings.lock_timeout)
    after = migrate.current(dsn)
    console.print(
        f"schema at revision {after}" + ("" if before != after else " (already)"), highlight=False
    )


@commands.command("config")
@exits_on_error
def config_cmd(json: bool = JsonOpt) -> None:
    """Print the effective settings and where each came from."""
    from pgsched.config import Settings
    from pgsched.db import mask_dsn

    loaded = state.loaded()
    values = loaded.settings.model_dump()
    for key in ("dsn", "direct_dsn"):  # the password is not shown, nor kept in a scrollback
        if values[key]:
            values[key] = mask_dsn(values[key])
    if json:
        print_json({k: {"value": v, "source": loaded.sources[k]} for k, v in values.items()})
        return
    table = Table(
        title=f"settings (config file: {loaded.config_file or 'none'}"
        + (f", profile {loaded.profile}" if loaded.profile else "")
        + ")"
    )
    for col in ("setting", "value", "source", "meaning"):
        table.add_column(col)
    for k, v in values.items():
        table.add_row(
            k,
            "-" if v is None else str(v),
            loaded.sources[k],
            Settings.model_fields[k].description or "",
        )
    console.print(table)
