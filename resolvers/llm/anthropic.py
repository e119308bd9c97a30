"""Anthropic Messages API, streamed.

Wire format: `POST {base}/v1/messages` with `stream: true` answers named SSE events:
`message_start` (usage.input_tokens), per content block `content_block_start`,
`content_block_delta` (delta.type "text_delta" carries the text) and `content_block_stop`,
then `message_delta` (delta.stop_reason, usage.output_tokens - cumulative) and `message_stop`.
`ping` may come at any time; an `error` event reports a failure after the 200 status
(e.g. overloaded_error). The system prompt is the top-level `system` field, not a message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ._http import HTTPProvider
from .base import (
    ChatMessage,
    GenerationRequest,
    ModelInfo,
    StopSignal,
    StreamItem,
    TextChunk,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
_MAX_PAGES = 10


class AnthropicProvider(HTTPProvider):
    """Streams from Anthropic's `/v1/messages`."""

    name = "anthropic"
    label = "Anthropic"
    default_base_url = DEFAULT_BASE_URL

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, "Accept": "text/event-stream"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _alternating(m for m in request.messages if m.role != "system"),
            "max_tokens": request.max_tokens,
            # Anthropic's range is 0..1, ours (OpenAI's) 0..2.
            "temperature": min(request.temperature, 1.0),
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        return body

    async def stream(self, request: GenerationRequest,
                     stop: StopSignal) -> AsyncIterator[StreamItem]:
        prompt_tokens = 0
        completion_tokens: int | None = None
        stop_reason: str | None = None
        chunks = 0
        finished = False
        events = self.upstream_stream(f"{self.base_url}/v1/messages", headers=self._headers(),
                                      body=self.build_body(request), stop=stop)
        with self.unexpected_shape():
            async with contextlib.aclosing(events):
                async for event in events:
                    doc = self.parse_json(event.data)
                    kind = doc.get("type") or event.event
                    if kind == "message_start":
                        usage = (doc.get("message") or {}).get("usage") or {}
                        prompt_tokens = _int(usage.get("input_tokens")) or prompt_tokens
                        completion_tokens = _int(usage.get("output_tokens"))
                    elif kind == "content_block_delta":
                        delta = doc.get("delta") or {}
                        text = delta.get("text")
                        if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                            chunks += 1
                            yield TextChunk(text)
                    elif kind == "message_delta":
                        stop_reason = (doc.get("delta") or {}).get("stop_reason") or stop_reason
                        usage = doc.get("usage") or {}
                        if _int(usage.get("output_tokens")) is not None:
                            completion_tokens = _int(usage.get("output_tokens"))
                        if _int(usage.get("input_tokens")):
                            prompt_tokens = _int(usage.get("input_tokens")) or prompt_tokens
                    elif kind == "message_stop":
                        finished = True
                        break
                    elif kind == "error":
                        err = doc.get("error") or {}
                        detail = err.get("message") or err.get("type") or "failed"
                        raise self.error(
                            f"{self.label} error: {detail}",
                            status=529 if err.get("type") == "overloaded_error" else None)
                    # ping, content_block_start/stop and future event types carry no text
                    if stop.is_set:
                        break
        # output_tokens arrives with message_delta at the end; until then message_start's
        # placeholder (1) is all we have, so a stopped reply counts its chunks.
        yield self.finished(stopped=stop.is_set, complete=finished, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, chunks=chunks,
                            length=stop_reason == "max_tokens")

    async def fetch_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        params = {"limit": "1000"}
        for _ in range(_MAX_PAGES):
            doc = await self.get_json(f"{self.base_url}/v1/models", headers=self._headers(),
                                      params=params)
            items = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise self.error(f"{self.label} model list has an unexpected shape")
            models += [
                ModelInfo(id=str(m["id"]), provider=self.name,
                          name=str(m.get("display_name") or m["id"]))
                for m in items if isinstance(m, dict) and m.get("id")
            ]
            if not (doc.get("has_more") and doc.get("last_id")):
                break
            params = {"limit": "1000", "after_id": str(doc["last_id"])}
        return models

    async def list_models(self) -> list[ModelInfo]:
        try:
            return self.models_or_fallback(await self.fetch_models(), None)
        except Exception as exc:  # a model list must never take the server down
            return self.models_or_fallback(None, exc)


def _alternating(messages: Any) -> list[dict[str, str]]:
    """Merge consecutive same-role turns: the API wants user/assistant to alternate."""
    out: list[dict[str, str]] = []
    m: ChatMessage
    for m in messages:
        if out and out[-1]["role"] == m.role:
            out[-1]["content"] += "\n\n" + m.content
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
