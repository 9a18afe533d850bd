"""The dashboard's pages and actions. Pages read through pgsched.admin.Admin and
pgsched.client.Client (as the API routes do); actions call the same methods the API's action
routes call, so a button does exactly what `DELETE /api/v1/tasks/{id}` or
`pgsched dlq requeue` does.

Pages are rendered whole; live parts poll their own URL every 2 s and htmx swaps in the part
it selects (``hx-select``), so a refresh costs what a page load costs and nothing else.
Actions answer with one line for the page's notice area and an ``HX-Trigger-After-Settle``
header that makes the page refresh at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from pgsched.admin.deadletter import decode_dlq_cursor
from pgsched.api.auth import Principal
from pgsched.durations import format_duration, parse_duration, parse_instant
from pgsched.errors import (
    InvalidState,
    LoginRequired,
    NotFound,
    PgschedError,
    Refused,
    UsageError,
    ValidationError,
)
from pgsched.models import STATUSES
from pgsched.web import draw
from pgsched.web.session import (
    COOKIE,
    check_token,
    cookie_args,
    principal,
    require_action,
)

PAGE_SIZE = 50
NOTIFICATIONS = 8  # alert notifications on the overview
POLL = "every 2s"
WORKFLOW_STATUSES = ("running", "succeeded", "failed", "cancelled")

router = APIRouter(include_in_schema=False)

env = Environment(
    loader=PackageLoader("pgsched.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(max(0.0, float(seconds)))


def _since(value: datetime | None, now: datetime) -> str:
    return "-" if value is None else format_duration(max(0.0, (now - value).total_seconds()))


def _until(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = (value - now).total_seconds()
    return ("in " if seconds >= 0 else "late ") + format_duration(abs(seconds))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _pct(value: float | None, whole: float | None = 100.0) -> float:
    if not value or not whole:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(value) / float(whole)))


env.filters.update(ts=_ts, age=_age, json=_json, pct=_pct, duration=format_duration)


def render(
    request: Request, name: str, who: Principal | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    now = datetime.now(UTC)
    body = env.get_template(name).render(
        request=request,
        who=who,
        can_admin=who is not None and who.allows("admin"),
        auth_on=request.app.state.service.auth.enabled,
        now=now,
        since=lambda v: _since(v, now),
        until=lambda v: _until(v, now),
        poll=POLL,
        **ctx,
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def page(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Wraps a page handler: no valid credentials -> the login page."""
    import functools

    @functools.wraps(fn)
    def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            who = principal(request)
        except LoginRequired as e:
            return to_login(request, e.reason)
        return fn(request, who, *args, **kwargs)

    # FastAPI reads the signature: hide the injected principal.
    import inspect

    sig = inspect.signature(fn)
    params = [p for n, p in sig.parameters.items() if n != "who"]
    wrapped.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapped


def to_login(request: Request, reason: str) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/ui/login?" + urlencode({"next": target})
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def not_found(request: Request, who: Principal | None, message: str, back: str) -> HTMLResponse:
    return render(
        request, "error.html", who, status=404, title="Not found", message=message, back=back
    )


