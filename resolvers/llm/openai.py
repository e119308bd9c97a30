"""OpenAI Chat Completions, streamed - and every server that speaks the same dialect.

The base URL is configurable, so one class serves OpenAI itself and any OpenAI-compatible
server: Ollama (http://localhost:11434/v1), vLLM, llama.cpp's server, LM Studio, OpenRouter.
Local servers need no API key; then no Authorization header is sent.

Wire format: `POST {base}/chat/completions` with `stream: true` answers `text/event-stream`;
each event is `data: {chat.completion.chunk}`, the text is `choices[0].delta.content`, the
chunk that ends the reply carries `choices[0].finish_reason`, and with
`stream_options.include_usage` one more chunk (empty `choices`) carries `usage` before the
closing `data: [DONE]`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ._http import HTTPProvider, SSEEvent
from .base import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ModelInfo,
    StopSignal,
    StreamItem,
    ToolCall,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# /models on api.openai.com lists every model of the account; these cannot chat.
_NOT_CHAT = ("embed", "whisper", "tts", "dall-e", "moderation", "transcribe", "davinci",
             "babbage", "gpt-image", "sora")


class OpenAIProvider(HTTPProvider):
    """Streams from an OpenAI-compatible `/chat/completions` endpoint."""

    name = "openai"
    label = "OpenAI"
    default_base_url = DEFAULT_BASE_URL

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # OpenAI's newer models refuse `max_tokens` and want `max_completion_tokens`; the
        # compatible servers (Ollama, llama.cpp, older vLLM) only know `max_tokens`.
        self.official = self.base_url == DEFAULT_BASE_URL
        if not self.official:
            self.label = "OpenAI-compatible server"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "temperature": request.temperature,
            ("max_completion_tokens" if self.official else "max_tokens"): request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        if request.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools]
        if request.tool_choice:
            body["tool_choice"] = (
                request.tool_choice if request.tool_choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": request.tool_choice}})
        return body

    async def stream(self, request: GenerationRequest,
                     stop: StopSignal) -> AsyncIterator[StreamItem]:
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        finish_reason: str | None = None
        chunks = 0
        done = False
        calls: dict[int, list[str]] = {}  # index → [id, name, arguments so far]

        def read(event: SSEEvent, texts: list[str]) -> bool:
            nonlocal prompt_tokens, completion_tokens, finish_reason, chunks, done
            if event.data.strip() == "[DONE]":
                done = True
                return True
            chunk = self.parse_json(event.data)
            if "error" in chunk:  # compatible servers report failures in-stream
                raise self.error(
                    f"{self.label} error: {_in_stream_error(chunk)}")
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                prompt_tokens = _int(usage.get("prompt_tokens"), prompt_tokens)
                completion_tokens = _int(usage.get("completion_tokens"),
                                         completion_tokens)
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    chunks += 1
                    texts.append(text)
                for call in (delta.get("tool_calls") or ()
                             if isinstance(delta, dict) else ()):
                    _add_call_delta(calls, call)
                if choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
            return False

        with self.unexpected_shape():
            reply = self.coalesced(f"{self.base_url}/chat/completions", headers=self._headers(),
                                   body=self.build_body(request), stop=stop, read=read)
            async with contextlib.aclosing(reply):
                async for chunk in reply:
                    yield chunk
        finished = self.finished(stopped=stop.is_set, complete=done,
                                 prompt_tokens=prompt_tokens,
                                 completion_tokens=completion_tokens, chunks=chunks,
                                 length=finish_reason == "length")
        for index in sorted(calls):
            call_id, name, arguments = calls[index]
            yield ToolCall(id=call_id or f"call_{index}", name=name, arguments=arguments or "{}")
        if calls and finished.finish_reason == "stop":
            finished = Finished(finished.prompt_tokens, finished.completion_tokens, "tool_calls")
        yield finished

    async def fetch_models(self) -> list[ModelInfo]:
        doc = await self.get_json(f"{self.base_url}/models", headers=self._headers())
        items = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise self.error(f"{self.label} model list has an unexpected shape")
        ids = sorted({str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")})
        return [ModelInfo(id=i, provider=self.name, name=i) for i in ids
                if not any(word in i.lower() for word in _NOT_CHAT)]

    async def list_models(self) -> list[ModelInfo]:
        try:
            return self.models_or_fallback(await self.fetch_models(), None)
        except Exception as exc:  # a model list must never take the server down
            return self.models_or_fallback(None, exc)


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    message: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:  # OpenAI's vision format: content parts, images as data URLs
        message["content"] = [{"type": "text", "text": m.content}, *(
            {"type": "image_url", "image_url": {"url": image.data_url}} for image in m.images)]
    if m.tool_calls:
        message["content"] = m.content or None
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in m.tool_calls]
    return message


def _add_call_delta(calls: dict[int, list[str]], delta: Any) -> None:
    """OpenAI streams a tool call in pieces: id and name first, then the arguments' text."""
    if not isinstance(delta, dict):
        return
    index = delta.get("index", 0)
    entry = calls.setdefault(index if isinstance(index, int) else 0, ["", "", ""])
    if isinstance(delta.get("id"), str):
        entry[0] = delta["id"]
    function = delta.get("function") or {}
    if isinstance(function, dict):
        if isinstance(function.get("name"), str):
            entry[1] += function["name"]
        if isinstance(function.get("arguments"), str):
            entry[2] += function["arguments"]


def _int(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) else default


def _in_stream_error(chunk: dict[str, Any]) -> str:
    err = chunk["error"]
    if isinstance(err, dict):
        return str(err.get("message") or "unknown error")
    return str(err)
