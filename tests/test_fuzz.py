"""Generated hostile input through every entrance: the CLI, plain SQL inserts and YAML files,
into a real worker on the real server. The invariants:

- every command exits 0, 1 or 2, never with a traceback, and a refusal is one ``error:`` line;
- nothing is written when an input is refused;
- every task a worker claims reaches a terminal state or stays claimable;
- the worker keeps claiming, or stops with a failure (non-zero).

`make test` runs a bounded slice (FUZZ_EXAMPLES, default 15 per property); `make fuzz` a
longer one (PGSCHED_FUZZ_EXAMPLES=300).
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsched.registry import Registry
from pgsched.worker import Worker
from tests.cli import run
from tests.conftest import FAST, wait_until

EXAMPLES = int(os.environ.get("PGSCHED_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 15,  # the slice in `make test` is the same on every run
)

# -- strategies -----------------------------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "x\ud83d", "", " ", ",", "é" * 5]),
)


class Big:
    """An integer of ``digits`` digits, made only when the payload is (hypothesis prints its
    examples with repr(), which an int past 4300 digits refuses)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<int of {self.digits} digits>"


NUMBERS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([2**63, -(2**63) - 1]),
    st.sampled_from([4299, 4300, 4301, 5000]).map(Big),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, HOSTILE_TEXT)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


class Payload:
    """A generated payload: a JSON-ish core (Big for huge integers) nested ``depth`` deep,
    lists where ``kinds`` says True, objects elsewhere. value() builds it."""

    def __init__(self, core: Any, kinds: list[bool]) -> None:
        self.core, self.kinds = core, kinds

    def __repr__(self) -> str:
        return f"Payload({self.core!r}, depth={len(self.kinds)})"

    def value(self) -> Any:
        v = _made(self.core)
        for as_list in self.kinds:
            v = [v] if as_list else {"k": v}
        return v


def _made(x: Any) -> Any:
    if isinstance(x, Big):
        return 10 ** (x.digits - 1)
    if isinstance(x, list):
        return [_made(i) for i in x]
    if isinstance(x, dict):
        return {k: _made(v) for k, v in x.items()}
    return x


@st.composite
def payloads(draw: Any) -> Payload:
    """A JSON-ish value, sometimes wrapped in a deep nesting (up to 2000 levels)."""
    core = draw(JSONISH)
    depth = draw(st.sampled_from([0, 0, 0, 10, 255, 256, 300, 1100, 2000]))
    return Payload(core, draw(st.lists(st.booleans(), min_size=depth, max_size=depth)))


def payload_text(p: Payload) -> str | None:
    """The payload as the JSON text a user would type (NaN/Infinity as Python writes them);
    huge integers written out digit by digit; None when nesting passes json's recursion."""
    text = _big_text(p.core)
    for as_list in reversed(p.kinds):
        text = f"[{text}]" if as_list else f'{{"k": {text}}}'
    return text


def _big_text(x: Any) -> str:
    if isinstance(x, Big):
        return "1" + "0" * (x.digits - 1)
    if isinstance(x, list):
        return "[" + ", ".join(_big_text(i) for i in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_big_text(v)}" for k, v in x.items()) + "}"
    return json.dumps(x)


DURATIONS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**12), max_value=10**15).map(str),
    st.tuples(
        st.integers(min_value=0, max_value=10**12), st.sampled_from(["ms", "s", "m", "h", "d", "w"])
    ).map(lambda t: f"{t[0]}{t[1]}"),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1000000000d", "999999999d", "", "5x"]),
)
INSTANTS = st.one_of(
    st.tuples(
        st.integers(min_value=1, max_value=9999),
        st.integers(min_value=-23, max_value=23),
    ).map(lambda t: f"{t[0]:04d}-06-15T12:00:00{t[1]:+03d}:00"),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "infinity",
            "-infinity",
            "2026-02-30T00:00:00",
            "1900-01-01T00:00:00Z",
            "9999-01-01T00:00:00Z",
        ]
    ),
)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM pgsched.tasks").fetchone()[0]


def check_exit(r: Any) -> None:
    """0, 1 or 2; a failure is exactly one ``error:`` line (tests.cli.run has already checked
    that no exception other than an exit escaped)."""
    assert r.exit_code in (0, 1, 2), (r.exit_code, r.stderr)
    if r.exit_code != 0:
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


# -- the CLI -------------------------------------------------------------------------------------


@FUZZ
@given(value=payloads())
def test_cli_payloads(dsn: str, value: Payload) -> None:
    text = payload_text(value)
    before = count(dsn)
    r = run(dsn, "submit", "noop", "--queue", "fuzz-none", "--payload", text)
    check_exit(r)
    assert count(dsn) == before + (1 if r.exit_code == 0 else 0)
    if r.exit_code != 0:
        assert r.exit_code == 2 and "--payload" in r.stderr


@FUZZ
@given(timeout=DURATIONS, delay=DURATIONS)
def test_cli_durations(dsn: str, timeout: str, delay: str) -> None:
    before = count(dsn)
    r = run(dsn, "submit", "noop", "--queue", "fuzz-none", "--timeout", timeout, "--delay", delay)
    check_exit(r)
    assert count(dsn) == before + (1 if r.exit_code == 0 else 0)
    check_exit(run(dsn, "dlq", "purge", "--older-than", timeout))
    if _bad_grace(delay):
        r = run(dsn, "worker", "--grace", delay)
        check_exit(r)
        assert r.exit_code == 2


