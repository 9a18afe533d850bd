"""The alerts file: channels (where notifications go, defined here) and rules (what sends one,
pgsched.alerts.rules), from YAML.

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

Every refusal is one line naming the file, the line and the rule or channel
(pgsched.alerts.refusals finds the line). Secrets are
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

from pgsched.alerts import refusals
from pgsched.alerts.rules import RuleDef
from pgsched.errors import UsageError
from pgsched.models import MaxAttempts, QueueName, text_duration

DELIVERY_TYPE = "pgsched.alert"  # the built-in task type that delivers a notification
# Where channels put their delivery tasks unless they name a queue: alert tickers deliver from
# it on threads of their own (pgsched.alerts.ticker), so a receiver that hangs or refuses never
# holds a slot of the workers' tasks.
DELIVERY_QUEUE = "pgsched.alerts"

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
    for node, item in refusals.items(sections.get("channels"), data.get("channels")):
        label = refusals.label("channel", item, source, node)
        ch = refusals.validate(channel_adapter.validate_python, item, node, source, label)
        refusals.unique(ch.name, seen, node, source, label)
        for field, var in ch.secret_envs().items():
            if not env.get(var):
                raise UsageError(
                    f"{source}:{refusals.line_of(node, field.split('.'))}: {label}: {field}: "
                    f"environment variable {var} is not set"
                )
        channels.append(ch)
    rules: list[RuleDef] = []
    seen = {}
    names = {c.name for c in channels}
    for node, item in refusals.items(sections.get("rules"), data.get("rules")):
        label = refusals.label("rule", item, source, node)
        rule = refusals.validate(lambda x: RuleDef(**x), item, node, source, label)
        refusals.unique(rule.name, seen, node, source, label)
        for i, ch_name in enumerate(rule.channels):
            if ch_name not in names:
                raise UsageError(
                    f"{source}:{refusals.line_of(node, ['channels', i])}: {label}: channels: "
                    f"no channel named {ch_name!r} in this file"
                )
        rules.append(rule)
    return AlertsFile(channels=channels, rules=rules)