def _int_id(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if 1 <= n < 2**63 else None


# -- pages ---------------------------------------------------------------------------------------


@router.get("/")
def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
@page
def overview(request: Request, who: Principal) -> Response:
    svc = request.app.state.service
    admin = svc.admin
    queues = admin.queue_overview()
    # One read of the day's attempts by minute: the hour chart is its last 60 minutes, the
    # day chart the same minutes summed by half hour.
    minutes = admin.throughput_series(window=timedelta(hours=24), bucket=timedelta(minutes=1))
    hour = minutes[-60:]
    day = draw.regroup(minutes, minutes=30)
    workers = [w for w in admin.workers() if w["status"] in ("active", "paused", "draining")]
    schedules = sorted(
        (s for s in admin.schedules() if s["enabled"] and not s["paused"] and s["next_tick"]),
        key=lambda s: s["next_tick"],
    )[:8]
    # The latest alert notifications with each channel's delivery task state (none without
    # alert rules): what `pgsched status` and `pgsched alerts history` show.
    notifications = admin.alert_notifications(limit=NOTIFICATIONS)
    # The rate now: attempts finished in the last five minute-buckets, over the time they span
    # (the newest bucket is the minute in progress).
    recent = hour[-5:]
    span = (datetime.now(UTC) - recent[0]["at"]).total_seconds() if recent else 0
    recent_per_s = sum(p["finished"] for p in recent) / span if span > 0 else 0.0
    totals = {
        k: sum(q[k] for q in queues)
        for k in ("ready", "later", "retrying", "running", "blocked", "dead_letter")
    }
    return render(
        request,
        "overview.html",
        who,
        nav="overview",
        queues=queues,
        totals=totals,
        charts=[
            draw.bars(hour, "Last hour (per minute)"),
            draw.bars(day, "Last 24 h (per 30 min)"),
        ],
        workers=workers,
        schedules=schedules,
        notifications=notifications,
        recent_per_s=recent_per_s,
    )


class TaskFilter:
    """The task page's filters as typed, each parsed with its own error."""

    def __init__(self, **raw: str | None) -> None:
        self.raw = {k: (v or "").strip() for k, v in raw.items()}
        self.errors: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        r = self.raw
        if r["status"]:
            if r["status"].lower() in STATUSES:
                self.values["status"] = r["status"].lower()
            else:
                self.errors["status"] = f"not one of {', '.join(STATUSES)}"
        for key, limit in (("queue", 128), ("type", 200), ("error", 200)):
            v = r[key]
            if "\x00" in v:
                self.errors[key] = "contains a NUL character"
            elif len(v) > limit:
                self.errors[key] = f"longer than {limit} characters"
            elif v:
                self.values[key] = v
        for key in ("since", "until"):
            v = r[key]
            if not v:
                continue
            try:
                self.values[key] = _instant(v, key)
            except (UsageError, ValueError, OverflowError) as e:
                self.errors[key] = str(e).removeprefix(f"{key}: ")
        if (
            "since" in self.values
            and "until" in self.values
            and self.values["since"] >= self.values["until"]
        ):
            self.errors["until"] = "must be after 'since'"
        if r["cursor"]:
            n = _int_id(r["cursor"])
            if n is None:
                self.errors["cursor"] = "not a task id"
            else:
                self.values["cursor"] = n

    def query(self, **override: Any) -> str:
        q = {k: v for k, v in self.raw.items() if v and k != "cursor"}
        q.update({k: v for k, v in override.items() if v is not None})
        return urlencode(q)


def _instant(text: str, field: str) -> datetime:
    """An ISO-8601 time (UTC without an offset) or an age back from now ('2h', '30m')."""
    if text[:1].isdigit() and not any(c in text for c in "-:T"):
        return datetime.now(UTC) - parse_duration(text, field)
    value = parse_instant(text, field)
    if not datetime(1970, 1, 1, tzinfo=UTC) <= value <= datetime(9999, 1, 1, tzinfo=UTC):
        raise UsageError(f"{field}: outside 1970..9999")
    return value


@router.get("/ui/tasks", response_class=HTMLResponse)
@page
def tasks(
    request: Request,
    who: Principal,
    status: Annotated[str | None, Query()] = None,
    queue: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query()] = None,
    since: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
    error: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    f = TaskFilter(
        status=status, queue=queue, type=type, since=since, until=until, error=error, cursor=cursor
    )
    result: dict[str, Any] = {"items": [], "next_cursor": None, "searched_to": None}
    if not f.errors:
        v = f.values
        result = request.app.state.service.admin.search_tasks(
            status=v.get("status"),
            queue=v.get("queue"),
            task_type=v.get("type"),
            since=v.get("since"),
            until=v.get("until"),
            error=v.get("error"),
            before=v.get("cursor"),
            limit=PAGE_SIZE,
        )
    return render(
        request,
        "tasks.html",
        who,
        status=422 if f.errors else 200,
        nav="tasks",
        f=f,
        statuses=STATUSES,
        result=result,
        first_page=f.query() if "cursor" in f.values else None,
        next_page=f.query(cursor=result["next_cursor"]) if result["next_cursor"] else None,
    )


@router.get("/ui/tasks/{task_id}", response_class=HTMLResponse)
@page
def task_detail(request: Request, who: Principal, task_id: str) -> Response:
    n = _int_id(task_id)
    back = "/ui/tasks"
    if n is None:
        return not_found(request, who, f"{task_id!r} is not a task id", back)
    try:
        task = request.app.state.service.client.get(n)
    except NotFound:
        return not_found(request, who, f"no task with id {n}", back)
    return render(request, "task.html", who, nav="tasks", task=task)


@router.get("/ui/dead-letter", response_class=HTMLResponse)
@page
def dead_letter(
    request: Request,
    who: Principal,
    queue: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    """Keyset pages of PAGE_SIZE entries, newest first. The count and the requeue-all and
    purge buttons follow the filter only: they act on every matching entry, whatever page
    is shown."""
    admin = request.app.state.service.admin
    errors = {}
    q = (queue or "").strip() or None
    t = (type or "").strip() or None
    cur = (cursor or "").strip() or None
    for key, v in (("queue", q), ("type", t)):
        if v is not None and ("\x00" in v or len(v) > 200):
            errors[key] = "contains a NUL character" if "\x00" in v else "too long"
    if cur is not None:
        try:
            decode_dlq_cursor(cur)
        except ValidationError as e:
            errors["cursor"] = str(e).removeprefix("cursor: ")
    result: dict[str, Any] = {"items": [], "next_cursor": None}
    total = 0
    if not errors:
        result = admin.dead_letter_page(queue=q, task_type=t, cursor=cur, limit=PAGE_SIZE)
        total = admin.dlq_purge_count(queue=q, task_type=t)
    pairs = [(k, v) for k, v in (("queue", q), ("type", t)) if v]
    filt = urlencode(pairs)
    nxt = result["next_cursor"]
    return render(
        request,
        "dead_letter.html",
        who,
        status=422 if errors else 200,
        nav="dead-letter",
        entries=result["items"],
        total=total,
        queue=q or "",
        type=t or "",
        errors=errors,
        filt=filt,
        deep=cur is not None,
        live_url="/ui/dead-letter?" + urlencode([*pairs, *([("cursor", cur)] if cur else [])]),
        next_page=urlencode([*pairs, ("cursor", nxt)]) if nxt else None,
    )


@router.get("/ui/workers", response_class=HTMLResponse)
@page
def workers(request: Request, who: Principal) -> Response:
    rows = request.app.state.service.admin.workers()
    return render(request, "workers.html", who, nav="workers", workers=rows)


@router.get("/ui/schedules", response_class=HTMLResponse)
@page
def schedules(request: Request, who: Principal) -> Response:
    rows = request.app.state.service.admin.schedules()
    return render(request, "schedules.html", who, nav="schedules", schedules=rows)


@router.get("/ui/workflows", response_class=HTMLResponse)
@page
def workflows(
    request: Request,
    who: Principal,
    status: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    errors = {}
    st = (status or "").strip().lower() or None
    if st is not None and st not in WORKFLOW_STATUSES:
        errors["status"] = f"not one of {', '.join(WORKFLOW_STATUSES)}"
    before = None
    if cursor:
        before = _int_id(cursor)
        if before is None:
            errors["cursor"] = "not a workflow id"
    rows: list[dict[str, Any]] = []
    if not errors:
        rows = request.app.state.service.admin.workflows_page(
            status=st, before=before, limit=PAGE_SIZE
        )
    nxt = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return render(
        request,
        "workflows.html",
        who,
        status=422 if errors else 200,
        nav="workflows",
        workflows=rows,
        statuses=WORKFLOW_STATUSES,
        selected=st or "",
        errors=errors,
        next_page=urlencode({k: v for k, v in (("status", st), ("cursor", nxt)) if v})
        if nxt
        else None,
    )


@router.get("/ui/workflows/{workflow_id}", response_class=HTMLResponse)
@page
def workflow_detail(request: Request, who: Principal, workflow_id: str) -> Response:
    n = _int_id(workflow_id)
    back = "/ui/workflows"
    if n is None:
        return not_found(request, who, f"{workflow_id!r} is not a workflow id", back)
    admin = request.app.state.service.admin
    try:
        wf = admin.workflow(n)
    except NotFound:
        return not_found(request, who, f"no workflow with id {n}", back)
    summary = admin.workflow_summary(n)
    return render(
        request,
        "workflow.html",
        who,
        nav="workflows",
        wf=wf,
        summary=summary,
        graph=draw.dag(wf["tasks"]),
    )


# -- signing in ----------------------------------------------------------------------------------


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str | None, Query()] = None) -> Response:
    return render(request, "login.html", None, nav="login", next=_safe_next(next), error=None)


class LoginIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096)
    next: str | None = Field(default=None, max_length=2048)


