"""Pure ASGI middleware used by server.py only: request ids, HTTP metrics and the request-body
limit. Pure ASGI (no BaseHTTPMiddleware) so streamed responses (SSE) and WebSockets pass
through untouched and nothing is buffered.

Order (outermost first): RequestContext → BodyLimit → the app. RequestContext sees every
answer, including BodyLimit's 413s.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.kit import metrics
from resolvers.kit.logging import REQUEST_ID, request_id_from

log = logging.getLogger("chat_studio.http")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "<unmatched>"
    return path or "<unnamed>"


class RequestContext:
    """Sets the request id (from `X-Request-ID` or new), echoes it on the response, and
    counts every HTTP request by route template and status, with its latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, b"x-request-id"))
        token = REQUEST_ID.set(request_id)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, request_id)
        finally:
            REQUEST_ID.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        response_started = False
        raw_id = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = int(message["status"]), True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", raw_id))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The contract's error shape and the request id, also for the unexpected; the
            # exception still goes on to the server's error handling (logs, Sentry).
            if not response_started:
                body = b'{"detail":"Internal server error"}'
                await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send_with_id({"type": "http.response.body", "body": body})
            raise
        finally:
            route = _route_template(scope)
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.HTTP_LATENCY.labels(method=method, route=route).observe(
                time.perf_counter() - started)


class BodyTooLarge(Exception):
    """Raised from receive() once a body passes the limit (the app may turn it into
    something else; BodyLimit answers 413 either way)."""


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 `{"detail": ...}`: at once when
    Content-Length says so, otherwise as soon as the streamed (chunked) body passes the limit.
    Whatever the app was doing with the body, the client gets the 413 and the server goes on.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int,
                 larger: dict[str, int] | None = None,
                 multipart: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths allowed more than max_bytes (POST /api/import: MAX_IMPORT_MB).
        self.larger = larger or {}
        # Paths allowed more only for a multipart/form-data body (/graphql: the GraphQL
        # multipart request spec, i.e. file uploads; its JSON requests keep max_bytes).
        self.multipart = multipart or {}

    def _limit(self, scope: Scope) -> int:
        path = scope.get("path", "")
        if path in self.multipart:
            content_type = (_header(scope, b"content-type") or "").split(";", 1)[0]
            if content_type.strip().lower() == "multipart/form-data":
                return self.multipart[path]
        return self.larger.get(path, self.max_bytes)

    def _detail(self, limit: int) -> str:
        return f"Request body too large (limit {limit} bytes)"

    async def _refuse(self, send: Send, limit: int) -> None:
        metrics.BODY_TOO_LARGE.inc()
        body = json.dumps({"detail": self._detail(limit)}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                await self._refuse(send, limit)
                return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(self._detail(limit))
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(self._detail(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's own answer to the failed read is replaced by our 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
            log.debug("the app failed reading an oversized body", exc_info=True)
        if exceeded and not started:
            await self._refuse(send, limit)


def install(app: Any, *, max_body_bytes: int, larger: dict[str, int] | None = None,
            multipart: dict[str, int] | None = None) -> None:
    """Add both middlewares (Starlette runs the last added outermost)."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, larger=larger,
                       multipart=multipart)
    app.add_middleware(RequestContext)
