"""`pgsched serve` against the real thing: uvicorn on a free port, httpx, the test's database.
Every route, the alias paths' requests as written, and every refusal (with rows counted)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgsched.worker import heartbeat
from tests.api import error_line, serving

ALIAS_DAG = {
    "dagName": "nightly-report",
    "description": "Fetch the numbers, build the report, mail it",
    "tasks": [
        {"taskName": "fetch", "type": "HTTP", "payload": {"url": "http://127.0.0.1:9/x"}},
        {
            "taskName": "build",
            "type": "DATA_PROCESSING",
            "payload": {"input": "numbers"},
            "dependencies": ["fetch"],
        },
        {
            "taskName": "mail",
            "type": "EMAIL",
            "payload": {"to": "ops@example.com"},
            "dependencies": ["build"],
        },
    ],
}


def counts(conn: psycopg.Connection) -> tuple[int, ...]:
    """Rows of every table a request could write."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM pgsched.all_tasks), (SELECT count(*) FROM pgsched.workflows),"
        " (SELECT count(*) FROM pgsched.task_dependencies),"
        " (SELECT count(*) FROM pgsched.schedules), (SELECT count(*) FROM pgsched.dead_letter)"
    ).fetchone()


def task_row(conn: psycopg.Connection, task_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT task_type, payload, queue, status, max_attempts, run_at, created_at"
        " FROM pgsched.all_tasks WHERE id = %s",
        (task_id,),
    )
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


# -- requests on the alias paths ------------------------------------------------------------


def test_alias_requests_work_as_written(dsn: str, conn: psycopg.Connection) -> None:
    with serving(dsn) as http:
        # 000: POST /api/tasks {"taskType", "payload"}
        r = http.post("/api/tasks", json={"taskType": "email", "payload": {"to": "a@b.c"}})
        assert r.status_code == 201, r.text
        first = r.json()["id"]
        assert task_row(conn, first)["task_type"] == "email"

        # 004: POST /tasks with type, payload, scheduleAt, maxRetries
        at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        r = http.post(
            "/tasks",
            json={
                "type": "HTTP",
                "payload": {"url": "http://127.0.0.1:9/", "method": "GET"},
                "scheduleAt": at.isoformat().replace("+00:00", "Z"),
                "maxRetries": 3,
            },
        )
        assert r.status_code == 201, r.text
        http_id = r.json()["id"]
        row = task_row(conn, http_id)
        assert row["task_type"] == "http"  # the built-in type, as the alias request's HTTP means
        assert row["max_attempts"] == 4  # three retries after the first attempt
        assert row["run_at"] == at

        # 004: GET /tasks?status=PENDING&type=HTTP&page=0&size=20
        r = http.get("/tasks?status=PENDING&type=HTTP&page=0&size=20")
        assert r.status_code == 200, r.text
        page = r.json()
        assert [t["id"] for t in page["items"]] == [http_id]
        assert page["items"][0]["taskType"] == "http" and page["size"] == 20

        # 004: GET /tasks/{id}, DELETE /tasks/{id}
        r = http.get(f"/tasks/{http_id}")
        assert r.status_code == 200 and r.json()["maxAttempts"] == 4
        assert r.json()["payload"] == {"url": "http://127.0.0.1:9/", "method": "GET"}
        r = http.delete(f"/tasks/{http_id}")
        assert r.status_code == 200 and r.json() == {"id": http_id, "status": "cancelled"}
        assert task_row(conn, http_id)["status"] == "cancelled"

        # 003: POST /tasks/schedule with delaySeconds and retries
        r = http.post(
            "/tasks/schedule",
            json={"taskType": "report", "payload": {"n": 1}, "delaySeconds": 3600, "retries": 2},
        )
        assert r.status_code == 201, r.text
        row = task_row(conn, r.json()["id"])
        assert row["max_attempts"] == 3
        delay = (row["run_at"] - row["created_at"]).total_seconds()
        assert 3599 <= delay <= 3601

        # 001: POST /api/v1/dags with the DAG JSON, description and type names included
        r = http.post("/api/v1/dags", json=ALIAS_DAG)
        assert r.status_code == 201, r.text
        dag = r.json()
        assert dag["dagName"] == "nightly-report" and dag["id"] == dag["dagId"]
        assert dag["description"] == ALIAS_DAG["description"]
        assert (dag["status"], dag["totalTasks"], dag["completedTasks"], dag["failedTasks"]) == (
            "running",
            3,
            0,
            0,
        )
        r = http.get(f"/api/v1/dags/{dag['dagId']}")
        assert r.status_code == 200 and r.json() == dag
        tasks = http.get(f"/api/v1/dags/{dag['dagId']}/tasks").json()
        by_name = {t["name"]: t for t in tasks}
        assert by_name["fetch"]["taskType"] == "http"
        assert by_name["build"]["taskType"] == "DATA_PROCESSING"  # waits for a worker with it
        assert by_name["mail"]["dependsOn"] == ["build"]
        assert [by_name[n]["status"] for n in ("fetch", "build", "mail")] == [
            "pending",
            "blocked",
            "blocked",
        ]


