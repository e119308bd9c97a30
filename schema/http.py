"""GraphQL over HTTP as the spec (and the graphql-http audit) asks, on top of Strawberry.

Strawberry 0.341 answers `application/json` only. What is added here:
- Accept negotiation: `application/graphql-response+json` when the client prefers it,
  `application/json` for `*/*`, a missing Accept header or when asked; 406 when the client
  accepts neither.
- With `application/graphql-response+json`, request errors (unparseable JSON, invalid
  parameters, parse or validation failures, our limits) answer 400 without a `data` entry;
  with `application/json` they keep the legacy 200 + `errors` (Strawberry's behaviour).
- Transport errors are GraphQL-shaped JSON (`{"errors":[{"message": ...}]}`), not plain text;
  a mutation over GET is 405 with `Allow: POST`; an unsupported Content-Type is 415.
- Batching stays off (Strawberry's default): a JSON array body is refused with 400.
- Bodies that are not JSON at all — invalid UTF-8, or nested deeper than the parser goes —
  are 400 like any unparseable body, and a subscription sent over HTTP is 400 with a pointer
  to the WebSocket (Strawberry would run it as a query and fail with a 500).
- GraphiQL follows GRAPHIQL (off in production unless enabled); its page comes from
  `ide_html(root_path)` when given (server.py passes explorers.graphiql_html: assets served
  by the app, no CDN).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from resolvers.kit.settings import Settings
from schema.subscriptions import GraphQLRouter as RealtimeRouter

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither of ours."""
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None  # (q, specificity, media type)
    for part in accept.split(","):
        fields = [field.strip() for field in part.split(";")]
        media = fields[0].lower()
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media == GRAPHQL_RESPONSE_JSON:
            candidate = (quality, 2, GRAPHQL_RESPONSE_JSON)
        elif media == JSON:
            candidate = (quality, 1, JSON)
        elif media in ("*/*", "application/*"):
            candidate = (quality, 0, JSON)  # wildcards get the legacy type (watershed rule)
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def _is_request_error(result: ExecutionResult) -> bool:
    """No data and only errors without a path: refused before execution (parse, validation,
    variable coercion, limits)."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def is_subscription(data: GraphQLRequestData, *, max_tokens: int) -> bool:
    """Whether the request's operation is a subscription (parsed only when the text could
    be one; a document that does not parse is left to the normal error path)."""
    query = data.query
    if not isinstance(query, str) or "subscription" not in query:
        return False
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return False
    operation = get_operation_ast(document, data.operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


class GraphQLRouter(RealtimeRouter):
    """The realtime router (subscriptions, connect-time auth) plus GraphQL-over-HTTP."""

    def __init__(self, schema: strawberry.Schema, settings: Settings, *,
                 ide_html: Callable[[str], str] | None = None, **kwargs: Any) -> None:
        super().__init__(schema, settings, **kwargs)
        self.graphql_ide = "graphiql" if settings.graphiql_enabled else None
        self.ide_html = ide_html
        self._max_tokens = settings.graphql_max_tokens

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        if self.ide_html is None:
            return await super().render_graphql_ide(request)
        return HTMLResponse(self.ide_html(request.scope.get("root_path", "")))

    def decode_json(self, data: str | bytes) -> object:
        # Raised as the JSONDecodeError Strawberry already handles everywhere it decodes:
        # 400 for an HTTP body, close 4400 for a WebSocket message.
        try:
            return super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("not valid UTF-8", "", exc.start) from exc
        except RecursionError as exc:
            raise json.JSONDecodeError("nested too deeply", "", 0) from exc

    async def execute_single(self, request: Any, request_adapter: AsyncHTTPRequestAdapter,
                             sub_response: Any, context: Any, root_value: Any,
                             request_data: GraphQLRequestData) -> ExecutionResult:
        if is_subscription(request_data, max_tokens=self._max_tokens):
            raise HTTPException(400, "Subscriptions are served over WebSocket at /graphql "
                                "(graphql-transport-ws), not over HTTP")
        return await super().execute_single(request, request_adapter, sub_response, context,
                                            root_value, request_data)

    def _error(self, status: int, message: str, media: str | None,
               headers: dict[str, str] | None = None) -> Response:
        body = self.encode_json({"errors": [{"message": message}]})
        return Response(body, status_code=status, headers=headers,
                        media_type=media or JSON)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if self.is_websocket_request(request):
            return await super().run(request, context=context, root_value=root_value)
        media = negotiate(request.headers.get("accept"))
        request.state.graphql_media = media
        request.state.graphql_request_error = False
        if media is None and not (request.method == "GET"
                                  and request.query_params.get("query") is None):
            return self._error(406, f"Not acceptable: answers are {GRAPHQL_RESPONSE_JSON} "
                               f"or {JSON}", JSON)
        try:
            response = await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            return self._http_error(request, exc, media)
        if (media == GRAPHQL_RESPONSE_JSON and isinstance(response, Response)
                and response.media_type == JSON):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
            if request.state.graphql_request_error:
                response.status_code = 400
        return response

    def _http_error(self, request: Request, exc: HTTPException, media: str | None) -> Response:
        status, headers = exc.status_code, None
        if isinstance(exc.__cause__, InvalidOperationTypeError) and request.method == "GET":
            status, headers = 405, {"Allow": "POST"}
        elif status == 405:
            headers = {"Allow": "GET, POST"}
        elif exc.reason == "Unsupported content type":
            status = 415
        return self._error(status, exc.reason, media, headers)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and not isinstance(
                data.operation_name, (str, type(None))):
            raise HTTPException(400, "The GraphQL operation's `operationName` must be a "
                                "string or null, if provided.")
        return data

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        state = getattr(request, "state", None)
        if (state is not None and getattr(state, "graphql_media", None) == GRAPHQL_RESPONSE_JSON
                and _is_request_error(result)):
            state.graphql_request_error = True
            response.pop("data", None)  # the spec: a request error has no data entry
        return response
