"""The alerts file: channels (where notifications go) and rules (what sends one), from YAML.

    channels:
      - name: ops
        type: webhook
        url: https://hooks.example.com/pgsched
        secret_env: PGSCHED_WEBHOOK_SECRET
    rules:
      - name: dead-letters
        event: task.dead_lettered
        queue: [mail]
        channels: [ops]
        min_interval: 5m

Every refusal is one line naming the file, the line and the rule or channel. Secrets are
never in the file: a channel names the environment variables that hold them, and apply
refuses a channel whose variable is not set where it runs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgsched.errors import UsageError
from pgsched.models import MaxAttempts, NoNul, QueueName, TaskTypeName, text_duration

DELIVERY_TYPE = "pgsched.alert"  # the built-in task type that delivers a notification
# Where channels put their delivery tasks unless they name a queue: alert tickers deliver from
# it on threads of their own (pgsched.alerts.ticker), so a receiver that hangs or refuses never
# holds a slot of the workers' tasks.
DELIVERY_QUEUE = "pgsched.alerts"

EVENTS = (
    "task.dead_lettered",
    "task.retrying",
    "workflow.failed",
    "workflow.succeeded",
    "worker.dead",
    "schedule.misfired",
)
THRESHOLDS = (
    "ready_depth",
    "oldest_ready_age",
    "failure_rate",
    "no_live_worker",
    "dead_letter_size",
)
# What each kind of rule may filter on, and the event fields a rule may group by (storm
# control keys); the first is the default.
_TASK: dict[str, tuple[str, ...]] = {
    "filters": ("queue", "task_type", "workflow"),
    "keys": ("queue", "task_type", "workflow"),
}
RULE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "task.dead_lettered": _TASK,
    "task.retrying": _TASK,
    "workflow.failed": {"filters": ("workflow",), "keys": ("workflow",)},
    "workflow.succeeded": {"filters": ("workflow",), "keys": ("workflow",)},
    "worker.dead": {"filters": ("queue",), "keys": ("worker", "host")},
    "schedule.misfired": {"filters": ("queue", "task_type"), "keys": ("schedule", "queue")},
    "threshold": {"filters": ("queue", "task_type"), "keys": ("queue",)},
}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _env_name(v: str) -> str:
    if not _ENV_NAME.match(v):
        raise ValueError(f"{v!r} is not an environment variable name")
    return v


def check_url(v: str) -> str:
    """An absolute http(s) URL with a host, nothing that does not print, no credentials."""
    import httpx

    if _CONTROL.search(v) or " " in v:
        raise ValueError("a URL has no spaces or control characters")
    try:
        url = httpx.URL(v)
    except (httpx.InvalidURL, ValueError) as e:
        raise ValueError(f"{v!r} is not a URL: {e}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{v!r} is not an http:// or https:// URL with a host")
    if url.userinfo:
        raise ValueError("credentials in a URL are stored in the database: use url_env")
    return v


def check_address(v: str) -> str:
    """One mail address ('a@example.com' or 'Name <a@example.com>'), no header injection."""
    if _CONTROL.search(v):
        raise ValueError("an address has no control characters")
    _, addr = parseaddr(v)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or " " in addr or "." not in domain or "@" in local:
        raise ValueError(f"{v!r} is not a mail address")
    return v


# -- channels ------------------------------------------------------------------------------------


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    # Each notification is one task per channel: its queue, attempts and backoff.
    queue: QueueName = DELIVERY_QUEUE
    max_attempts: MaxAttempts = 10
    backoff_base: timedelta = timedelta(seconds=5)
    backoff_cap: timedelta = timedelta(minutes=10)
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("backoff_base", "backoff_cap", "timeout", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: Any) -> timedelta | None:
        td = text_duration(v, info.field_name)
        if td is not None and td <= timedelta(0):
            raise ValueError("must be positive")
        if td is not None and td > timedelta(days=1):
            raise ValueError("must be at most a day")
        return td

    def secret_envs(self) -> dict[str, str]:
        """field -> environment variable, for every variable this channel reads."""
        return {}

    def config(self) -> dict[str, Any]:
        """What the database stores (no secrets: only their variables' names)."""
        out = self.model_dump(mode="python", by_alias=True, exclude={"name", "type"})
        for k, v in out.items():
            if isinstance(v, timedelta):
                out[k] = v.total_seconds()
        return out


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: str | None = None
    url_env: str | None = None
    # The HMAC-SHA256 key of the signature header; required: every webhook is signed.
    secret_env: str
    headers: dict[str, str] = Field(default_factory=dict)
    # Header name -> environment variable holding its value (an Authorization token).
    headers_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else check_url(v)

    @field_validator("url_env", "secret_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return v if v is None else _env_name(v)

    @field_validator("headers", "headers_env")
    @classmethod
    def _headers(cls, v: dict[str, str], info: Any) -> dict[str, str]:
        for k, val in v.items():
            if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", k):
                raise ValueError(f"{k!r} is not a header name")
            if info.field_name == "headers_env":
                _env_name(val)
            elif _CONTROL.search(val):
                raise ValueError(f"header {k}: control characters in the value")
        return v

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give url or url_env (one of them)")
        return self

    def secret_envs(self) -> dict[str, str]:
        out = {"secret_env": self.secret_env}
        if self.url_env:
            out["url_env"] = self.url_env
        out.update({f"headers_env.{k}": v for k, v in self.headers_env.items()})
        return out


DEFAULT_SLACK_TEXT = "*pgsched {{ rule }}*: {{ summary }}"
DEFAULT_SUBJECT = "[pgsched] {{ rule }}: {{ summary }}"
DEFAULT_BODY = """{{ summary }}

rule:   {{ rule }}
event:  {{ event }}
key:    {{ key }}
count:  {{ count }} (from {{ first_at }} to {{ last_at }})
id:     {{ id }}
{% for k, v in details.items() if v is not none %}
{{ k }}: {{ v }}{% endfor %}
"""


class SlackChannel(_Channel):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): {"text": ...}."""

    type: Literal["slack"]
    url: str | None = None
    url_env: str | None = None  # a Slack webhook URL is itself a secret
    text: str = DEFAULT_SLACK_TEXT

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else check_url(v)

    @field_validator("url_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return v if v is None else _env_name(v)

    @field_validator("text")
    @classmethod
    def _template(cls, v: str) -> str:
        return check_template(v)

    @model_validator(mode="after")
    def _one_url(self) -> SlackChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give url or url_env (one of them)")
        return self

    def secret_envs(self) -> dict[str, str]:
        return {"url_env": self.url_env} if self.url_env else {}


class EmailChannel(_Channel):
    type: Literal["email"]
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")
    port: int = Field(587, ge=1, le=65535)
    # starttls: plain connection upgraded with STARTTLS (587); ssl: TLS from the start (465);
    # none: no encryption (a relay on localhost only).
    security: Literal["starttls", "ssl", "none"] = "starttls"
    # A CA bundle (PEM) to trust instead of the system's, for a relay with a private CA.
    ca_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1, max_length=100)
    subject: str = DEFAULT_SUBJECT
    body: str = DEFAULT_BODY

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        return check_address(v)

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        return [check_address(a) for a in v]

    @field_validator("password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return v if v is None else _env_name(v)

    @field_validator("subject", "body")
    @classmethod
    def _template(cls, v: str) -> str:
        return check_template(v)

    @model_validator(mode="after")
    def _login(self) -> EmailChannel:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give username and password_env together (or neither)")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file: {self.ca_file} is not a file")
        return self

    def secret_envs(self) -> dict[str, str]:
        return {"password_env": self.password_env} if self.password_env else {}


Channel = Annotated[WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")]


def check_template(v: str) -> str:
    from pgsched.alerts.templates import compile_template

    compile_template(v)  # raises ValueError naming the template's line
    return v


# -- rules ---------------------------------------------------------------------------------------


def _names(v: Any) -> Any:
    """A filter is one name or a list of names."""
    return [v] if isinstance(v, str) else v


class RuleDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    event: Literal[EVENTS] | None = None  # type: ignore[valid-type]
    threshold: Literal[THRESHOLDS] | None = None  # type: ignore[valid-type]
    # Threshold rules: the bound (a count; a duration for oldest_ready_age; a percentage for
    # failure_rate) and the window (how often it is evaluated, and failure_rate's span).
    above: float | None = None
    window: timedelta | None = None
    min_attempts: int = Field(1, ge=1, le=1_000_000)
    queue: list[QueueName] | None = None
    task_type: list[TaskTypeName] | None = None
    workflow: list[Annotated[str, Field(min_length=1, max_length=1000), NoNul]] | None = None
    group_by: str | None = None
    min_interval: timedelta = timedelta(minutes=1)
    channels: list[str] = Field(min_length=1, max_length=50)

    @field_validator("queue", "task_type", "workflow", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _names(v)

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v: Any) -> Any:
        return _names(v)

    @field_validator("window", "min_interval", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: Any) -> timedelta | None:
        td = text_duration(v, info.field_name)
        if td is not None and td > timedelta(days=7):
            raise ValueError("must be at most 7 days")
        if info.field_name == "window" and td is not None and td <= timedelta(0):
            raise ValueError("must be positive")
        return td

    @field_validator("above", mode="before")
    @classmethod
    def _above(cls, v: Any, info: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("not a number")
        if isinstance(v, str):
            s = v.strip()
            if s.endswith("%"):
                return s[:-1]
            if s and not re.match(r"^[-+0-9.eE]+$", s):  # a duration: oldest_ready_age
                td = text_duration(s, "above")
                return td.total_seconds() if td is not None else v
        return v

    @model_validator(mode="after")
    def _kind(self) -> RuleDef:
        import math

        if (self.event is None) == (self.threshold is None):
            raise ValueError("give event or threshold (one of them)")
        kind = self.kind
        if self.threshold is not None:
            if self.window is None:
                raise ValueError("window: a threshold rule needs a window (example: window: 5m)")
            above = 0.0 if self.above is None and self.threshold == "no_live_worker" else self.above
            if above is None:
                raise ValueError("above: a threshold rule needs a bound")
            if not math.isfinite(above) or above < 0 or above > 1e12:
                raise ValueError("above: must be a finite number from 0")
            if self.threshold == "failure_rate" and above > 100:
                raise ValueError("above: failure_rate is a percentage (0 to 100)")
            object.__setattr__(self, "above", float(above))
        else:
            for f in ("above", "window"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only threshold rules have one")
        if self.threshold != "failure_rate" and "min_attempts" in self.model_fields_set:
            raise ValueError("min_attempts: only failure_rate rules have one")
        allowed = RULE_FIELDS[kind]
        for f in ("queue", "task_type", "workflow"):
            if getattr(self, f) is not None and f not in allowed["filters"]:
                raise ValueError(f"{f}: {self.event or self.threshold} rules cannot filter by it")
        if self.threshold == "no_live_worker" and self.task_type is not None:
            raise ValueError("task_type: no_live_worker rules cannot filter by it")
        if self.group_by is not None and self.group_by not in (*allowed["keys"], "none"):
            raise ValueError(
                f"group_by: one of {', '.join((*allowed['keys'], 'none'))} for this rule"
            )
        return self

    @property
    def kind(self) -> str:
        return self.event or "threshold"

    @property
    def key_field(self) -> str:
        return self.group_by or RULE_FIELDS[self.kind]["keys"][0]

    def row(self) -> dict[str, Any]:
        """The columns this definition sets, as the database returns them."""
        return {
            "event": self.event,
            "threshold": self.threshold,
            "above": self.above,
            "time_window": self.window,
            "min_attempts": self.min_attempts,
            "queues": self.queue,
            "task_types": self.task_type,
            "workflows": self.workflow,
            "group_by": self.key_field,
            "min_interval": self.min_interval,
            "channels": list(self.channels),
        }


class AlertsFile(BaseModel):
    channels: list[Any] = Field(default_factory=list)
    rules: list[RuleDef] = Field(default_factory=list)


# -- loading with line numbers ---------------------------------------------------------------


def load_alerts(path: Path | str, env: dict[str, str] | None = None) -> AlertsFile:
    """Read and validate an alerts file; every error names the file, the line and the item.
    ``env``: the environment the secret variables are looked up in (default os.environ)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_alerts(text, str(path), env)


def parse_alerts(
    text: str, source: str = "<alerts>", env: dict[str, str] | None = None
) -> AlertsFile:
    import os

    import yaml
    from pydantic import TypeAdapter

    env = dict(os.environ) if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(e, "problem", None) or ("nested too deeply" if not mark else e)
        raise UsageError(f"{where}: invalid YAML: {problem}") from None
    if root is None:
        return AlertsFile()
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise UsageError(f"{source}:{root.start_mark.line + 1}: expected 'channels:' and 'rules:'")
    sections = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    for k, v in root.value:
        if k.value not in ("channels", "rules"):
            raise UsageError(f"{source}:{k.start_mark.line + 1}: unknown key {k.value!r}")
        if not isinstance(v, yaml.SequenceNode) and data.get(k.value) is not None:
            raise UsageError(f"{source}:{v.start_mark.line + 1}: {k.value}: expected a list")
    channel_adapter: TypeAdapter[Any] = TypeAdapter(Channel)
    channels: list[Any] = []
    seen: dict[str, int] = {}
    for node, item in _items(sections.get("channels"), data.get("channels")):
        label = _label("channel", item, source, node)
        ch = _validate(channel_adapter.validate_python, item, node, source, label)
        _unique(ch.name, seen, node, source, label)
        for field, var in ch.secret_envs().items():
            if not env.get(var):
                raise UsageError(
                    f"{source}:{_line(node, field.split('.'))}: {label}: {field}: "
                    f"environment variable {var} is not set"
                )
        channels.append(ch)
    rules: list[RuleDef] = []
    seen = {}
    names = {c.name for c in channels}
    for node, item in _items(sections.get("rules"), data.get("rules")):
        label = _label("rule", item, source, node)
        rule = _validate(lambda x: RuleDef(**x), item, node, source, label)
        _unique(rule.name, seen, node, source, label)
        for i, ch_name in enumerate(rule.channels):
            if ch_name not in names:
                raise UsageError(
                    f"{source}:{_line(node, ['channels', i])}: {label}: channels: "
                    f"no channel named {ch_name!r} in this file"
                )
        rules.append(rule)
    return AlertsFile(channels=channels, rules=rules)


def _items(node: Any, data: Any) -> list[tuple[Any, Any]]:
    if node is None or data is None:
        return []
    return list(zip(node.value, data, strict=True))


def _label(kind: str, item: Any, source: str, node: Any) -> str:
    if not isinstance(item, dict):
        raise UsageError(f"{source}:{node.start_mark.line + 1}: each {kind} is a mapping")
    name = item.get("name")
    return f"{kind} {name!r}" if isinstance(name, str) and name else kind


def _unique(name: str, seen: dict[str, int], node: Any, source: str, label: str) -> None:
    line = _line(node, ["name"])
    if name in seen:
        raise UsageError(f"{source}:{line}: {label}: duplicate name (first on line {seen[name]})")
    seen[name] = line


def _line(node: Any, loc: list[Any]) -> int:
    """The line of the value at ``loc`` under ``node`` (as deep as the YAML goes)."""
    import yaml

    line: int = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next((v for k, v in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            hit = node.value[part] if 0 <= part < len(node.value) else None
        else:
            hit = None
        if hit is None:
            break
        node, line = hit, hit.start_mark.line + 1
    return line


def _validate(make: Any, item: dict[str, Any], node: Any, source: str, label: str) -> Any:
    from pydantic import ValidationError as PydanticError

    if "name" not in item:
        raise UsageError(f"{source}:{node.start_mark.line + 1}: {label}: missing name")
    try:
        return make(item)
    except PydanticError as e:
        err = e.errors()[0]
        loc = [p for p in err["loc"] if p not in ("webhook", "slack", "email")]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            loc, msg = ["type"], "one of webhook, slack, email"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error" and loc and loc[0] in ("event", "threshold"):
            options = EVENTS if loc[0] == "event" else THRESHOLDS
            msg = f"unknown {loc[0]} {item.get(loc[0])!r} (one of {', '.join(options)})"
        # A message naming its own field ("window: ...") is shown at that field's line.
        m = re.match(r"^(\w+): ", msg)
        if not loc and m and m[1] in item:
            loc = [m[1]]
            msg = msg[len(m[0]) :]
        field = ".".join(str(p) for p in loc if not isinstance(p, int) or len(loc) == 1)
        field = field.replace("from_", "from")
        yaml_loc = ["from" if p == "from_" else p for p in loc]
        prefix = f"{field}: " if field else ""
        raise UsageError(f"{source}:{_line(node, yaml_loc)}: {label}: {prefix}{msg}") from None
