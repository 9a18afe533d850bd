"""The documentation's examples, run against the test session's real server.

Every fenced block of README.md and docs/*.md is an example, run according to its info string:

- ``console``: lines starting with ``$ `` are shell commands (a line ending in ``\\`` goes on
  to the next); the other lines are their expected output. The block runs as one bash script
  in a directory of its own holding a link to ``examples/``, with the virtualenv's ``bin``
  first on PATH and PGSCHED_DSN naming a freshly migrated database. Every command must exit 0
  (one that is meant to fail is written ``cmd; echo "exit=$?"``) and the output (stdout and
  stderr) must match what the block shows: ``...`` matches any text within a line, and a line
  of only ``...`` any number of lines; lines holding box-drawing characters (table rows and
  rules) are not compared, nor blank lines and the spaces around a line.
- ``sh``: runs as a bash script (``set -e -o pipefail``) the same way; output not compared.
- ``sql``: executed through psycopg on a fresh database, autocommit (a block may hold its own
  BEGIN and COMMIT); roles it creates are dropped afterwards.
- ``python``: exec'd in this process with ``dsn`` bound to a fresh database, in a directory of
  its own.
- ``yaml``: applied with the CLI according to what it holds: ``schedules:`` with ``pgsched
  schedules apply``, ``channels:``/``rules:`` with ``pgsched alerts apply`` (every variable a
  ``*_env`` key names is set), ``tasks:`` with ``pgsched submit --workflow``. A block whose
  first line is a comment naming a file of ``examples/`` must hold the same data as that file,
  unless the comment says ``(abridged)``.
- ``json``, ``toml``: must parse. ``text``: never run (outputs, usage lines, terminal sessions).

Any other info string, or none, fails ``test_conventions``. An HTML comment on the line just
above a block changes how it is run:

- ``<!-- example: skip: REASON -->``: not run; the reason is required (a command that runs
  until Ctrl-C, one that needs the demo running).
- ``<!-- example: file NAME -->``: not run; its text is written to NAME in the directory of
  the same page's next example that runs.
- ``<!-- example: serve -->``: the HTTP API is served (the real app under uvicorn, on a free
  port of 127.0.0.1, on the example's database) and ``localhost:8080`` in the block points at
  it.

Each example gets a database of its own (the ``dsn`` fixture: a clone of the migrated
template). Also checked: every relative link in these pages leads to a file, and to one of
its headings when it names one; README.md has at most 300 lines.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.api import serving

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
README_MAX_LINES = 300

RUN = {"console", "sh", "sql", "python", "yaml"}
PARSED = {"json", "toml"}
NEVER = {"text"}

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
# Commands the shell examples use besides pgsched (`make test` installs them as root).
TOOLS = ("jq", "curl", "openssl")
MARKER = re.compile(r"^<!--\s*example:\s*(skip|file|serve)\b:?\s*(.*?)\s*-->$")
BOX = re.compile("[\u2500-\u257f]")  # box drawing: rich's tables
TIMEOUT = 120


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    marker: str | None = None
    arg: str = ""
    marker_text: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


@dataclass
class Example:
    block: Block
    files: list[Block] = field(default_factory=list)


def read_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        prev = lines[i - 1].strip() if i else ""
        block = Block(page, i + 1, lang, "\n".join(body) + "\n")
        if prev.startswith("<!--") and "example" in prev:
            block.marker_text = prev
            mm = MARKER.match(prev)
            if mm:
                block.marker, block.arg = mm.group(1), mm.group(2)
        out.append(block)
        i = j + 1
    return out


def collect() -> tuple[list[Example], list[Block], list[str]]:
    """The examples to run, the blocks marked skip, and what breaks the conventions."""
    examples: list[Example] = []
    skipped: list[Block] = []
    problems: list[str] = []
    for page in PAGES:
        pending: list[Block] = []
        for b in read_blocks(page):
            if b.lang not in RUN | PARSED | NEVER:
                problems.append(f"{b.where}: info string {b.lang!r} is none of {sorted(RUN)}, ")
                problems[-1] += f"{sorted(PARSED | NEVER)}"
            if b.marker_text and b.marker is None:
                problems.append(f"{b.where}: marker not understood: {b.marker_text}")
            if b.marker == "skip":
                if not b.arg:
                    problems.append(f"{b.where}: a skipped example says why")
                skipped.append(b)
            elif b.marker == "file":
                if not re.fullmatch(r"[\w.-]+", b.arg):
                    problems.append(f"{b.where}: file marker needs a plain file name")
                pending.append(b)
            elif b.lang in RUN:
                if b.marker == "serve" and b.lang not in ("console", "sh"):
                    problems.append(f"{b.where}: serve applies to console and sh blocks")
                examples.append(Example(b, pending))
                pending = []
            elif b.marker is not None:
                problems.append(f"{b.where}: a {b.lang} block is never run; drop its marker")
        problems += [f"{b.where}: file {b.arg} is used by no example after it" for b in pending]
    return examples, skipped, problems


EXAMPLES, SKIPPED, PROBLEMS = collect()


# ---- running ----------------------------------------------------------------------------------


def cli_env(dsn: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PGSCHED_") and k not in ("DATABASE_URL", "COLUMNS", "LINES")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PGSCHED_DSN"] = dsn
    env["COLUMNS"] = "200"  # rich wraps at the terminal's width, 80 when it has none
    return env


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )


def console_parts(text: str) -> tuple[list[str], list[str]]:
    """The commands of a console block, and its expected output with each command replaced by
    a numbered marker line."""
    commands: list[str] = []
    expected: list[str] = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\") and k + 1 < len(lines):
                k += 1
                cmd += "\n" + lines[k]
            expected.append(f"$ {len(commands)}")
            commands.append(cmd)
        else:
            expected.append(line)
        k += 1
    return commands, expected


def comparable(lines: list[str]) -> list[str]:
    return [ln.strip() for ln in lines if ln.strip() and not BOX.search(ln)]


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(r"[^\n]*?".join(map(re.escape, line.split("..."))) + r"\n")
    return re.compile("".join(parts))


def run_console(block: Block, env: dict[str, str], cwd: Path) -> None:
    commands, expected = console_parts(block.text)
    script = ["set -o pipefail"]
    for n, cmd in enumerate(commands):
        script += [
            f"echo; echo '$ {n}'",  # on a line of its own after output without a newline
            cmd,
            f'rc=$?; if [ $rc -ne 0 ]; then echo "@@ command {n} exited $rc"; exit 99; fi',
        ]
    proc = bash("\n".join(script), env, cwd)
    actual = proc.stdout.splitlines()
    failed = re.search(r"^@@ command (\d+) exited (\d+)$", proc.stdout, re.M)
    if failed:
        pytest.fail(
            f"{block.where}: `{commands[int(failed[1])]}` exited {failed[2]}:\n{proc.stdout}",
            pytrace=False,
        )
    assert proc.returncode == 0, f"{block.where}: the script failed:\n{proc.stdout}"
    want, got = comparable(expected), comparable(actual)
    if not output_pattern(want).fullmatch("".join(g + "\n" for g in got)):
        labels = {f"$ {n}": f"$ {c}" for n, c in enumerate(commands)}
        diff = difflib.unified_diff(
            [labels.get(w, w) for w in want],
            [labels.get(g, g) for g in got],
            "in the docs",
            "when run",
            lineterm="",
        )
        pytest.fail(f"{block.where}: the output differs:\n" + "\n".join(diff), pytrace=False)


def run_sh(block: Block, env: dict[str, str], cwd: Path) -> None:
    proc = bash("set -e -o pipefail\n" + block.text, env, cwd)
    assert proc.returncode == 0, f"{block.where}: exit {proc.returncode}:\n{proc.stdout}"


def run_sql(block: Block, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        roles = "SELECT rolname FROM pg_roles"
        before = {r for (r,) in c.execute(roles)}
        try:
            c.execute(block.text.encode())  # no parameters: several statements may go at once
        except psycopg.Error as e:
            pytest.fail(f"{block.where}: {type(e).__name__}: {e}", pytrace=False)
        finally:
            for (role,) in c.execute(roles).fetchall():
                if role not in before:
                    c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def run_python(block: Block, dsn: str) -> None:
    code = compile(block.text, block.where, "exec")
    exec(code, {"__name__": "docs_example", "dsn": dsn})


def env_names(data: Any) -> set[str]:
    """The environment variables a YAML file's ``*_env`` keys name."""
    names: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            if str(k).endswith("_env"):
                names |= set(v.values()) if isinstance(v, dict) else {v}
            else:
                names |= env_names(v)
    elif isinstance(data, list):
        for v in data:
            names |= env_names(v)
    return names


