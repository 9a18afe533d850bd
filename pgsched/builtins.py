"""Built-in task types: shell (only with --allow-shell), http, dummy, noop, and pgsched.alert
(delivers an alert notification: pgsched/alerts/deliver.py).

A payload of the wrong shape fails that attempt permanently with an error naming the field
(pydantic validation); it never stops the worker.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psutil
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from pgsched.config import Settings
from pgsched.durations import DURATION_MAX_S
from pgsched.errors import FailedWithResult, PermanentError, TaskTimeout
from pgsched.registry import Registry, TaskContext, TaskType
from pgsched.shell_reaper import kill_descendants

if TYPE_CHECKING:
    import httpx

TAIL = 4000  # bytes of an http body kept in a result
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ShellPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    command: str | list[str] = Field(min_length=1)
    # `workingDirectory`: the name other schedulers' shell tasks give it.
    cwd: str | None = Field(None, alias="workingDirectory")
    env: dict[str, str] | None = None
    timeout: float | None = Field(None, gt=0, le=DURATION_MAX_S, allow_inf_nan=False)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        # What execve refuses (Popen raised ValueError, and the task was retried for nothing).
        for k, x in (v or {}).items():
            if not k or "=" in k or "\x00" in k:
                raise ValueError(f"{k!r} is not an environment variable name")
            if "\x00" in x:
                raise ValueError(f"{k}: a value must not contain the NUL character")
        return v


class HttpPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    method: str = Field("GET", pattern=r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")
    headers: dict[str, str] | None = None
    body: Any = None
    timeout: float = Field(30.0, gt=0, le=DURATION_MAX_S, allow_inf_nan=False)


class DummyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    sleepDurationMs: int = Field(0, ge=0, le=int(DURATION_MAX_S * 1000))
    shouldFail: bool = False


def parse(model: type[BaseModel], payload: Any, type_name: str) -> Any:
    """Validate or raise PermanentError naming the first bad field."""
    try:
        return model.model_validate({} if payload is None else payload)
    except PydanticError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        msg = err["msg"].removeprefix("Value error, ")
        raise PermanentError(f"invalid {type_name} payload: {loc}: {msg}") from None


def _tail(b: bytes | bytearray, limit: int = TAIL) -> str:
    return bytes(b[-limit:] if limit else b"").decode("utf-8", "replace")


class _Tail:
    """The last ``limit`` bytes of a stream, however much passes through."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()

    def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > 2 * self.limit + 65536:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        return _tail(self.buf, self.limit)


def task_environment(settings: Settings, extra: dict[str, str] | None) -> dict[str, str]:
    """What a shell task's process sees: the allowlisted variables of the worker
    (``settings.task_env``) and the payload's own, nothing else."""
    env = {k: os.environ[k] for k in settings.task_env if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return {**env, **(extra or {})}


# The command's parent (a script run by this interpreter, isolated: -I keeps the script's own
# directory, which holds modules named like the standard library's, off sys.path): a child
# subreaper that kills what the command leaves running when it exits (shell_reaper.py).
SHELL_REAPER = str(Path(__file__).with_name("shell_reaper.py"))


def _reaper_argv(command: str | list[str], env: dict[str, str]) -> list[str]:
    """The command under shell_reaper.py. An argv whose program cannot be found is refused
    here (a permanent failure), as starting it directly refused it."""
    if isinstance(command, str):
        return [sys.executable, "-I", SHELL_REAPER, "--shell", command]
    program = command[0]
    found = (
        os.access(program, os.X_OK) if "/" in program else shutil.which(program, path=env["PATH"])
    )
    if not found:
        raise PermanentError(f"shell: cannot start command: {program!r} is not an executable")
    return [sys.executable, "-I", SHELL_REAPER, "--", *command]


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's parent (shell_reaper.py) and every descendant, including those that
    left its process group with setsid. The parent is a child subreaper, so a descendant whose
    parent dies comes back to it rather than to init: stopped, it keeps them all in its tree
    while they are killed round after round."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGSTOP)
    with contextlib.suppress(psutil.Error):
        kill_descendants(psutil.Process(proc.pid))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGKILL)