@router.post("/ui/login", response_class=HTMLResponse)
def login(request: Request, body: LoginIn) -> Response:
    from fastapi import HTTPException

    target = _safe_next(body.next)
    try:
        check_token(request, body.token.strip())
    except HTTPException as e:
        return HTMLResponse(
            f'<p class="flash error" role="alert">{_esc(str(e.detail))}</p>',
            status_code=e.status_code,
        )
    r = Response(status_code=204, headers={"HX-Redirect": target})
    r.set_cookie(value=body.token.strip(), **cookie_args(request))
    return r


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    r = Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
    r.delete_cookie(COOKIE, path="/")
    return r


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: a login never sends the browser elsewhere."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _esc(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


# -- actions -------------------------------------------------------------------------------------


def action(request: Request, do: Callable[[], str]) -> Response:
    """Run one action for a button: 200 with its one-line result, or the refusal's status with
    its one line (nothing changed). The page refreshes either way."""
    try:
        who = principal(request)
        require_action(request, who)
        message, status, kind = do(), 200, "ok"
    except LoginRequired as e:
        message, status, kind = f"sign in again: {e.reason}", 401, "error"
    except Refused as e:
        message, status, kind = e.message, e.status, "error"
    except NotFound as e:
        message, status, kind = _line(e) + ": nothing was changed", 404, "error"
    except InvalidState as e:
        message, status, kind = _line(e) + ": nothing was changed", 409, "error"
    except UsageError as e:
        message, status, kind = _line(e), 422, "error"
    except PgschedError as e:
        message, status, kind = _line(e), 503, "error"
    html = f'<p class="flash {kind}" role="status" data-outcome="{kind}">{_esc(message)}</p>'
    return HTMLResponse(
        html, status_code=status, headers={"HX-Trigger-After-Settle": "pgsched-refresh"}
    )


