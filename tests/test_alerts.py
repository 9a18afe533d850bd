"""Alert rules and channels from YAML (apply, list, pause, resume, refusals), events recorded
by the triggers in the transaction of the state change, folding (storm control), and
threshold rules evaluated once per window however many tickers run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pgsched.alerts import dispatch as dispatching
from pgsched.alerts.config import parse_alerts
from pgsched.alerts.store import apply_alerts
from pgsched.cli import common
from pgsched.db import connect
from tests.cli import ok, refused, run

ROOT = Path(__file__).resolve().parent.parent
ENV = {"HOOK_SECRET": "s3cret"}

CHANNEL = """\
channels:
  - name: hook
    type: webhook
    url: http://127.0.0.1:9/hook
    secret_env: HOOK_SECRET
"""


def spec(rules: str, channels: str = CHANNEL):
    return parse_alerts(channels + "rules:\n" + rules, "alerts.yaml", ENV)


def applied(conn: psycopg.Connection, rules: str) -> None:
    apply_alerts(conn, spec(rules))


def events(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        "SELECT r.name AS rule, e.key, e.data FROM pgsched.alert_events e"
        " JOIN pgsched.alert_rules r ON r.id = e.rule_id ORDER BY e.id"
    ).fetchall()


def counts(conn: psycopg.Connection) -> tuple[int, ...]:
    return tuple(
        conn.execute(
            "SELECT (SELECT count(*) FROM pgsched.alert_rules) AS rules, "
            "(SELECT count(*) FROM pgsched.alert_channels) AS channels, "
            "(SELECT count(*) FROM pgsched.alert_rules WHERE paused) AS paused"
        )
        .fetchone()
        .values()
    )


@pytest.fixture
def db(dsn: str):
    with connect(dsn) as c:
        yield c


# -- the file ------------------------------------------------------------------------------------


def test_the_example_file_applies_lists_and_reapplies_unchanged(
    dsn: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSCHED_WEBHOOK_SECRET", "x")
    out = ok(dsn, "alerts", "apply", str(ROOT / "examples/alerts.yaml"))
    assert "rules: 9 added" in out and "channels: 1 added" in out
    assert counts(db) == (9, 1, 0)
    out = ok(dsn, "alerts", "apply", str(ROOT / "examples/alerts.yaml"))
    assert "rules: 0 added, 0 changed, 0 removed, 9 unchanged" in out
    listed = run(dsn, "alerts", "list", "--json")
    assert listed.exit_code == 0 and '"name": "dead-letters"' in listed.stdout
    monkeypatch.setattr(common.console, "width", 400)  # no cell wraps
    table = ok(dsn, "alerts", "list")
    for rule, what in [
        ("backlog", "ready_depth > 500 / 30.0s"),
        ("failing", "failure_rate > 20% / 1m00s"),
        ("stuck-queue", "oldest_ready_age > 2m00s / 30.0s"),
    ]:
        assert any(line.split()[:1] == [rule] and what in line for line in table.splitlines())


def test_apply_reports_changes_keeps_or_prunes(db: psycopg.Connection) -> None:
    applied(db, "  - {name: a, event: worker.dead, channels: [hook]}\n"
                "  - {name: b, event: task.retrying, channels: [hook]}\n")  # fmt: skip
    report = apply_alerts(
        db, spec("  - {name: a, event: worker.dead, channels: [hook], min_interval: 5s}\n")
    )
    assert report.rules.changed == {"a": ["min_interval"]}
    assert report.rules.kept == ["b"]
    report = apply_alerts(
        db,
        spec("  - {name: a, event: worker.dead, channels: [hook], min_interval: 5s}\n"),
        prune=True,
    )
    assert report.rules.removed == ["b"] and report.rules.unchanged == ["a"]
    assert counts(db) == (1, 1, 0)


BAD = [
    # (rules or a whole file, the line and message expected)
    ("  - name: x\n    event: task.exploded\n    channels: [hook]\n",
     r"alerts\.yaml:8: rule 'x': event: unknown event 'task\.exploded' \(one of task\."),
    ("  - name: x\n    threshold: ready_depth\n    above: 5\n    channels: [hook]\n",
     r"alerts\.yaml:7: rule 'x': window: a threshold rule needs a window"),
    ("  - name: x\n    threshold: ready_depth\n    window: 1m\n    channels: [hook]\n",
     r"alerts\.yaml:7: rule 'x': above: a threshold rule needs a bound"),
    ("  - name: x\n    threshold: ready_depth\n    above: .inf\n    window: 1m\n"
     "    channels: [hook]\n", r"alerts\.yaml:9: rule 'x': above: must be a finite number"),
    ("  - name: x\n    threshold: failure_rate\n    above: .nan\n    window: 1m\n"
     "    channels: [hook]\n", r"alerts\.yaml:9: rule 'x': above: must be a finite number"),
    ("  - name: x\n    threshold: failure_rate\n    above: 150%\n    window: 1m\n"
     "    channels: [hook]\n", r"rule 'x': above: failure_rate is a percentage"),
    ("  - name: x\n    event: worker.dead\n    channels: [nope]\n",
     r"alerts\.yaml:9: rule 'x': channels: no channel named 'nope' in this file"),
    ("  - name: x\n    event: worker.dead\n    task_type: [a]\n    channels: [hook]\n",
     r"rule 'x': task_type: worker\.dead rules cannot filter by it"),
    ("  - name: x\n    event: worker.dead\n    colour: red\n    channels: [hook]\n",
     r"alerts\.yaml:9: rule 'x': colour: unknown key"),
    ("  - name: x\n    event: worker.dead\n    window: 5m\n    channels: [hook]\n",
     r"rule 'x': window: only threshold rules have one"),
    ("  - name: x\n    event: task.retrying\n    group_by: colour\n    channels: [hook]\n",
     r"alerts\.yaml:9: rule 'x': group_by: one of queue, task_type, workflow, none"),
    ("  - name: x\n    event: worker.dead\n    channels: [hook]\n"
     "  - name: x\n    event: worker.dead\n    channels: [hook]\n",
     r"alerts\.yaml:10: rule 'x': duplicate name \(first on line 7\)"),
]  # fmt: skip

BAD_CHANNELS = [
    ("channels:\n  - name: hook\n    type: webhook\n    url: http://127.0.0.1:9/\n"
     "    secret_env: NOT_SET_ANYWHERE\n",
     r"alerts\.yaml:5: channel 'hook': secret_env: environment variable NOT_SET_ANYWHERE is"
     r" not set"),
    ("channels:\n  - name: hook\n    type: webhook\n    url: ftp://example.com/x\n"
     "    secret_env: HOOK_SECRET\n",
     r"alerts\.yaml:4: channel 'hook': url: 'ftp://example\.com/x' is not an http:// or https://"),
    ("channels:\n  - name: hook\n    type: webhook\n    url: 'http://exa mple.com/'\n"
     "    secret_env: HOOK_SECRET\n", r"alerts\.yaml:4: channel 'hook': url: a URL has no spaces"),
    ("channels:\n  - name: hook\n    type: webhook\n    url: http://u:p@example.com/\n"
     "    secret_env: HOOK_SECRET\n", r"alerts\.yaml:4: channel 'hook': url: credentials in a URL"),
    ("channels:\n  - name: m\n    type: email\n    host: localhost\n    from: a@example.com\n"
     "    to: [ops@example.com, not-an-address]\n",
     r"alerts\.yaml:6: channel 'm': to: 'not-an-address' is not a mail address"),
    ("channels:\n  - name: m\n    type: email\n    host: localhost\n"
     "    from: \"a@example.com\\r\\nBcc: x@evil.test\"\n    to: [ops@example.com]\n",
     r"alerts\.yaml:5: channel 'm': from: an address has no control characters"),
    ("channels:\n  - name: m\n    type: email\n    host: localhost\n    from: a@example.com\n"
     "    to: ops@example.com\n    subject: '{{ rule '\n",
     r"alerts\.yaml:7: channel 'm': subject: template line 1: unexpected end of template"),
    ("channels:\n  - name: m\n    type: email\n    host: localhost\n    from: a@example.com\n"
     "    to: ops@example.com\n    username: me\n",
     r"channel 'm': give username and password_env together"),
    ("channels:\n  - name: m\n    type: pager\n", r"alerts\.yaml:3: channel 'm': type: one of"),
    ("channels:\n  - name: s\n    type: slack\n    url_env: NOT_SET_ANYWHERE\n",
     r"alerts\.yaml:4: channel 's': url_env: environment variable NOT_SET_ANYWHERE is not set"),
    ("rules: {a: 1}\n", r"alerts\.yaml:1: rules: expected a list"),
    ("channels: [\n", r"alerts\.yaml:\d+: invalid YAML"),
    ("spam: 1\n", r"alerts\.yaml:1: unknown key 'spam'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), [(CHANNEL + "rules:\n" + r, m) for r, m in BAD]
                         + BAD_CHANNELS)  # fmt: skip
def test_bad_input_is_refused_with_its_line_and_nothing_changes(
    dsn: str, db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    text: str, message: str,
) -> None:  # fmt: skip
    import re

    monkeypatch.setenv("HOOK_SECRET", "x")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    good = tmp_path / "good.yaml"
    good.write_text(CHANNEL + "rules:\n  - {name: keep, event: worker.dead, channels: [hook]}\n")
    ok(dsn, "alerts", "apply", str(good))
    before = counts(db)
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    line = refused(dsn, "alerts", "apply", "--prune", str(path), code=2)
    assert re.search(message, line), line
    assert counts(db) == before


def test_deeply_nested_yaml_and_nul_are_refused_in_one_line(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    assert refused(dsn, "alerts", "apply", str(path), code=2).startswith("error: ")
    path.write_bytes(b"rules:\n  - name: a\x00b\n")
    assert refused(dsn, "alerts", "apply", str(path), code=2).startswith("error: ")


def test_pause_and_resume(dsn: str, db: psycopg.Connection) -> None:
    applied(db, "  - {name: dead, event: task.dead_lettered, channels: [hook]}\n")
    assert "paused dead" in ok(dsn, "alerts", "pause", "dead")
    task = db.execute("INSERT INTO pgsched.tasks (task_type) VALUES ('t') RETURNING id").fetchone()
    db.execute("UPDATE pgsched.tasks SET status = 'failed' WHERE id = %s", (task["id"],))
    assert events(db) == []  # a paused rule records nothing
    assert "resumed dead" in ok(dsn, "alerts", "resume", "dead")
    assert refused(dsn, "alerts", "pause", "nope", code=1) == "error: no alert rule named 'nope'"
    r = run(dsn, "alerts", "list", "--json")
    assert r.exit_code == 0 and '"paused": false' in r.stdout


# -- events --------------------------------------------------------------------------------------


def _task(db: psycopg.Connection, **kw: object) -> int:
    queue = kw.get("queue", "default")
    task_type = kw.get("task_type", "email")
    return db.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, status, attempts, max_attempts)"
        " VALUES (%s, %s, 'running', 1, 3) RETURNING id",
        (task_type, queue),
    ).fetchone()["id"]


def test_an_event_is_recorded_in_the_transaction_of_its_state_change(
    dsn: str, db: psycopg.Connection
) -> None:
    applied(db, "  - {name: dead, event: task.dead_lettered, channels: [hook]}\n")
    tid = _task(db)
    with psycopg.connect(dsn) as c:  # not autocommit: one transaction
        c.execute("UPDATE pgsched.tasks SET status = 'failed', last_error = 'boom' WHERE id = %s",
                  (tid,))  # fmt: skip
        c.rollback()
    assert events(db) == []
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE pgsched.tasks SET status = 'failed', last_error = 'boom' WHERE id = %s",
                  (tid,))  # fmt: skip
        c.commit()
    [e] = events(db)
    assert e["rule"] == "dead" and e["key"] == "default"
    assert e["data"]["task_id"] == tid and e["data"]["error"] == "boom"


def test_filters_and_keys(db: psycopg.Connection) -> None:
    applied(
        db,
        "  - {name: mail, event: task.retrying, queue: mail, task_type: [send, bounce],"
        " group_by: task_type, channels: [hook]}\n",
    )
    for queue, task_type in (("mail", "send"), ("mail", "other"), ("web", "send")):
        tid = _task(db, queue=queue, task_type=task_type)
        db.execute("UPDATE pgsched.tasks SET status = 'retrying' WHERE id = %s", (tid,))
    assert [(e["rule"], e["key"]) for e in events(db)] == [("mail", "send")]


def test_delivery_tasks_never_raise_alerts(db: psycopg.Connection) -> None:
    applied(db, "  - {name: dead, event: task.dead_lettered, channels: [hook]}\n")
    tid = _task(db, task_type="pgsched.alert")
    db.execute("UPDATE pgsched.tasks SET status = 'failed' WHERE id = %s", (tid,))
    assert events(db) == []


def test_workflow_worker_and_schedule_events(dsn: str, db: psycopg.Connection) -> None:
    from pgsched.schedule_file import ScheduleDef
    from pgsched.schedules import Scheduler, apply_schedules

    applied(
        db,
        "  - {name: wf, event: workflow.failed, channels: [hook]}\n"
        "  - {name: wf-ok, event: workflow.succeeded, workflow: nightly, channels: [hook]}\n"
        "  - {name: dead, event: worker.dead, channels: [hook]}\n"
        "  - {name: late, event: schedule.misfired, channels: [hook]}\n",
    )
    for name, status in (("etl", "failed"), ("nightly", "succeeded"), ("other", "succeeded")):
        wid = db.execute(
            "INSERT INTO pgsched.workflows (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()["id"]
        db.execute("UPDATE pgsched.workflows SET status = %s WHERE id = %s", (status, wid))
    db.execute("INSERT INTO pgsched.workers (name, host, pid) VALUES ('w1', 'h', 1)")
    db.execute("UPDATE pgsched.workers SET status = 'dead' WHERE name = 'w1'")
    db.execute("UPDATE pgsched.workers SET status = 'dead' WHERE name = 'w1'")  # no second

    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    apply_schedules(db, [ScheduleDef(name="s", every="1m", task_type="noop")], now=t0)
    sched = Scheduler(dsn)
    try:
        sched.tick_once(now=t0 + timedelta(minutes=1, seconds=1))  # on time: no misfire
        sched.tick_once(now=t0 + timedelta(hours=1, seconds=1))  # an hour late: misfire
    finally:
        sched.close()
    got = [(e["rule"], e["key"]) for e in events(db)]
    assert got == [("wf", "etl"), ("wf-ok", "nightly"), ("dead", "w1"), ("late", "s")]
    late = events(db)[-1]["data"]
    assert late["due_at"].startswith("2030-01-01T00:02") and late["skipped"] is False


# -- folding ---------------------------------------------------------------------------------------


def test_a_storm_of_10000_failures_is_one_notification_per_interval_with_its_count(
    db: psycopg.Connection,
) -> None:
    applied(db, "  - {name: dead, event: task.dead_lettered, min_interval: 5m, channels: [hook]}\n")
    db.execute(
        "INSERT INTO pgsched.tasks (task_type, status, attempts)"
        " SELECT 'email', 'running', 1 FROM generate_series(1, 10005)"
    )
    db.execute(
        "UPDATE pgsched.tasks SET status = 'failed', last_error = 'smtp down'"
        " WHERE id IN (SELECT id FROM pgsched.all_tasks ORDER BY id LIMIT 10000)"
    )
    t0 = datetime.now(UTC)
    [n1] = dispatching.dispatch(db, t0)
    assert dispatching.dispatch(db, t0) == []  # nothing left to fold
    db.execute("UPDATE pgsched.tasks SET status = 'failed' WHERE status = 'running'")  # 5 more
    assert dispatching.dispatch(db, t0 + timedelta(minutes=4)) == []  # still in the interval
    assert dispatching.next_wake(db, t0 + timedelta(minutes=4)) == pytest.approx(60, abs=1)
    [n2] = dispatching.dispatch(db, t0 + timedelta(minutes=5))
    rows = db.execute(
        "SELECT id, count, body FROM pgsched.alert_notifications ORDER BY id"
    ).fetchall()
    assert [(r["id"], r["count"]) for r in rows] == [(n1, 10000), (n2, 5)]
    body = rows[0]["body"]
    assert body["summary"].endswith("failed for good after 1 attempt: smtp down (+9999 more)")
    assert len(body["recent"]) == dispatching.RECENT and body["details"] == body["recent"][0]
    tasks = db.execute(
        "SELECT task_type, idempotency_key, payload FROM pgsched.all_tasks"
        " WHERE task_type = 'pgsched.alert' ORDER BY id"
    ).fetchall()
    assert [t["idempotency_key"] for t in tasks] == [
        f"pgsched.alert:{r['body']['id']}:hook" for r in rows
    ]
    assert tasks[0]["payload"]["notification"] == body
    assert "s3cret" not in str(tasks[0]["payload"])  # only the variable's name is stored


def test_two_dispatchers_never_fold_an_event_twice(dsn: str, db: psycopg.Connection) -> None:
    applied(db, "  - {name: dead, event: task.dead_lettered, min_interval: 0s,"
                " group_by: none, channels: [hook]}\n")  # fmt: skip
    db.execute(
        "INSERT INTO pgsched.tasks (task_type, status, attempts)"
        " SELECT 'email', 'running', 1 FROM generate_series(1, 2000)"
    )
    stop = threading.Event()

    def fail_them() -> None:
        with connect(dsn) as c:
            for _ in range(40):
                c.execute(
                    "UPDATE pgsched.tasks SET status = 'failed' WHERE id IN (SELECT id FROM"
                    " pgsched.tasks WHERE status = 'running' ORDER BY id LIMIT 50)"
                )
        stop.set()

    def fold() -> None:
        with connect(dsn) as c:
            while not stop.is_set():
                dispatching.dispatch(c)
            dispatching.dispatch(c)

    threads = [threading.Thread(target=fail_them)]
    threads += [threading.Thread(target=fold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dispatching.dispatch(db)
    total = db.execute("SELECT sum(count) AS n FROM pgsched.alert_notifications").fetchone()["n"]
    assert total == 2000
    assert db.execute("SELECT count(*) AS n FROM pgsched.alert_events").fetchone()["n"] == 0


# -- thresholds ------------------------------------------------------------------------------------


def test_a_threshold_is_evaluated_once_per_window_however_many_tickers(
    dsn: str, db: psycopg.Connection
) -> None:
    applied(db, "  - {name: deep, threshold: ready_depth, above: 3, window: 1m,"
                " channels: [hook]}\n")  # fmt: skip
    db.execute("INSERT INTO pgsched.tasks (task_type) SELECT 'x' FROM generate_series(1, 5)")
    db.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('x', 'small')")
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    barrier = threading.Barrier(6)
    recorded: list[int] = []

    def evaluate(now: datetime) -> None:
        with connect(dsn) as c:
            barrier.wait()
            recorded.append(dispatching.evaluate_thresholds(c, now))

    for now in (t0, t0 + timedelta(seconds=30), t0 + timedelta(seconds=61)):
        threads = [threading.Thread(target=evaluate, args=(now,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # Window 1 at t0: one event (queue default, 5 > 3); 30 s later nothing is due; at t0+61s
    # the second window: one more.
    assert sorted(recorded) == [0] * 16 + [1, 1]
    got = events(db)
    assert [(e["key"], e["data"]["value"]) for e in got] == [("default", 5.0), ("default", 5.0)]


def test_each_threshold_measure(db: psycopg.Connection) -> None:
    applied(
        db,
        "  - {name: old, threshold: oldest_ready_age, above: 10m, window: 1m, channels: [hook]}\n"
        "  - {name: rate, threshold: failure_rate, above: 50%, window: 1h, min_attempts: 4,"
        " channels: [hook]}\n"
        "  - {name: nobody, threshold: no_live_worker, window: 1m, queue: [orphans, default],"
        " channels: [hook]}\n"
        "  - {name: dlq, threshold: dead_letter_size, above: 1, window: 1m, channels: [hook]}\n",
    )
    now = datetime.now(UTC) + timedelta(seconds=1)
    db.execute(
        "INSERT INTO pgsched.tasks (task_type, queue, run_at) VALUES"
        " ('x', 'default', %(a)s), ('x', 'orphans', %(b)s)",
        {"a": now - timedelta(minutes=30), "b": now - timedelta(minutes=1)},
    )
    db.execute("INSERT INTO pgsched.workers (name, host, pid, queues) VALUES"
               " ('w', 'h', 1, '{default}')")  # fmt: skip
    tid = db.execute("INSERT INTO pgsched.tasks (task_type, queue) VALUES ('x', 'q')"
                     " RETURNING id").fetchone()["id"]  # fmt: skip
    db.execute(
        "INSERT INTO pgsched.task_executions (task_id, attempt, outcome, finished_at)"
        " SELECT %s, g, CASE WHEN g <= 3 THEN 'failure' ELSE 'success' END, %s"
        " FROM generate_series(1, 5) g",
        (tid, now - timedelta(minutes=5)),
    )
    db.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts)"
        " VALUES (1001, 'q', 'x', '{}', 3), (1002, 'q', 'x', '{}', 3), (1003, 'r', 'x', '{}', 3)"
    )
    assert dispatching.evaluate_thresholds(db, now) == 4
    got = {(e["rule"], e["key"]): e["data"] for e in events(db)}
    assert set(got) == {("old", "default"), ("rate", "q"), ("nobody", "orphans"), ("dlq", "q")}
    assert got[("old", "default")]["value"] == pytest.approx(1800, abs=1)
    assert got[("rate", "q")]["value"] == pytest.approx(60.0)
    assert got[("dlq", "q")]["value"] == 2.0
    [n] = [dispatching.summary("threshold.failure_rate", got[("rate", "q")])]
    assert n.startswith("60.0% of attempts failed in queue q over 3600s (3 of 5; above 50%)")
