"""The dashboard's pages. They read through pgsched.admin.Admin and pgsched.client.Client (as
the API routes do).

Pages are rendered whole; live parts poll their own URL every 2 s and htmx swaps in the part
it selects (``hx-select``), so a refresh costs what a page load costs and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pgsched.admin.deadletter import decode_dlq_cursor
from pgsched.api.auth import Principal
from pgsched.durations import parse_duration, parse_instant
from pgsched.errors import NotFound, UsageError, ValidationError
from pgsched.models import STATUSES
from pgsched.web import draw
from pgsched.web.render import PAGE_SIZE, int_id, not_found, page, render

NOTIFICATIONS = 8  # alert notifications on the overview
WORKFLOW_STATUSES = ("running", "succeeded", "failed", "cancelled")

router = APIRouter(include_in_schema=False)


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
            n = int_id(r["cursor"])
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
    n = int_id(task_id)
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
        before = int_id(cursor)
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
    n = int_id(workflow_id)
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
