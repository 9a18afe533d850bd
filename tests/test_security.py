"""Attacks on a default installation, each performed and seen refused: another local user
against the embedded server and its files, a submitter against shell tasks, http tasks against
the worker's network, an outside session against the waker and recovery locks."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from pgsched import server
from pgsched.builtins import HttpRunner, ShellRunner, redact_url
from pgsched.client import Client
from pgsched.config import Settings
from pgsched.db import WORKER_LOCK_NAMESPACE
from pgsched.errors import PermanentError, PermissionDenied, UsageError, ValidationError
from pgsched.registry import Registry, TaskContext, TaskTimeout
from pgsched.server import Cluster, EphemeralServer, open_private_log
from pgsched.worker import Worker, reaper
from pgsched.worker.connections import Connections
from pgsched.worker.load import LoadSampler
from tests.conftest import FAST, python_for, wait_until

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="another OS user can be made only as root")
PYTHON = sys.executable


# -- a throwaway unprivileged OS user ----------------------------------------------------------


@pytest.fixture(scope="module")
def intruder() -> Iterator[pwd.struct_passwd]:
    """An ordinary local user made for these tests, removed after them."""
    name = f"pgs-intruder-{os.getpid() % 100000}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def readable_psycopg() -> Iterator[Path]:
    """This environment's psycopg, copied where any user can read it: the checkout and its
    virtualenv may sit in a directory only their owner can enter (root's home, mktemp -d)."""
    site = Path(psycopg.__file__).parents[1]
    dest = Path(tempfile.mkdtemp(prefix="pgs-sec-site-", dir="/tmp"))
    dest.chmod(0o755)
    for name in ("psycopg", "psycopg_binary", "psycopg_binary.libs", "typing_extensions.py"):
        src = site / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644 | (path.stat().st_mode & 0o111))
    yield dest
    shutil.rmtree(dest, ignore_errors=True)


