"""The dashboard in a real browser: headless Chromium (Debian's package; `make test` installs
it) driven by Playwright, against `pgsched serve` on the test's database with a real worker.
Every page is loaded at 1280 and 390 px wide and photographed into tests/screenshots/ (not
committed); a failed task is requeued from the dead-letter page and seen to run; a worker is
paused from its page; a workflow's nodes turn green as the worker runs them; a read-only login
sees no buttons. Every wait is on the page's content (Playwright's expect), never a sleep."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsched.admin import Admin
from pgsched.client import Client
from tests.api import serving
from tests.conftest import wait_until
from tests.dashboard import Gates, seed, worker

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=20_000)  # a loaded machine: waits end on the event, not the limit

SHOTS = Path(__file__).parent / "screenshots"
WIDTHS = {"wide": (1280, 900), "narrow": (390, 844)}
TIMEOUT_MS = 20_000


def _chromium() -> str | None:
    found = os.environ.get("PGSCHED_CHROMIUM") or shutil.which("chromium")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


@pytest.fixture
def browser() -> Iterator[object]:
    """A browser per test: Playwright's threads end with it (the suite checks for leaks)."""
    path = _chromium()
    if path is None:
        pytest.skip("no chromium (as root, `make test` installs Debian's package)")
    with playwright_api.sync_playwright() as p:
        # --no-sandbox: the test session may run as root, where Chromium's sandbox refuses
        # to start; the pages are our own.
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_at(browser) -> Iterator[object]:
    contexts = []

    def open_page(base_url: str, width: str = "wide"):
        w, h = WIDTHS[width]
        ctx = browser.new_context(viewport={"width": w, "height": h}, base_url=base_url)
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("dialog", lambda d: d.accept())  # the actions' confirmations
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()