def _line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _id_or_404(text: str, what: str) -> int:
    n = _int_id(text)
    if n is None:
        raise NotFound(f"{text!r} is not a {what} id")
    return n


@router.post("/ui/actions/tasks/{task_id}/cancel")
def act_cancel(request: Request, task_id: str) -> Response:
    def do() -> str:
        n = _id_or_404(task_id, "task")
        outcome = request.app.state.service.client.cancel(n)
        if outcome == "cancel_requested":
            return f"Task {n}: its worker was asked to stop it"
        return f"Task {n} cancelled"

    return action(request, do)


@router.post("/ui/actions/tasks/{task_id}/retry")
def act_retry(request: Request, task_id: str) -> Response:
    def do() -> str:
        n = _id_or_404(task_id, "task")
        request.app.state.service.client.retry(n)
        return f"Task {n} queued again"

    return action(request, do)


@router.post("/ui/actions/dead-letter/{task_id}/requeue")
def act_requeue(request: Request, task_id: str) -> Response:
    def do() -> str:
        n = _id_or_404(task_id, "task")
        request.app.state.service.admin.dlq_requeue(n)
        return f"Task {n} requeued from the dead letter"

    return action(request, do)


def _filter_words(queue: str | None, type: str | None) -> str:
    parts = [f"queue {queue}" if queue else "", f"type {type}" if type else ""]
    return " and ".join(p for p in parts if p) or "no filter"


@router.post("/ui/actions/dead-letter/requeue")
def act_requeue_all(
    request: Request,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    def do() -> str:
        ids = request.app.state.service.admin.dlq_requeue_all(
            queue=queue or None, task_type=type or None
        )
        return f"{len(ids)} task(s) requeued from the dead letter ({_filter_words(queue, type)})"

    return action(request, do)


@router.post("/ui/actions/dead-letter/purge")
def act_purge(
    request: Request,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    def do() -> str:
        n = request.app.state.service.admin.dlq_purge(queue=queue or None, task_type=type or None)
        return (
            f"{n} dead-letter entr{'y' if n == 1 else 'ies'} purged ({_filter_words(queue, type)})"
        )

    return action(request, do)


# The buttons that act on a worker or a schedule by name: (object, verb) -> (Admin method, the
# line shown when it is done).
NAMED_ACTIONS = {
    ("worker", "pause"): (
        "pause_worker",
        "Worker {name} paused: it finishes what it runs and claims nothing new",
    ),
    ("worker", "resume"): ("resume_worker", "Worker {name} resumed"),
    ("schedule", "pause"): ("pause_schedule", "Schedule {name} paused"),
    ("schedule", "resume"): ("resume_schedule", "Schedule {name} resumed"),
}


def named_action(request: Request, kind: str, name: str, verb: str) -> Response:
    def do() -> str:
        if (kind, verb) not in NAMED_ACTIONS:
            raise NotFound(f"no {kind} action {verb!r}")
        method, done = NAMED_ACTIONS[kind, verb]
        getattr(request.app.state.service.admin, method)(name)
        return done.format(name=name)

    return action(request, do)


@router.post("/ui/actions/workers/{name}/{verb}")
def act_worker(request: Request, name: str, verb: str) -> Response:
    return named_action(request, "worker", name, verb)


@router.post("/ui/actions/schedules/{name}/{verb}")
def act_schedule(request: Request, name: str, verb: str) -> Response:
    return named_action(request, "schedule", name, verb)


@router.post("/ui/actions/workflows/{workflow_id}/{verb}")
def act_workflow(request: Request, workflow_id: str, verb: str) -> Response:
    def do() -> str:
        n = _id_or_404(workflow_id, "workflow")
        admin = request.app.state.service.admin
        if verb == "cancel":
            c = admin.cancel_workflow(n)
            asked = c["cancel_requested"]
            return f"Workflow {n} cancelled ({c['cancelled']} cancelled, {asked} asked to stop)"
        if verb == "retry":
            r = admin.retry_workflow(n)
            return f"Workflow {n}: {r['retried']} task(s) run again"
        raise NotFound(f"no workflow action {verb!r}")

    return action(request, do)
