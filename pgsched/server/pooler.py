"""A throwaway PgBouncer in transaction mode in front of an ``EphemeralServer``: the suite's
pooler tests and the bench's fleet probe run behind it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from pgsched.errors import ServerError
from pgsched.server.ephemeral import EphemeralServer
from pgsched.server.process import die_with_parent, ensure_system_user, free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=1, autocommit=True) as c:
            return c.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def ephemeral_pgbouncer(
    server: EphemeralServer,
    database: str,
    pool: int = 4,
    clients: int = 100,
    listen: str = "127.0.0.1",
    start_timeout: float = 15,
) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `server`, listening on `listen`, with `pool`
    server connections and room for `clients`; yields the URL of `database` through it.

    The client is the server's superuser; its password goes only into the bouncer's 0600 auth
    file and into this process's password file ($PGPASSFILE), as for the server itself."""
    info = psycopg.conninfo.conninfo_to_dict(server.url(database))
    # Directly under /tmp: as root, pgbouncer runs as the unprivileged user, which cannot
    # traverse a 0700 directory of ours.
    d = Path(tempfile.mkdtemp(prefix="pgsched-bouncer-"))
    d.chmod(0o755)
    user = ensure_system_user() if os.geteuid() == 0 else None
    port = free_port()
    (d / "users.txt").write_text(f'"{info["user"]}" "{server.password}"\n')
    (d / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={info['port']}\n"
        "[pgbouncer]\n"
        f"listen_addr = {listen}\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {d}/users.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool}\nmax_client_conn = {clients}\n"
        "max_db_connections = 0\nignore_startup_parameters = extra_float_digits\n"
    )
    for f in d.iterdir():
        f.chmod(0o600)
        if user is not None:
            os.chown(f, user.pw_uid, user.pw_gid)
    log = open(d / "pgbouncer.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PGBOUNCER, str(d / "pgbouncer.ini")],
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(signal.SIGQUIT),
    )
    url = f"postgresql://{info['user']}@{listen}:{port}/{database}"
    with open(os.environ["PGPASSFILE"], "a") as passfile:
        passfile.write(f"{listen}:{port}:*:{info['user']}:{server.password}\n")
    try:
        end = time.monotonic() + start_timeout
        while not _accepts(url):
            if proc.poll() is not None or time.monotonic() > end:
                tail = (d / "pgbouncer.log").read_text(errors="replace")[-1000:]
                raise ServerError(f"pgbouncer did not start: {tail}")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        log.close()
        shutil.rmtree(d, ignore_errors=True)
