"""Running the server's programs: as root, as the unprivileged system user ``pgsched``
(``initdb`` and ``postgres`` refuse to run as root), created when missing; a child that dies
with its parent; ports on the loopback address."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from pgsched.errors import ServerError

SYSTEM_USER = "pgsched"


def is_root() -> bool:
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


def can_access_as(user: pwd.struct_passwd, path: Path, mode: str) -> bool:
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


def run_as(
    cmd: list[str],
    user: pwd.struct_passwd | None,
    timeout: float = 120,
    *,
    input: str | None = None,
    pass_fds: tuple[int, ...] = (),
) -> str:
    """Run ``cmd`` as ``user`` (None: as ourselves) with no supplementary groups: its stdout, or
    a one-line ServerError naming the program and its last line of error."""
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