def test_the_alias_dag_file_is_accepted_by_the_cli_too(dsn: str, tmp_path) -> None:
    from tests.cli import ok

    f = tmp_path / "dag.json"
    f.write_text(json.dumps(ALIAS_DAG))
    wf_id = int(ok(dsn, "submit", "--workflow", str(f)).strip())
    shown = json.loads(ok(dsn, "status", "--workflow", str(wf_id), "--json"))
    assert shown["name"] == "nightly-report"
    assert sorted(t["task_type"] for t in shown["tasks"]) == ["DATA_PROCESSING", "EMAIL", "http"]


# -- every canonical route -----------------------------------------------------------------------


def _fail(conn: psycopg.Connection, task_id: int) -> None:
    """Make a task failed with a dead-letter entry, as a worker's last failed attempt does."""
    conn.execute(
        "UPDATE pgsched.tasks SET status = 'failed', attempts = max_attempts,"
        " finished_at = now(), last_error = 'boom' WHERE id = %s",
        (task_id,),
    )
    conn.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts,"
        " last_error) SELECT id, queue, task_type, payload, attempts, last_error"
        " FROM pgsched.all_tasks WHERE id = %s",
        (task_id,),
    )


def test_tasks_routes(dsn: str, conn: psycopg.Connection) -> None:
    with serving(dsn) as http:
        ids = []
        for i in range(5):
            r = http.post(
                "/api/v1/tasks",
                json={"taskType": "t", "payload": {"i": i}, "queue": "q", "priority": i},
            )
            assert r.status_code == 201
            ids.append(r.json()["id"])
        # keyset pages: two, two, one
        seen, cursor = [], None
        while True:
            r = http.get(
                "/api/v1/tasks", params={"size": 2, **({"cursor": cursor} if cursor else {})}
            )
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)
        assert [t["id"] for t in http.get("/api/v1/tasks?page=1&size=2").json()["items"]] == [
            ids[2],
            ids[1],
        ]
        assert http.get("/api/v1/tasks?queue=nope").json()["items"] == []
        # batch
        r = http.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"taskType": "b", "payload": {"n": n}} for n in range(3)]},
        )
        assert r.status_code == 201 and len(r.json()["ids"]) == 3
        # idempotency
        a = http.post("/api/v1/tasks", json={"taskType": "k", "idempotencyKey": "x1"}).json()
        b = http.post("/api/v1/tasks", json={"taskType": "k", "idempotencyKey": "x1"}).json()
        assert a["id"] == b["id"] and a["created"] and not b["created"]
        # retry a failed one; retry a pending one is a conflict
        _fail(conn, ids[0])
        r = http.post(f"/api/v1/tasks/{ids[0]}/retry", json={"attempts": 2})
        assert r.status_code == 200 and r.json()["maxAttempts"] == 5
        r = http.post(f"/api/v1/tasks/{ids[0]}/retry")
        assert r.status_code == 409 and "it is pending" in error_line(r)
        assert http.get("/api/v1/tasks/999999").status_code == 404
        assert http.delete("/api/v1/tasks/999999").status_code == 404


