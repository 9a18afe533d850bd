"""The web dashboard of `pgsched serve`: server-rendered pages (Jinja2) under /ui/, made live
and clickable by htmx, on the API's process, port and tokens. Every asset (htmx, the style
sheet) is served from this package: a browser with no internet access shows it whole.

``install(app)`` adds it to the API's FastAPI app: the pages, /ui/static/, and error pages in
HTML (a 404 page with a link back) for the dashboard's paths, where the API answers JSON.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles


def _is_ui(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith("/ui")


def install(app: FastAPI) -> None:
    from pgsched.web import actions, login, pages

    static = resources.files(__name__) / "static"
    app.mount("/ui/static", StaticFiles(directory=str(static)), name="ui-static")
    for module in (pages, login, actions):
        app.include_router(module.router)
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _html_for_ui(handler)


def _html_for_ui(api_handler: Any) -> Any:
    """The API's error handler for API paths; for the dashboard's paths the same status with
    its one line as an HTML page (or a notice for htmx requests)."""

    def handler(request: Request, exc: Exception) -> Any:
        response = api_handler(request, exc)
        if not _is_ui(request):
            return response
        import json

        from pgsched.web.render import esc, render

        try:
            message = json.loads(bytes(response.body))["error"]
        except (ValueError, KeyError, TypeError):
            message = "error"
        if request.headers.get("hx-request") == "true":
            return HTMLResponse(
                f'<p class="flash error" role="alert">{esc(message)}</p>',
                status_code=response.status_code,
            )
        title = "Not found" if response.status_code == 404 else "Error"
        return render(
            request,
            "error.html",
            None,
            status=response.status_code,
            title=title,
            message=message,
            back="/ui/",
        )

    return handler
