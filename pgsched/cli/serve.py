"""`pgsched serve` (the HTTP API, pgsched.api) and `pgsched tokens create|list|revoke`."""

from __future__ import annotations

import ipaddress

import typer
from rich.table import Table

from pgsched.cli.common import (
    JsonOpt,
    console,
    exits_on_error,
    fmt_time,
    note_started_server,
    print_json,
    state,
)
from pgsched.errors import UsageError

commands = typer.Typer()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@commands.command("serve")
@exits_on_error
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on [127.0.0.1]."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port [8080]; 0: any free."),
    auth: bool = typer.Option(
        None,
        "--auth/--no-auth",
        help="Require a bearer token (default: the api_auth setting, or on with api_jwt_key).",
    ),
) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI docs at /docs), health probes and /metrics."""
    import uvicorn

    from pgsched.api.app import create_app
    from pgsched.api.auth import auth_enabled
    from pgsched.logging import configure

    settings = state.settings
    if auth is not None:
        settings = settings.model_copy(update={"api_auth": auth})
    if not is_loopback(host) and not auth_enabled(settings):
        raise UsageError(
            f"--host {host}: not a loopback address, and auth is off: add --auth (tokens from "
            "`pgsched tokens create`) or set api_jwt_key"
        )
    configure(settings.log_level, settings.log_format)
    api = create_app(settings, state.dsn())
    note_started_server()  # now, not when the server stops
    uvicorn.run(api, host=host, port=port, log_level=settings.log_level, access_log=False)


tokens_app = typer.Typer(
    help="API tokens for pgsched serve: create (prints the token once), list, revoke.",
    no_args_is_help=True,
)


@tokens_app.command("create")
@exits_on_error
def tokens_create(
    name: str = typer.Argument(..., help="A name for the token (unique among live tokens)."),
    scopes: str = typer.Option(
        "read", "--scopes", help="Comma-separated: read, submit, admin [read]."
    ),
) -> None:
    """Create a token and print it alone on stdout (it is not shown again)."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    token, _row = state.admin().create_token(name, wanted)
    print(token)


@tokens_app.command("list")
@exits_on_error
def tokens_list(
    all_: bool = typer.Option(False, "--all", help="Include revoked tokens."),
    json: bool = JsonOpt,
) -> None:
    """Tokens with their scopes (never the tokens themselves: only hashes are stored)."""
    rows = state.admin().tokens(all_=all_)
    if json:
        print_json(rows)
        return
    if not rows:
        console.print("no tokens (pgsched tokens create NAME --scopes read)")
        return
    table = Table()
    for col in ("name", "scopes", "created", "last used", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            ",".join(r["scopes"]),
            fmt_time(r["created_at"]),
            fmt_time(r["last_used_at"]),
            fmt_time(r["revoked_at"]),
        )
    console.print(table)


@tokens_app.command("revoke")
@exits_on_error
def tokens_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests carrying it get 401 from then on."""
    state.admin().revoke_token(name)
    console.print(f"token {name} revoked", highlight=False)