def as_user(
    user: pwd.struct_passwd, code: str, *args: str, site: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``code`` as ``user``: an interpreter of this version it can run, with psycopg from
    ``site`` (a copy it can read) or this environment."""
    python = python_for(user)
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that user {user.pw_name} can run")
    return subprocess.run(
        [python, "-c", code, *args],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": os.defpath, "PYTHONPATH": str(site or Path(psycopg.__file__).parents[1])},
        check=False,
    )


@pytest.fixture
def cluster_home() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="pgs-sec-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base / "home"
    finally:
        with contextlib.suppress(Exception):
            Cluster(base / "home").stop()
        shutil.rmtree(base, ignore_errors=True)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSCHED_", "DATABASE_URL"))}
    if os.environ.get("PGSCHED_PG_BIN"):
        env["PGSCHED_PG_BIN"] = os.environ["PGSCHED_PG_BIN"]
    return subprocess.run(
        [PYTHON, "-m", "pgsched", "--home", str(home), *args],
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


ATTACK = """
import sys, psycopg
url = sys.argv[1]
for attempt in (url, url.split("?")[0], url.split("?")[0].replace("pgsched@", "postgres@")):
    try:
        with psycopg.connect(attempt, connect_timeout=5) as c:
            c.execute("COPY (SELECT 1) TO PROGRAM 'id > /tmp/pgs-owned'")
        print("IN", attempt)
    except psycopg.Error as e:
        print("REFUSED", type(e).__name__, str(e).strip().splitlines()[-1])
"""


# -- 1. the embedded server: no trust, no superuser for pgsched --------------------------------


@needs_root
def test_another_local_user_cannot_connect_to_the_embedded_server(
    cluster_home: Path, intruder: pwd.struct_passwd, readable_psycopg: Path
) -> None:
    res = _cli(cluster_home, "db", "start")
    assert res.returncode == 0, res.stderr
    url = res.stdout.split("running: ", 1)[1].strip()
    assert url.startswith("postgresql://pgsched@127.0.0.1:") and "passfile=" in url
    passfile = cluster_home / "passfile"
    st = passfile.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)

    out = as_user(intruder, ATTACK, url, site=readable_psycopg)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("REFUSED") for line in lines), lines
    assert not Path("/tmp/pgs-owned").exists()

    # pgsched's own role: no superuser, no role or database creation, no server programs
    with psycopg.connect(url, connect_timeout=5) as c:
        row = c.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("COPY (SELECT 1) TO PROGRAM 'true'")
    su = Cluster(cluster_home).url("postgres", role="postgres")
    with psycopg.connect(su, connect_timeout=5) as c:
        rules = c.execute("SELECT type, database, address, auth_method FROM pg_hba_file_rules")
        assert rules.fetchall() == [("host", ["all"], "127.0.0.1", "scram-sha-256")]
        assert c.execute("SHOW unix_socket_directories").fetchone() == ("",)


def test_the_test_server_wants_a_password(pg_server: EphemeralServer) -> None:
    url = pg_server.url()
    assert pg_server.password not in url  # URLs go on command lines, which anyone can read
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, connect_timeout=5, passfile="/dev/null").close()
    st = os.stat(os.environ["PGPASSFILE"])
    assert st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0
    with psycopg.connect(pg_server.url(), connect_timeout=5) as c:
        hba = c.execute("SELECT type, database, auth_method FROM pg_hba_file_rules").fetchall()
    assert hba == [("host", ["all"], "scram-sha-256")]


# -- 2. root never follows what the server user controls ---------------------------------------


@needs_root
def test_root_does_not_follow_links_planted_in_the_home(cluster_home: Path, tmp_path: Path) -> None:
    """A home an older pgsched gave to the server user: links to root's files planted in it
    are replaced, never written through or chowned; the home becomes root's."""
    pg = server.ensure_system_user()
    victims = {}
    for name in ("server.json", "postgres.log", "passfile"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("root's own\n")
        victims[name] = victim
    cluster_home.mkdir()
    os.chown(cluster_home, pg.pw_uid, pg.pw_gid)
    for name, victim in victims.items():
        (cluster_home / name).symlink_to(victim)  # as the server user would
    hard = tmp_path / "victim-hard"
    hard.write_text("root's own\n")
    os.link(hard, cluster_home / "checkout")

    res = _cli(cluster_home, "db", "start")
    assert res.returncode == 0, res.stderr
    for victim in [*victims.values(), hard]:
        st = victim.stat()
        assert victim.read_text() == "root's own\n" and st.st_uid == 0, victim
    st = cluster_home.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o711)
    for name in ("server.json", "passfile"):
        assert not (cluster_home / name).is_symlink()
        assert (cluster_home / name).stat().st_uid == 0
    log = os.lstat(cluster_home / "postgres.log")
    assert log.st_uid == pg.pw_uid and log.st_mode & 0o077 == 0
    data = (cluster_home / "data").stat()
    assert (data.st_uid, data.st_mode & 0o777) == (pg.pw_uid, 0o700)
    # and the server user cannot plant anything there any more
    out = subprocess.run(
        ["ln", "-sf", "/etc/passwd", str(cluster_home / "server.json")],
        user=pg.pw_uid,
        group=pg.pw_gid,
        capture_output=True,
        check=False,
    )
    assert out.returncode != 0


@needs_root
def test_root_does_not_take_another_users_home(
    cluster_home: Path, intruder: pwd.struct_passwd
) -> None:
    cluster_home.mkdir(mode=0o755)
    os.chown(cluster_home, intruder.pw_uid, intruder.pw_gid)
    res = _cli(cluster_home, "db", "start")
    assert res.returncode == 1 and res.stdout == ""
    assert f"belongs to uid {intruder.pw_uid}" in res.stderr and len(res.stderr.splitlines()) == 1
    assert cluster_home.stat().st_uid == intruder.pw_uid
    assert sorted(os.listdir(cluster_home)) == []


def test_a_log_is_never_opened_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "worker.log").symlink_to(victim)
    os.close(open_private_log(tmp_path / "worker.log"))
    assert victim.read_text() == "keep\n"
    st = os.lstat(tmp_path / "worker.log")
    assert not (tmp_path / "worker.log").is_symlink() and st.st_mode & 0o777 == 0o600


