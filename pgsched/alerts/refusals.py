"""Where in an alerts file a refusal points: each item's YAML node gives the line of the field
at fault, and pydantic's error becomes one line naming the file, the line, the item and the
field."""

from __future__ import annotations

import re
from typing import Any

from pgsched.alerts.rules import EVENTS, THRESHOLDS
from pgsched.errors import UsageError


def items(node: Any, data: Any) -> list[tuple[Any, Any]]:
    if node is None or data is None:
        return []
    return list(zip(node.value, data, strict=True))


def label(kind: str, item: Any, source: str, node: Any) -> str:
    if not isinstance(item, dict):
        raise UsageError(f"{source}:{node.start_mark.line + 1}: each {kind} is a mapping")
    name = item.get("name")
    return f"{kind} {name!r}" if isinstance(name, str) and name else kind


def unique(name: str, seen: dict[str, int], node: Any, source: str, label: str) -> None:
    line = line_of(node, ["name"])
    if name in seen:
        raise UsageError(f"{source}:{line}: {label}: duplicate name (first on line {seen[name]})")
    seen[name] = line


def line_of(node: Any, loc: list[Any]) -> int:
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


def validate(make: Any, item: dict[str, Any], node: Any, source: str, label: str) -> Any:
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
        raise UsageError(f"{source}:{line_of(node, yaml_loc)}: {label}: {prefix}{msg}") from None
