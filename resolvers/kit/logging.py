"""Logging: a request id on every line, JSON in production and text in development, and
Sentry (errors only, never personal data) when SENTRY_DSN is set.

The request id lives in a contextvar that the HTTP middleware (middleware.py) sets from the
`X-Request-ID` header or generates; tasks started while handling a request (a reply's
generation) inherit it, so their lines carry the id of the request that started them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from resolvers.kit.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HANDLER_NAME = "chat_studio"
# Loggers that servers configure with their own handlers: route them through ours.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new one (a header is never
    logged verbatim: it could forge log lines)."""
    if header and _VALID_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


# Credentials that can reach a log line inside a URL (uvicorn's access log prints
# `/ws/{id}?token=…`) or a message: query tokens, API keys (`cs-…`), bearer values.
_SECRETS = re.compile(
    r"(?P<query>(?:[?&](?:token|access_token|api_key|key)=))[^&\s\"']+"
    r"|(?P<key>\bcs-)[A-Za-z0-9_-]{8,}"
    r"|(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str) -> str:
    """`text` with query tokens, API keys and bearer credentials replaced by `***`."""
    return _SECRETS.sub(lambda m: (m.group("query") or m.group("key") or m.group("bearer"))
                        + "***", text)


class RedactSecrets(logging.Filter):
    """Keeps tokens and API keys out of every log line our handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or "-",
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def log_format(settings: Settings) -> str:
    if settings.log_format == "auto":
        return "json" if settings.is_production else "text"
    return settings.log_format


def configure_logging(settings: Settings, *, stream: Any = None) -> logging.Handler:
    """Install our handler on the root logger (once; calling again replaces it). Handlers
    that others installed (pytest's capture, for one) are left alone."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter() if log_format(settings) == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers = []
        server_logger.propagate = True
    return handler


# ---------------------------------------------------------------- Sentry

_SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key",
                                "proxy-authorization", "x-forwarded-for", "x-real-ip"})


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's before_send: drop what could identify or authenticate a person (bodies hold
    passwords and messages; headers hold tokens; addresses identify)."""
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "cookies", "env", "query_string"):
            request.pop(key, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items()
                                  if k.lower() not in _SENSITIVE_HEADERS}
    event.pop("user", None)
    return event


def init_sentry(settings: Settings, *, version: str, **options: Any) -> bool:
    """Errors (unhandled exceptions and ERROR log lines) to Sentry; no PII, no bodies."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.strawberry import StrawberryIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        release=f"ai-chat-studio@{version}",
        send_default_pii=False,
        max_request_body_size="never",
        traces_sample_rate=settings.sentry_traces_sample_rate,
        before_send=scrub_event,  # type: ignore[arg-type]
        # GraphQL errors are shaped (and unexpected ones logged) by schema/errors.py; the
        # integration would report every expected UNAUTHENTICATED/NOT_FOUND as an issue.
        disabled_integrations=[StrawberryIntegration()],
        **options,
    )
    return True
