"""The web dashboard over HTTP (the browser tests are in test_dashboard_browser.py): every page
on real rows, 404 pages, filters that do not parse, sign-in and scopes, actions refused for a
read token, without htmx's header or from another origin, and stale actions; rows are counted
before and after every refused action."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from pgsched.admin import Admin
from pgsched.client import Client
from pgsched.web import draw
from tests.api import serving
from tests.dashboard import Gates, seed

HX = {"HX-Request": "true"}


def snapshot(conn: psycopg.Connection) -> tuple:
    """Everything an action could change."""
    return conn.execute(
        "SELECT (SELECT array_agg((id, status, max_attempts, cancel_requested) ORDER BY id)::text"
        "        FROM pgsched.all_tasks),"
        " (SELECT count(*) FROM pgsched.dead_letter),"
        " (SELECT array_agg((name, status) ORDER BY name)::text FROM pgsched.workers),"
        " (SELECT array_agg((name, paused) ORDER BY name)::text FROM pgsched.schedules),"
        " (SELECT array_agg((id, status) ORDER BY id)::text FROM pgsched.workflows)"
    ).fetchone()


def says(r: httpx.Response) -> str:
    """The response as the reader sees it (HTML entities decoded)."""
    return html.unescape(r.text)


def no_trace(r: httpx.Response) -> None:
    assert "Traceback" not in r.text and "Internal Server Error" not in r.text, r.text[:500]


@pytest.fixture
def seeded(dsn: str, conn: psycopg.Connection) -> dict:
    return seed(dsn, conn, Gates())


def test_every_page_shows_the_rows(dsn: str, conn: psycopg.Connection, seeded: dict) -> None:
    with serving(dsn) as http:
        r = http.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/ui/"

        r = http.get("/ui/")
        assert r.status_code == 200, r.text
        no_trace(r)
        assert 'data-queue="mail"' in says(r) and 'data-queue="reports"' in says(r)
        # ready: the three pending reports and the workflow's first task
        assert re.search(r'data-k="ready">4<', r.text)
        assert re.search(r'data-k="dead-letter">2<', r.text)
        assert "hourly-report" in says(r)  # the next schedule tick
        assert 'hx-trigger="every 2s' in says(r)  # live
        assert '<script src="/ui/static/htmx.min.js">' in says(r)

        r = http.get("/ui/tasks")
        assert r.status_code == 200
        for task_id in (*seeded["failing"], seeded["done"], *seeded["pending"]):
            assert f'data-task="{task_id}"' in says(r)
        r = http.get("/ui/tasks", params={"status": "failed", "queue": "mail"})
        assert sorted(map(int, re.findall(r'data-task="(\d+)"', r.text))) == seeded["failing"]
        r = http.get("/ui/tasks", params={"error": "reason 1"})
        assert re.findall(r'data-task="(\d+)"', r.text) == [str(seeded["failing"][1])]

        r = http.get(f"/ui/tasks/{seeded['failing'][0]}")
        assert r.status_code == 200
        assert "boom: reason 0" in says(r) and "seed-worker" in says(r)  # its attempt
        assert '"why": "reason 0"' in says(r)  # the payload
        r = http.get(f"/ui/tasks/{seeded['done']}")
        assert '"echo": {' in says(r)  # the result

        r = http.get("/ui/dead-letter")
        assert r.status_code == 200 and 'data-k="dead-letter-total">2<' in says(r)
        r = http.get("/ui/workers")
        assert r.status_code == 200 and 'data-worker="seed-worker"' in says(r)
        r = http.get("/ui/schedules")
        assert r.status_code == 200 and 'data-schedule="hourly-report"' in says(r)
        r = http.get("/ui/workflows")
        assert f'data-workflow="{seeded["workflow"]}"' in says(r)
        r = http.get(f"/ui/workflows/{seeded['workflow']}")
        assert r.status_code == 200
        assert re.findall(r'data-node="(\w+)" data-status="(\w+)"', r.text) == [
            ("fetch", "pending"),
            ("build", "blocked"),
            ("mail", "blocked"),
        ]
        assert r.text.count('class="edge"') == 2

        r = http.get("/ui/static/htmx.min.js")
        assert r.status_code == 200 and "htmx" in says(r)[:200]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/tasks/999999",
        "/ui/tasks/abc",
        "/ui/tasks/0",
        "/ui/tasks/99999999999999999999999",
        "/ui/workflows/424242",
        "/ui/workflows/-1",
        "/ui/no-such-page",
    ],
)
def test_unknown_ids_are_a_404_page_with_a_link_back(dsn: str, path: str) -> None:
    with serving(dsn) as http:
        r = http.get(path)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("text/html")
    no_trace(r)
    assert re.search(r'<a href="/ui/[a-z]*">← back</a>', r.text)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "sleeping"}, "status", "not one of"),
        ({"since": "yesterday-ish"}, "since", "not an ISO-8601 time"),
        ({"since": "infinity"}, "since", "not an ISO-8601 time"),
        ({"since": "2026-01-01T00:00", "until": "2025-01-01T00:00"}, "until", "after"),
        ({"until": "0001-01-01T00:00"}, "until", "not between"),
        ({"since": "9" * 40 + "h"}, "since", ""),
        ({"since": "nanh"}, "since", "not an ISO"),
        ({"error": "a\x00b"}, "error", "NUL"),
        ({"queue": "q" * 5000}, "queue", "longer than"),
        ({"cursor": "-5"}, "cursor", "not a task id"),
        ({"cursor": "1e400"}, "cursor", "not a task id"),
    ],
)
def test_filters_that_do_not_parse_are_shown_next_to_the_field(
    dsn: str, params: dict, field: str, message: str
) -> None:
    with serving(dsn) as http:
        r = http.get("/ui/tasks", params=params)
    assert r.status_code == 422, r.text
    no_trace(r)
    m = re.search(
        rf'<span class="field-error" id="err-{field}" role="alert">([^<]*)</span>', r.text
    )
    assert m is not None, r.text
    assert message in html.unescape(m.group(1))
    assert 'data-task="' not in says(r)


def test_unknown_query_parameter_is_an_html_error(dsn: str) -> None:
    with serving(dsn) as http:
        r = http.get("/ui/tasks", params={"stauts": "failed"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "stauts" in says(r) and "unknown query parameter" in says(r)
    no_trace(r)


def test_workflow_and_dead_letter_filters_refuse_bad_values(dsn: str) -> None:
    with serving(dsn) as http:
        r = http.get("/ui/workflows", params={"status": "nope"})
        assert r.status_code == 422 and 'id="err-status"' in says(r)
        r = http.get("/ui/dead-letter", params={"queue": "x\x00"})
        assert r.status_code == 422 and 'id="err-queue"' in says(r)


def test_search_walks_a_bounded_id_range(dsn: str, conn: psycopg.Connection) -> None:
    with Client(dsn) as client:
        admin = Admin(client)
        ids = client.submit_many([client.spec("ok", {"i": i}) for i in range(30)])
        hit = client.submit("ok", {"needle": True}, queue="rare")
        more = client.submit_many([client.spec("ok", {"i": i}) for i in range(30)])
        # Newest first in pages of 7 over the whole table: every id once, in order.
        seen, cursor = [], None
        while True:
            page = admin.search_tasks(limit=7, before=cursor, span=1000)
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted([*ids, hit, *more], reverse=True)
        # A rare match with a span of 10 ids: each page looks at 10 ids at most and says
        # how far it searched, until the match.
        page = admin.search_tasks(queue="rare", limit=5, span=10)
        assert page["items"] == [] and page["searched_to"] == more[-1] + 1 - 10
        assert page["next_cursor"] == page["searched_to"]
        pages = 1
        while not page["items"]:
            page = admin.search_tasks(queue="rare", limit=5, span=10, before=page["next_cursor"])
            pages += 1
        assert [t["id"] for t in page["items"]] == [hit] and pages == 4
        # LIKE's wildcards in the error text are literal.
        conn.execute(
            "UPDATE pgsched.tasks SET last_error = %s WHERE id = %s", ("50% off_line", ids[0])
        )
        conn.execute(
            "UPDATE pgsched.tasks SET last_error = %s WHERE id = %s", ("50x offxline", ids[1])
        )
        assert [t["id"] for t in admin.search_tasks(error="50% off_")["items"]] == [ids[0]]


def test_throughput_series_has_every_bucket(dsn: str, conn: psycopg.Connection) -> None:
    now = datetime(2030, 5, 1, 12, 30, 20, tzinfo=UTC)
    rows = [
        (1, now - timedelta(minutes=1, seconds=5), "success"),
        (2, now - timedelta(minutes=1, seconds=10), "failure"),
        (3, now - timedelta(seconds=5), "success"),
        (4, now - timedelta(hours=2), "success"),  # outside the window
    ]
    for task_id, at, outcome in rows:
        conn.execute(
            "INSERT INTO pgsched.task_executions (task_id, attempt, finished_at, outcome)"
            " VALUES (%s, 1, %s, %s)",
            (task_id, at, outcome),
        )
    with Client(dsn) as client:
        series = Admin(client).throughput_series(
            window=timedelta(hours=1), bucket=timedelta(minutes=1), now=now
        )
    assert len(series) == 60
    assert series[-1]["at"] == datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    assert (series[-1]["finished"], series[-1]["failed"]) == (1, 0)
    assert (series[-2]["finished"], series[-2]["failed"]) == (2, 1)
    assert sum(p["finished"] for p in series) == 3
    # The overview's day chart: the same minutes summed by half hour, aligned on the hour.
    halves = draw.regroup(series, minutes=30)
    assert [h["at"].strftime("%H:%M") for h in halves] == ["11:30", "12:00", "12:30"]
    assert [(h["finished"], h["failed"]) for h in halves] == [(0, 0), (2, 1), (1, 0)]


# -- sign-in and scopes ------------------------------------------------------------------------


def _tokens(dsn: str) -> dict[str, str]:
    with Client(dsn) as c:
        admin = Admin(c)
        return {s: admin.create_token(f"dash-{s}", [s])[0] for s in ("read", "submit", "admin")}


def test_sign_in_scopes_and_revocation(dsn: str, conn: psycopg.Connection, seeded: dict) -> None:
    tok = _tokens(dsn)
    task = seeded["failing"][0]
    with serving(dsn, api_auth=True) as http:
        r = http.get("/ui/dead-letter", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=%2Fui%2Fdead-letter"
        r = http.get("/ui/", headers=HX)  # a poll after the cookie went: to the login page
        assert r.headers["HX-Redirect"].startswith("/ui/login")

        # Login refuses a bad token and a token without the read scope, with one line.
        r = http.post("/ui/login", json={"token": "pgs_nope"}, headers=HX)
        assert r.status_code == 401 and "unknown or revoked API token" in says(r)
        assert "set-cookie" not in r.headers
        r = http.post("/ui/login", json={"token": tok["submit"]}, headers=HX)
        assert r.status_code == 403 and "lacks the 'read' scope" in says(r)
        r = http.post("/ui/login", json={"token": ""}, headers=HX)
        assert r.status_code == 422 and "Traceback" not in says(r)

        # A read token: every page, no button, and the actions refused (nothing changes).
        r = http.post(
            "/ui/login", json={"token": tok["read"], "next": "https://evil.example/"}, headers=HX
        )
        assert r.status_code == 204 and r.headers["HX-Redirect"] == "/ui/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        for path in (
            "/ui/",
            "/ui/dead-letter",
            "/ui/workers",
            "/ui/schedules",
            f"/ui/tasks/{task}",
            f"/ui/workflows/{seeded['workflow']}",
        ):
            r = http.get(path)
            assert r.status_code == 200, path
            assert 'hx-post="/ui/actions' not in says(r), path
            assert "read only" in says(r)
        before = snapshot(conn)
        for url in (
            f"/ui/actions/dead-letter/{task}/requeue",
            "/ui/actions/dead-letter/requeue",
            "/ui/actions/dead-letter/purge",
            f"/ui/actions/tasks/{seeded['pending'][0]}/cancel",
            "/ui/actions/schedules/hourly-report/pause",
            "/ui/actions/workers/seed-worker/pause",
            f"/ui/actions/workflows/{seeded['workflow']}/cancel",
        ):
            r = http.post(url, headers=HX)
            assert r.status_code == 403, url
            assert "lacks the 'admin' scope: nothing was changed" in says(r)
        # The API refuses the same token too.
        r = http.post(
            f"/api/v1/dead-letter/{task}/requeue",
            headers={"Authorization": f"Bearer {tok['read']}"},
        )
        assert r.status_code == 403
        assert snapshot(conn) == before

        # An admin token sees the buttons and may act.
        http.cookies.clear()
        r = http.post(
            "/ui/login", json={"token": tok["admin"], "next": "/ui/dead-letter"}, headers=HX
        )
        assert r.headers["HX-Redirect"] == "/ui/dead-letter"
        r = http.get("/ui/dead-letter")
        assert f'hx-post="/ui/actions/dead-letter/{task}/requeue"' in says(r)
        r = http.post(f"/ui/actions/dead-letter/{task}/requeue", headers=HX)
        assert r.status_code == 200 and f"Task {task} requeued" in says(r)
        assert r.headers["HX-Trigger-After-Settle"] == "pgsched-refresh"

        # Revoked: the next page asks to sign in again.
        with Client(dsn) as c:
            Admin(c).revoke_token("dash-admin")
        r = http.get("/ui/dead-letter", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
        r = http.post(f"/ui/actions/tasks/{seeded['pending'][0]}/cancel", headers=HX)
        assert r.status_code == 401 and "sign in again" in says(r)


def test_actions_need_htmx_header_and_this_origin(dsn: str, conn: psycopg.Connection) -> None:
    with Client(dsn) as c:
        task = c.submit("ok", {})
    before = snapshot(conn)
    with serving(dsn) as http:
        r = http.post(f"/ui/actions/tasks/{task}/cancel")
        assert r.status_code == 400 and "HX-Request" in says(r)
        r = http.post(
            f"/ui/actions/tasks/{task}/cancel", headers={**HX, "Origin": "http://evil.example"}
        )
        assert r.status_code == 403 and "origin" in says(r)
        # A form post from another page (what a cross-site form sends) is refused too.
        r = http.post(
            f"/ui/actions/tasks/{task}/cancel",
            content=b"a=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415
        assert snapshot(conn) == before
        host = str(http.base_url).removesuffix("/")
        r = http.post(f"/ui/actions/tasks/{task}/cancel", headers={**HX, "Origin": host})
        assert r.status_code == 200 and f"Task {task} cancelled" in says(r)


def test_stale_actions_say_so_and_change_nothing(
    dsn: str, conn: psycopg.Connection, seeded: dict
) -> None:
    done = seeded["done"]
    with serving(dsn) as http:
        before = snapshot(conn)
        cases = [
            (
                f"/ui/actions/tasks/{done}/cancel",
                409,
                f"cannot cancel task {done}: it is succeeded",
            ),
            (f"/ui/actions/tasks/{done}/retry", 409, f"cannot retry task {done}: it is succeeded"),
            ("/ui/actions/tasks/987654/cancel", 404, "no task with id 987654"),
            ("/ui/actions/tasks/abc/cancel", 404, "'abc' is not a task id"),
            (f"/ui/actions/dead-letter/{done}/requeue", 404, "no dead-letter entry"),
            ("/ui/actions/workers/gone-worker/pause", 404, "no worker named 'gone-worker'"),
            # seed-worker has stopped: pausing it is stale
            ("/ui/actions/workers/seed-worker/pause", 409, "it is stopped"),
            ("/ui/actions/workers/seed-worker/explode", 404, "no worker action"),
            ("/ui/actions/schedules/nope/pause", 404, "no schedule named 'nope'"),
            (f"/ui/actions/workflows/{seeded['workflow']}/retry", 409, "no failed or cancelled"),
        ]
        for url, status, message in cases:
            r = http.post(url, headers=HX)
            assert r.status_code == status, (url, r.text)
            assert message in says(r), (url, r.text)
            line = re.fullmatch(
                r'<p class="flash error" role="status" data-outcome="error">(.*)</p>', r.text
            )
            assert line is not None and "\n" not in line.group(1), r.text
            if status in (404, 409) and "action" not in message:
                assert "nothing was changed" in says(r)
        # Requeue-all with nothing matching: done, zero.
        r = http.post("/ui/actions/dead-letter/requeue?queue=nowhere", headers=HX)
        assert r.status_code == 200 and "0 task(s) requeued" in says(r)
        assert snapshot(conn) == before


def test_requeue_all_matching_and_purge(dsn: str, conn: psycopg.Connection, seeded: dict) -> None:
    with serving(dsn) as http:
        r = http.get("/ui/dead-letter", params={"queue": "mail"})
        assert 'hx-post="/ui/actions/dead-letter/requeue?queue=mail"' in says(r)
        r = http.post("/ui/actions/dead-letter/requeue?queue=mail&type=boom", headers=HX)
        assert r.status_code == 200 and "2 task(s) requeued" in says(r)
        statuses = conn.execute(
            "SELECT array_agg(status ORDER BY id) FROM pgsched.all_tasks WHERE id = ANY(%s)",
            (seeded["failing"],),
        ).fetchone()[0]
        assert statuses == ["pending", "pending"]
        assert conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0] == 0
        r = http.post("/ui/actions/dead-letter/purge", headers=HX)
        assert r.status_code == 200 and "0 dead-letter entries purged" in says(r)


def test_cancel_pause_and_workflow_actions_change_their_rows(
    dsn: str, conn: psycopg.Connection, seeded: dict
) -> None:
    def one(sql: str, *args: object) -> object:
        return conn.execute(sql, args).fetchone()[0]

    task, wf = seeded["pending"][0], seeded["workflow"]
    with serving(dsn) as http:
        r = http.post(f"/ui/actions/tasks/{task}/cancel", headers=HX)
        assert r.status_code == 200 and says(r) == (
            f'<p class="flash ok" role="status" data-outcome="ok">Task {task} cancelled</p>'
        )
        assert one("SELECT status FROM pgsched.all_tasks WHERE id = %s", task) == "cancelled"
        r = http.post(f"/ui/actions/tasks/{task}/retry", headers=HX)
        assert r.status_code == 200 and f"Task {task} queued again" in says(r)
        assert one("SELECT status FROM pgsched.all_tasks WHERE id = %s", task) == "pending"

        r = http.post("/ui/actions/schedules/hourly-report/pause", headers=HX)
        assert r.status_code == 200 and "Schedule hourly-report paused" in says(r)
        assert one("SELECT paused FROM pgsched.schedules WHERE name = 'hourly-report'") is True
        page = says(http.get("/ui/schedules"))
        assert 'hx-post="/ui/actions/schedules/hourly-report/resume"' in page
        r = http.post("/ui/actions/schedules/hourly-report/resume", headers=HX)
        assert r.status_code == 200
        assert one("SELECT paused FROM pgsched.schedules WHERE name = 'hourly-report'") is False

        r = http.post(f"/ui/actions/workflows/{wf}/cancel", headers=HX)
        assert r.status_code == 200 and f"Workflow {wf} cancelled (3 cancelled" in says(r)
        assert one("SELECT status FROM pgsched.workflows WHERE id = %s", wf) == "cancelled"
        r = http.post(f"/ui/actions/workflows/{wf}/cancel", headers=HX)  # again: stale
        assert r.status_code == 409 and "nothing was changed" in says(r)
        r = http.post(f"/ui/actions/workflows/{wf}/retry", headers=HX)
        assert r.status_code == 200 and f"Workflow {wf}: 3 task(s) run again" in says(r)


# -- the dead letter's pages -----------------------------------------------------------------


def _dead_letter(conn: psycopg.Connection, queue: str, n: int, base: datetime) -> list[int]:
    """``n`` failed tasks of ``queue`` with their dead-letter entries, two by two failed at the
    same instant (the page order breaks the tie by entry id); their task ids."""
    ids = [
        r[0]
        for r in conn.execute(
            "INSERT INTO pgsched.tasks (task_type, queue, status, attempts, max_attempts,"
            " last_error, finished_at)"
            " SELECT 'boom', %s, 'failed', 1, 1, 'boom ' || g, now()"
            " FROM generate_series(1, %s) g RETURNING id",
            (queue, n),
        ).fetchall()
    ]
    conn.execute(
        "INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts,"
        " last_error, failed_at)"
        " SELECT t.id, t.queue, t.task_type, t.payload, 1, t.last_error,"
        "        %s::timestamptz - ((row_number() OVER (ORDER BY t.id)) / 2) * interval '1 s'"
        " FROM pgsched.all_tasks t WHERE t.id = ANY(%s)",
        (base, ids),
    )
    return ids


def _walk(http: httpx.Client, params: dict) -> list[list[int]]:
    """Every page from the first, following the page's own "older" link."""
    pages: list[list[int]] = []
    url, query = "/ui/dead-letter", params
    while True:
        r = http.get(url, params=query)
        assert r.status_code == 200, r.text
        no_trace(r)
        pages.append([int(x) for x in re.findall(r'<tr data-task="(\d+)"', r.text)])
        m = re.search(r'<a href="(/ui/dead-letter\?[^"]*)" rel="next">', r.text)
        if m is None:
            return pages
        url, query = html.unescape(m.group(1)), None
        assert len(pages) < 20


