"""Who may connect, and with which password: SCRAM passwords on 127.0.0.1 and nothing else
(no Unix socket, no replication lines, no trust). The passwords live in 0600 libpq password
files: a cluster's in its home, the throwaway servers' in one file per process ($PGPASSFILE).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgsched.server.files import write_as, write_private
from pgsched.server.process import run_as

if TYPE_CHECKING:
    import psycopg

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
# Every server pgsched starts listens on the loopback address only and has no Unix socket.
DEV_SETTINGS = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": "''"}


def initdb(bin_dir: Path, data: Path, user: pwd.struct_passwd | None, password: str) -> None:
    """initdb with SCRAM for every connection and ``password`` for the superuser, then our own
    pg_hba.conf (no replication lines, no Unix socket lines). The password reaches initdb in an
    anonymous memory file (no path anyone could read), readable by the server user."""
    fd = os.memfd_create("pgsched-pw")
    try:
        os.write(fd, f"{password}\n".encode())
        if user is not None:
            os.fchown(fd, user.pw_uid, user.pw_gid)
        run_as(
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
    write_as(user, data / "pg_hba.conf", HBA, append=False)


def scram_verifier(conn: psycopg.Connection[Any], password: str, role: str) -> str:
    """The SCRAM verifier of ``password``, computed by libpq here: the server never sees the
    password itself (nor its log, whatever log_statement says)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()


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


def register_password(port: int, password: str | None) -> None:
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