class ShellRunner:
    """The ``shell`` task type: only from ``settings.shell_queues``, in a minimal environment,
    stdout and stderr read as bounded tails, a timeout or stop killing the whole tree."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
        p = parse(ShellPayload, payload, "shell")
        queue = ctx.task.get("queue")
        if queue not in self.settings.shell_queues:
            allowed = ", ".join(self.settings.shell_queues) or "none"
            raise PermanentError(
                f"shell: tasks of queue {queue!r} may not run commands (shell_queues: {allowed})"
            )
        deadline = None if p.timeout is None else time.monotonic() + p.timeout
        limit = self.settings.shell_output_bytes
        env = task_environment(self.settings, p.env)
        try:
            proc = subprocess.Popen(
                _reaper_argv(p.command, env),
                cwd=p.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a stop kills all of it
            )
        except (OSError, ValueError) as e:  # ValueError: NUL in the command or its cwd
            raise PermanentError(f"shell: cannot start command: {e}") from None
        out, err = _Tail(limit), _Tail(limit)
        timed_out = False
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            ended: float | None = None
            while sel.get_map():
                for key, _ in sel.select(timeout=0.05):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        key.data.add(chunk)
                    else:
                        sel.unregister(key.fileobj)
                now = time.monotonic()
                if ended is None:
                    if deadline is not None and now > deadline:
                        timed_out = True
                    if timed_out or stop.is_set():
                        kill_tree(proc)
                        ended = now
                    elif proc.poll() is not None:
                        ended = now
                elif now - ended > 0.5:
                    break  # a descendant left behind holds the pipes: stop reading
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        stderr = err.text()
        result = {"exit_code": proc.returncode, "stdout": out.text(), "stderr": stderr}
        if timed_out:
            raise TaskTimeout(f"shell: command timed out after {p.timeout}s")
        if stop.is_set():
            return result
        if proc.returncode != 0:
            raise FailedWithResult(f"shell: exit code {proc.returncode}: {stderr[-300:]}", result)
        return result


def redact_url(url: str) -> str:
    """``url`` without its user info and query (where credentials travel), for errors and logs."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{u.port}" if u.port else "")
        return urlunsplit((u.scheme, netloc, u.path, "", ""))
    except ValueError:
        return "(an invalid URL)"