def test_dag_routes(dsn: str, conn: psycopg.Connection) -> None:
    with serving(dsn) as http:
        dag = http.post(
            "/api/v1/dags",
            json={
                "name": "native",
                "tasks": [
                    {"name": "a", "task_type": "noop"},
                    {"name": "b", "task_type": "noop", "depends_on": ["a"]},
                ],
            },
        ).json()
        r = http.post(f"/api/v1/dags/{dag['id']}/cancel")
        assert r.status_code == 200 and r.json()["cancelled"] == 2
        assert http.get(f"/api/v1/dags/{dag['id']}").json()["status"] == "cancelled"
        r = http.post(f"/api/v1/dags/{dag['id']}/retry")
        assert r.status_code == 200 and r.json()["retried"] == 2
        assert http.get("/api/v1/dags/424242").status_code == 404


def test_dead_letter_routes(dsn: str, conn: psycopg.Connection) -> None:
    with serving(dsn) as http:
        ids = [
            http.post("/api/v1/tasks", json={"taskType": t, "queue": "dl"}).json()["id"]
            for t in ("x", "x", "y", "z")
        ]
        for i in ids:
            _fail(conn, i)
        rows = http.get("/api/v1/dead-letter?queue=dl").json()
        assert sorted(r["taskId"] for r in rows) == sorted(ids)
        r = http.post(f"/api/v1/dead-letter/{ids[0]}/requeue", json={"attempts": 1})
        assert r.status_code == 200 and task_row(conn, ids[0])["status"] == "pending"
        r = http.post("/api/v1/dead-letter/requeue", json={"taskType": "x"})
        assert r.json() == {"requeued": [ids[1]]}
        assert http.post(f"/api/v1/dead-letter/{ids[1]}/requeue").status_code == 404
        r = http.delete("/api/v1/dead-letter", params={"type": "y"})
        assert r.json() == {"deleted": 1}
        r = http.delete("/api/v1/dead-letter", params={"olderThanSeconds": 3600})
        assert r.json() == {"deleted": 0}
        assert [r["taskId"] for r in http.get("/api/v1/dead-letter").json()] == [ids[3]]


def test_worker_and_health_routes(dsn: str, conn: psycopg.Connection) -> None:
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as wconn:
        heartbeat.register(wconn, "w-api", queues=["default"], task_types=["noop"], capacity=4)
        with serving(dsn) as http:
            workers = http.get("/api/v1/workers").json()
            assert [w["name"] for w in workers] == ["w-api"]
            assert workers[0]["maxTaskCapacity"] == 4
            r = http.post("/api/v1/workers/w-api/pause")
            assert r.json() == {"name": "w-api", "status": "paused"}
            assert http.post("/api/v1/workers/w-api/resume").json()["status"] == "active"
            assert http.post("/api/v1/workers/nobody/pause").status_code == 404

            h = http.get("/health")
            assert h.status_code == 200
            body = h.json()
            assert body["status"] == "UP" and body["liveWorkers"] == 1
            assert body["schemaRevision"]
            assert http.get("/health/live").json() == {"status": "UP"}
            assert http.get("/health/ready").status_code == 200
            assert [w["name"] for w in http.get("/health/workers").json()] == ["w-api"]
            m = http.get("/health/metrics?hours=24").json()
            assert m["windowS"] == 86400 and "p99" in m["durationMs"]
            assert http.get("/api/v1/stats?hours=1").json()["windowS"] == 3600
            r = http.post("/health/recovery")
            assert r.status_code == 200 and r.json()["deadWorkers"] == []
        # The worker's session ends: its liveness lock goes, recovery declares it dead.
    with serving(dsn) as http:
        r = http.post("/health/recovery")
        assert r.json()["deadWorkers"] == ["w-api"]


