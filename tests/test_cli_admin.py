"""`pgsched db start|status|url|stop` on a temporary home, and `pgsched migrate` (idempotent,
`--sql` for a DBA)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import pgsched.cli.app as cli_app
from pgsched.server import Cluster
from tests.conftest import wait_until

cli_app.register_commands()
runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app.app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("PGSCHED_DSN", "DATABASE_URL", "PGSCHED_HOME", "PGSCHED_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    # Under /tmp and traversable: as root the server runs as user 'pgsched'.
    base = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    base.chmod(0o755)
    monkeypatch.chdir(base)  # no stray pgsched.toml from the working tree
    try:
        yield base / "home"
    finally:
        Cluster(base / "home").stop()
        shutil.rmtree(base, ignore_errors=True)


def test_db_lifecycle(home: Path) -> None:
    h = str(home)
    assert "no embedded server" in run("--home", h, "db", "status", code=1)
    first = run("--home", h, "db", "start")
    assert first.startswith("running: postgresql://pgsched@127.0.0.1:")
    assert f"?passfile={home}/passfile" in first  # the password is in the file, not the URL
    assert run("--home", h, "db", "start") == first  # idempotent: same server, same port
    url = run("--home", h, "db", "url").strip()
    assert first.strip() == f"running: {url}"
    st = json.loads(run("--home", h, "db", "status", "--json"))
    assert st["running"] is True and st["url"] == url and st["pid"]
    assert f"port {st['port']}" in run("--home", h, "db", "status")
    with psycopg.connect(url, connect_timeout=5) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)

    out = run("--home", h, "migrate")
    assert out.startswith("schema at revision") and "(already)" not in out
    assert "(already)" in run("--home", h, "migrate")
    with psycopg.connect(url) as c:
        assert c.execute("SELECT to_regclass('pgsched.tasks') IS NOT NULL").fetchone() == (True,)
    # The embedded server also serves the task commands when no DSN is configured.
    task_id = run("--home", h, "submit", "noop").strip()
    assert json.loads(run("--home", h, "status", task_id, "--json"))["task_type"] == "noop"

    assert run("--home", h, "db", "stop").strip() == "stopped"
    assert run("--home", h, "db", "stop").strip() == "not running"
    assert "stopped:" in run("--home", h, "db", "status", code=1)
    assert json.loads(run("--home", h, "db", "status", "--json"))["running"] is False


def test_migrate_sql_prints_the_schema_without_a_server(home: Path) -> None:
    out = run("--home", str(home), "migrate", "--sql")
    assert "CREATE TABLE pgsched.tasks" in out
    assert "alembic_version" in out
    assert not home.exists()  # nothing was started


def test_migrate_against_a_dsn(empty_dsn: str) -> None:
    assert "(already)" not in run("--dsn", empty_dsn, "migrate")
    assert "(already)" in run("--dsn", empty_dsn, "migrate")


def test_a_command_that_started_the_embedded_server_says_so(home: Path) -> None:
    """Before: a command in a directory without a server started one silently, left it
    running, and said only "no pgsched schema"."""
    import pgsched.db

    pgsched.db.EMBEDDED_STARTED = None
    result = runner.invoke(cli_app.app, ["--home", str(home), "list"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "no pgsched schema" in lines[0], lines
    assert f"started an embedded server in {home}" in lines[0]
    assert f"pgsched --home {home} db stop" in lines[0]
    pgsched.db.EMBEDDED_STARTED = None
    # Already running: nothing was started by this command, so no such hint.
    result = runner.invoke(cli_app.app, ["--home", str(home), "list"])
    assert result.exit_code == 1 and "started an embedded server" not in result.stderr
    assert run("--home", str(home), "db", "stop").strip() == "stopped"


def _postgres_processes(data: Path) -> list[int]:
    """Pids of postgres processes serving the cluster in ``data``."""
    import psutil

    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if p.info["name"] == "postgres" and str(data) in cmd:
            found.append(p.pid)
    return found


def test_a_read_in_an_empty_directory_names_the_server_it_started(tmp_path: Path) -> None:
    """`pgsched list` as a real process where there is no .pgsched, no DSN and no config:
    it starts the embedded server, and its one stderr line says where that server is and
    how to stop it; `pgsched db stop` there leaves no postgres process behind."""
    import subprocess

    from tests.conftest import PGSCHED

    base = Path(tempfile.mkdtemp(prefix="pgs-empty-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir()
    (base / "tmp").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PGSCHED_") and k not in ("DATABASE_URL", "PGPASSFILE")
    }
    env.update(HOME=str(base / "home"), TMPDIR=str(base / "tmp"))
    work = base / "work"
    work.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PGSCHED, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )

    data: Path | None = None
    try:
        r = cli("list")
        assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "no pgsched schema" in lines[0]
        home = Cluster(work / ".pgsched").home  # where root's server user can reach, if moved
        assert f"this command started an embedded server in {home}" in lines[0]
        assert f"`pgsched --home {home} db stop` stops it" in lines[0]
        data = home / "data"
        assert _postgres_processes(data), "the server runs until stopped"
        # Running already: the next command starts nothing and says nothing of it.
        r = cli("list")
        assert r.returncode == 1 and "started" not in r.stderr, r.stderr
        # A command that succeeds says it too, on a note line of its own.
        r = cli("db", "stop")
        assert (r.returncode, r.stdout.strip()) == (0, "stopped"), r.stderr
        r = cli("migrate")
        assert r.returncode == 0 and r.stdout.startswith("schema at revision"), r.stderr
        assert r.stderr.splitlines() == [
            f"note: this command started an embedded server in {home}, as no DSN is "
            f"configured; `pgsched --home {home} db stop` stops it"
        ]
        r = cli("db", "stop")
        assert (r.returncode, r.stdout.strip()) == (0, "stopped"), r.stderr
        wait_until(lambda: not _postgres_processes(data), 30, message="postgres to exit")
    finally:
        if data is not None:
            Cluster(data.parent).stop()
            shutil.rmtree(data.parent, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
