"""What a submission may contain, checked before any row is written (the database checks again)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
)

from pgsched.durations import (
    DURATION_MAX_DAYS,
    DURATION_MAX_S,
    TIME_MAX,
    TIME_MIN,
    parse_duration,
)
from pgsched.errors import ValidationError

STATUSES = ("blocked", "pending", "running", "succeeded", "retrying", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
OUTCOMES = ("success", "failure", "timeout", "lost", "cancelled")
WORKER_STATUSES = ("active", "paused", "draining", "stopped", "dead")


# The limits the CHECK constraints of pgsched.tasks set. Every check of a task's fields reads
# them: TaskSpec, fits_common, the workflow and schedule specs, retry, @task.
TASK_TYPE_MAX = 200
QUEUE_MAX = 128
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_ATTEMPTS_MAX = 1000
# An idempotency key is a btree index entry, which holds at most ~2.7 kB: longer keys made the
# insert fail as "index row size ... exceeds" (reported as a lost connection).
KEY_MAX_BYTES = 1000


def check_queue_name(v: str) -> str:
    """A queue `pgsched worker --queues a,b` can name: no comma, no space at either end."""
    if "," in v:
        raise ValueError("must not contain a comma (worker --queues separates names with it)")
    if v != v.strip():
        raise ValueError("must not start or end with a space")
    return v


# Payload limits that every part holds: Python's json (the client's dump, the worker's decode)
# gives up near 1000 levels of nesting and on integers of more than 4300 digits (jsonb itself
# goes much further). The size of a payload is limited by the table (max_payload_bytes).
PAYLOAD_DEPTH_MAX = 256
INT_DIGITS_MAX = 4300
_INT_BITS_MAX = int(INT_DIGITS_MAX * math.log2(10))  # under it, at most 4300 digits


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain the NUL character")
    return v


def _indexable(v: str) -> str:
    if len(v.encode("utf-8", "surrogatepass")) > KEY_MAX_BYTES:
        raise ValueError(f"too long: at most {KEY_MAX_BYTES} bytes (UTF-8)")
    return v


def _jsonb_storable(v: Any) -> Any:
    # What jsonb or Python's json cannot carry (NUL, a lone surrogate, NaN, nesting past
    # PAYLOAD_DEPTH_MAX, a huge integer, a date): said here, not by the database or a
    # traceback. The message names the place inside the payload.
    problem = payload_problem(v, strict=False)
    if problem is not None:
        raise ValueError(problem)  # "payload...: what": make_spec prints it as it is
    return v


def _in_time_range(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("must include a time zone offset (Z or +hh:mm)")
    try:
        ok = TIME_MIN <= v <= TIME_MAX
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"must be between {TIME_MIN:%Y-%m-%d} and {TIME_MAX:%Y-%m-%d} (UTC)")
    return v


def _bounded(v: timedelta) -> timedelta:
    if v > timedelta(days=DURATION_MAX_DAYS):  # the CHECKs of revision 0007
        raise ValueError("must be at most 100 years")
    return v


def _positive(v: timedelta) -> timedelta:
    if v.total_seconds() <= 0:
        raise ValueError("must be positive")
    return _bounded(v)


def _not_negative(v: timedelta) -> timedelta:
    if v.total_seconds() < 0:
        raise ValueError("must not be negative")
    return _bounded(v)


def _seconds(v: float) -> float:
    if v < 0:
        raise ValueError("must not be negative")
    if v > DURATION_MAX_S:
        raise ValueError("must be at most 100 years")
    return v


def _positive_seconds(v: float) -> float:
    if v <= 0:
        raise ValueError("must be positive")
    return _seconds(v)


def _json_only(v: Any) -> Any:
    # YAML and JSON files give dates, binary (!!binary) and NaN (.nan) that JSON has no place
    # for; the message names the place inside the payload ("a[2]: ...").
    problem = payload_problem(v)
    if problem is not None:
        raise ValueError(problem.removeprefix("payload: "))
    return v


def text_duration(v: Any, name: str) -> timedelta | None:
    """A duration as a file or a form writes it ("90s", "5m", "1h30m") or a timedelta; a
    ValueError (for a pydantic validator) says what is wrong with it."""
    if v is None or isinstance(v, timedelta):
        return v
    if isinstance(v, bool):
        raise ValueError("not a duration")
    try:
        return parse_duration(str(v), name)
    except ValidationError as e:
        raise ValueError(str(e).split(": ", 1)[-1]) from None


def _text_duration(v: Any, info: ValidationInfo) -> Any:
    return text_duration(v, info.field_name or "duration")


# A task's fields with their limits and checks, one definition each: TaskSpec (the Python API
# and the CLI), the workflow and schedule definitions (pgsched.workflows, pgsched.schedules)
# and the HTTP API's request models (pgsched.api.schemas) are built from them.
NoNul = AfterValidator(_no_nul)
Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
TaskTypeName = Annotated[str, Field(min_length=1, max_length=TASK_TYPE_MAX), NoNul]
QueueName = Annotated[
    str, Field(min_length=1, max_length=QUEUE_MAX), NoNul, AfterValidator(check_queue_name)
]
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
MaxAttempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS_MAX)]
IdempotencyKey = Annotated[
    str, Field(min_length=1), AfterValidator(_no_nul), AfterValidator(_indexable)
]
Payload = Annotated[Any, AfterValidator(_jsonb_storable)]
JsonPayload = Annotated[Any, AfterValidator(_json_only)]  # from a file: JSON types only
RunAt = Annotated[datetime, AfterValidator(_in_time_range)]
PositiveDuration = Annotated[timedelta, AfterValidator(_positive)]
Delay = Annotated[timedelta, AfterValidator(_not_negative)]
# The same durations as a number of seconds (JSON bodies): finite.
Seconds = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_seconds)]
PositiveSeconds = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_positive_seconds)]
TextDuration = Annotated[timedelta, BeforeValidator(_text_duration), AfterValidator(_positive)]


class TaskSpec(BaseModel):
    """One task to submit. Field limits mirror the CHECK constraints of ``pgsched.tasks``."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskTypeName
    payload: Payload = Field(default_factory=dict)
    queue: QueueName = "default"
    priority: Priority = 0
    run_at: RunAt | None = None
    delay: Delay | None = None
    max_attempts: MaxAttempts = 3
    timeout: PositiveDuration | None = None
    idempotency_key: IdempotencyKey | None = None
    backoff_base: PositiveDuration | None = None
    backoff_cap: PositiveDuration | None = None