def test_dead_letter_pages_walk_every_entry_and_actions_take_every_match(
    dsn: str, conn: psycopg.Connection
) -> None:
    base = datetime.now(UTC)
    mail = _dead_letter(conn, "mail", 70, base)
    web = _dead_letter(conn, "web", 61, base - timedelta(minutes=5))
    newest_first = [
        r[0]
        for r in conn.execute(
            "SELECT task_id FROM pgsched.dead_letter ORDER BY failed_at DESC, id DESC"
        ).fetchall()
    ]
    assert len(newest_first) == 131
    with serving(dsn) as http:
        pages = _walk(http, {})
        assert [len(p) for p in pages] == [50, 50, 31]
        assert [t for p in pages for t in p] == newest_first  # each once, in order
        pages = _walk(http, {"queue": "mail"})
        assert [len(p) for p in pages] == [50, 20]
        assert sorted(t for p in pages for t in p) == mail

        # A deep page: its count and its buttons are the filter's, not the page's.
        first = http.get("/ui/dead-letter", params={"queue": "mail"}).text
        cursor = html.unescape(re.search(r'cursor=([^"&]+)" rel="next"', first).group(1))
        deep = says(http.get("/ui/dead-letter", params={"queue": "mail", "cursor": cursor}))
        assert 'data-k="dead-letter-total">70<' in deep and "« newest" in deep
        assert 'hx-post="/ui/actions/dead-letter/requeue?queue=mail"' in deep
        assert 'hx-post="/ui/actions/dead-letter/purge?queue=mail"' in deep
        # The cursor names an entry by (failed_at, id): requeueing the first page's newest
        # entry meanwhile leaves the second page as it was.
        second = re.findall(r'<tr data-task="(\d+)"', deep)
        r = http.post(f"/ui/actions/dead-letter/{pages[0][0]}/requeue", headers=HX)
        assert r.status_code == 200
        again = http.get("/ui/dead-letter", params={"queue": "mail", "cursor": cursor}).text
        assert re.findall(r'<tr data-task="(\d+)"', again) == second

        r = http.post("/ui/actions/dead-letter/requeue?queue=mail", headers=HX)
        assert r.status_code == 200 and "69 task(s) requeued" in says(r)
        counts = dict(
            conn.execute(
                "SELECT queue, count(*) FROM pgsched.dead_letter GROUP BY queue"
            ).fetchall()
        )
        assert counts == {"web": 61}
        pending = conn.execute(
            "SELECT count(*) FROM pgsched.all_tasks WHERE id = ANY(%s) AND status = 'pending'",
            (mail,),
        ).fetchone()[0]
        assert pending == 70
        r = http.post("/ui/actions/dead-letter/purge?queue=web", headers=HX)
        assert r.status_code == 200 and "61 dead-letter entries purged" in says(r)
        assert conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0] == 0
        failed = conn.execute(
            "SELECT count(*) FROM pgsched.all_tasks WHERE id = ANY(%s) AND status = 'failed'",
            (web,),
        ).fetchone()[0]
        assert failed == 61  # purge deletes entries; the failed tasks stay