def _base(http) -> str:
    return str(http.base_url).removesuffix("/")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _no_horizontal_scroll(page) -> None:
    """The page itself fits the viewport; only tables and the graph scroll inside their box."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"page is {overflow}px wider than the viewport"


def test_every_page_at_both_widths(dsn: str, conn: psycopg.Connection, page_at) -> None:
    from pgsched.alerts import dispatch as dispatching
    from pgsched.alerts.config import parse_alerts
    from pgsched.alerts.store import apply_alerts
    from pgsched.db import connect

    alerts = (
        "channels:\n  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/x',"
        " secret_env: HOOK_SECRET}\n"
        "rules:\n  - {name: dead, event: task.dead_lettered, channels: [hook]}\n"
    )
    with connect(dsn) as db:  # the seed's two failures become one notification
        apply_alerts(db, parse_alerts(alerts, "alerts.yaml", {"HOOK_SECRET": "s"}))
    gates = Gates()
    ids = seed(dsn, conn, gates)
    with connect(dsn) as db:
        assert len(dispatching.dispatch(db)) == 1
    pages = {
        "overview": "/ui/",
        "tasks": "/ui/tasks",
        "task": f"/ui/tasks/{ids['failing'][0]}",
        "dead-letter": "/ui/dead-letter",
        "workers": "/ui/workers",
        "schedules": "/ui/schedules",
        "workflows": "/ui/workflows",
        "workflow": f"/ui/workflows/{ids['workflow']}",
        "not-found": "/ui/tasks/424242",
        "bad-filter": "/ui/tasks?since=yesterday-ish",
    }
    with serving(dsn) as http, worker(dsn, gates, "shown-worker", queues=["reports"]):
        wait_until(lambda: "shown-worker" in http.get("/ui/workers").text, message="the worker")
        for width in WIDTHS:
            page = page_at(_base(http), width)
            for name, path in pages.items():
                response = page.goto(path)
                expected = {"not-found": 404, "bad-filter": 422}.get(name, 200)
                assert response.status == expected, (name, response.status)
                expect(page.locator("header.top .brand")).to_have_text("pgsched")
                # Every asset came from pgsched itself and loaded.
                assert page.evaluate("() => typeof htmx") == "object"
                _no_horizontal_scroll(page)
                _shot(page, f"{name}-{width}")
            # The overview's content at this width.
            page.goto("/ui/")
            expect(page.locator('[data-k="dead-letter"]')).to_have_text("2")
            expect(page.locator("tr[data-worker='shown-worker']")).to_be_visible()
            expect(page.locator(".chart svg")).to_have_count(2)
            # The notification, with its delivery's state (no alert lane runs: pending).
            expect(page.locator("tr[data-notification] .delivery")).to_have_text("hook: pending")


def test_overview_updates_without_reload(dsn: str, page_at) -> None:
    with serving(dsn) as http:
        page = page_at(_base(http))
        page.goto("/ui/")
        expect(page.locator('[data-k="ready"]')).to_have_text("0")
        page.evaluate("() => { window.notReloaded = true }")
        with Client(dsn) as c:
            c.submit_many([c.spec("ok", {"i": i}, queue="live") for i in range(5)])
        expect(page.locator('[data-k="ready"]')).to_have_text("5")
        expect(page.locator("tr[data-queue='live']")).to_be_visible()
        assert page.evaluate("() => window.notReloaded") is True


def test_requeue_from_dead_letter_and_see_it_run(
    dsn: str, conn: psycopg.Connection, page_at
) -> None:
    gates = Gates(fail_once={"k1"})
    with Client(dsn) as c:
        task = c.submit("flaky", {"key": "k1"}, max_attempts=1)
    with serving(dsn) as http, worker(dsn, gates, "requeue-worker"):
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM pgsched.dead_letter").fetchone()[0] == 1,
            timeout=20,
            message="the task to fail into the dead letter",
        )
        page = page_at(_base(http))
        page.goto("/ui/dead-letter")
        row = page.locator(f"tr[data-task='{task}']")
        expect(row).to_contain_text("flaky k1: not yet")
        with gates.lock:
            gates.fail_once.discard("k1")  # it succeeds when it runs again
        row.get_by_role("button", name="Requeue").click()
        expect(page.locator("#flash")).to_have_text(f"Task {task} requeued from the dead letter")
        expect(page.locator(f"tr[data-task='{task}']")).to_have_count(0)  # the page refreshed
        page.goto(f"/ui/tasks/{task}")
        expect(page.locator("h1 .status")).to_have_text("succeeded")  # polled, no reload
        expect(page.locator("table.attempts tbody tr")).to_have_count(2)
    status = conn.execute("SELECT status FROM pgsched.all_tasks WHERE id = %s", (task,)).fetchone()
    assert status == ("succeeded",)


def test_pause_and_resume_a_worker_from_its_page(
    dsn: str, conn: psycopg.Connection, page_at
) -> None:
    gates = Gates()
    with serving(dsn) as http, worker(dsn, gates, "pausable"):
        page = page_at(_base(http))
        page.goto("/ui/workers")
        row = page.locator("tr[data-worker='pausable']")
        expect(row.locator(".worker-status")).to_have_text("active")
        row.get_by_role("button", name="Pause").click()
        expect(page.locator("#flash")).to_contain_text("Worker pausable paused")
        expect(row.locator(".worker-status")).to_have_text("paused")
        assert conn.execute(
            "SELECT status FROM pgsched.workers WHERE name = 'pausable'"
        ).fetchone() == ("paused",)
        # Submitted while paused, run once resumed.
        with Client(dsn) as c:
            task = c.submit("ok", {})
        row.get_by_role("button", name="Resume").click()
        expect(row.locator(".worker-status")).to_have_text("active")
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT status FROM pgsched.all_tasks WHERE id = %s", (task,)
                ).fetchone()[0]
                == "succeeded"
            ),
            timeout=20,
            message="the resumed worker to run the task",
        )


def test_workflow_nodes_turn_green_as_the_worker_runs_them(
    dsn: str, conn: psycopg.Connection, page_at
) -> None:
    gates = Gates()
    with Client(dsn) as c:
        wf = Admin(c).submit_workflow(
            {
                "name": "chain",
                "tasks": [
                    {"name": "a", "task_type": "gated", "payload": {"node": "a"}},
                    {
                        "name": "b",
                        "task_type": "gated",
                        "payload": {"node": "b"},
                        "depends_on": ["a"],
                    },
                    {
                        "name": "c",
                        "task_type": "gated",
                        "payload": {"node": "c"},
                        "depends_on": ["a"],
                    },
                    {
                        "name": "d",
                        "task_type": "gated",
                        "payload": {"node": "d"},
                        "depends_on": ["b", "c"],
                    },
                ],
            }
        )
    with serving(dsn) as http, worker(dsn, gates, "dag-worker"):
        page = page_at(_base(http))
        page.goto(f"/ui/workflows/{wf}")
        node = lambda n: page.locator(f"g.node[data-node='{n}']")  # noqa: E731
        expect(node("a")).to_have_attribute("data-status", "running")
        expect(node("d")).to_have_attribute("data-status", "blocked")
        page.evaluate("() => { window.notReloaded = true }")
        gates.open("a")
        expect(node("a")).to_have_attribute("class", "node s-succeeded")
        expect(node("b")).to_have_attribute("data-status", "running")
        expect(node("c")).to_have_attribute("data-status", "running")
        _shot(page, "workflow-running-wide")
        gates.open("b")
        gates.open("c")
        expect(node("b")).to_have_attribute("data-status", "succeeded")
        expect(node("c")).to_have_attribute("data-status", "succeeded")
        gates.open("d")
        expect(node("d")).to_have_attribute("data-status", "succeeded")
        expect(page.locator("h1 .status")).to_have_text("succeeded")
        # Green is what the reader sees: the rectangle's computed fill.
        fill = node("d").locator("rect").evaluate("r => getComputedStyle(r).fill")
        assert fill == "rgb(201, 236, 214)"
        assert page.evaluate("() => window.notReloaded") is True


def test_read_only_login_sees_no_buttons(dsn: str, conn: psycopg.Connection, page_at) -> None:
    gates = Gates()
    ids = seed(dsn, conn, gates)
    with Client(dsn) as c:
        read, _ = Admin(c).create_token("viewer", ["read"])
        full, _ = Admin(c).create_token("operator", ["admin"])
    pages = [
        "/ui/dead-letter",
        f"/ui/tasks/{ids['failing'][0]}",
        f"/ui/tasks/{ids['pending'][0]}",
        "/ui/schedules",
        f"/ui/workflows/{ids['workflow']}",
        "/ui/workers",
    ]
    with serving(dsn, api_auth=True) as http, worker(dsn, gates, "w-ro", queues=["none"]):
        page = page_at(_base(http))
        page.goto("/ui/dead-letter")
        expect(page).to_have_url(_base(http) + "/ui/login?next=%2Fui%2Fdead-letter")
        page.get_by_label("Token").fill("pgs_wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#login-result")).to_have_text("unknown or revoked API token")
        page.get_by_label("Token").fill(read)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(_base(http) + "/ui/dead-letter")
        expect(page.locator("header .who")).to_contain_text("viewer · read only")
        for path in pages:
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator("button.act")).to_have_count(0)
        _shot(page, "dead-letter-read-only-wide")

        # The same pages with an admin token have their buttons.
        page.get_by_role("button", name="sign out").click()
        expect(page).to_have_url(_base(http) + "/ui/login")
        page.get_by_label("Token").fill(full)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("header .who")).to_contain_text("operator · admin")
        for path in pages:
            page.goto(path)
            expect(page.locator("button.act").first).to_be_visible()