# -- 3. shell tasks ----------------------------------------------------------------------------


def _ctx(queue: str = "shell") -> TaskContext:
    return TaskContext({"id": 1, "queue": queue})


def test_shell_tasks_see_only_the_allowlisted_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key")
    monkeypatch.setenv("PGSCHED_DSN", "postgresql://u:hunter2@db/x")
    run = ShellRunner(Settings())
    out = run({"command": "env"}, _ctx(), threading.Event())["stdout"]
    assert "s3cr3t-key" not in out and "hunter2" not in out
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert names <= {"PATH", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "_"}, names
    opened = ShellRunner(Settings(task_env=["PATH", "AWS_SECRET_ACCESS_KEY"]))
    assert "s3cr3t-key" in opened({"command": "env"}, _ctx(), threading.Event())["stdout"]


def test_shell_tasks_run_only_from_the_shell_queues() -> None:
    run = ShellRunner(Settings())
    with pytest.raises(PermanentError, match="queue 'default' may not run commands"):
        run({"command": "touch /tmp/pgs-should-not-exist"}, _ctx("default"), threading.Event())
    assert not Path("/tmp/pgs-should-not-exist").exists()


def test_shell_output_is_read_as_a_bounded_tail() -> None:
    run = ShellRunner(Settings(shell_output_bytes=1000))
    me = psutil.Process()
    before = me.memory_info().rss
    res = run({"command": "head -c 300000000 /dev/zero; echo end"}, _ctx(), threading.Event())
    grew = me.memory_info().rss - before
    assert len(res["stdout"]) == 1000 and res["stdout"].endswith("end\n")
    assert grew < 50 * 2**20, f"RSS grew by {grew / 2**20:.0f} MiB for 300 MB of output"


def test_a_shell_timeout_kills_descendants_that_left_with_setsid(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cmd = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & sleep 60"
    run = ShellRunner(Settings())
    with pytest.raises(TaskTimeout):
        run({"command": cmd, "timeout": 1}, _ctx(), threading.Event())
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, 5, message=f"the setsid child {pid} to die")


def test_what_a_shell_command_leaves_running_ends_with_it(tmp_path: Path) -> None:
    """A command that exits normally leaves a background child, a setsid daemon and a
    double-forked grandchild: none outlives the attempt."""
    pids = tmp_path / "pids"
    cmd = (
        f"sleep 300 & echo $! >> {pids}; "
        f"setsid sh -c 'echo $$ >> {pids}; exec sleep 301' & "
        f"sh -c '(sleep 302 & echo $! >> {pids}) &' ; "
        f"while [ $(wc -l < {pids}) -lt 3 ]; do sleep 0.01; done; echo started"
    )
    res = ShellRunner(Settings())({"command": cmd}, _ctx(), threading.Event())
    assert res["exit_code"] == 0 and res["stdout"] == "started\n"
    left = [int(p) for p in pids.read_text().split()]
    assert len(left) == 3

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: all(gone(p) for p in left), 5, message=f"{left} to end")


def test_a_shell_command_that_dies_of_a_signal_and_one_that_cannot_start() -> None:
    run = ShellRunner(Settings())
    with pytest.raises(Exception, match="exit code -9"):
        run({"command": ["sh", "-c", "kill -9 $$"]}, _ctx(), threading.Event())
    with pytest.raises(PermanentError, match="'no-such-program' is not an executable"):
        run({"command": ["no-such-program"]}, _ctx(), threading.Event())


