"""The OpenAI-compatible face (CONTRACT-2 §1): `/v1/models` and `/v1/chat/completions`.

Any OpenAI SDK pointed at `http://host:8000/v1` with an API key (or an access token) works
unchanged. Thin like the other faces: it parses OpenAI's request into `ChatParams`, calls the
same chat operation as REST, /ws and GraphQL (limits, budgets, billing and usage included),
and shapes the reply as `chat.completion` / `chat.completion.chunk` objects. Gateway calls are
stateless: no conversation is written. Every error is OpenAI-shaped:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from compat_rest import SSE_HEADERS, ServicesDep, authenticated
from resolvers import billing, chat, keys
from resolvers.chat.events import ChatChunk, ChatComplete, ChatError, ChatToolCall
from resolvers.kit.errors import (
    AppError,
    BadInput,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from resolvers.llm.base import Tool, ToolCall

# ---------------------------------------------------------------- errors


def openai_error(status: int, message: str, *, type_: str, code: str | None = None,
                 param: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def error_response(exc: AppError) -> JSONResponse:
    """Our error tree in OpenAI's vocabulary (statuses and codes its SDKs map to classes)."""
    field = exc.extra.get("field")
    param = str(field) if field else None
    if isinstance(exc, billing.BudgetExceeded):
        return openai_error(429, exc.message, type_="insufficient_quota",
                            code="insufficient_quota")
    if isinstance(exc, RateLimited):
        return openai_error(429, exc.message, type_="requests", code="rate_limit_exceeded",
                            headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Unauthenticated):
        # Never echo what was presented: the message is ours, not the token.
        return openai_error(401, exc.message, type_="invalid_request_error",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return openai_error(403, exc.message, type_="invalid_request_error",
                            code="insufficient_permissions")
    if isinstance(exc, BadInput) and "available" in exc.extra:
        return openai_error(404, exc.message, type_="invalid_request_error",
                            code="model_not_found", param="model")
    if isinstance(exc, NotFound):
        return openai_error(404, exc.message, type_="invalid_request_error", code="not_found")
    if isinstance(exc, BadInput) or 400 <= exc.http_status < 500:
        return openai_error(400 if exc.http_status in (400, 422) else exc.http_status,
                            exc.message, type_="invalid_request_error", param=param)
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra \
        else None
    return openai_error(exc.http_status, exc.message, type_="server_error",
                        code=exc.code.lower(), headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request", None
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    return f"{param + ': ' if param else ''}{first.get('msg', 'invalid value')}", param


class OpenAIRoute(APIRoute):
    """Routes whose every failure — ours, FastAPI's validation, a body that is not JSON —
    answers in OpenAI's error shape (the app-wide handlers answer REST's `{"detail"}`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                message, param = _validation_message(exc)
                return openai_error(400, message, type_="invalid_request_error", param=param)

        return openai_handler


# ---------------------------------------------------------------- request shapes


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's Chat Completions request; fields we do not act on are accepted and ignored
    (OpenAI SDKs send several), except `n` > 1, which is refused."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(max_length=256)
    messages: list[dict[str, Any]] = Field(max_length=chat.params.MESSAGES_MAX)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    user: str | None = Field(default=None, max_length=256)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # accepted; providers decide


def _content(content: Any, index: int) -> tuple[str, tuple[chat.ImageInput, ...]]:
    """A message's content: a string, or content parts — text, and images (`image_url` with a
    data: URL, or `file` naming an uploaded image), by the same rules as every face."""
    if content is None:
        return "", ()
    if isinstance(content, list) and any(isinstance(part, dict) and part.get("type") ==
                                         "input_audio" for part in content):
        raise BadInput(f"messages[{index}]: input_audio content is not supported by this "
                       "server's models", field=f"messages[{index}].content")
    return chat.content_parts(content, field=f"messages[{index}].content")


# OpenAI's newer "developer" role is its system prompt.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool"}


def _tools(body: CompletionRequest) -> tuple[tuple[Tool, ...], str | None]:
    tools: list[Tool] = []
    for index, tool in enumerate(body.tools or ()):
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadInput(f"tools[{index}] must be {{\"type\": \"function\", \"function\": "
                           "{\"name\", \"description\"?, \"parameters\"?}}",
                           field=f"tools[{index}]")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise BadInput(f"tools[{index}].function.parameters must be a JSON Schema object",
                           field=f"tools[{index}]")
        tools.append(Tool(name=function["name"], description=str(function.get("description")
                                                                   or ""),
                          parameters=parameters))
    choice = body.tool_choice
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise BadInput('tool_choice must be "auto", "none", "required" or '
                           '{"type": "function", "function": {"name"}}', field="tool_choice")
        choice = name
    if choice is not None and not tools:
        choice = None  # OpenAI ignores tool_choice without tools ("none" is the default)
    return tuple(tools), choice


def _tool_calls(message: dict[str, Any], index: int) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str) \
                or not isinstance(function.get("name"), str):
            raise BadInput(f"messages[{index}].tool_calls needs id and function.name",
                           field=f"messages[{index}].tool_calls")
        arguments = function.get("arguments")
        calls.append(ToolCall(id=call["id"], name=function["name"],
                              arguments=arguments if isinstance(arguments, str) else "{}"))
    return tuple(calls)


def chat_params(body: CompletionRequest) -> chat.ChatParams:
    if body.n is not None and body.n != 1:
        raise BadInput("n must be 1: this server returns one choice", field="n")
    messages: list[chat.ChatMessageInput] = []
    for index, message in enumerate(body.messages):
        role = message.get("role")
        if role not in _ROLES:
            raise BadInput(f"messages[{index}].role {role!r} is not supported: use system, "
                           "developer, user, assistant or tool",
                           field=f"messages[{index}].role")
        tool_call_id = message.get("tool_call_id")
        text, images = _content(message.get("content"), index)
        messages.append(chat.ChatMessageInput(
            role=_ROLES[role], content=text, images=images,
            tool_calls=_tool_calls(message, index) if role == "assistant" else (),
            tool_call_id=tool_call_id if isinstance(tool_call_id, str) else None))
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    max_tokens = body.max_completion_tokens or body.max_tokens
    tools, tool_choice = _tools(body)
    return chat.ChatParams(
        messages=messages, model=body.model,
        temperature=chat.DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        max_tokens=chat.DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        top_p=body.top_p, stop=stop or None, tools=tools, tool_choice=tool_choice,
    )


# ---------------------------------------------------------------- shaping

FINISH_REASONS = {"stop": "stop", "length": "length", "stopped": "stop",
                  "tool_calls": "tool_calls"}


def _tool_call_json(call: ToolCall | ChatToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
           finish_reason: str | None = None, *, with_usage: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": completion_id, "object": "chat.completion.chunk", "created": created,
        "model": model, "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}]}
    if with_usage:  # OpenAI: every chunk carries "usage": null until the usage chunk
        data["usage"] = None
    return data


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _stream_error(event: ChatError) -> dict[str, Any]:
    return {"error": {"message": event.message, "type": "server_error", "param": None,
                      "code": event.code}}


# ---------------------------------------------------------------- routes

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
CallerDep = Annotated[keys.Caller, Depends(authenticated("chat"))]


def _model_json(model_id: str, owned_by: str) -> dict[str, Any]:
    # Providers do not tell when a model was made; 0 is OpenAI's "unknown".
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


@router.get("/models", summary="Models this caller may use (OpenAI's list)")
async def list_models(services: ServicesDep, _caller: CallerDep) -> dict[str, Any]:
    return {"object": "list",
            "data": [_model_json(m.id, m.provider) for m in await services.chat.models()]}


@router.get("/models/{model_id:path}", summary="One model (OpenAI's retrieve)")
async def get_model(model_id: str, services: ServicesDep, _caller: CallerDep) -> dict[str, Any]:
    for m in await services.chat.models():
        if m.id == model_id:
            return _model_json(m.id, m.provider)
    raise BadInput(f"The model {model_id!r} does not exist", field="model", available=[])


@router.post("/chat/completions", summary="OpenAI's Chat Completions (stream or not)")
async def chat_completions(body: CompletionRequest, services: ServicesDep,
                           caller: CallerDep) -> Any:
    """Billed, rate-limited and counted in usage exactly like `/api/chat`; nothing is stored
    in a conversation."""
    params = chat_params(body)
    created = int(time.time())
    service, user = services.chat, caller.user
    if not body.stream:
        result = await service.complete(user, params, api_key=caller.key)
        message: dict[str, Any] = {"role": "assistant", "content": result.content,
                                   "refusal": None}
        if result.tool_calls:
            message["content"] = result.content or None
            message["tool_calls"] = [_tool_call_json(call) for call in result.tool_calls]
        return {
            "id": f"chatcmpl-{result.request_id}", "object": "chat.completion",
            "created": created, "model": result.model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": message,
                         "logprobs": None,
                         "finish_reason": FINISH_REASONS.get(result.finish_reason, "stop")}],
            "usage": _usage(result.prompt_tokens, result.tokens),
        }
    handle = await service.start(user, params, api_key=caller.key)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    completion_id = f"chatcmpl-{handle.request_id}"
    events = service.events(user, handle.request_id)
    _seq, first = await anext(events)
    if isinstance(first, ChatError):  # failed before any text: say so in the status code
        await events.aclose()
        return error_response(chat.error_of(first))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _sse(_chunk(completion_id, created, handle.model, delta, finish_reason,
                           with_usage=include_usage))

    async def stream() -> AsyncIterator[bytes]:
        ended = False
        calls = 0
        try:
            yield chunk({"role": "assistant", "content": ""})
            pending: list[Any] = [first]
            async for _seq, event in _chain(pending, events):
                match event:
                    case ChatChunk():
                        yield chunk({"content": event.content})
                    case ChatToolCall():
                        # Whole calls, one chunk each (OpenAI may split the arguments; a
                        # client that accumulates deltas by index reads both alike).
                        yield chunk({"tool_calls": [{"index": calls, **_tool_call_json(event)}]})
                        calls += 1
                    case ChatComplete():
                        ended = True
                        yield chunk({}, FINISH_REASONS.get(event.finish_reason, "stop"))
                        if include_usage:
                            yield _sse({"id": completion_id, "object": "chat.completion.chunk",
                                        "created": created, "model": handle.model,
                                        "system_fingerprint": None, "choices": [],
                                        "usage": _usage(event.prompt_tokens, event.tokens)})
                        yield _sse("[DONE]")
                    case ChatError():
                        ended = True
                        yield _sse(_stream_error(event))
        finally:
            await events.aclose()
            if not ended:
                # The client hung up: stop generating (it is billed for what was made).
                await service.stop(user, handle.request_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _chain(first: list[Any], rest: AsyncIterator[tuple[int, Any]]
                 ) -> AsyncIterator[tuple[int, Any]]:
    for event in first:
        yield 0, event
    async for item in rest:
        yield item


def install(app: FastAPI) -> None:
    app.include_router(router)

