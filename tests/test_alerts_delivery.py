"""Alert notifications delivered to real receivers in the test process: a webhook server that
checks the signature and the body, an SMTP server with STARTTLS and login, Slack-compatible
text; a receiver that fails or hangs is retried with backoff and then dead-lettered; a worker
killed (kill -9) between the state change and the delivery, or in the middle of it, loses
nothing, and a receiver sees duplicates only under the same idempotency key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.alerts.config import parse_alerts
from pgsched.alerts.deliver import SIGNATURE_HEADER, body_bytes, verify
from pgsched.alerts.store import apply_alerts
from pgsched.alerts.ticker import AlertTicker
from pgsched.db import connect
from pgsched.worker import Worker
from tests.alert_receivers import SmtpServer, WebhookReceiver
from tests.cli import ok, run
from tests.conftest import FAST, WORKER_ENV, wait_until

SECRET = "a-webhook-secret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    with connect(dsn) as c:
        yield c


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_TOKEN", "Bearer t0ken")
    return {"HOOK_SECRET": SECRET, "HOOK_TOKEN": "Bearer t0ken"}


def webhook(url: str, **extra: Any) -> str:
    fields = {"backoff_base": "50ms", "backoff_cap": "200ms", "timeout": "2s", **extra}
    more = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in fields.items())
    return (
        "  - name: hook\n    type: webhook\n"
        f"    url: {url}\n    secret_env: HOOK_SECRET\n"
        "    headers: {X-Team: ops}\n    headers_env: {Authorization: HOOK_TOKEN}\n" + more
    )


def apply(db: psycopg.Connection, channels: str, rules: str, env: dict[str, str]) -> None:
    text = "channels:\n" + channels + "rules:\n" + rules
    apply_alerts(db, parse_alerts(text, "alerts.yaml", env))


DEAD = "  - {name: dead, event: task.dead_lettered, min_interval: 0s, channels: [hook]}\n"


def failing_task(db: psycopg.Connection, **kw: Any) -> int:
    return db.execute(
        "SELECT pgsched.submit('dummy', %s, max_attempts => 1) AS id",
        (json.dumps({"shouldFail": True}),),
    ).fetchone()["id"]


def delivery_tasks(db: psycopg.Connection) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, status, attempts, last_error FROM pgsched.all_tasks"
        " WHERE task_type = 'pgsched.alert' ORDER BY id"
    ).fetchall()


@pytest.fixture
def fleet(dsn: str) -> Iterator[Any]:
    """An in-process worker and alert ticker."""
    started: list[Any] = []

    def start() -> None:
        started.append(Worker(dsn, FAST, name="w-alerts").start())
        started.append(AlertTicker(dsn, settings=FAST, worker="w-alerts").start())

    yield start
    for s in reversed(started):
        s.stop()


def check_signed(req: Any) -> dict[str, Any]:
    assert verify(SECRET, req.body, req.headers[SIGNATURE_HEADER])
    body = req.json()
    assert body_bytes(body) == req.body  # the documented encoding, byte for byte
    assert req.headers["Idempotency-Key"] == body["id"]
    return body


def test_a_dead_lettered_task_reaches_the_webhook_signed(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], fleet: Any
) -> None:
    apply(db, webhook(receiver.url), DEAD, env)
    fleet()
    tid = failing_task(db)
    [req] = receiver.wait_for(1)
    body = check_signed(req)
    assert req.headers["X-Team"] == "ops" and req.headers["Authorization"] == "Bearer t0ken"
    assert req.headers["X-Pgsched-Event"] == "task.dead_lettered"
    assert body["version"] == 1 and body["rule"] == "dead" and body["count"] == 1
    assert body["details"]["task_id"] == tid and body["test"] is False
    assert body["summary"] == (
        f"task {tid} (dummy on default) failed for good after 1 attempt: "
        "RuntimeError: dummy: failing as asked (shouldFail)"
    )
    forged = req.body.replace(b'"count":1', b'"count":2')
    assert not verify(SECRET, forged, req.headers[SIGNATURE_HEADER])
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["succeeded"])


def test_a_failing_receiver_is_retried_with_backoff_then_dead_lettered(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], fleet: Any
) -> None:
    receiver.status = 500
    apply(db, webhook(receiver.url, max_attempts=4), DEAD, env)
    fleet()
    failing_task(db)
    reqs = receiver.wait_for(4)
    assert len({r.headers["Idempotency-Key"] for r in reqs}) == 1  # the same notification
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["failed"])
    [t] = delivery_tasks(db)
    assert t["attempts"] == 4 and "answered 500" in t["last_error"]
    dl = db.execute("SELECT task_type FROM pgsched.dead_letter ORDER BY id").fetchall()
    assert [d["task_type"] for d in dl] == ["dummy", "pgsched.alert"]
    attempts = db.execute(
        "SELECT e.started_at, e.finished_at FROM pgsched.task_executions e"
        " WHERE e.task_id = %s ORDER BY e.attempt",
        (t["id"],),
    ).fetchall()
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds() for a, b in pairwise(attempts)]
    assert len(gaps) == 3 and all(g >= 0.02 for g in gaps)  # backoff between attempts
    # The dead-lettered delivery raises no alert of its own (no feedback loop).
    assert db.execute("SELECT count(*) AS n FROM pgsched.alert_events").fetchone()["n"] == 0
    assert len(receiver.requests) == 4


def test_a_receiver_that_answers_400_is_not_retried(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], fleet: Any
) -> None:
    receiver.status = 400
    apply(db, webhook(receiver.url, max_attempts=5), DEAD, env)
    fleet()
    failing_task(db)
    receiver.wait_for(1)
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["failed"])
    assert delivery_tasks(db)[0]["attempts"] == 1


def test_a_hanging_receiver_times_out_and_is_retried(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], fleet: Any
) -> None:
    receiver.hang = True
    apply(db, webhook(receiver.url, timeout="300ms", max_attempts=10), DEAD, env)
    fleet()
    failing_task(db)
    receiver.wait_for(2)  # the first attempt timed out and a second one came
    receiver.hang = False
    receiver.release.set()
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["succeeded"], timeout=20)
    [t] = delivery_tasks(db)
    assert t["attempts"] >= 2
    errors = db.execute(
        "SELECT error FROM pgsched.task_executions WHERE task_id = %s AND outcome = 'failure'",
        (t["id"],),
    ).fetchall()
    assert errors and all("Timeout" in e["error"] for e in errors)


def test_email_over_starttls_with_login(
    db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet: Any
) -> None:
    smtp = SmtpServer(tmp_path, "alerts", "mail-pass")
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    try:
        channels = (
            "  - name: hook\n    type: email\n    host: 127.0.0.1\n"
            f"    port: {smtp.port}\n    ca_file: {smtp.cert}\n"
            "    username: alerts\n    password_env: SMTP_PASSWORD\n"
            "    from: 'pgsched <alerts@example.com>'\n    to: [ops@example.com, b@example.com]\n"
            "    subject: '[{{ event }}] {{ summary }}'\n"
            "    body: 'count={{ count }} task={{ details.task_id }}'\n"
            "    backoff_base: 50ms\n"
        )
        apply(db, channels, DEAD, {"SMTP_PASSWORD": "mail-pass"})
        fleet()
        tid = failing_task(db)
        [msg] = smtp.wait_for(1)
        assert smtp.logins == ["alerts"]
        assert sorted(msg.rcpt_tos) == ["b@example.com", "ops@example.com"]
        from email import message_from_bytes

        m = message_from_bytes(msg.content)
        assert m["Subject"].startswith(f"[task.dead_lettered] task {tid} (dummy on default)")
        assert m.get_payload().strip() == f"count=1 task={tid}"
        note = db.execute("SELECT uid FROM pgsched.alert_notifications").fetchone()
        assert m["Message-ID"] == f"<{note['uid']}@pgsched>"
    finally:
        smtp.stop()


def test_email_with_a_wrong_password_fails_for_good(
    db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgsched.alerts.deliver import send_email
    from pgsched.errors import PermanentError

    smtp = SmtpServer(tmp_path, "alerts", "right")
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    try:
        config = {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
                  "ca_file": str(smtp.cert), "username": "alerts", "password_env": "SMTP_PASSWORD",
                  "from": "a@example.com", "to": ["b@example.com"]}  # fmt: skip
        with pytest.raises(PermanentError, match=r"answered 535"):
            send_email(config, {"id": "x", "event": "e", "summary": "s", "details": {}})
        assert smtp.messages == []
    finally:
        smtp.stop()


def test_slack_text_and_the_cli_test_command(
    dsn: str, db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str]
) -> None:
    channels = (
        webhook(receiver.url)
        + f"  - name: chat\n    type: slack\n    url: {receiver.url}\n"
        + "    text: '{{ rule }} says {{ summary }}'\n"
    )
    rules = "  - {name: dead, event: task.dead_lettered, channels: [hook, chat]}\n"
    apply(db, channels, rules, env)
    out = ok(dsn, "alerts", "test", "dead")
    assert "sent hook" in out and "sent chat" in out
    reqs = receiver.wait_for(2)
    hook = next(r for r in reqs if SIGNATURE_HEADER in r.headers)
    body = check_signed(hook)
    assert body["test"] is True and body["rule"] == "dead"
    chat = next(r for r in reqs if SIGNATURE_HEADER not in r.headers)
    assert chat.json() == {"text": f"dead says {body['summary']}"}
    receiver.status = 503
    r = run(dsn, "alerts", "test", "dead")
    assert r.exit_code == 1 and "failed hook: POST http://127.0.0.1" in r.stdout
    assert db.execute("SELECT count(*) AS n FROM pgsched.alert_notifications").fetchone()["n"] == 0


def test_status_shows_recent_notifications_and_their_delivery(
    dsn: str, db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], fleet: Any
) -> None:
    apply(db, webhook(receiver.url), DEAD, env)
    fleet()
    failing_task(db)
    receiver.wait_for(1)
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["succeeded"])
    r = run(dsn, "status", "--json")
    [n] = json.loads(r.stdout)["notifications"]
    assert n["rule"] == "dead" and n["deliveries"][0]["status"] == "succeeded"
    assert "recent notifications" in ok(dsn, "status")
    assert "hook: succeeded" in ok(dsn, "alerts", "history")


# -- kill -9 ---------------------------------------------------------------------------------------


@pytest.fixture
def spawn(spawn: Any, env: dict[str, str]) -> Any:
    """conftest's spawn, with this module's environment (the channels' secrets)."""
    return lambda *args: spawn(*args, env={**WORKER_ENV, **env})


@pytest.mark.slow
def test_kill_9_between_the_failure_and_the_delivery_loses_nothing(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], spawn: Any
) -> None:
    """The worker that dead-letters the task runs no ticker; it is killed right after: the
    event was committed with the failure, and the next worker delivers it."""
    apply(db, webhook(receiver.url), DEAD, env)
    first = spawn("--no-alerts", "--name", "first")
    tid = failing_task(db)
    wait_until(
        lambda: db.execute("SELECT count(*) AS n FROM pgsched.alert_events").fetchone()["n"] == 1
    )
    first.kill()
    first.wait()
    assert receiver.requests == []
    spawn("--name", "second")
    [req] = receiver.wait_for(1)
    assert check_signed(req)["details"]["task_id"] == tid