def _bad_grace(text: str) -> bool:
    """A value `--grace` must refuse (a valid one would start a worker)."""
    from pgsched.durations import parse_duration
    from pgsched.errors import ValidationError

    try:
        parse_duration(text, "--grace")
    except ValidationError:
        return True
    return False


@FUZZ
@given(at=INSTANTS)
def test_cli_instants(dsn: str, at: str) -> None:
    before = count(dsn)
    r = run(dsn, "submit", "noop", "--queue", "fuzz-none", "--at", at)
    check_exit(r)
    assert count(dsn) == before + (1 if r.exit_code == 0 else 0)
    check_exit(run(dsn, "list"))
    check_exit(run(dsn, "status"))


@FUZZ
@given(
    name=st.sampled_from(
        ["POLL_INTERVAL", "HEARTBEAT_TIMEOUT", "RETENTION", "GRACE", "BACKOFF_BASE", "CONCURRENCY"]
    ),
    value=DURATIONS,
)
def test_config_values(dsn: str, name: str, value: str) -> None:
    from typer.testing import CliRunner

    from pgsched.cli import app as cli_app

    r = CliRunner().invoke(cli_app.app, ["--dsn", dsn, "config"], env={f"PGSCHED_{name}": value})
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    check_exit(r)


# -- YAML ----------------------------------------------------------------------------------------


@FUZZ
@given(
    every=DURATIONS,
    name=HOSTILE_TEXT,
    task_type=HOSTILE_TEXT,
    value=payloads(),
    dry_run=st.booleans(),
)
def test_yaml_schedules(
    dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
    every: str,
    name: str,
    task_type: str,
    value: Payload,
    dry_run: bool,
) -> None:
    import yaml

    try:
        text = yaml.safe_dump(
            [{"name": name, "every": every, "task_type": task_type, "payload": value.value()}],
            allow_unicode=True,
        )
    except (yaml.YAMLError, RecursionError, ValueError):
        return
    f = tmp_path_factory.mktemp("yaml") / "s.yaml"
    f.write_text(text, encoding="utf-8", errors="surrogatepass")
    with psycopg.connect(dsn) as c:
        before = c.execute("SELECT count(*) FROM pgsched.schedules").fetchone()[0]
    r = run(dsn, "schedules", "apply", str(f), "--prune", *(["--dry-run"] if dry_run else []))
    check_exit(r)
    with psycopg.connect(dsn) as c:
        after = c.execute("SELECT count(*) FROM pgsched.schedules").fetchone()[0]
    if r.exit_code != 0 or dry_run:
        assert after == before


# -- plain SQL into a real worker ---------------------------------------------------------------

INTERVALS = st.one_of(
    st.none(),
    st.sampled_from(
        ["1 millisecond", "0.5 seconds", "300 years", "1000000 years", "100 years", "36500 days"]
    ),
)


@FUZZ
@given(
    rows=st.lists(
        st.tuples(payloads(), INTERVALS, INTERVALS, st.sampled_from(["noop", "dummy", "boom"])),
        min_size=1,
        max_size=6,
    )
)
def test_sql_rows_into_a_real_worker(dsn: str, rows: list[tuple[Payload, Any, Any, str]]) -> None:
    """Whatever PostgreSQL accepts into pgsched.tasks, a worker runs to a terminal state, or
    leaves claimable, without its threads dying."""
    reg = Registry()

    @reg.task("boom")
    def boom(payload: Any) -> None:
        raise RuntimeError("x" * 20000)

    ids: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DELETE FROM pgsched.tasks WHERE queue = 'fuzz-sql'")
        for value, timeout, backoff, task_type in rows:
            text = payload_text(value)
            try:
                with c.transaction():
                    (tid,) = c.execute(
                        "INSERT INTO pgsched.tasks (task_type, queue, payload, timeout,"
                        " backoff_base, max_attempts) VALUES (%s, 'fuzz-sql', %s::jsonb,"
                        " %s::interval, %s::interval, 2) RETURNING id",
                        (task_type, text, timeout, backoff),
                    ).fetchone()
                    ids.append(tid)
            except psycopg.Error:
                continue  # refused by PostgreSQL: nothing to run
    if not ids:
        return
    w = Worker(dsn, settings=FAST, registry=reg, queues=["fuzz-sql"], name="fuzz", burst=True)
    w.start()
    try:
        assert w.wait(60), "a burst worker finishes"
        assert w.failure is None, w.failure
    finally:
        w.stop(timeout=15)

    def settled() -> bool:
        with psycopg.connect(dsn) as c:
            left = c.execute(
                "SELECT count(*) FROM pgsched.tasks WHERE id = ANY(%s)"
                " AND NOT (status IN ('succeeded', 'failed', 'cancelled')"
                "          OR (status IN ('pending', 'retrying') AND attempts < max_attempts))",
                (ids,),
            ).fetchone()[0]
        return left == 0

    wait_until(settled, 10, message="every task terminal or claimable")
