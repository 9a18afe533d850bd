"""A throwaway server for tests and benchmarks."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time

from pgsched.errors import ServerError
from pgsched.server.auth import DEV_SETTINGS, SUPERUSER, initdb, register_password
from pgsched.server.binaries import find_bin_dir, runnable_bin_dir
from pgsched.server.files import make_owned_dir, open_private_log, scratch_dir
from pgsched.server.process import die_with_parent, ensure_system_user, free_port, is_root

FAST_UNSAFE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EphemeralServer:
    """A throwaway cluster for tests and benchmarks: a child process that dies with its parent.

    ``durable=False`` turns off fsync, synchronous_commit and full_page_writes (tests);
    benchmarks keep the durability defaults.
    """

    def __init__(self, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self.user = ensure_system_user() if is_root() else None
        self.bin_dir = runnable_bin_dir(find_bin_dir(), self.user)
        # ours, 0755, in a place the server user can reach; only the data directory is its
        self.dir = scratch_dir(self.user)
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
        it in the process's password file ($PGPASSFILE, see register_password)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> EphemeralServer:
        if self.user is not None:
            make_owned_dir(self.data, self.user, 0o700)
        initdb(self.bin_dir, self.data, self.user, self.password)
        register_password(self.port, self.password)
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
        register_password(self.port, None)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EphemeralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
