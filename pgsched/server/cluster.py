"""A cluster under ``$PGSCHED_HOME`` (default ``./.pgsched``): made, started, stopped and
described, on a free port of 127.0.0.1 kept in ``server.json``. pgsched connects to it as the
application role ``pgsched``, which owns the ``pgsched`` database and nothing more (no
superuser, no CREATEROLE, no CREATEDB)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict
from urllib.parse import quote

from pgsched.errors import ServerError
from pgsched.server.auth import (
    APP_ROLE,
    DEV_SETTINGS,
    GROUP_ROLES,
    PASSFILE,
    SUPERUSER,
    initdb,
    scram_verifier,
)
from pgsched.server.binaries import find_bin_dir, runnable_bin_dir, server_version
from pgsched.server.files import (
    SYSTEM_DIR,
    make_owned_dir,
    open_dir,
    open_private_log,
    path_key,
    private_entry,
    system_dir,
    touch_owned,
    write_as,
    write_private,
)
from pgsched.server.process import (
    SYSTEM_USER,
    can_access_as,
    ensure_system_user,
    free_port,
    is_root,
    port_in_use,
    run_as,
)

DATABASE = "pgsched"


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
        self.user = ensure_system_user() if is_root() else None
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
        elsewhere = SYSTEM_DIR / "homes" / path_key(home, 16)
        if (home / "data" / "PG_VERSION").exists():
            return home
        if (elsewhere / "data" / "PG_VERSION").exists():
            return elsewhere
        existing = next(p for p in home.parents if p.exists())
        return home if can_access_as(self.user, existing, "x") else elsewhere

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
            system_dir("homes", self.home.name)  # root's, 0755
            make_owned_dir(self.data, self.user, 0o700)
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
            make_owned_dir(self.data, self.user, 0o700)
            if not can_access_as(self.user, self.data, "w"):
                raise ServerError(
                    f"user {SYSTEM_USER!r} cannot reach {self.home} (a parent directory is "
                    f"not traversable): set PGSCHED_HOME to a path under /tmp or /var/lib"
                )

    def _own_home(self, mode: int) -> None:
        """Take the home as ours (never through a link). A home an older pgsched gave to the
        server user may hold links planted there: every entry but the data directory that is
        not our own regular file is removed. Another user's home is refused."""
        fd = open_dir(self.home)
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
                private_entry(self.home, name, os.geteuid())

    def init(self, settings: dict[str, str] | None = None) -> None:
        if self.initialized():
            return
        self._prepare_home()
        passwords = {SUPERUSER: secrets.token_urlsafe(32), APP_ROLE: secrets.token_urlsafe(32)}
        initdb(self.bin_dir, self.data, self.user, passwords[SUPERUSER])
        conf = {**DEV_SETTINGS, **(settings or {})}
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        write_as(self.user, self.data / "postgresql.auto.conf", text, append=True)
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
                touch_owned(self.log, self.user)
            else:
                os.close(open_private_log(self.log))
            self._pg_ctl("start", ["-l", str(self.log), "-o", f"-p {port}"], timeout)
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
        self._pg_ctl("stop", ["-m", "fast"], timeout)
        return True

    def _pg_ctl(self, action: str, options: list[str], timeout: float) -> None:
        """``pg_ctl ACTION`` on the data directory, as the server user, waiting for it to be
        done (at most ``timeout`` seconds)."""
        run_as(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                *options,
                "-w",
                "-t",
                str(int(timeout)),
                action,
            ],
            self.user,
            timeout=timeout + 5,
        )

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