def test_a_submitter_not_in_pgsched_shell_cannot_create_shell_tasks(
    conn: psycopg.Connection,
) -> None:
    role = f"pgs_submitter_{os.getpid()}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        conn.execute(f"GRANT USAGE ON SCHEMA pgsched TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON pgsched.tasks, pgsched.schedules TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgsched TO {role}")
        count = "SELECT count(*) FROM pgsched.all_tasks"
        before = conn.execute(count).fetchone()[0]
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgsched_shell"):
            conn.execute(
                "INSERT INTO pgsched.tasks (task_type, payload) VALUES ('shell', %s)",
                ['{"command": "id; env"}'],
            )
        tid = conn.execute(
            "INSERT INTO pgsched.tasks (task_type) VALUES ('noop') RETURNING id"
        ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE pgsched.tasks SET task_type = 'shell' WHERE id = %s", [tid])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO pgsched.schedules (name, every, task_type)"
                " VALUES ('x', '1 minute', 'shell')"
            )
        conn.execute("RESET ROLE")
        assert conn.execute(count).fetchone()[0] == before + 1  # the noop only
        conn.execute(f"GRANT pgsched_shell TO {role}")
        conn.execute(f"SET ROLE {role}")
        conn.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('shell', 'shell')")
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_the_client_names_the_refused_shell_submission(dsn: str, conn: psycopg.Connection) -> None:
    role = f"pgs_client_{os.getpid()}"
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        conn.execute(f"GRANT USAGE ON SCHEMA pgsched TO {role}")
        conn.execute(f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA pgsched TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgsched TO {role}")
        conn.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgsched TO {role}")
        info = conn.info
        url = f"postgresql://{role}:pw@{info.host}:{info.port}/{info.dbname}"
        with pytest.raises(PermissionDenied, match=r"^role pgs_client_\d+ may not submit shell"):
            Client(url).submit("shell", {"command": "id"}, queue="shell")
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


# -- 4. http tasks -----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str]
    mode = "ok"

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        if self.mode == "big":
            self.send_header("Content-Length", str(50 * 2**20))
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(50):
                    self.wfile.write(b"x" * 2**20)
        elif self.mode == "trickle":
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
        else:
            body = b'{"AccessKeyId": "metadata-secret"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"hits": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://10.0.0.1/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:9/",
    ],
)
def test_http_tasks_refuse_addresses_that_are_not_global(url: str) -> None:
    with pytest.raises(PermanentError, match="address: refused"):
        HttpRunner(Settings())({"url": url, "timeout": 2}, _ctx(), threading.Event())


def test_http_checks_the_address_a_name_resolves_to(web: tuple[str, Any]) -> None:
    base, handler = web
    port = base.rsplit(":", 1)[1]
    with pytest.raises(PermanentError, match=r"localhost is 127\.0\.0\.1, a loopback address"):
        HttpRunner(Settings())({"url": f"http://localhost:{port}/"}, _ctx(), threading.Event())
    assert handler.hits == []  # never connected
    allowed = HttpRunner(Settings(http_allow=["127.0.0.0/8"]))
    res = allowed({"url": f"http://localhost:{port}/meta"}, _ctx(), threading.Event())
    assert res["status"] == 200 and handler.hits == ["/meta"]


def test_http_body_is_capped(web: tuple[str, Any]) -> None:
    base, handler = web
    handler.mode = "big"
    run = HttpRunner(Settings(http_allow=["127.0.0.1"], http_max_bytes=2**20))
    with pytest.raises(PermanentError, match="body larger than 1048576 bytes"):
        run({"url": base + "/big"}, _ctx(), threading.Event())


def test_http_deadline_is_total_and_the_thread_ends_with_the_attempt(
    web: tuple[str, Any],
) -> None:
    base, handler = web
    handler.mode = "trickle"  # a byte every 100 ms: no single read ever times out
    run = HttpRunner(Settings(http_allow=["127.0.0.1"]))
    started = time.monotonic()
    with pytest.raises(TaskTimeout):
        run({"url": base + "/slow", "timeout": 1}, _ctx(), threading.Event())
    assert time.monotonic() - started < 3

    # an attempt stopped from outside (its task timed out, was cancelled) ends its thread
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: run({"url": base + "/slow", "timeout": 60}, _ctx(), stop), daemon=True
    )
    t.start()
    wait_until(lambda: len(handler.hits) == 2, 5, message="the second request")
    stop.set()
    t.join(3)
    assert not t.is_alive()


