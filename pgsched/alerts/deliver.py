"""Delivering one notification to one channel: the body of the built-in task type
``pgsched.alert`` (a failed attempt is retried with the channel's backoff, then
dead-lettered), and of ``pgsched alerts test``.

Secrets are read here, from the environment of the process that delivers (the worker), by
the variable names the channel's config holds.

Webhook: POST of the notification as JSON (compact, keys sorted: the exact bytes signed),
with ``X-Pgsched-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`` and
``Idempotency-Key: <notification id>`` (the same on every retry and every channel).
Slack-compatible: POST ``{"text": ...}``. Email: SMTP with STARTTLS (or TLS from the start,
or none), login, the notification id in ``Message-ID``.

This module sends to the addresses the operator configured in the alerts file; it does not go
through the ``http`` task type (whose URLs come from whoever submits a task).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from pgsched.errors import DeliveryFailed, PermanentError

SIGNATURE_HEADER = "X-Pgsched-Signature"
ID_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Pgsched-Event"
TAIL = 500  # characters of a receiver's answer kept in a result or an error


def body_bytes(notification: dict[str, Any]) -> bytes:
    """The exact bytes a webhook receives and the signature covers."""
    return json.dumps(
        notification, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (docs/alerts.md, "The webhook body"): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        # Retried: another worker may have it, or this one may be restarted with it.
        raise DeliveryFailed(f"{what}: environment variable {name} is not set on this worker")
    return value


def run_alert(payload: Any, ctx: Any, stop: threading.Event) -> dict[str, Any]:
    """The ``pgsched.alert`` task: payload {channel, type, config, notification}."""
    if not isinstance(payload, dict) or not isinstance(payload.get("notification"), dict):
        raise PermanentError("invalid pgsched.alert payload: notification: missing")
    config = payload.get("config")
    if not isinstance(config, dict):
        raise PermanentError("invalid pgsched.alert payload: config: missing")
    return send(str(payload.get("type")), config, payload["notification"])


def send(kind: str, config: dict[str, Any], notification: dict[str, Any]) -> dict[str, Any]:
    if kind == "webhook":
        return send_webhook(config, notification)
    if kind == "slack":
        return send_slack(config, notification)
    if kind == "email":
        return send_email(config, notification)
    raise PermanentError(f"pgsched.alert: unknown channel type {kind!r}")


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    import httpx

    try:
        r = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise DeliveryFailed(f"POST {_safe(url)}: {type(e).__name__}: {e}") from None
    result = {"status": r.status_code, "answer": r.text[:TAIL]}
    if 200 <= r.status_code < 300:
        return result
    message = f"POST {_safe(url)} answered {r.status_code}: {r.text[:200]}"
    # A receiver that refuses this request (400, 401, 404, 413...) will refuse it again;
    # 408, 409 and 429 ask for another try, as does every 5xx.
    if 400 <= r.status_code < 500 and r.status_code not in (408, 409, 425, 429):
        raise PermanentError(message)
    raise DeliveryFailed(message)


def _safe(url: str) -> str:
    """The URL without its path and query (a Slack webhook's path is its secret)."""
    import httpx

    try:
        u = httpx.URL(url)
        return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "") + "/..."
    except Exception:
        return "<url>"


def _url(config: dict[str, Any]) -> str:
    if config.get("url"):
        return str(config["url"])
    return _env(str(config.get("url_env")), "url_env")


def send_webhook(config: dict[str, Any], notification: dict[str, Any]) -> dict[str, Any]:
    from pgsched import __version__

    body = body_bytes(notification)
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    for name, var in (config.get("headers_env") or {}).items():
        headers[str(name)] = _env(str(var), f"headers_env.{name}")
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": f"pgsched/{__version__}",
            ID_HEADER: str(notification.get("id")),
            EVENT_HEADER: str(notification.get("event")),
            SIGNATURE_HEADER: sign(_env(str(config.get("secret_env")), "secret_env"), body),
        }
    )
    return _post(_url(config), body, headers, float(config.get("timeout") or 10))


def send_slack(config: dict[str, Any], notification: dict[str, Any]) -> dict[str, Any]:
    from pgsched.alerts.config import DEFAULT_SLACK_TEXT
    from pgsched.alerts.templates import render

    text = _render(render, config.get("text") or DEFAULT_SLACK_TEXT, notification, "text")
    body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json", ID_HEADER: str(notification.get("id"))}
    return _post(_url(config), body, headers, float(config.get("timeout") or 10))


def _render(
    render: Callable[[str, dict[str, Any]], str],
    template: str,
    notification: dict[str, Any],
    field: str,
) -> str:
    try:
        return render(template, notification)
    except ValueError as e:
        raise PermanentError(f"{field}: {e}") from None


def send_email(config: dict[str, Any], notification: dict[str, Any]) -> dict[str, Any]:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, getaddresses

    from pgsched.alerts.config import DEFAULT_BODY, DEFAULT_SUBJECT
    from pgsched.alerts.templates import render

    subject = _render(render, config.get("subject") or DEFAULT_SUBJECT, notification, "subject")
    msg = EmailMessage()
    msg["Subject"] = " ".join(subject.split())[:900]  # one line, whatever the template made
    msg["From"] = str(config["from"])
    msg["To"] = ", ".join(str(a) for a in config["to"])
    msg["Date"] = formatdate(localtime=False)
    # The same on every retry: a mail system can drop the duplicate.
    msg["Message-ID"] = f"<{notification.get('id')}@pgsched>"
    msg["X-Pgsched-Event"] = str(notification.get("event"))
    msg.set_content(_render(render, config.get("body") or DEFAULT_BODY, notification, "body"))

    timeout = float(config.get("timeout") or 10)
    host, port, security = str(config["host"]), int(config.get("port") or 587), config["security"]
    context = ssl.create_default_context(cafile=config.get("ca_file") or None)
    recipients = [addr for _, addr in getaddresses([str(a) for a in config["to"]])]
    try:
        if security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.get("username"):
                password = _env(str(config.get("password_env")), "password_env")
                smtp.login(str(config["username"]), password)
            refused = smtp.send_message(msg, to_addrs=recipients)
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else ""
        message = f"SMTP {host}:{port} answered {e.smtp_code}: {text[:200]}"
        # 5xx is the server's final word (bad login, unknown recipient); 4xx: try again.
        if 500 <= e.smtp_code < 600:
            raise PermanentError(message) from None
        raise DeliveryFailed(message) from None
    except smtplib.SMTPRecipientsRefused as e:
        refused_all = f"SMTP {host}:{port} refused every recipient: {e.recipients}"
        raise PermanentError(refused_all) from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryFailed(f"SMTP {host}:{port}: {type(e).__name__}: {e}") from None
    return {"recipients": recipients, "refused": sorted(refused)}