def apply_command(data: Any, where: str) -> list[str]:
    keys = set(data) if isinstance(data, dict) else set()
    if "schedules" in keys:
        return ["schedules", "apply"]
    if keys & {"channels", "rules"}:
        return ["alerts", "apply"]
    if "tasks" in keys:
        return ["submit", "--workflow"]
    pytest.fail(f"{where}: YAML of no known kind (keys {sorted(keys)})", pytrace=False)


def apply_file(path: Path, data: Any, env: dict[str, str], where: str) -> None:
    env = {**env, **{name: "docs-example-value" for name in env_names(data)}}
    cmd = [str(BIN / "pgsched"), *apply_command(data, where), str(path)]
    proc = subprocess.run(
        cmd, env=env, cwd=path.parent, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, f"{where}: {' '.join(cmd[1:])}: {proc.stderr}{proc.stdout}"


def run_yaml(block: Block, env: dict[str, str], cwd: Path) -> None:
    data = yaml.safe_load(block.text)
    first = block.text.splitlines()[0]
    named = re.match(r"#\s*(examples/\S+)", first)
    name = "example.yaml"
    if named:
        source = REPO / named[1]
        assert source.is_file(), f"{block.where}: {named[1]} does not exist"
        if "(abridged)" not in first:
            same = yaml.safe_load(source.read_text()) == data
            assert same, f"{block.where}: not the data of {named[1]}"
        name = source.name
    path = cwd / name
    path.write_text(block.text)
    apply_file(path, data, env, block.where)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.block.where}-{e.block.lang}")
