"""Local stand-ins for the LLM providers, speaking each one's real wire format over HTTP.

Each fake is an aiohttp.web server on 127.0.0.1 (random port) started inside the test:

    async with FakeOpenAI() as fake:
        provider = OpenAIProvider(api_key="sk-test", base_url=fake.base_url)
        ...
        assert fake.requests[-1].json["temperature"] == 0.2

Script the reply with `fake.chunks` / `fake.prompt_tokens` / `fake.completion_tokens` /
`fake.finish` and make it fail with `fake.fail = Failure(...)`. Every request is recorded in
`fake.requests` (method, path, query, headers, JSON body).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakes import embeddings

# How long a "hanging" or "stalling" fake waits at most; `close()` releases it at once.
_HANG_LIMIT = 30.0


@dataclass
class Failure:
    """What the next requests should run into (all fields optional, combine with care).

    status: answer this HTTP status with the provider's real error JSON.
    hang_before_headers: accept the connection, never send the status line.
    The `*_after` fields count text chunks: the stream runs normally (opening events included)
    until that many text chunks are out, then
    stall_after: goes silent;
    malformed_after: sends a frame that is not JSON;
    drop_after: cuts the TCP connection;
    truncate_after: ends the body cleanly but without the provider's end-of-reply marker;
    stream_error_after: sends the provider's in-stream error event and ends;
    odd_shape_after: sends valid JSON whose fields have the wrong types.
    """

    status: int | None = None
    message: str | None = None
    hang_before_headers: bool = False
    stall_after: int | None = None
    malformed_after: int | None = None
    drop_after: int | None = None
    truncate_after: int | None = None
    stream_error_after: int | None = None
    odd_shape_after: int | None = None


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any


@dataclass
class FakeProvider:
    """Common machinery; subclasses supply routes and the wire format."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    prompt_tokens: int = 21
    completion_tokens: int = 4
    finish: str = "stop"  # "stop" | "length", mapped to the provider's own vocabulary
    models: list[str] = field(default_factory=list)
    models_fail: int | None = None  # HTTP status the model-list endpoint answers
    chunk_delay: float = 0.0  # seconds between frames
    first_chunk_delay: float = 0.0  # seconds before the first text chunk (a thinking model)
    fail: Failure | None = None
    # Function calls the model makes after its text: (name, arguments JSON), in the
    # provider's own wire format (OpenAI deltas, Anthropic tool_use blocks, Gemini parts).
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    # Server-side tool loops: a request that carries a tool's result is answered with text
    # that quotes it ("The tool said: …") instead of calling the tools again.
    answer_tool_results: bool = False
    # Write every frame in pieces (mid-JSON, mid-line): parsers must reassemble them.
    split_frames: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        if not self.models:
            self.models = list(self.default_models)

    default_models: tuple[str, ...] = ()
    lead_frames: int = 0  # frames of the wire format that come before the first text chunk

    # --- subclass hooks ---------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def stream_frames(self, body: Any) -> list[bytes]:
        """The whole successful stream, frame by frame (each frame one SSE event)."""
        raise NotImplementedError

    def error_json(self, status: int, message: str | None) -> Any:
        raise NotImplementedError

    def stream_error_frame(self) -> bytes:
        raise NotImplementedError

    def odd_shape_frame(self) -> bytes:
        raise NotImplementedError

    def models_json(self) -> Any:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    # --- shared handlers ----------------------------------------------------------------
    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = RecordedRequest(request.method, request.path, dict(request.query),
                              {k.lower(): v for k, v in request.headers.items()}, body)
        self.requests.append(rec)
        return rec

    async def _wait_released(self) -> None:
        try:
            await asyncio.wait_for(self._release.wait(), _HANG_LIMIT)
        except TimeoutError:
            pass

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        fail = self.fail or Failure()
        if fail.hang_before_headers:
            await self._wait_released()
            return web.Response(status=504)
        if fail.status is not None:
            return web.json_response(self.error_json(fail.status, fail.message),
                                     status=fail.status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for frame_no, frame in enumerate(self._frames_for(rec.json)):
            i = frame_no - self.lead_frames  # text chunks already sent
            if i == 0 and self.first_chunk_delay:
                await asyncio.sleep(self.first_chunk_delay)
            if fail.stall_after == i:
                await self._wait_released()
                return resp
            if fail.malformed_after == i:
                await resp.write(b'data: {"choices": [{"delta": {"content": "unterminated\n\n')
                return resp
            if fail.drop_after == i:
                assert request.transport is not None
                request.transport.abort()  # RST mid-body, like a crashed upstream
                return resp
            if fail.truncate_after == i:
                await resp.write_eof()
                return resp
            if fail.stream_error_after == i:
                await resp.write(self.stream_error_frame())
                await resp.write_eof()
                return resp
            if fail.odd_shape_after == i:
                await resp.write(self.odd_shape_frame())
            if self.split_frames and len(frame) > 8:
                for piece in (frame[:7], frame[7:len(frame) // 2]):
                    await resp.write(piece)
                    await asyncio.sleep(0.001)  # separate TCP segments
                await resp.write(frame[len(frame) // 2:])
            else:
                await resp.write(frame)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await resp.write_eof()
        return resp

    def _frames_for(self, body: Any) -> list[bytes]:
        result = tool_result_in(body) if self.answer_tool_results else None
        if result is None:
            return self.stream_frames(body)
        saved = self.chunks, self.tool_calls
        self.chunks, self.tool_calls = ["The tool said: ", result], []
        try:
            return self.stream_frames(body)
        finally:
            self.chunks, self.tool_calls = saved

    async def handle_models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.models_fail is not None:
            return web.json_response(self.error_json(self.models_fail, None),
                                     status=self.models_fail)
        return web.json_response(self.models_json())


def tool_result_in(body: Any) -> str | None:
    """The newest tool result in a request, in any of the three wire formats."""
    if not isinstance(body, dict):
        return None
    for message in reversed(body.get("messages") or []):  # OpenAI, Anthropic
        if message.get("role") == "tool":
            return str(message.get("content"))
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner = block.get("content")
                    return inner if isinstance(inner, str) else json.dumps(inner)
    for turn in reversed(body.get("contents") or []):  # Gemini
        for part in turn.get("parts") or []:
            if "functionResponse" in part:
                response = part["functionResponse"].get("response") or {}
                return str(response.get("content", json.dumps(response)))
    return None


def _sse(data: Any, event: str | None = None, *, crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}{nl}" if event else ""
    return f"{head}data: {payload}{nl}{nl}".encode()


# --------------------------------------------------------------------------------------
# OpenAI Chat Completions


@dataclass
class FakeOpenAI(FakeProvider):
    """`POST /v1/chat/completions` streaming `chat.completion.chunk` events, `GET /v1/models`.

    Base URL for the provider: `fake.base_url + "/v1"` (see `api_base`).
    """

    default_models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    lead_frames: int = 1  # the role-only chunk
    send_usage: bool = True  # False: like a server that ignores stream_options
    # `POST /v1/embeddings` answers this HTTP status (OpenAI's error JSON) instead of vectors.
    embeddings_fail: int | None = None

    @property
    def api_base(self) -> str:
        return self.base_url + "/v1"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self.handle_stream),
                web.get("/v1/models", self.handle_models),
                web.post("/v1/embeddings", self.handle_embeddings)]

    @property
    def embedded_texts(self) -> list[str]:
        """Every text the embeddings endpoint was asked for, in order."""
        return [text for r in self.requests if r.path == "/v1/embeddings"
                and isinstance(r.json, dict) for text in r.json.get("input", [])]

    async def handle_embeddings(self, request: web.Request) -> web.Response:
        """OpenAI's wire format: {"model", "input": str | [str], "encoding_format",
        "dimensions"?} → {"object": "list", "data": [{"object": "embedding", "index",
        "embedding"}], "model", "usage"} (tests/fakes/embeddings.py makes the vectors)."""
        rec = await self._record(request)
        if self.embeddings_fail is not None:
            return web.json_response(self.error_json(self.embeddings_fail, None),
                                     status=self.embeddings_fail)
        body = rec.json if isinstance(rec.json, dict) else {}
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not body.get("model"):
            return web.json_response(self.error_json(400, "'input' and 'model' are required"),
                                     status=400)
        dims = int(body.get("dimensions") or embeddings.DIMENSIONS)
        tokens = sum(len(str(t).split()) for t in texts)
        # Answered in reverse order: `index` is what says which input a vector belongs to.
        data = [{"object": "embedding", "index": i,
                 "embedding": embeddings.vector(str(t), dims)} for i, t in enumerate(texts)]
        return web.json_response({"object": "list", "data": data[::-1],
                                  "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def stream_frames(self, body: Any) -> list[bytes]:
        model = body.get("model", "gpt-4o-mini") if isinstance(body, dict) else "gpt-4o-mini"
        base = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_44709d6fcb", "service_tier": "default"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish}], "usage": None})

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        frames += [chunk({"content": text}) for text in self.chunks]
        for i, (name, arguments) in enumerate(self.tool_calls):
            frames.append(chunk({"tool_calls": [{"index": i, "id": f"call_{i}xYz", "type":
                                                 "function", "function": {"name": name,
                                                                          "arguments": ""}}]}))
            half = len(arguments) // 2  # the arguments arrive in pieces
            for piece in (arguments[:half], arguments[half:]):
                frames.append(chunk({"tool_calls": [{"index": i,
                                                     "function": {"arguments": piece}}]}))
        frames.append(chunk({}, "tool_calls" if self.tool_calls
                            else "length" if self.finish == "length" else "stop"))
        if self.send_usage:
            frames.append(_sse({**base, "choices": [], "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}}))
        frames.append(b"data: [DONE]\n\n")
        return frames

    def error_json(self, status: int, message: str | None) -> Any:
        kinds = {
            401: ("Incorrect API key provided: sk-test*********-key. You can find your API key "
                  "at https://platform.openai.com/account/api-keys.", "invalid_request_error",
                  "invalid_api_key"),
            404: ("The model `nope` does not exist or you do not have access to it.",
                  "invalid_request_error", "model_not_found"),
            429: ("Rate limit reached for gpt-4o-mini in organization org-abc on requests per "
                  "min (RPM): Limit 3, Used 3, Requested 1.", "requests", "rate_limit_exceeded"),
        }
        text, kind, code = kinds.get(status, (
            "The server had an error while processing your request. Sorry about that!",
            "server_error", None))
        return {"error": {"message": message or text, "type": kind, "param": None,
                          "code": code}}

    def stream_error_frame(self) -> bytes:
        return _sse({"error": {"message": "model crashed while generating", "code": 500}})

    def odd_shape_frame(self) -> bytes:
        return _sse({"id": "chatcmpl-x", "object": "chat.completion.chunk", "choices": 5})

    def models_json(self) -> Any:
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
            for m in self.models]}


# --------------------------------------------------------------------------------------
# Anthropic Messages


@dataclass
class FakeAnthropic(FakeProvider):
    """`POST /v1/messages` streaming the full named-event sequence, `GET /v1/models`."""

    default_models: tuple[str, ...] = ("claude-3-5-haiku-20241022", "claude-sonnet-4-20250514")
    lead_frames: int = 3  # message_start, content_block_start, ping

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.handle_stream),
                web.get("/v1/models", self.handle_models)]

    def stream_frames(self, body: Any) -> list[bytes]:
        model = body.get("model", "claude") if isinstance(body, dict) else "claude"
        frames = [
            _sse({"type": "message_start", "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
                "content": [], "model": model, "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": self.prompt_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 1}}},
                 "message_start"),
            _sse({"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}}, "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        frames += [_sse({"type": "content_block_delta", "index": 0,
                         "delta": {"type": "text_delta", "text": text}}, "content_block_delta")
                   for text in self.chunks]
        frames.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        for i, (name, arguments) in enumerate(self.tool_calls, start=1):
            half = len(arguments) // 2
            frames += [
                _sse({"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": f"toolu_0{i}A09q90qw", "name": name,
                    "input": {}}}, "content_block_start"),
                *[_sse({"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
                  for piece in (arguments[:half], arguments[half:])],
                _sse({"type": "content_block_stop", "index": i}, "content_block_stop"),
            ]
        frames += [
            _sse({"type": "message_delta", "delta": {
                "stop_reason": "tool_use" if self.tool_calls
                else "max_tokens" if self.finish == "length" else "end_turn",
                "stop_sequence": None}, "usage": {"output_tokens": self.completion_tokens}},
                 "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return frames

    def error_json(self, status: int, message: str | None) -> Any:
        kinds = {
            400: ("invalid_request_error", "messages: at least one message is required"),
            401: ("authentication_error", "invalid x-api-key"),
            404: ("not_found_error", "model: nope"),
            429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute "
                                      "rate limit"),
            529: ("overloaded_error", "Overloaded"),
        }
        kind, text = kinds.get(status, ("api_error", "Internal server error"))
        return {"type": "error", "error": {"type": kind, "message": message or text}}

    def stream_error_frame(self) -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error",
                                                "message": "Overloaded"}}, "error")

    def odd_shape_frame(self) -> bytes:
        return _sse({"type": "message_delta", "delta": "end_turn", "usage": 3}, "message_delta")

    def models_json(self) -> Any:
        data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
                 "created_at": "2025-02-19T00:00:00Z"} for m in self.models]
        return {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}


# --------------------------------------------------------------------------------------
# Google Gemini


@dataclass
class FakeGemini(FakeProvider):
    """`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`, `GET /v1beta/models`."""

    default_models: tuple[str, ...] = ("gemini-2.0-flash", "gemini-1.5-pro",
                                       "text-embedding-004")

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1beta/models/{model_action}", self.handle_stream),
                web.get("/v1beta/models", self.handle_models)]

    def stream_frames(self, body: Any) -> list[bytes]:
        frames: list[bytes] = []
        sent = 0
        texts: list[str | None] = list(self.chunks) + ([None] if self.tool_calls else [])
        for i, text in enumerate(texts):
            last = i == len(texts) - 1
            sent += 1
            parts: list[dict[str, Any]] = [{"text": text}] if text is not None else [
                {"functionCall": {"name": name, "args": json.loads(arguments)}}
                for name, arguments in self.tool_calls]
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"},
                                         "index": 0}
            usage: dict[str, Any] = {"promptTokenCount": self.prompt_tokens,
                                     "totalTokenCount": self.prompt_tokens}
            if last:
                candidate["finishReason"] = "MAX_TOKENS" if self.finish == "length" else "STOP"
                usage = {"promptTokenCount": self.prompt_tokens,
                         "candidatesTokenCount": self.completion_tokens,
                         "totalTokenCount": self.prompt_tokens + self.completion_tokens,
                         "promptTokensDetails": [{"modality": "TEXT",
                                                  "tokenCount": self.prompt_tokens}]}
            frames.append(_sse({"candidates": [candidate], "usageMetadata": usage,
                                "modelVersion": "gemini-2.0-flash",
                                "responseId": "mWrXaPfGNqGO-8YP7fPEuQo"}, crlf=True))
        return frames

    def error_json(self, status: int, message: str | None) -> Any:
        kinds = {
            400: ("API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"),
            401: ("Request had invalid authentication credentials.", "UNAUTHENTICATED"),
            403: ("Permission denied: Consumer has been suspended.", "PERMISSION_DENIED"),
            404: ("models/nope is not found for API version v1beta, or is not supported for "
                  "generateContent.", "NOT_FOUND"),
            429: ("Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
        }
        text, kind = kinds.get(status, (
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting", "INTERNAL"))
        return {"error": {"code": status, "message": message or text, "status": kind}}

    def stream_error_frame(self) -> bytes:
        return _sse({"error": {"code": 503, "message": "The model is overloaded. Please try "
                               "again later.", "status": "UNAVAILABLE"}}, crlf=True)

    def odd_shape_frame(self) -> bytes:
        return _sse({"candidates": [{"content": "oops", "index": 0}]}, crlf=True)

    def models_json(self) -> Any:
        out = []
        for m in self.models:
            methods = (["embedContent"] if "embedding" in m
                       else ["generateContent", "countTokens", "createCachedContent"])
            out.append({"name": f"models/{m}", "version": "001",
                        "displayName": m.replace("-", " ").title(),
                        "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
                        "supportedGenerationMethods": methods})
        return {"models": out}