def _not_global(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused by default (loopback, private, link-local: the cloud metadata
    service at 169.254.169.254 is one), or None for a global address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


class HttpRunner:
    """The ``http`` task type. The host is resolved here and every address it resolves to is
    checked (no loopback, private, link-local or other non-global address unless
    ``settings.http_allow`` lists it); the request then goes to the checked address (Host and
    TLS name kept), so a second resolution cannot swap it. No proxies from the environment, no
    redirects, at most ``settings.http_max_bytes`` of body, one deadline for the whole attempt,
    and the connection is shut down when the attempt ends (timeout, cancel, worker stop), so
    the thread returns at once. Errors name the URL without its credentials."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in settings.http_allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def _address(self, host: str, port: int) -> str:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise RuntimeError(f"http: cannot resolve {host}: {e}") from None
        ips = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if host.lower().rstrip(".") not in self.hosts:
            for ip in ips:
                kind = _not_global(ip)
                if kind and not any(ip in net for net in self.networks):
                    raise PermanentError(
                        f"http: {host} is {ip}, a {kind} address: refused (http_allow lists "
                        f"the addresses http tasks may reach besides global ones)"
                    )
        return str(ips[0])

    def _request(self, p: HttpPayload, shown: str) -> tuple[httpx.URL, dict[str, Any]]:
        """The URL to connect to (the host's checked address in place of its name) and the
        request's arguments: the name goes in the Host header and, over https, in SNI."""
        import httpx

        try:
            url = httpx.URL(p.url)
        except httpx.InvalidURL as e:
            raise PermanentError(f"http: invalid url {shown}: {e}") from None
        if not url.host:
            raise PermanentError(f"http: no host in {shown}")
        port = url.port or (443 if url.scheme == "https" else 80)
        address = self._address(url.host, port)
        headers = {k: v for k, v in (p.headers or {}).items() if k.lower() != "host"}
        headers["Host"] = url.netloc.decode("ascii").rsplit("@", 1)[-1]
        kw: dict[str, Any] = {"headers": headers}
        if isinstance(p.body, str):
            kw["content"] = p.body
        elif p.body is not None:
            kw["json"] = p.body
        if url.scheme == "https":
            kw["extensions"] = {"sni_hostname": url.host}
        return url.copy_with(host=address), kw

    def __call__(self, payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
        import httpx

        from pgsched.http_connect import StoppableBackend, transport, watch

        p = parse(HttpPayload, payload, "http")
        shown = redact_url(p.url)
        target, kw = self._request(p, shown)
        deadline = time.monotonic() + p.timeout
        done = threading.Event()
        body = _Tail(TAIL)
        size = 0
        backend = StoppableBackend(stop, deadline)
        watchdog = threading.Thread(target=watch, args=(backend, deadline, stop, done), daemon=True)
        watchdog.start()
        try:
            with (
                httpx.Client(
                    transport=transport(backend),
                    trust_env=False,
                    follow_redirects=False,
                    timeout=httpx.Timeout(p.timeout),
                ) as client,
                client.stream(p.method, target, **kw) as r,
            ):
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > self.settings.http_max_bytes:
                        raise PermanentError(
                            f"http: {p.method} {shown}: body larger than "
                            f"{self.settings.http_max_bytes} bytes (http_max_bytes)"
                        )
                    body.add(chunk)
                    if time.monotonic() > deadline or stop.is_set():
                        break
        except httpx.HTTPError as e:
            if stop.is_set():
                return {"status": None, "body": ""}
            if time.monotonic() > deadline:
                msg = f"http: {p.method} {shown}: no answer within {p.timeout}s"
                raise TaskTimeout(msg) from None
            raise RuntimeError(f"http: {p.method} {shown}: {type(e).__name__}") from None
        finally:
            done.set()
            watchdog.join()
        if stop.is_set():
            return {"status": r.status_code, "body": body.text()}
        if time.monotonic() > deadline:
            raise TaskTimeout(f"http: {p.method} {shown}: no answer within {p.timeout}s")
        result = {"status": r.status_code, "body": body.text()}
        if not 200 <= r.status_code < 300:
            raise FailedWithResult(f"http: {p.method} {shown} answered {r.status_code}", result)
        return result


def run_dummy(payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
    p = parse(DummyPayload, payload, "dummy")
    if p.sleepDurationMs:
        stop.wait(p.sleepDurationMs / 1000)
    if p.shouldFail:
        raise RuntimeError("dummy: failing as asked (shouldFail)")
    return {"slept_ms": p.sleepDurationMs}


def run_noop(payload: Any) -> None:
    return None


def run_alert(payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
    from pgsched.alerts.deliver import run_alert as deliver

    return deliver(payload, ctx, stop)


def builtin_registry(*, allow_shell: bool, settings: Settings | None = None) -> Registry:
    settings = settings or Settings()
    r = Registry()
    if allow_shell:
        r.register(TaskType("shell", ShellRunner(settings), stoppable=True))
    r.register(TaskType("http", HttpRunner(settings), stoppable=True))
    r.register(TaskType("dummy", run_dummy, stoppable=True))
    r.register(TaskType("noop", run_noop, inline=True))
    r.register(TaskType("pgsched.alert", run_alert, stoppable=True))
    return r
