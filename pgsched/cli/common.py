"""What the commands share: settings from flags, the client, JSON or rich output, errors, the
parsing of integers and of JSON payloads, and the few tables and styles that more than one
command prints. A command module imports this and no other command module."""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, overload

import typer
from rich.console import Console
from rich.table import Table

from pgsched.config import Loaded, Settings, load_settings
from pgsched.errors import UsageError
from pgsched.models import INT_DIGITS_MAX, PAYLOAD_DEPTH_MAX, payload_problem

if TYPE_CHECKING:
    from pgsched.admin import Admin
    from pgsched.client import Client

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` with its control characters written out (``\\x1b``): text from the database
    (a task's error, a queue's name) cannot move the cursor or retitle the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class SafeConsole(Console):
    """A console for text that may come from the database: strings are not read as rich
    markup unless a call asks for it (a stored ``[link=...]`` prints as written) and control
    characters are escaped (clean)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(markup=False, **kw)

    def render_str(self, text: str, **kw: Any) -> Any:
        return super().render_str(clean(text), **kw)


console = SafeConsole()
err_console = SafeConsole(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


@dataclass
class State:
    """Global flags, resolved into settings on first use."""

    overrides: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    profile: str | None = None
    noted_server: bool = False  # the note on the embedded server this command started is out
    _loaded: Loaded | None = None
    _client: Client | None = None

    def reset(
        self, overrides: dict[str, Any], config_file: str | None, profile: str | None
    ) -> None:
        """Start an invocation afresh (the root callback calls it), so an app invoked several
        times in one process (tests, embedding) never reuses an earlier one's settings."""
        if self._client is not None:
            self._client.close()
        self.overrides, self.config_file, self.profile = dict(overrides), config_file, profile
        self._loaded = self._client = None
        self.noted_server = False
        if "pgsched.db" in sys.modules:  # not imported yet: nothing was started
            from pgsched import db

            db.EMBEDDED_STARTED = None

    def loaded(self) -> Loaded:
        if self._loaded is None:
            self._loaded = load_settings(
                self.overrides, config_file=self.config_file, profile=self.profile
            )
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded().settings

    def dsn(self) -> str:
        from pgsched.db import resolve_dsn

        return resolve_dsn(self.settings)

    def client(self) -> Client:
        if self._client is None:
            from pgsched.client import Client

            self._client = Client.from_settings(self.settings)
        return self._client

    def admin(self) -> Admin:
        """The operator API (pgsched.admin.Admin) over this invocation's client."""
        from pgsched.admin import Admin

        return Admin.from_settings(self.settings, self.client())


state = State()


def error_line(message: str) -> str:
    """``error: message`` on one line whatever the message quotes: characters that do not print
    (a newline, or U+0085 in a file name given to ``--payload @...``) are shown escaped."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    return f"error: {shown}"


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(error_line(message), markup=False)
    raise typer.Exit(code)


def exits_on_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a PgschedError as one ``error:`` line and exit with its code, inside the command,
    so the command behaves the same under ``main()`` and when the app is invoked in-process."""
    from pgsched.errors import PgschedError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except PgschedError as e:
            fail(with_server_hint(e), e.exit_code)
        note_started_server()
        return result

    return wrapper


def started_server() -> str | None:
    """Where the embedded server this command started is and how to stop it, or None when
    it started none (a DSN is configured, or the server was running already)."""
    from pgsched import db

    home = db.EMBEDDED_STARTED
    if home is None:
        return None
    return (
        f"this command started an embedded server in {home}, as no DSN is configured; "
        f"`pgsched --home {home} db stop` stops it"
    )


def note_started_server() -> None:
    """One ``note:`` line on stderr, once per command, if it started the embedded server: a
    command run where no server was meant to be leaves none running unannounced."""
    text = started_server()
    if text is not None and not state.noted_server:
        state.noted_server = True
        err_console.print(f"note: {text}", markup=False)


def with_server_hint(e: Exception) -> str:
    """The error's line; when this command started the embedded server, also where that
    server is and how to stop it (the same line: a refusal is one line)."""
    text = started_server()
    if text is None or state.noted_server:
        return str(e)
    state.noted_server = True
    return f"{e} ({text})"


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or Infinity
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def time_text(value: datetime) -> str:
    """ISO-8601, or "infinity" / "-infinity" for the times a read gives for what Python cannot
    hold (db.FAR_FUTURE, db.FAR_PAST)."""
    if value.year == 9999 and value.month == 12 and value.day == 31 and value.hour == 23:
        return "infinity"
    if value.year == 1 and value.month == 1 and value.day == 1 and value.hour == 0:
        return "-infinity"
    return value.isoformat()


def fmt_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time; a time at either end of datetime's range as "infinity" / "-infinity"."""
    if value is None:
        return "-"
    text = time_text(value)
    if text.endswith("infinity"):
        return text
    try:
        return value.astimezone().strftime(fmt)
    except (OverflowError, ValueError):  # a local time past year 9999 or before year 1
        return value.strftime(fmt + " UTC")


# -- input ---------------------------------------------------------------------------------------

ID_RANGE = (1, 2**63 - 1)  # a task's or a workflow's id (bigint)
ATTEMPTS_RANGE = (1, 1000)  # --max-attempts, --attempts (the CHECK tasks_max_attempts_range)


@overload
def parse_int(name: str, text: str, bounds: tuple[int, int] | None = None) -> int: ...
@overload
def parse_int(name: str, text: None, bounds: tuple[int, int] | None = None) -> None: ...
@overload
def parse_int(name: str, text: str | None, bounds: tuple[int, int] | None = None) -> int | None: ...


def parse_int(name: str, text: str | None, bounds: tuple[int, int] | None = None) -> int | None:
    """Integers are parsed here, not by typer, so a bad one is one ``error:`` line too (None
    for an option not given)."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{name}: {text!r} is not an integer") from None
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise UsageError(f"{name}: must be between {bounds[0]} and {bounds[1]}, not {value}")
    return value


# The most of a --payload @FILE read: past it the file is refused, not read on (/dev/zero,
# a log file by mistake). The table's own limit on a payload's size may be lower.
PAYLOAD_FILE_MAX = 64 * 1024 * 1024


def parse_payload(text: str | None, option: str = "--payload") -> Any:
    """``--payload``: inline JSON, or ``@path`` to a JSON file; errors say where. Whatever
    jsonb or Python's json cannot carry (NUL, a lone surrogate, NaN, nesting past
    PAYLOAD_DEPTH_MAX, integers of more than 4300 digits) is refused in one line too."""
    if text is None:
        return None
    source = option
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            with path.open("rb") as f:
                raw = f.read(PAYLOAD_FILE_MAX + 1)
        except FileNotFoundError:
            raise UsageError(f"{option}: file {path} does not exist") from None
        except OSError as e:
            raise UsageError(f"{option}: cannot read {path}: {e.strerror or e}") from None
        if len(raw) > PAYLOAD_FILE_MAX:
            raise UsageError(
                f"{option}: {path} is larger than {PAYLOAD_FILE_MAX // (1024 * 1024)} MiB"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{option}: cannot read {path}: not UTF-8 ({e.reason})") from None
        source = f"{option} {path}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise UsageError(f"{source}: nested deeper than {PAYLOAD_DEPTH_MAX} levels") from None
    except ValueError:  # int() of a literal past sys.get_int_max_str_digits()
        raise UsageError(f"{source}: an integer of more than {INT_DIGITS_MAX} digits") from None
    problem = payload_problem(value, "payload")
    if problem is not None:
        raise UsageError(f"{source}: {problem}")
    return value


# -- output shared by several commands ----------------------------------------------------------


def short_time(value: datetime | None) -> str:
    """HH:MM:SS for today, the full local time otherwise."""
    if value is None:
        return "-"
    local = value.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return fmt_time(value)


# A worker's status and the age of its heartbeat (`pgsched workers`, `pgsched top`).
WORKER_STATUS_STYLE = {
    "active": "green",
    "paused": "yellow",
    "draining": "cyan",
    "stopped": "dim",
    "dead": "red",
}


def heartbeat_style(row: dict[str, Any], timeout: float) -> str:
    if row["status"] in ("stopped", "dead"):
        return "dim"
    age = row["heartbeat_age_s"] or 0.0
    return "red" if age > timeout else "yellow" if age > timeout / 2 else "green"


def print_notifications(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Alert notifications with the delivery state of each channel (`alerts history`, `status`)."""
    if not rows:
        console.print("no notifications sent")
        return
    table = Table(show_edge=False, pad_edge=False, title=title)
    for col in ("sent", "rule", "count", "summary", "delivery"):
        table.add_column(col, overflow="fold")
    for n in rows:
        delivery = ", ".join(
            f"{d['channel']}: {d['status']}"
            + (f" ({d['attempts']} tries)" if d.get("attempts", 0) and d["attempts"] > 1 else "")
            for d in n["deliveries"]
        )
        table.add_row(
            fmt_time(n["created_at"]), n["rule"], str(n["count"]), n["summary"] or "", delivery
        )
    console.print(table)