# Built-in task types as the DAG and REST shapes of other schedulers spell them (HTTP, SHELL):
# the same body runs them. Any other name is a type of its own, run by a worker that registers
# it.
BUILTIN_TYPES = ("shell", "http", "dummy", "noop")


def builtin_type_name(name: str) -> str:
    """``HTTP`` -> ``http``: a built-in type's name in upper case means the built-in type."""
    low = name.lower()
    return low if name.isupper() and low in BUILTIN_TYPES else name


PAYLOAD_NUL = "must not contain the NUL character (\\u0000): jsonb cannot store it"
# One search per string: NUL (jsonb refuses it) or a surrogate code point (not UTF-8: a lone
# one cannot be stored, and a str never holds a valid pair).
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def check_payload(v: Any, name: str = "payload") -> None:
    """The payload check of TaskSpec, for payloads submitted without one (submit_batch):
    "payload 3: payload.a: ..." names the payload, then the place in it."""
    problem = payload_problem(v, strict=False)
    if problem is not None:
        raise ValidationError(problem if name == "payload" else f"{name}: {problem}", "payload")


def payload_problem(v: Any, name: str = "payload", *, strict: bool = True) -> str | None:
    """Why jsonb or Python's json cannot carry ``v``, as one line naming the place
    ("payload.a[2]: ..."); None when it can. Walks without recursion, so depth itself cannot
    break the check; the place is spelled out only for the bad value. ``strict``: a value of
    another type (a date, bytes, a Decimal) is refused too, as for input from YAML or the
    command line; the Python API leaves those to the connection's JSON dumper
    (psycopg's set_json_dumps may know them)."""
    # Entries: (value, parent entry, key in the parent, depth).
    stack: list[tuple[Any, Any, Any, int]] = [(v, None, None, 0)]
    while stack:
        node = stack.pop()
        x, _, _, depth = node
        t = type(x)
        if t is str:
            m = _BAD_CHAR.search(x)
            if m is not None:
                return _char_problem(_path(node, name), m.group())
        elif t is dict:
            if depth >= PAYLOAD_DEPTH_MAX:
                return f"{_path(node, name)}: nested deeper than {PAYLOAD_DEPTH_MAX} levels"
            for k, item in x.items():
                if type(k) is str:
                    m = _BAD_CHAR.search(k)
                    if m is not None:
                        return _char_problem(f"{_path(node, name)} key {k!r}", m.group())
                elif type(k) is not int and strict:
                    return f"{_path(node, name)}: key {k!r} is a {type(k).__name__}, not a string"
                stack.append((item, node, k, depth + 1))
        elif t is list or t is tuple:
            if depth >= PAYLOAD_DEPTH_MAX:
                return f"{_path(node, name)}: nested deeper than {PAYLOAD_DEPTH_MAX} levels"
            stack.extend((item, node, i, depth + 1) for i, item in enumerate(x))
        elif t is int:
            if x.bit_length() > _INT_BITS_MAX:
                return f"{_path(node, name)}: an integer of more than {INT_DIGITS_MAX} digits"
        elif t is float:
            if not math.isfinite(x):
                return f"{_path(node, name)}: {x} is not a JSON number"
        elif x is None or t is bool:
            pass
        elif isinstance(x, str | dict | list | tuple | int | float):  # subclasses: as the base
            stack.append((_base(x), node[1], node[2], depth))
        elif strict:
            return f"{_path(node, name)}: a {t.__name__} is not JSON (write it as a string)"
    return None


