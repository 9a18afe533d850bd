"""Named SQL statements, loaded once from the ``.sql`` files in this package.

Each statement is introduced by a header line::

    -- name: claim_tasks :many

The kind after the name says what the statement returns, so callers never choose between
``fetchone`` and ``fetchall``:

``:one``      one row (or None)          ``:many``   a list of rows
``:scalar``   the first column of one row ``:exec``   nothing
``:rowcount`` the number of rows the statement touched
``:copy``     a ``COPY ... FROM STDIN``: ``run(conn, rows)`` writes the rows (tuples)

Files under ``migrations/`` are not statements: alembic revisions apply them whole. Nor is
``schema.sql``, the whole schema as the migrations leave it, which nothing applies (a test
compares it with a migrated database).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from pgsched.errors import SqlLoadError

Kind = Literal["one", "many", "scalar", "exec", "rowcount", "copy"]
_HEADER = re.compile(r"^--\s*name:\s*(?P<name>\S+)\s*(?::(?P<kind>\w+))?\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS = {"one", "many", "scalar", "exec", "rowcount", "copy"}


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    kind: Kind
    sql: str
    source: str

    def run(self, conn: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        """Execute on a psycopg connection or cursor and return what the kind promises."""
        if self.kind == "copy":
            cursor = conn.cursor() if hasattr(conn, "cursor") else conn
            with cursor.copy(self.sql) as copy:
                for row in params or ():
                    copy.write_row(row)
            return None
        cur = conn.execute(self.sql, params, prepare=prepare)
        if self.kind == "many":
            return cur.fetchall()
        if self.kind == "one":
            return cur.fetchone()
        if self.kind == "scalar":
            row = cur.fetchone()
            if row is None:
                return None
            return next(iter(row.values())) if isinstance(row, dict) else row[0]
        if self.kind == "rowcount":
            return cur.rowcount
        return None


def parse(text: str, source: str) -> dict[str, Query]:
    """Split one file into named statements; refuse malformed or duplicate names."""
    out: dict[str, Query] = {}
    name: str | None = None
    kind: str = "exec"
    body: list[str] = []
    line_no = 0

    def flush() -> None:
        if name is None:
            if any(ln.strip() and not ln.strip().startswith("--") for ln in body):
                raise SqlLoadError(f"{source}: SQL before the first '-- name:' header")
            return
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not sql:
            raise SqlLoadError(f"{source}: statement {name!r} is empty")
        # psycopg reads comments for placeholders too: one that the code does not use, or a
        # stray '%', would make the statement fail when it runs.
        code = "\n".join(ln for ln in body if not ln.lstrip().startswith("--"))
        for ln in body:
            if ln.lstrip().startswith("--") and "%" in ln:
                rest = _PLACEHOLDER.sub("", ln)
                unused = _placeholders(ln) - _placeholders(code)
                if "%" in rest or unused:
                    raise SqlLoadError(
                        f"{source}: '%' in a comment of {name!r} that the"
                        f" statement does not use: {ln.strip()!r}"
                    )
        out[name] = Query(name, kind, sql, source)  # type: ignore[arg-type]

    for line_no, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m is None:
            if line.lstrip().startswith("-- name"):
                raise SqlLoadError(f"{source}:{line_no}: malformed header {line.strip()!r}")
            body.append(line)
            continue
        flush()
        name, kind, body = m["name"], m["kind"] or "exec", []
        if not _NAME.match(name):
            raise SqlLoadError(f"{source}:{line_no}: bad statement name {name!r}")
        if kind not in _KINDS:
            raise SqlLoadError(f"{source}:{line_no}: unknown kind :{kind} for {name!r}")
        if name in out:
            raise SqlLoadError(f"{source}:{line_no}: duplicate statement name {name!r}")
    flush()
    return out


_PLACEHOLDER = re.compile(r"%\((\w+)\)[sbt]|%%")


def _placeholders(text: str) -> set[str]:
    """The placeholders in ``text`` as written (``%(name)s``, ``%(name)b``), without ``%%``."""
    return {m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(1)}


def to_positional(sql: str) -> tuple[str, list[str]]:
    """psycopg's ``%(name)s`` placeholders (also ``%(name)b``, binary) as PostgreSQL's ``$n``
    (same name, same number), for PREPARE: the statement checks (tests) and generic-plan
    EXPLAINs (tests, bench)."""
    names: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m[0] == "%%":
            return "%"
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    return _PLACEHOLDER.sub(sub, sql), names


def load_all() -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql") or entry.name == "schema.sql":
            continue
        for name, q in parse(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in queries:
                raise SqlLoadError(
                    f"duplicate statement name {name!r} in {entry.name} and {queries[name].source}"
                )
            queries[name] = q
    return queries


def migration_sql(filename: str) -> str:
    return resources.files(__name__).joinpath("migrations", filename).read_text(encoding="utf-8")


class _Queries:
    """Attribute access to the loaded statements: ``Q.submit_task.run(conn, params)``."""

    def __init__(self) -> None:
        self._all = load_all()

    def __getattr__(self, name: str) -> Query:
        try:
            return self._all[name]
        except KeyError:
            raise AttributeError(f"no SQL statement named {name!r}") from None

    def all(self) -> dict[str, Query]:
        return dict(self._all)


Q = _Queries()
