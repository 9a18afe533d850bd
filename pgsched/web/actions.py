"""The dashboard's actions. Each calls the method the API's action route calls, so a button
does exactly what `DELETE /api/v1/tasks/{id}` or `pgsched dlq requeue` does, and answers with
one line for the page's notice area and an ``HX-Trigger-After-Settle`` header that makes the
page refresh at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from pgsched.errors import InvalidState, LoginRequired, NotFound, PgschedError, Refused, UsageError
from pgsched.web.render import esc, int_id
from pgsched.web.session import principal, require_action

router = APIRouter(include_in_schema=False)


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
    html = f'<p class="flash {kind}" role="status" data-outcome="{kind}">{esc(message)}</p>'
    return HTMLResponse(
        html, status_code=status, headers={"HX-Trigger-After-Settle": "pgsched-refresh"}
    )


def _line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _id_or_404(text: str, what: str) -> int:
    n = int_id(text)
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