def _path(node: Any, name: str) -> str:
    parts: list[str] = []
    while node is not None and node[1] is not None:
        key = node[2]
        parts.append(f"[{key}]" if type(node[1][0]) is not dict else f".{key}")
        node = node[1]
    if len(parts) > 6:  # a deep place: its start and end (parts run from the place upwards)
        parts = [*parts[:3], f"...({len(parts) - 6} more)", *parts[-3:]]
    return name + "".join(reversed(parts))


_BASES: tuple[type[Any], ...] = (bool, int, float, str, dict, list, tuple)


def _base(x: Any) -> Any:
    for base in _BASES:
        if isinstance(x, base):
            return base(x)
    return x


def _char_problem(where: str, ch: str) -> str:
    if ch == "\x00":
        return f"{where}: {PAYLOAD_NUL}"
    return f"{where}: holds the lone surrogate \\u{ord(ch):04x}, which is not UTF-8"


def fits_common(task_type: Any, payload: Any, queue: Any, priority: Any, max_attempts: Any) -> bool:
    """True when TaskSpec would take these values exactly as they are (the exact types, within
    its limits, no NUL), so Client.submit may skip building one."""
    return (
        type(task_type) is str
        and 0 < len(task_type) <= TASK_TYPE_MAX
        and "\x00" not in task_type
        and type(queue) is str
        and 0 < len(queue) <= QUEUE_MAX
        and "\x00" not in queue
        and "," not in queue
        and queue == queue.strip()
        and type(priority) is int
        and PRIORITY_MIN <= priority <= PRIORITY_MAX
        and type(max_attempts) is int
        and 1 <= max_attempts <= MAX_ATTEMPTS_MAX
        and payload_problem(payload, strict=False) is None
    )


def make_spec(**fields: Any) -> TaskSpec:
    """Build a TaskSpec or raise a one-line ValidationError naming the first bad field."""
    from pydantic import ValidationError as PydanticError

    try:
        spec = TaskSpec(**{k: v for k, v in fields.items() if v is not None})
    except PydanticError as e:
        err = e.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "task"
        msg = err["msg"].removeprefix("Value error, ")
        line = msg if msg.startswith((name + ":", name + ".", name + "[")) else f"{name}: {msg}"
        raise ValidationError(line, name) from None
    if spec.run_at is not None and spec.delay is not None:
        raise ValidationError("run_at and delay: give one or the other, not both", "run_at")
    return spec
