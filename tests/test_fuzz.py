"""Generated hostile input through every entrance: the CLI, plain SQL inserts, schedule and
workflow files (YAML and JSON) and config files, into a real worker on the real server. The
invariants:

- every command exits 0, 1 or 2, never with a traceback, and a refusal is one ``error:`` line;
- nothing is written when an input is refused;
- a workflow is accepted only if its names are unique, its dependencies known and its graph
  acyclic, and then every task of it is written;
- every task a worker claims reaches a terminal state or stays claimable;
- the worker keeps claiming, or stops with a failure (non-zero).

Most commands run in-process (typer's CliRunner); a slice of the same cases runs as real
`pgsched` processes, where a traceback would reach stderr as text.

`make test` runs a bounded slice (FUZZ_EXAMPLES, default 15 per property, and fewer for the
processes); `make fuzz` a longer one (PGSCHED_FUZZ_EXAMPLES=300).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pgsched.registry import Registry
from pgsched.worker import Worker
from tests.cli import run
from tests.conftest import FAST, PGSCHED, wait_until

EXAMPLES = int(os.environ.get("PGSCHED_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 15,  # the slice in `make test` is the same on every run
)
# Real processes cost ~0.5 s each (the interpreter and its imports): a fifth as many, per kind.
PROCESSES = settings(FUZZ, max_examples=max(3, EXAMPLES // 5))

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
        return c.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0]


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


# -- workflow files ------------------------------------------------------------------------------

WORKFLOW_NAMES = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), HOSTILE_TEXT)


@dataclass
class WorkflowCase:
    """A generated workflow definition; payloads stay Payload objects until written."""

    doc: Any
    as_json: bool

    def write(self, directory: Path) -> Path:
        """The file a user would write: JSON (payloads as their JSON text, so nesting and huge
        integers get through), or YAML (falling back to JSON text, which YAML reads too, when
        the YAML writer cannot hold a value)."""
        if not self.as_json:
            import yaml

            try:
                text = yaml.safe_dump(_materialized(self.doc), allow_unicode=True)
                f = directory / "wf.yaml"
                f.write_text(text, encoding="utf-8", errors="surrogatepass")
                return f
            except (yaml.YAMLError, RecursionError, ValueError):
                pass
        holes: dict[str, str] = {}

        def hole(x: Any) -> Any:
            if isinstance(x, Payload | Big):
                key = f"@@hole{len(holes)}@@"
                holes[json.dumps(key)] = payload_text(x) if isinstance(x, Payload) else _big_text(x)
                return key
            if isinstance(x, dict):
                return {k: hole(v) for k, v in x.items()}
            if isinstance(x, list):
                return [hole(v) for v in x]
            return x

        text = json.dumps(hole(self.doc))
        for key, value in holes.items():
            text = text.replace(key, value)
        f = directory / "wf.json"
        f.write_text(text, encoding="utf-8")
        return f

    def valid_graph(self) -> bool:
        """Unique names, known dependencies and no cycle (what acceptance requires)."""
        from graphlib import CycleError, TopologicalSorter

        tasks = self.doc.get("tasks") if isinstance(self.doc, dict) else None
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            return False
        names = [t.get("name") for t in tasks]
        if len(set(names)) != len(names):
            return False
        graph = {t["name"]: _deps(t.get("depends_on")) for t in tasks}
        if any(d not in graph for deps in graph.values() for d in deps):
            return False
        try:
            list(TopologicalSorter(graph).static_order())
        except CycleError:
            return False
        return True


def _deps(v: Any) -> list[Any]:
    return [v] if isinstance(v, str) else list(v or [])


def _materialized(x: Any) -> Any:
    if isinstance(x, Payload):
        return x.value()
    if isinstance(x, Big):
        return _made(x)
    if isinstance(x, dict):
        return {k: _materialized(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_materialized(v) for v in x]
    return x


@st.composite
def workflow_cases(draw: Any) -> WorkflowCase:
    """Half the time a plausible workflow (unique names, task type noop, each task depending
    on earlier ones) with a few hostile parts; else hostile throughout: duplicate or hostile
    names, dependencies on any task (closing cycles), on itself or on an unknown name,
    hostile task types, payloads, timeouts and fields, now and then a document of the wrong
    shape."""
    plausible = draw(st.booleans())
    n = draw(st.integers(min_value=1, max_value=7))
    if plausible:
        names = [f"t{i}" for i in range(n)]
    else:
        names = draw(st.lists(WORKFLOW_NAMES, min_size=n, max_size=n))
    odds = 40 if plausible else 3  # one in odds + 1 draws takes the hostile branch
    tasks: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        task: dict[str, Any] = {"name": name, "task_type": "noop"}
        if draw(st.integers(0, odds)) == 0:
            task["task_type"] = draw(st.sampled_from(["dummy", "", "\x00", "x" * 201, "ü"]))
        if i and draw(st.booleans()):
            deps = []
            for _ in range(draw(st.integers(1, 3))):
                pick = draw(st.integers(0, odds))
                if pick == 0:
                    deps.append(draw(st.one_of(st.sampled_from(names), WORKFLOW_NAMES)))
                else:
                    deps.append(draw(st.sampled_from(names[:i])))
            task["depends_on"] = deps[0] if len(deps) == 1 and draw(st.booleans()) else deps
        if draw(st.integers(0, odds)) == 0:
            task["payload"] = draw(payloads())
        if draw(st.integers(0, odds)) == 0:
            task["timeout"] = draw(st.one_of(st.sampled_from(["30s", "5m", "1h30m"]), DURATIONS))
        if draw(st.integers(0, 2 * odds)) == 0:
            task[draw(st.sampled_from(["queue", "priority", "max_attempts", "extra"]))] = draw(
                st.one_of(NUMBERS, HOSTILE_TEXT)
            )
        tasks.append(task)
    doc: Any = {"name": "wf" if plausible else draw(HOSTILE_TEXT), "tasks": tasks}
    shape = draw(st.integers(0, 4 * odds))
    if shape == 0:
        doc = tasks  # a list, not a mapping
    elif shape == 1:
        doc["tasks"] = draw(st.sampled_from([[], "abc", None, 5]))
    return WorkflowCase(doc, as_json=draw(st.booleans()))


def workflow_rows(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT (SELECT count(*) FROM pgsched.workflows),"
            " (SELECT count(*) FROM pgsched.all_tasks)"
        ).fetchone()


def check_workflow_submit(dsn: str, case: WorkflowCase, r: Any, before: tuple[int, int]) -> None:
    check_exit(r)
    event(f"workflow exit {r.exit_code}")
    after = workflow_rows(dsn)
    if r.exit_code != 0:
        assert after == before, "a refused workflow wrote nothing"
        return
    assert case.valid_graph(), f"accepted a workflow with a bad graph: {r.stdout}"
    assert after == (before[0] + 1, before[1] + len(case.doc["tasks"]))
    shown = run(dsn, "status", "--workflow", r.stdout.strip(), "--json")
    check_exit(shown)
    assert shown.exit_code == 0 and len(json.loads(shown.stdout)["tasks"]) == len(case.doc["tasks"])


@FUZZ
@given(case=workflow_cases())
def test_workflow_files(
    dsn: str, tmp_path_factory: pytest.TempPathFactory, case: WorkflowCase
) -> None:
    f = case.write(tmp_path_factory.mktemp("wf"))
    before = workflow_rows(dsn)
    r = run(dsn, "submit", "--workflow", str(f))
    check_workflow_submit(dsn, case, r, before)


# -- config files --------------------------------------------------------------------------------

CONFIG_KEYS = st.sampled_from(
    [
        "queue",
        "max_attempts",
        "concurrency",
        "poll_interval",
        "heartbeat_timeout",
        "retention",
        "backoff_base",
        "completion_hang_timeout",
        "task_env",
        "log_level",
        "statement_timeout",
        "unknown_key",
        "dsn",
    ]
)
TOML_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.sampled_from(
        ["inf", "-inf", "nan", "+nan", "1e400", "-0.0", "1e-400", "99999999999999999999"]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    HOSTILE_TEXT.map(lambda t: json.dumps(t)),  # a TOML basic string (\ud800: refused)
    st.sampled_from(["1979-05-27T07:32:00Z", "'literal'", '"""multi\nline"""', "[1, [2]]"]),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(CONFIG_KEYS, inner, max_size=2).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=5,
)
PROFILE_NAMES = st.sampled_from(["prod", "dev", "a b", "é"])
GOOD_SETTINGS = st.sampled_from(
    [
        ("queue", '"q"'),
        ("max_attempts", "5"),
        ("poll_interval", "2.5"),
        ("completion_hang_timeout", "120"),
        ("log_level", '"debug"'),
        ("task_env", '"PATH,HOME"'),
        ("retention", "0"),
    ]
)
BAD_SETTINGS = st.tuples(CONFIG_KEYS, TOML_VALUES)


@dataclass
class ConfigCase:
    text: bytes
    suffix: str
    profile: str | None

    def write(self, directory: Path) -> Path:
        f = directory / f"pgsched{self.suffix}"
        f.write_bytes(self.text)
        f.chmod(0o600)
        return f

    def args(self, f: Path) -> list[str]:
        return ["--config", str(f), *(["--profile", self.profile] if self.profile else [])]


@st.composite
def config_cases(draw: Any) -> ConfigCase:
    """A pgsched.toml: half the time mostly valid settings, else settings of every type (huge,
    inf, nan, strings, arrays, tables); profiles as tables, as scalars or with settings of the
    wrong type; sometimes a byte that is not UTF-8; now and then the same as YAML."""
    plausible = draw(st.booleans())
    values = st.one_of(GOOD_SETTINGS, GOOD_SETTINGS, GOOD_SETTINGS, BAD_SETTINGS)
    if not plausible:
        values = BAD_SETTINGS
    settings_lines = st.lists(values, max_size=4, unique_by=lambda kv: kv[0])
    lines = [f"{k} = {v}" for k, v in draw(settings_lines)]
    profiles = draw(st.lists(PROFILE_NAMES, max_size=2, unique=True))
    shape = draw(st.integers(0, 5))
    if shape == 0:
        lines.append(f"profiles = {draw(TOML_VALUES)}")
    elif shape == 1 and profiles:
        lines.append("[profiles]")
        lines += [f"{json.dumps(p)} = {draw(TOML_VALUES)}" for p in profiles]
    else:
        for p in profiles:
            lines.append(f"[profiles.{json.dumps(p)}]")
            lines += [f"{k} = {v}" for k, v in draw(settings_lines)]
    text = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + text[at:]
        )
    suffix = ".toml"
    if draw(st.integers(0, 9)) == 0:
        suffix = ".yaml"
        if draw(st.booleans()):  # the same settings as YAML, where YAML can write them
            try:
                import tomllib

                import yaml

                text = yaml.safe_dump(tomllib.loads(text.decode())).encode()
            except Exception:  # not TOML after all: the file stays as it is
                pass
    if plausible:
        choice = draw(st.one_of(st.none(), st.sampled_from(profiles))) if profiles else None
    else:
        choice = draw(st.one_of(st.none(), st.sampled_from(profiles or ["prod"])))
    return ConfigCase(text, suffix, choice)


@FUZZ
@given(case=config_cases())
def test_config_files(dsn: str, tmp_path_factory: pytest.TempPathFactory, case: ConfigCase) -> None:
    f = case.write(tmp_path_factory.mktemp("cfg"))
    r = run(dsn, *case.args(f), "config", "--json")
    check_exit(r)
    event(f"config exit {r.exit_code}")
    assert r.exit_code in (0, 2), r.stderr
    if r.exit_code == 0:
        json.loads(r.stdout)  # strict JSON: no NaN or Infinity


# -- the same cases as real processes -------------------------------------------------------------


@dataclass
class Finished:
    exit_code: int
    stdout: str
    stderr: str


def process(dsn: str, *args: str, cwd: Path) -> Finished:
    """``pgsched --dsn DSN ARGS`` as a process of its own: what a user's shell sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSCHED_")}
    p = subprocess.run(
        [PGSCHED, "--dsn", dsn, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    out = Finished(
        p.returncode,
        p.stdout.decode("utf-8", "replace"),
        p.stderr.decode("utf-8", "replace"),
    )
    assert "Traceback" not in out.stderr, out.stderr
    assert sum(line.startswith("error:") for line in out.stderr.splitlines()) <= 1, out.stderr
    return out


PROCESS_CASES = {
    "payload": payloads(),
    "durations": st.tuples(DURATIONS, DURATIONS),
    "at": INSTANTS,
    "workflow": workflow_cases(),
    "config": config_cases(),
}


@pytest.mark.parametrize("kind", list(PROCESS_CASES))
@PROCESSES
@given(data=st.data())
def test_cli_cases_as_processes(
    dsn: str, tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    """A slice of the cases above through `.venv/bin/pgsched` as a process: exit 0, 1 or 2, at
    most one ``error:`` line, no traceback, nothing written on a refusal."""
    value = data.draw(PROCESS_CASES[kind])
    d = tmp_path_factory.mktemp("proc")
    if kind == "workflow":
        f = value.write(d)
        before = workflow_rows(dsn)
        r = process(dsn, "submit", "--workflow", str(f), cwd=d)
        check_workflow_submit(dsn, value, r, before)
        return
    if kind == "config":
        r = process(dsn, *value.args(value.write(d)), "config", "--json", cwd=d)
        check_exit(r)
        assert r.exit_code in (0, 2)
        return
    if kind == "payload":
        text = payload_text(value)
        args = ["--payload", text if len(text) < 100_000 else f"@{_spill(d, text)}"]
    elif kind == "durations":
        args = ["--timeout", value[0], "--delay", value[1]]
    else:
        args = ["--at", value]
    before = count(dsn)
    r = process(dsn, "submit", "noop", "--queue", "fuzz-none", *args, cwd=d)
    check_exit(r)
    assert count(dsn) == before + (1 if r.exit_code == 0 else 0)


def _spill(directory: Path, text: str) -> Path:
    """A payload too long for a command line (ARG_MAX) goes in a file: --payload @FILE."""
    f = directory / "payload.json"
    f.write_text(text, encoding="utf-8", errors="surrogatepass")
    return f


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
        c.execute("DELETE FROM pgsched.finished_tasks WHERE queue = 'fuzz-sql'")
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
                "SELECT count(*) FROM pgsched.all_tasks WHERE id = ANY(%s)"
                " AND NOT (status IN ('succeeded', 'failed', 'cancelled')"
                "          OR (status IN ('pending', 'retrying') AND attempts < max_attempts))",
                (ids,),
            ).fetchone()[0]
        return left == 0

    wait_until(settled, 10, message="every task terminal or claimable")