def test_example(example: Example, dsn: str, tmp_path: Path, monkeypatch) -> None:
    block = example.block
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for f in example.files:
        (tmp_path / f.arg).write_text(f.text)
    env = cli_env(dsn)
    if block.lang == "console" or block.lang == "sh":
        for tool in TOOLS:
            if re.search(rf"(^|[|$(;\s]){tool}\b", block.text) and shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed (make test installs it as root)")
        run = run_console if block.lang == "console" else run_sh
        if block.marker == "serve":
            with serving(dsn) as http:
                here = f"127.0.0.1:{http.base_url.port}"
                text = block.text.replace("localhost:8080", here)
                run(Block(block.page, block.line, block.lang, text), env, tmp_path)
        else:
            run(block, env, tmp_path)
    elif block.lang == "sql":
        run_sql(block, dsn)
    elif block.lang == "python":
        monkeypatch.chdir(tmp_path)
        run_python(block, dsn)
    elif block.lang == "yaml":
        run_yaml(block, env, tmp_path)


@pytest.mark.parametrize("block", SKIPPED, ids=lambda b: f"{b.where}-{b.lang}")
def test_skipped_example(block: Block) -> None:
    """Listed so that a run shows each example it does not run, and why."""
    pytest.skip(f"{block.where}: {block.arg}")


@pytest.mark.parametrize(
    "path", sorted(p for p in (REPO / "examples").iterdir() if p.suffix in (".yaml", ".json"))
)
def test_example_file_applies(path: Path, dsn: str, tmp_path: Path) -> None:
    """The files of examples/ that the docs name are applied as they are."""
    apply_file(path, yaml.safe_load(path.read_text()), cli_env(dsn), str(path.relative_to(REPO)))


# ---- the pages themselves ---------------------------------------------------------------------


def test_conventions() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)
    assert EXAMPLES


def test_data_blocks_parse() -> None:
    bad = []
    for page in PAGES:
        for b in read_blocks(page):
            try:
                if b.lang == "json":
                    json.loads(b.text)
                elif b.lang == "toml":
                    tomllib.loads(b.text)
                elif b.lang == "yaml":
                    yaml.safe_load(b.text)
            except (ValueError, yaml.YAMLError) as e:
                bad.append(f"{b.where}: {e}")
    assert not bad, "\n".join(bad)


def test_readme_is_short() -> None:
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move detail into docs/"


def without_blocks(page: Path) -> str:
    text = page.read_text()
    for b in read_blocks(page):
        text = text.replace(b.text, "\n")
    return text


def prose(page: Path) -> str:
    """The page without its fenced blocks and inline code: where its links are."""
    return re.sub(r"`[^`\n]*`", "", without_blocks(page))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in without_blocks(page).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)