@pytest.mark.parametrize("cursor", ["abc", "12", "1.0", "-1.-1", "1e400.5", "9" * 30 + ".1"])
def test_a_dead_letter_cursor_that_does_not_parse_is_shown_next_to_the_field(
    dsn: str, conn: psycopg.Connection, cursor: str
) -> None:
    _dead_letter(conn, "mail", 2, datetime.now(UTC))
    with serving(dsn) as http:
        r = http.get("/ui/dead-letter", params={"cursor": cursor})
    assert r.status_code == 422, r.text
    no_trace(r)
    assert 'id="err-cursor"' in r.text and 'data-task="' not in r.text


# -- alert notifications on the overview ---------------------------------------------------------


def test_the_overview_shows_alert_notifications_and_each_channels_delivery(
    dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from pgsched.alerts import dispatch as dispatching
    from pgsched.alerts.config import parse_alerts
    from pgsched.alerts.store import apply_alerts
    from pgsched.db import connect
    from pgsched.worker import Worker
    from tests.alert_receivers import WebhookReceiver
    from tests.conftest import FAST, wait_until

    with serving(dsn) as http:
        r = http.get("/ui/")
        assert "No alert notification sent" in says(r)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HOOK_SECRET", "s")  # the delivering worker reads it
    receiver = WebhookReceiver().start()
    hook = "type: webhook, secret_env: HOOK_SECRET, backoff_base: 50ms"
    text = (
        "channels:\n"
        f"  - {{name: good, url: '{receiver.url}', {hook}}}\n"
        f"  - {{name: down, url: 'http://127.0.0.1:{closed}/x', max_attempts: 1, {hook}}}\n"
        "rules:\n"
        "  - {name: dead, event: task.dead_lettered, channels: [good, down]}\n"
    )
    with connect(dsn) as db:
        apply_alerts(db, parse_alerts(text, "alerts.yaml", {"HOOK_SECRET": "s"}))
        tid = db.execute(
            "INSERT INTO pgsched.tasks (task_type, queue, status, attempts)"
            " VALUES ('email', 'mail', 'running', 1) RETURNING id"
        ).fetchone()["id"]
        db.execute(
            "UPDATE pgsched.tasks SET status = 'failed', last_error = 'smtp down' WHERE id = %s",
            (tid,),
        )
        [note] = dispatching.dispatch(db)
        uid = db.execute(
            "SELECT uid::text FROM pgsched.alert_notifications WHERE id = %s", (note,)
        ).fetchone()["uid"]
    try:
        with serving(dsn) as http:
            r = http.get("/ui/")
            row = re.search(rf'<tr data-notification="{uid}">.*?</tr>', says(r), re.S)
            assert row is not None, r.text
            assert re.findall(r'data-channel="(\w+)" data-delivery="(\w+)"', row.group(0)) == [
                ("down", "pending"),
                ("good", "pending"),
            ]
            assert f"task {tid} (email on mail) failed for good" in row.group(0)
            # An ordinary worker that serves the delivery queue delivers too.
            lane = Worker(dsn, FAST, name="dash", queues=["pgsched.alerts"]).start()
            try:
                receiver.wait_for(1)
                wait_until(
                    lambda: (
                        re.findall(
                            r'data-channel="(\w+)" data-delivery="(\w+)"', says(http.get("/ui/"))
                        )
                        == [("down", "failed"), ("good", "succeeded")]
                    ),
                    timeout=20,
                    message="both deliveries' outcomes on the overview",
                )
            finally:
                lane.stop(timeout=15)
    finally:
        receiver.stop()