def test_schedule_routes(dsn: str) -> None:
    with serving(dsn) as http:
        body = {"schedules": [{"name": "tick", "every": "1h", "task_type": "noop"}]}
        r = http.put("/api/v1/schedules", json={**body, "dryRun": True})
        assert r.status_code == 200 and r.json()["added"] == ["tick"] and r.json()["dryRun"]
        assert http.get("/api/v1/schedules").json() == []
        assert http.put("/api/v1/schedules", json=body).json()["added"] == ["tick"]
        rows = http.get("/api/v1/schedules").json()
        assert rows[0]["name"] == "tick" and rows[0]["everySeconds"] == 3600
        assert http.post("/api/v1/schedules/tick/pause").status_code == 200
        assert http.get("/api/v1/schedules").json()[0]["paused"] is True
        assert http.post("/api/v1/schedules/tick/resume").status_code == 200
        assert http.post("/api/v1/schedules/nope/pause").status_code == 404
        r = http.put(
            "/api/v1/schedules",
            json={"schedules": [{"name": "bad", "cron": "61 * * * *", "task_type": "x"}]},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][:3] == [
            "body",
            "schedules",
            0,
        ]


def test_metrics_parse_and_count_from_the_database(dsn: str, conn: psycopg.Connection) -> None:
    with serving(dsn) as http:
        for q in ("a", "a", "b"):
            http.post("/api/v1/tasks", json={"taskType": "t", "queue": q})
        failed = http.post("/api/v1/tasks", json={"taskType": "t", "queue": "b"}).json()["id"]
        conn.execute(
            "INSERT INTO pgsched.task_executions (task_id, attempt, outcome, duration_ms)"
            " VALUES (%s, 1, 'success', 30), (%s, 2, 'failure', 700), (%s, 3, 'failure', 4000)",
            (failed, failed, failed),
        )
        _fail(conn, failed)
        texts = [http.get(p) for p in ("/metrics", "/actuator/prometheus")]
    for r in texts:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(texts[0].text)}
    depth = {
        (s.labels["queue"], s.labels["status"]): s.value for s in fams["pgsched_tasks"].samples
    }
    assert depth == {("a", "pending"): 2, ("b", "pending"): 1}
    attempts = {
        s.labels["outcome"]: s.value
        for s in fams["pgsched_task_attempts"].samples
        if s.name.endswith("_total")
    }
    assert (attempts["success"], attempts["failure"]) == (1, 2)
    one = {s.name: s.value for f in fams.values() for s in f.samples if not s.labels}
    assert one["pgsched_tasks_failed_total"] == 1
    assert one["pgsched_task_retries_total"] == 1
    assert one["pgsched_dead_letter_size"] == 1
    hist = {
        s.labels.get("le"): s.value
        for s in fams["pgsched_task_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert (hist["0.05"], hist["1.0"], hist["5.0"], hist["+Inf"]) == (1, 2, 3, 3)
    assert fams["pgsched_oldest_ready_age_seconds"].samples
    # The same on another replica: counters come from the database, not from the process.
    with serving(dsn) as other:
        assert _counters(other.get("/metrics").text) == _counters(texts[0].text)
    # Pruning the attempts does not lower them.
    conn.execute("DELETE FROM pgsched.task_executions")
    with serving(dsn) as again:
        assert _counters(again.get("/metrics").text) == _counters(texts[0].text)


def _counters(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        if f.type in ("counter", "histogram")
        for s in f.samples
    }


# -- refusals: 4xx with the field's path, nothing written ------------------------------------------


REFUSED_BODIES = [
    ({}, 422, "body.taskType"),
    ({"taskType": ""}, 422, "body.taskType"),
    ({"taskType": "x", "priority": 5000}, 422, "body.priority"),
    ({"taskType": "x", "maxRetries": -1}, 422, "body.maxRetries"),
    ({"taskType": "x", "maxAttempts": 2, "maxRetries": 2}, 422, "maxAttempts and maxRetries"),
    ({"taskType": "x", "payload": {"a": "nul\u0000"}}, 422, "body.payload"),
    ({"taskType": "x\u0000"}, 422, "body.taskType"),
    ({"taskType": "x", "queue": "q" * 129}, 422, "body.queue"),
    ({"taskType": "x", "scheduleAt": "2030-01-01T00:00:00"}, 422, "body.scheduleAt"),
    ({"taskType": "x", "scheduleAt": "infinity"}, 422, "body.scheduleAt"),
    ({"taskType": "x", "delaySeconds": float("inf")}, 422, "body.delaySeconds"),
    ({"taskType": "x", "surprise": 1}, 422, "body.surprise"),
    ({"taskType": "x", "timeoutSeconds": 0}, 422, "body.timeoutSeconds"),
    ([1, 2], 422, "body"),
]


def test_bad_task_bodies_are_refused_with_the_fields_path(
    dsn: str, conn: psycopg.Connection
) -> None:
    before = counts(conn)
    with serving(dsn) as http:
        for body, code, where in REFUSED_BODIES:
            text = json.dumps(body).replace("Infinity", "1e999")
            r = http.post(
                "/api/v1/tasks", content=text, headers={"content-type": "application/json"}
            )
            assert r.status_code == code, (body, r.text)
            assert error_line(r).startswith(where), (body, r.json())
    assert counts(conn) == before


# Bodies each refused by one of the shared field checks (pgsched.models): the HTTP API and the
# Python API give the same reason. (wire name, Python name, value)
SHARED_REFUSALS = [
    ("queue", "queue", "a,b"),
    ("queue", "queue", " padded"),
    ("payload", "payload", {"a": [[[[1]]]] * 2, "b": json.loads("[" * 300 + "]" * 300)}),
    ("payload", "payload", {"n": float("nan")}),
    ("payload", "payload", {"s": "\ud800"}),
    ("idempotencyKey", "idempotency_key", "é" * 501),
    ("scheduleAt", "run_at", "1800-01-01T00:00:00Z"),
    ("timeoutSeconds", "timeout", 101 * 366 * 86400),
]


def test_the_http_and_python_apis_refuse_alike(dsn: str, conn: psycopg.Connection) -> None:
    from pgsched.errors import ValidationError
    from pgsched.models import make_spec

    before = counts(conn)
    with serving(dsn) as http:
        for wire, name, value in SHARED_REFUSALS:
            text = json.dumps({"taskType": "x", wire: value}, ensure_ascii=True)
            r = http.post(
                "/api/v1/tasks", content=text, headers={"content-type": "application/json"}
            )
            assert r.status_code == 422, (wire, r.text)
            line = error_line(r)
            assert line.startswith(f"body.{wire}"), (wire, line)
            if name == "run_at":
                value = datetime.fromisoformat(value)
            elif name == "timeout":
                value = timedelta(seconds=value)
            with pytest.raises(ValidationError) as e:
                make_spec(task_type="x", **{name: value})
            reason = str(e.value).rsplit(": ", 1)[-1]
            assert line.endswith(reason), (wire, line, str(e.value))
    assert counts(conn) == before


def test_bad_workflows_name_the_tasks(dsn: str, conn: psycopg.Connection) -> None:
    before = counts(conn)
    with serving(dsn) as http:
        cyc = {
            "name": "c",
            "tasks": [
                {"name": "a", "task_type": "x", "depends_on": ["b"]},
                {"name": "b", "task_type": "x", "depends_on": ["a"]},
            ],
        }
        r = http.post("/api/v1/dags", json=cyc)
        assert r.status_code == 422 and "cycle" in error_line(r) and "a -> b" in error_line(r)
        unknown = {"dagName": "u", "tasks": [{"taskName": "a", "type": "x", "dependencies": "z"}]}
        r = http.post("/api/v1/dags", json=unknown)
        assert r.status_code == 422 and "'a': depends on unknown task 'z'" in error_line(r)
        r = http.post("/api/v1/dags", json={"name": "e", "tasks": []})
        assert r.status_code == 422
    assert counts(conn) == before


def test_malformed_oversized_and_mistyped_requests(dsn: str, conn: psycopg.Connection) -> None:
    before = counts(conn)
    with serving(dsn, api_max_body=4096) as http:
        r = http.post(
            "/api/v1/tasks",
            content=b'{"taskType": "x",',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and "malformed JSON" in error_line(r)
        r = http.post(
            "/api/v1/tasks", content=b"taskType=x", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415 and "application/json" in error_line(r)
        big = {"taskType": "x", "payload": {"blob": "x" * 5000}}
        r = http.post("/api/v1/tasks", json=big)
        assert r.status_code == 413 and "4096" in error_line(r)

        def chunks():
            yield b'{"taskType": "x", "payload": {"blob": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}}'

        r = http.post(
            "/api/v1/tasks", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        for url in (
            "/api/v1/tasks?size=0",
            "/api/v1/tasks?size=1001",
            "/api/v1/tasks?page=-1",
            "/api/v1/tasks?stauts=pending",
            "/api/v1/tasks?status=nope",
            "/api/v1/tasks?page=0&cursor=5",
            "/health/metrics?hours=0",
            "/api/v1/tasks/0",
        ):
            r = http.get(url)
            assert r.status_code == 422, (url, r.text)
            error_line(r)
        assert "stauts" in error_line(http.get("/api/v1/tasks?stauts=pending"))
    assert counts(conn) == before


def test_the_default_body_limit_is_one_mebibyte(dsn: str, conn: psycopg.Connection) -> None:
    before = counts(conn)
    with serving(dsn) as http:
        r = http.post("/api/v1/tasks", json={"taskType": "x", "payload": "x" * (1 << 20)})
        assert r.status_code == 413 and str(1 << 20) in error_line(r)
        r = http.post("/api/v1/tasks", json={"taskType": "x", "payload": "x" * 1000_000})
        assert r.status_code == 201
    assert counts(conn)[0] == before[0] + 1


def test_deeply_nested_and_huge_numbers(dsn: str, conn: psycopg.Connection) -> None:
    before = counts(conn)
    with serving(dsn) as http:
        deep = "[" * 100_000 + "]" * 100_000
        r = http.post(
            "/api/v1/tasks",
            content=f'{{"taskType": "x", "payload": {deep}}}',
            headers={"content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500, r.text
        error_line(r)
        r = http.post("/api/v1/tasks", json={"taskType": "x", "priority": 10**30})
        assert r.status_code == 422 and error_line(r).startswith("body.priority")
    assert counts(conn) == before


def test_database_gone_mid_request_is_503_in_one_line(pg_server, dsn: str) -> None:
    from tests.conftest import new_database

    name = new_database(pg_server, "pgsched_template")
    target = pg_server.url(name)
    with serving(target, connect_timeout=1) as http:
        assert http.get("/api/v1/tasks").status_code == 200
        with psycopg.connect(pg_server.url(), autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for method, url, body in (
            ("GET", "/api/v1/tasks", None),
            ("POST", "/api/v1/tasks", {"taskType": "x"}),
            ("GET", "/metrics", None),
        ):
            r = http.request(method, url, json=body)
            assert r.status_code == 503, (url, r.text)
            error_line(r)
        r = http.get("/health/ready")
        assert r.status_code == 503 and r.json()["status"] == "DOWN"
        assert http.get("/health/live").status_code == 200


def test_a_held_lock_gives_503_after_lock_timeout(dsn: str, conn: psycopg.Connection) -> None:
    before = counts(conn)
    with serving(dsn, lock_timeout=0.5) as http, psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE pgsched.tasks IN ACCESS EXCLUSIVE MODE")
        r = http.post("/api/v1/tasks", json={"taskType": "x"})
        assert r.status_code == 503, r.text
        assert "lock timeout" in error_line(r)
        holder.rollback()
    assert counts(conn) == before


def test_not_migrated_is_not_ready(empty_dsn: str) -> None:
    with serving(empty_dsn) as http:
        r = http.get("/health/ready")
        assert r.status_code == 503 and "pgsched migrate" in r.json()["error"]
        r = http.get("/api/v1/tasks")
        assert r.status_code == 503 and "pgsched migrate" in error_line(r)


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_openapi_docs_are_served(dsn: str, path: str) -> None:
    with serving(dsn) as http:
        assert http.get(path).status_code == 200


def test_an_unexpected_error_is_a_500_and_the_connection_stays_usable(dsn: str) -> None:
    """An exception no handler takes is a one-line 500. Starlette's handler for it raised the
    exception again after the response, uvicorn then dropped the connection, and the client's
    next request on the same keep-alive connection failed with a reset."""

    def broken() -> None:
        raise RuntimeError("a bug")

    with serving(dsn, routes={"/broken": broken}) as http:
        for _ in range(2):
            r = http.get("/broken")
            assert r.status_code == 500
            assert r.json() == {"error": "internal error (logged by the server)"}
            assert http.get("/health/live").status_code == 200  # the same connection