@pytest.mark.slow
def test_kill_9_mid_delivery_redelivers_under_the_same_idempotency_key(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], spawn: Any
) -> None:
    receiver.hang = True  # the first delivery is in flight when its worker dies
    apply(db, webhook(receiver.url, timeout="20s"), DEAD, env)
    first = spawn("--name", "first")
    failing_task(db)
    receiver.wait_for(1)
    first.kill()
    first.wait()
    receiver.hang = False
    receiver.release.set()
    spawn("--name", "second")
    wait_until(lambda: [t["status"] for t in delivery_tasks(db)] == ["succeeded"], timeout=30)
    reqs = receiver.requests
    assert len(reqs) >= 2
    assert len({r.headers["Idempotency-Key"] for r in reqs}) == 1
    assert len({r.body for r in reqs}) == 1  # the same signed body every time
    outcomes = db.execute(
        "SELECT e.outcome FROM pgsched.task_executions e"
        " JOIN pgsched.all_tasks t ON t.id = e.task_id"
        " WHERE t.task_type = 'pgsched.alert' ORDER BY e.attempt"
    ).fetchall()
    got = [o["outcome"] for o in outcomes]
    assert got[0] == "lost" and got[-1] == "success"


@pytest.mark.slow
def test_a_hanging_receiver_never_holds_a_task_slot_and_a_killed_deliverer_is_recovered(
    db: psycopg.Connection, receiver: WebhookReceiver, env: dict[str, str], spawn: Any
) -> None:
    """One slot, and a delivery hanging on the receiver: the worker's tasks still run (the
    delivery is on its alert ticker's thread, from the queue pgsched.alerts). Killed while the
    delivery hangs, the worker's recovery hands it back and the next worker delivers it once
    more, with the same idempotency key."""
    receiver.hang = True
    apply(db, webhook(receiver.url, timeout="60s"), DEAD, env)
    solo = spawn("--name", "solo", "--concurrency", "1")
    failing_task(db)
    [first] = receiver.wait_for(1)
    [d] = db.execute(
        "SELECT id, status, queue, assigned_worker FROM pgsched.all_tasks"
        " WHERE task_type = 'pgsched.alert'"
    ).fetchall()
    assert (d["status"], d["queue"], d["assigned_worker"]) == ("running", "pgsched.alerts", "solo")
    ids = [
        db.execute("SELECT pgsched.submit('dummy', '{\"sleepDurationMs\": 50}') AS id").fetchone()[
            "id"
        ]
        for _ in range(5)
    ]
    wait_until(
        lambda: db.execute(
            "SELECT bool_and(status = 'succeeded') AS ok FROM pgsched.all_tasks WHERE id = ANY(%s)",
            (ids,),
        ).fetchone()["ok"],
        20,
        message="the worker's tasks, beside the hanging delivery",
    )
    assert [t["status"] for t in delivery_tasks(db)] == ["running"]  # still hanging
    solo.kill()
    solo.wait()
    receiver.hang = False
    receiver.release.set()
    spawn("--name", "rescuer")
    wait_until(
        lambda: [t["status"] for t in delivery_tasks(db)] == ["succeeded"],
        30,
        message="the recovered delivery sent again",
    )
    second = receiver.requests[-1]
    assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    outcomes = db.execute(
        "SELECT e.outcome, e.worker FROM pgsched.task_executions e"
        " WHERE e.task_id = %s ORDER BY e.attempt",
        (d["id"],),
    ).fetchall()
    assert [(o["outcome"], o["worker"]) for o in outcomes] == [
        ("lost", "solo"),
        ("success", "rescuer"),
    ]
