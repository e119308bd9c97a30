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
import json
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
        if request.tools:
            body["tools"] = [{"name": t.name, "description": t.description,
                              "input_schema": t.parameters} for t in request.tools]
        if request.tool_choice:
            choice = request.tool_choice
            body["tool_choice"] = {"auto": {"type": "auto"}, "required": {"type": "any"},
                                   "none": {"type": "none"}}.get(
                choice, {"type": "tool", "name": choice})
        return body

    async def stream(self, request: GenerationRequest,
                     stop: StopSignal) -> AsyncIterator[StreamItem]:
        prompt_tokens = 0
        completion_tokens: int | None = None
        stop_reason: str | None = None
        chunks = 0
        finished = False
        calls: dict[int, list[str]] = {}  # content block index → [id, name, input JSON]

        def read(event: SSEEvent, texts: list[str]) -> bool:
            nonlocal prompt_tokens, completion_tokens, stop_reason, chunks, finished
            doc = self.parse_json(event.data)
            kind = doc.get("type") or event.event
            if kind == "message_start":
                usage = (doc.get("message") or {}).get("usage") or {}
                prompt_tokens = _int(usage.get("input_tokens")) or prompt_tokens
                completion_tokens = _int(usage.get("output_tokens"))
            elif kind == "content_block_start":
                block = doc.get("content_block") or {}
                if block.get("type") == "tool_use":
                    calls[int(doc.get("index") or 0)] = [
                        str(block.get("id") or ""),
                        str(block.get("name") or ""), ""]
            elif kind == "content_block_delta":
                delta = doc.get("delta") or {}
                text = delta.get("text")
                if delta.get("type") == "text_delta" \
                        and isinstance(text, str) and text:
                    chunks += 1
                    texts.append(text)
                elif delta.get("type") == "input_json_delta":
                    call = calls.get(int(doc.get("index") or 0))
                    if call is not None:
                        call[2] += str(delta.get("partial_json") or "")
            elif kind == "message_delta":
                stop_reason = ((doc.get("delta") or {}).get("stop_reason")
                               or stop_reason)
                usage = doc.get("usage") or {}
                if _int(usage.get("output_tokens")) is not None:
                    completion_tokens = _int(usage.get("output_tokens"))
                if _int(usage.get("input_tokens")):
                    prompt_tokens = (_int(usage.get("input_tokens"))
                                     or prompt_tokens)
            elif kind == "message_stop":
                finished = True
                return True
            elif kind == "error":
                err = doc.get("error") or {}
                detail = err.get("message") or err.get("type") or "failed"
                raise self.error(
                    f"{self.label} error: {detail}",
                    status=529 if err.get("type") == "overloaded_error"
                    else None)
            # ping, content_block_start/stop and future event types: no text
            return False

        with self.unexpected_shape():
            reply = self.coalesced(f"{self.base_url}/v1/messages", headers=self._headers(),
                                   body=self.build_body(request), stop=stop, read=read)
            async with contextlib.aclosing(reply):
                async for chunk in reply:
                    yield chunk
        # output_tokens arrives with message_delta at the end; until then message_start's
        # placeholder (1) is all we have, so a stopped reply counts its chunks.
        done = self.finished(stopped=stop.is_set, complete=finished,
                             prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             chunks=chunks, length=stop_reason == "max_tokens")
        for index in sorted(calls):
            call_id, name, arguments = calls[index]
            yield ToolCall(id=call_id, name=name, arguments=arguments or "{}")
        if calls and done.finish_reason == "stop":
            done = Finished(done.prompt_tokens, done.completion_tokens, "tool_calls")
        yield done

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


def _blocks(m: ChatMessage) -> str | list[dict[str, Any]]:
    """A turn's content: plain text, or content blocks when it carries tool use/results."""
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    # Anthropic's vision format: image blocks with a base64 source, before the text.
    images = [{"type": "image", "source": {"type": "base64", "media_type": image.media_type,
                                           "data": image.data}} for image in m.images]
    if not m.tool_calls:
        if images:
            return [*images, *([{"type": "text", "text": m.content}] if m.content else [])]
        return m.content
    blocks: list[dict[str, Any]] = images + (
        [{"type": "text", "text": m.content}] if m.content else [])
    for call in m.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": arguments if isinstance(arguments, dict) else {}})
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _alternating(messages: Any) -> list[dict[str, Any]]:
    """Merge consecutive same-role turns: the API wants user/assistant to alternate. Tool
    results are user turns of `tool_result` blocks."""
    out: list[dict[str, Any]] = []
    m: ChatMessage
    for m in messages:
        role = "user" if m.role == "tool" else m.role
        content = _blocks(m)
        if out and out[-1]["role"] == role:
            previous = out[-1]["content"]
            if isinstance(previous, str) and isinstance(content, str):
                out[-1]["content"] = previous + "\n\n" + content
            else:
                out[-1]["content"] = _as_blocks(previous) + _as_blocks(content)
        else:
            out.append({"role": role, "content": content})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
