"""Request bodies: at most ``max_body`` bytes (413), JSON only (415). Checked before a handler
reads anything, so nothing is parsed, let alone written, for a refused request."""

from __future__ import annotations

import json

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class TooLarge(HTTPException):
    """Raised while the body is read; an HTTPException so that FastAPI's body parsing passes it
    on instead of turning it into a 400."""

    def __init__(self, max_body: int) -> None:
        super().__init__(413, f"body: larger than {max_body} bytes (the api_max_body setting)")


class BodyLimit:
    """ASGI middleware: refuses a declared Content-Length over the limit at once, and a body
    that grows past it while being read (chunked uploads)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _refuse(scope, send, 400, "Content-Length: not a number")
                return
            if n > self.max_body:
                await _refuse(scope, send, 413, TooLarge(self.max_body).detail)
                return
        if has_body and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json" and not ctype.endswith("+json"):
                await _refuse(
                    scope,
                    send,
                    415,
                    f"Content-Type: {ctype or 'none'}: send application/json",
                )
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise TooLarge(self.max_body)
            return message

        await self.app(scope, counted, send)


def log_refusal(scope: Scope, status: int, message: str) -> None:
    client = scope.get("client")
    # A logger looked up per refusal (refusals are rare): structlog's configuration at the
    # time applies, not the one cached by a module-level logger.
    structlog.get_logger("pgsched.api").warning(
        "request_refused",
        status=status,
        method=scope.get("method"),
        path=scope.get("path"),
        client=client[0] if client else None,
        reason=message,
    )


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    log_refusal(scope, status, message)
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
