"""Settings: one pydantic object, built from layers, each value remembering where it came from.

Precedence: CLI flag > environment (``PGSCHED_*``; the DSN also from ``DATABASE_URL``) >
config file (``pgsched.toml`` or ``pgsched.yaml`` in the working directory, or ``--config`` /
``PGSCHED_CONFIG``; top-level keys, overridden by ``[profiles.NAME]`` when a profile is chosen
with ``--profile`` / ``PGSCHED_PROFILE``) > defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pgsched.config_file import file_settings, find_config_file
from pgsched.durations import DURATION_MAX_S
from pgsched.errors import ConfigError

# Every duration setting: finite (no inf/nan), and at most DURATION_MAX_S (100 years), which
# Python's timedelta and waits and PostgreSQL's intervals and timestamps can all hold. inf
# passed before: the claim loop then died on "interval out of range" (poll_interval,
# heartbeat_timeout), or the control loop logged an error every 0.7 s forever (retention).
SECONDS: dict[str, Any] = {"allow_inf_nan": False, "le": DURATION_MAX_S}

# The least time, by default, a completion write may take before the worker counts it as hung
# (Settings.completion_hang_after).
COMPLETION_HANG_MIN_S = 60.0


def time_limits(statement: float, lock: float, idle_in_transaction: float) -> str:
    """libpq ``options`` for a session's time limits (seconds; 0 turns one off)."""
    limits = {
        "statement_timeout": statement,
        "lock_timeout": lock,
        "idle_in_transaction_session_timeout": idle_in_transaction,
    }
    return " ".join(f"-c {k}={round(v * 1000)}" for k, v in limits.items())


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: str | None = Field(
        None, description="PostgreSQL URL or key=value DSN; unset: the embedded local server"
    )
    direct_dsn: str | None = Field(
        None,
        description="Session (non-pooled) connection for LISTEN and the worker's liveness lock; "
        "unset: the DSN. Set it when the DSN goes through PgBouncer in transaction mode",
    )
    prepared_statements: bool = Field(
        True,
        description="Let psycopg prepare statements it runs often. Turn off when the DSN goes "
        "through PgBouncer < 1.21 in transaction mode (no prepared statements there)",
    )
    home: Path = Field(
        Path(".pgsched"), description="Directory of the embedded local server (cluster, log)"
    )
    connect_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds to wait for a connection before giving up",
    )
    statement_timeout: float = Field(
        60.0, ge=0, le=86400, description="Seconds any statement of pgsched's may run; 0: no limit"
    )
    lock_timeout: float = Field(
        30.0,
        ge=0,
        le=86400,
        description="Seconds a statement of pgsched's waits for a lock; 0: no "
        "limit (pgsched migrate waits this long for another migration)",
    )
    idle_in_transaction_timeout: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="Seconds a session of pgsched's may stay idle inside a transaction; 0: no "
        "limit",
    )
    queue: str = Field("default", min_length=1, description="Queue used when none is given")
    max_attempts: int = Field(3, ge=1, le=1000, description="Attempts per task by default")
    backoff_base: float = Field(
        1.0,
        gt=0,
        **SECONDS,
        description="Seconds: first retry delay; doubles per attempt, with jitter",
    )
    backoff_cap: float = Field(300.0, gt=0, **SECONDS, description="Seconds: longest retry delay")
    heartbeat_interval: float = Field(
        2.0,
        gt=0,
        **SECONDS,
        description="Seconds between a worker's heartbeats (load sample included)",
    )
    heartbeat_timeout: float = Field(
        15.0,
        gt=0,
        **SECONDS,
        description="Seconds without a heartbeat after which a worker is dead",
    )
    idle_heartbeat_interval: float | None = Field(
        None,
        gt=0,
        **SECONDS,
        description="Seconds between the heartbeats of a worker running no task; unset: "
        "heartbeat_timeout / 3, or heartbeat_interval if that is longer",
    )
    poll_interval: float = Field(
        5.0, gt=0, **SECONDS, description="Seconds: fallback poll when no notification arrives"
    )
    concurrency: int = Field(10, ge=1, le=10000, description="Tasks a worker runs at once")
    alert_slots: int = Field(
        2,
        ge=1,
        le=64,
        description="Alert deliveries a worker's alert ticker runs at once, beside its tasks' "
        "slots (from the queue pgsched.alerts)",
    )
    batch_size: int = Field(
        500, ge=1, le=10000, description="Most tasks one claim takes (capped by free slots)"
    )
    completion_hang_timeout: float | None = Field(
        None,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="Seconds a completion write may stay in flight before the worker counts it "
        "as hung (a lock never released, a server that stopped answering) and stops as a "
        "failure; unset: 60, or 2 x heartbeat_timeout if that is longer",
    )
    completion_writers: int = Field(
        1,
        ge=1,
        le=8,
        description="Connections a worker writes finished tasks on, in parallel batches "
        "(one drained faster than two on 2 cores: docs/performance.md, writers-ab)",
    )
    cpu_ceiling: float = Field(
        100.0,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="Percent of the worker's CPUs used by other processes (not the worker, not "
        "its own server backends) above which it claims nothing; 100: no ceiling",
    )
    memory_ceiling: float = Field(
        95.0,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="Percent memory above which a worker claims nothing",
    )
    grace: float = Field(
        30.0, ge=0, **SECONDS, description="Seconds a stopping worker lets running tasks finish"
    )
    retention: float = Field(
        7 * 86400.0,
        ge=0,
        **SECONDS,
        description="Seconds finished tasks are kept before pruning (0 keeps them forever)",
    )
    task_env: list[str] = Field(
        ["PATH", "LANG", "LC_ALL", "TZ"],
        description="Environment variables of the worker that shell tasks see (comma-separated); "
        "every other variable (the DSN, cloud keys) is withheld",
    )
    shell_queues: list[str] = Field(
        ["shell"],
        description="Queues a worker started with --allow-shell runs shell tasks from "
        "(comma-separated); a shell task in any other queue fails without running",
    )
    shell_output_bytes: int = Field(
        4000, ge=0, le=10_000_000, description="Bytes of a shell task's stdout/stderr kept (tail)"
    )
    http_allow: list[str] = Field(
        [],
        description="Addresses (CIDR) or host names http tasks may reach although they are "
        "loopback, private, link-local or otherwise not global (comma-separated)",
    )
    http_max_bytes: int = Field(
        10 * 1024 * 1024, ge=0, le=2**31, description="Largest response body an http task reads"
    )
    log_format: str = Field(
        "auto", pattern="^(auto|console|json)$", description="auto: JSON lines unless a TTY"
    )
    log_level: str = Field(
        "info", pattern="^(debug|info|warning|error)$", description="Lowest level logged"
    )
    # `pgsched serve`
    api_auth: bool = Field(
        False,
        description="pgsched serve: require a bearer token (API token or JWT) on every request "
        "but /health/live and /health/ready; needed to listen beyond loopback",
    )
    api_jwt_key: str | None = Field(
        None,
        description="pgsched serve: key that verifies JWT bearer tokens (a shared secret for "
        "HS*, a PEM public key for RS*/ES*/EdDSA); setting it turns api_auth on",
    )
    api_jwt_algorithms: str = Field(
        "HS256", min_length=1, description="pgsched serve: accepted JWT algorithms, comma-separated"
    )
    api_jwt_audience: str | None = Field(
        None, description="pgsched serve: the JWT audience (aud) required; unset: none checked"
    )
    api_jwt_scope_claim: str = Field(
        "scope",
        min_length=1,
        description="pgsched serve: JWT claim with the scopes (space-separated or a list)",
    )
    api_max_body: int = Field(
        1 << 20,
        ge=1024,
        le=1 << 30,
        description="pgsched serve: largest request body accepted, bytes (413 above it)",
    )

    @field_validator("task_env", "shell_queues", "http_allow", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.backoff_cap < self.backoff_base:
            raise ValueError("backoff_cap must be at least backoff_base")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        idle = self.idle_heartbeat_interval
        if idle is not None and not self.heartbeat_interval <= idle < self.heartbeat_timeout:
            raise ValueError(
                "idle_heartbeat_interval must be at least heartbeat_interval and shorter than"
                " heartbeat_timeout"
            )
        return self

    @property
    def session_options(self) -> str:
        """libpq ``options`` setting this session's time limits on the server."""
        return time_limits(
            self.statement_timeout, self.lock_timeout, self.idle_in_transaction_timeout
        )

    def connect_args(self) -> dict[str, Any]:
        """db.connect()'s arguments for a session of pgsched's own (client, CLI, scheduler,
        alert ticker): the connect timeout and the time limits. Behind PgBouncer in transaction
        mode (prepared_statements off) neither prepared statements nor startup options, which
        it refuses."""
        if not self.prepared_statements:
            return {"timeout": self.connect_timeout, "prepare": False}
        return {"timeout": self.connect_timeout, "options": self.session_options}

    @property
    def completion_hang_after(self) -> float:
        """Seconds after which a completion write in flight counts as hung. Unset, at least a
        minute and two heartbeat timeouts: a write slower than that is not load but a lock or
        a server that will not answer."""
        if self.completion_hang_timeout is not None:
            return self.completion_hang_timeout
        return max(COMPLETION_HANG_MIN_S, 2 * self.heartbeat_timeout)

    @property
    def idle_beat_every(self) -> float:
        """Seconds between the heartbeats of a worker running no task. Such a worker has no
        task to hand back if it is declared dead, and a hang is seen heartbeat_timeout after
        the last beat whatever the interval; timeout / 3 still leaves two missed beats'
        margin before a slow worker is taken for a hung one."""
        if self.idle_heartbeat_interval is not None:
            return self.idle_heartbeat_interval
        return max(self.heartbeat_interval, self.heartbeat_timeout / 3)


FIELDS = tuple(Settings.model_fields)


@dataclass
class Loaded:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    config_file: Path | None = None


def load_settings(
    cli: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    cwd: Path | None = None,
) -> Loaded:
    env = dict(os.environ if env is None else env)
    path = find_config_file(config_file or env.get("PGSCHED_CONFIG"), cwd)
    profile = profile or env.get("PGSCHED_PROFILE")
    values, sources = file_settings(path, profile)
    if env.get("DATABASE_URL"):
        values["dsn"], sources["dsn"] = env["DATABASE_URL"], "env DATABASE_URL"
    for name in FIELDS:
        key = f"PGSCHED_{name.upper()}"
        if env.get(key) not in (None, ""):
            values[name], sources[name] = env[key], f"env {key}"
    for name, v in (cli or {}).items():
        if v is not None:
            values[name], sources[name] = v, "flag --" + name.replace("_", "-")
    settings = _validated(values, sources)
    for name in FIELDS:
        sources.setdefault(name, "default")
    return Loaded(settings, sources, profile, path)


def _validated(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    """The settings of ``values``; a problem is one line naming the setting and its source."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} ({sources[unknown[0]]})")
    try:
        return Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        where = f" ({sources[loc]})" if loc in sources else ""
        msg = err["msg"]
        if err["type"] == "less_than_equal" and err.get("ctx", {}).get("le") == DURATION_MAX_S:
            msg = f"must be at most {DURATION_MAX_S:.0f} seconds (100 years)"
        raise ConfigError(f"setting {loc}{where}: {msg}") from None
