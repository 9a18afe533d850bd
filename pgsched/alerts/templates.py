"""Subject, body and Slack text templates: jinja2 in its sandbox (a template from the rules
file reads the notification's fields and nothing of Python's), without HTML escaping (the
output is plain text and JSON strings), undefined names rendered empty."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = 100_000  # characters a rendered template may produce


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def compile_template(text: str) -> Template:
    """The compiled template, or ValueError naming the template's line."""
    from jinja2 import TemplateSyntaxError

    try:
        return _env().from_string(text)
    except TemplateSyntaxError as e:
        raise ValueError(f"template line {e.lineno}: {e.message}") from None


def render(text: str, notification: dict[str, Any]) -> str:
    """Render with the notification's fields as names ({{ summary }}, {{ details.queue }})."""

    try:
        out = compile_template(text).render(**notification)
    except Exception as e:  # a sandbox refusal, a filter given a value it cannot take, 1/0
        raise ValueError(f"template: {type(e).__name__}: {e}") from None
    return out[:MAX_OUTPUT]