def _stopped_within(run: HttpRunner, url: str, started: threading.Event) -> bool:
    """Run an http task with a 60 s timeout, stop it once ``started`` is set; whether its
    thread ended within 5 s of the stop."""
    stop = threading.Event()
    t = threading.Thread(target=lambda: run({"url": url, "timeout": 60}, _ctx(), stop), daemon=True)
    t.start()
    assert started.wait(10)
    stop.set()
    t.join(5)
    return not t.is_alive()


def test_http_stop_while_connecting_or_waiting_for_headers() -> None:
    """A server that accepts and never answers, and one whose accept queue is full (the
    connect itself hangs): a stop ends the attempt, not the 60 s timeout."""
    import socket as sk

    run = HttpRunner(Settings(http_allow=["127.0.0.1"]))
    with sk.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        accepted = threading.Event()

        def accept() -> None:
            conn, _ = mute.accept()
            accepted.set()
            conn.recv(65536)  # the request; no answer
            time.sleep(10)
            conn.close()

        threading.Thread(target=accept, daemon=True).start()
        port = mute.getsockname()[1]
        assert _stopped_within(run, f"http://127.0.0.1:{port}/", accepted)

    with sk.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the accept queue; later SYNs are dropped
            f = sk.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        connecting = threading.Event()
        threading.Timer(0.3, connecting.set).start()
        try:
            assert _stopped_within(run, f"http://127.0.0.1:{port}/", connecting)
        finally:
            for f in fillers:
                f.close()


def test_http_errors_do_not_show_credentials() -> None:
    url = "http://admin:hunter2@127.0.0.1:9/path?token=abc123"
    assert redact_url(url) == "http://127.0.0.1:9/path"
    run = HttpRunner(Settings(http_allow=["127.0.0.1"]))
    with pytest.raises(RuntimeError) as e:
        run({"url": url, "timeout": 2}, _ctx(), threading.Event())
    assert "hunter2" not in str(e.value) and "abc123" not in str(e.value)


# -- 5. advisory-lock squatting ----------------------------------------------------------------


def test_a_squatted_waker_lock_does_not_stop_the_queue(dsn: str) -> None:
    """Another session holds the waker lock of the only worker: it still polls."""
    w = Worker(dsn, FAST, name="lonely", registry=Registry())
    with psycopg.connect(dsn, autocommit=True) as squatter:
        squatter.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", (WORKER_LOCK_NAMESPACE, w.signature)
        )
        w.start()
        try:
            tid = Client(dsn).submit("noop")
            wait_until(
                lambda: Client(dsn).get(tid)["status"] == "succeeded",
                FAST.poll_interval * 3 + 2,
                message="the task to run within the fallback poll",
            )
        finally:
            w.stop(timeout=15)


