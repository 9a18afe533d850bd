"""Built-in task types: shell (only with --allow-shell), http, dummy, noop, and pgsched.alert
(delivers an alert notification: pgsched/alerts/deliver.py).

A payload of the wrong shape fails that attempt permanently with an error naming the field
(pydantic validation); it never stops the worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from pgsched.errors import PermanentError
from pgsched.models import DURATION_MAX_S
from pgsched.registry import Registry, TaskContext, TaskTimeout, TaskType

TAIL = 4000  # characters of stdout/stderr/body kept in a result


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


def _tail(b: bytes) -> str:
    return b[-TAIL:].decode("utf-8", "replace")


def run_shell(payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
    p = parse(ShellPayload, payload, "shell")
    env = None if p.env is None else {**os.environ, **p.env}
    deadline = None if p.timeout is None else time.monotonic() + p.timeout
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                p.command,
                shell=isinstance(p.command, str),
                cwd=p.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: a stop kills all of it
            )
        except (OSError, ValueError) as e:  # ValueError: NUL in the command or its cwd
            raise PermanentError(f"shell: cannot start command: {e}") from None
        timed_out = False
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
            if timed_out or stop.is_set():
                _kill_group(proc)
                proc.wait()
                break
        out.seek(0)
        err.seek(0)
        result = {
            "exit_code": proc.returncode,
            "stdout": _tail(out.read()),
            "stderr": _tail(err.read()),
        }
    if timed_out:
        raise TaskTimeout(f"shell: command timed out after {p.timeout}s")
    if stop.is_set():
        return result
    if proc.returncode != 0:
        raise FailedWithResult(
            f"shell: exit code {proc.returncode}: {result['stderr'][-300:]}", result
        )
    return result


class FailedWithResult(Exception):
    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_http(payload: Any, ctx: TaskContext, stop: threading.Event) -> dict[str, Any]:
    import httpx

    p = parse(HttpPayload, payload, "http")
    kw: dict[str, Any] = {"headers": p.headers}
    if isinstance(p.body, str):
        kw["content"] = p.body
    elif p.body is not None:
        kw["json"] = p.body
    try:
        r = httpx.request(p.method, p.url, timeout=p.timeout, **kw)
    except httpx.HTTPError as e:
        raise RuntimeError(f"http: {type(e).__name__}: {e}") from None
    result = {"status": r.status_code, "body": r.text[-TAIL:]}
    if not 200 <= r.status_code < 300:
        raise FailedWithResult(f"http: {p.method} {p.url} answered {r.status_code}", result)
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


def builtin_registry(*, allow_shell: bool) -> Registry:
    r = Registry()
    if allow_shell:
        r.register(TaskType("shell", run_shell, stoppable=True))
    r.register(TaskType("http", run_http, stoppable=True))
    r.register(TaskType("dummy", run_dummy, stoppable=True))
    r.register(TaskType("noop", run_noop, inline=True))
    r.register(TaskType("pgsched.alert", run_alert, stoppable=True))
    return r