def test_recovery_cannot_be_blocked_by_an_outside_session(
    dsn: str, conn: psycopg.Connection
) -> None:
    role = f"pgs_reader_{os.getpid()}"  # sees the schema and reads every table
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        conn.execute(f"GRANT USAGE ON SCHEMA pgsched TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA pgsched TO {role}")
        conn.execute(
            "INSERT INTO pgsched.workers (name, host, pid, status, last_heartbeat)"
            " VALUES ('gone', 'h', 1, 'active', now() - interval '1 hour')"
        )
        tid = conn.execute(
            "INSERT INTO pgsched.tasks (task_type, status, attempts, assigned_worker)"
            " VALUES ('noop', 'running', 1, 'gone') RETURNING id"
        ).fetchone()[0]
        with psycopg.connect(dsn, autocommit=True) as squatter:
            squatter.execute(f"SET ROLE {role}")
            # the gate of old: any session could hold it
            squatter.execute("SELECT pg_advisory_lock(%s, 0)", (WORKER_LOCK_NAMESPACE,))
            for attempt in (
                "LOCK TABLE pgsched.recovery_gate IN EXCLUSIVE MODE",
                "SELECT pgsched.try_recovery_gate()",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), squatter.transaction():
                    squatter.execute(attempt)
            with psycopg.connect(dsn, autocommit=True) as worker_conn:
                worker_conn.row_factory = psycopg.rows.dict_row
                dead, lost = reaper.reap(worker_conn, heartbeat_timeout=3)
        assert dead == ["gone"] and [r["task_id"] for r in lost] == [tid]
        status = conn.execute(
            "SELECT status FROM pgsched.all_tasks WHERE id = %s", [tid]
        ).fetchone()
        assert status == ("retrying",)
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_a_stopped_waker_does_not_stop_the_queue(dsn: str) -> None:
    """The waker hangs (SIGSTOP) holding its lock; another idle worker still claims the
    task within its fallback poll (heartbeat_timeout long: no recovery steps in)."""
    env = {
        **os.environ,
        "PGSCHED_DSN": dsn,
        "PGSCHED_POLL_INTERVAL": "1",
        "PGSCHED_HEARTBEAT_TIMEOUT": "120",
        "PGSCHED_LOG_LEVEL": "warning",
    }
    exe = [PYTHON, "-m", "pgsched", "worker"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([*exe, "--name", "waker"], env=env))

        def waker_pid() -> int | None:
            with psycopg.connect(dsn, autocommit=True) as c:
                row = c.execute(
                    "SELECT w.pid FROM pg_locks l JOIN pgsched.workers w ON w.name = 'waker'"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                   WHERE datname = current_database())",
                    (WORKER_LOCK_NAMESPACE,),
                ).fetchone()
            return row[0] if row else None

        wait_until(waker_pid, 20, message="the first worker to hold the waker lock")
        procs.append(subprocess.Popen([*exe, "--name", "other"], env=env))
        with psycopg.connect(dsn, autocommit=True) as c:
            wait_until(
                lambda: c.execute(
                    "SELECT 1 FROM pgsched.workers WHERE name = 'other' AND status = 'active'"
                ).fetchone(),
                20,
                message="the second worker",
            )
        procs[0].send_signal(signal.SIGSTOP)
        tid = Client(dsn).submit("noop")
        wait_until(
            lambda: Client(dsn).get(tid)["status"] == "succeeded", 10, message="the task to run"
        )
        assert Client(dsn).get(tid)["history"][-1]["worker"] == "other"
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait(10)


# -- 6. limits in the table --------------------------------------------------------------------


def test_payload_and_schedule_limits_hold_for_a_plain_insert(conn: psycopg.Connection) -> None:
    count = "SELECT count(*) FROM pgsched.all_tasks"
    before = conn.execute(count).fetchone()[0]
    big = json.dumps({"x": "a" * (2 * 2**20)})
    with pytest.raises(psycopg.errors.CheckViolation, match="tasks_payload_size"):
        conn.execute("INSERT INTO pgsched.tasks (task_type, payload) VALUES ('noop', %s)", [big])
    assert conn.execute(count).fetchone()[0] == before
    with pytest.raises(psycopg.errors.CheckViolation, match="schedules_every_minimum"):
        conn.execute(
            "INSERT INTO pgsched.schedules (name, every, task_type) VALUES ('f', '1ms', 'noop')"
        )
    with pytest.raises(psycopg.errors.CheckViolation, match="schedules_misfire_cap_range"):
        conn.execute(
            "INSERT INTO pgsched.schedules (name, every, task_type, misfire_cap)"
            " VALUES ('m', '1 minute', 'noop', 1000000)"
        )


def test_the_client_refuses_a_huge_payload_in_one_line(dsn: str) -> None:
    with pytest.raises(ValidationError, match="payload: larger than the limit"):
        Client(dsn).submit("noop", {"x": "a" * (2 * 2**20)})


# -- 7. time limits on pgsched's own sessions --------------------------------------------------


def test_worker_sessions_carry_time_limits(dsn: str) -> None:
    settings = Settings(**{**FAST.model_dump(), "statement_timeout": 7, "lock_timeout": 3})
    with Connections(dsn, dsn, settings, LoadSampler()).pooled() as c:
        assert c.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "7s"
        assert c.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "3s"
        row = c.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert row["idle_in_transaction_session_timeout"] == "1min"
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(8)")


def test_cli_client_and_scheduler_sessions_give_up_on_a_held_lock(dsn: str) -> None:
    """Someone holds pgsched.tasks locked: a submit from the CLI or the Python API gives up
    after lock_timeout with one line, and leaves nothing half-written."""
    import subprocess
    import sys

    from pgsched.errors import TimedOut
    from pgsched.schedules import Scheduler

    exe = Path(sys.executable).parent / "pgsched"
    env = {**os.environ, "PGSCHED_DSN": dsn, "PGSCHED_LOCK_TIMEOUT": "0.5"}
    settings = Settings(**{**FAST.model_dump(), "lock_timeout": 0.5})
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE pgsched.tasks IN ACCESS EXCLUSIVE MODE")
        r = subprocess.run(
            [str(exe), "submit", "noop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1, (r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert "lock timeout" in lines[0] and "nothing was changed" in lines[0]
        client = Client.from_settings(settings.model_copy(update={"dsn": dsn}))
        with client, pytest.raises(TimedOut, match="lock timeout"):
            client.submit("noop")
        sched = Scheduler(dsn, settings=Settings(**{**FAST.model_dump(), "statement_timeout": 7}))
        try:
            row = sched.connection().execute("SHOW statement_timeout").fetchone()
            assert row["statement_timeout"] == "7s"
        finally:
            sched.close()
        holder.rollback()
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM pgsched.all_tasks").fetchone()[0] == 0


def test_migrate_gives_up_on_a_held_lock_and_names_the_holder(empty_dsn: str) -> None:
    from pgsched import migrate
    from pgsched.db import ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK
    from pgsched.errors import PgschedError

    with psycopg.connect(empty_dsn, autocommit=True, application_name="squatter") as c:
        c.execute("SELECT pg_advisory_lock(%s, %s)", (ADMIN_LOCK_NAMESPACE, MIGRATE_LOCK))
        started = time.monotonic()
        with pytest.raises(
            PgschedError,
            match=r"held by pid \d+ \(role postgres, application "
            r"squatter",
        ):
            migrate.upgrade(empty_dsn, lock_timeout=0.5)
        assert time.monotonic() - started < 10
    assert migrate.current(empty_dsn) is None  # nothing half-done


# -- 8. secrets and terminals ------------------------------------------------------------------


def test_config_masks_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pgsched.cli import app as cli_app
    from pgsched.cli import common
    from tests.cli import runner

    monkeypatch.setattr(common.console, "width", 400)  # no cell wraps
    monkeypatch.chdir(tmp_path)
    for var in ("PGSCHED_DSN", "DATABASE_URL", "PGSCHED_CONFIG", "PGSCHED_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for dsn in (
        "postgresql://app:hunter2@db.example/x",
        "host=db.example user=app password=hunter2",
        "postgresql://db.example/x?password=hunter2&sslmode=require",
    ):
        for json_flag in ([], ["--json"]):
            r = runner.invoke(cli_app.app, ["--dsn", dsn, "config", *json_flag])
            assert r.exit_code == 0, r.stdout
            assert "hunter2" not in r.stdout and "***" in r.stdout


def test_a_config_file_others_can_write_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pgsched.cli import app as cli_app
    from tests.cli import runner

    monkeypatch.chdir(tmp_path)
    for var in ("PGSCHED_DSN", "DATABASE_URL", "PGSCHED_CONFIG", "PGSCHED_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "pgsched.toml"
    cfg.write_text('dsn = "postgresql://evil/x"\n')
    cfg.chmod(0o666)
    r = runner.invoke(cli_app.app, ["config", "--json"])
    assert r.exit_code == 2 and "writable by other users" in r.stderr
    assert "evil" not in r.stdout
    cfg.chmod(0o644)
    assert runner.invoke(cli_app.app, ["config", "--json"]).exit_code == 0


def test_database_text_is_printed_as_text(
    dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgsched.cli import common
    from tests.cli import ok

    tid = conn.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, last_error) VALUES"
        " ('[link=http://evil.example]click[/link]', '[bold]q', %s) RETURNING id",
        ["boom \x1b]0;pwned\x07 \x1b[2J"],
    ).fetchone()[0]
    wide = 400  # no cell wraps
    monkeypatch.setattr(common.console, "width", wide)
    listed = ok(dsn, "list")
    shown = ok(dsn, "status", str(tid))
    for out in (listed, shown):
        assert "\x1b" not in out and "\x07" not in out
        assert "[link=http://evil.example]click[/link]" in out and "[bold]q" in out
    assert "boom \\x1b]0;pwned\\x07 \\x1b[2J" in shown  # control characters written out


def test_app_does_not_put_the_working_directory_first(dsn: str, tmp_path: Path) -> None:
    """A stray yaml.py in the working directory is not imported in place of PyYAML."""
    (tmp_path / "yaml.py").write_text(f"open({str(tmp_path / 'hijacked')!r}, 'w').close()\n")
    (tmp_path / "mytasks.py").write_text("import yaml\nassert hasattr(yaml, 'safe_load')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSCHED_", "DATABASE_URL"))}
    env["PGSCHED_DSN"] = dsn
    pgsched = Path(sys.executable).parent / "pgsched"
    for app in ("mytasks", "mytasks.py"):
        r = subprocess.run(
            [str(pgsched), "worker", "--app", app, "--burst"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert not (tmp_path / "hijacked").exists()


def test_a_schedule_every_millisecond_is_refused_with_its_line() -> None:
    from pgsched.schedule_file import parse_schedules

    text = "schedules:\n  - name: ok\n    every: 1m\n    task_type: noop\n"
    text += "  - name: flood\n    every: 1ms\n    task_type: noop\n"
    with pytest.raises(UsageError, match=r"s\.yaml:6: schedule 'flood': every: must be at least"):
        parse_schedules(text, "s.yaml")


def test_a_workflow_has_a_size_limit() -> None:
    from pgsched.workflows import MAX_WORKFLOW_TASKS, parse_workflow

    tasks = [{"name": f"t{i}", "task_type": "noop"} for i in range(MAX_WORKFLOW_TASKS + 1)]
    with pytest.raises(ValidationError, match="at most 10000"):
        parse_workflow({"name": "huge", "tasks": tasks})
    parse_workflow({"name": "big", "tasks": tasks[:MAX_WORKFLOW_TASKS]})


def test_a_shell_schedule_fires_for_a_worker_role_not_in_pgsched_shell(
    dsn: str, conn: psycopg.Connection
) -> None:
    """The schedule was written by a member; its ticks, inserted by the fleet's role, pass.
    A task that copies the schedule's id but not its command does not."""
    role = f"pgs_fleet_{os.getpid()}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgsched_worker")
    try:
        sid = conn.execute(
            "INSERT INTO pgsched.schedules (name, every, task_type, payload, queue)"
            " VALUES ('nightly', '1 hour', 'shell', '{\"command\": \"backup\"}', 'shell')"
            " RETURNING id"
        ).fetchone()[0]
        conn.execute(f"SET ROLE {role}")
        conn.execute(
            "INSERT INTO pgsched.tasks (task_type, payload, queue, schedule_id, schedule_tick)"
            " VALUES ('shell', '{\"command\": \"backup\"}', 'shell', %s, now())",
            [sid],
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgsched_shell"):
            conn.execute(
                "INSERT INTO pgsched.tasks (task_type, payload, queue, schedule_id, schedule_tick)"
                " VALUES ('shell', '{\"command\": \"id; env\"}', 'shell', %s, now() + '1h')",
                [sid],
            )
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {role}")
