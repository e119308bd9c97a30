"""Google Gemini (Generative Language API), streamed.

Wire format: `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` answers SSE
`data:` events, each a whole GenerateContentResponse: text in
`candidates[0].content.parts[].text`, `candidates[0].finishReason` on the last one and
`usageMetadata` {promptTokenCount, candidatesTokenCount} (cumulative; complete on the last).
There is no end sentinel: a reply is complete when a finishReason has arrived and the
stream closes.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_MAX_PAGES = 10


class GeminiProvider(HTTPProvider):
    """Streams from Gemini's `streamGenerateContent`."""

    name = "gemini"
    label = "Gemini"
    default_base_url = DEFAULT_BASE_URL

    def _headers(self) -> dict[str, str]:
        # The key goes in a header, never in the URL, so it cannot end up in access logs.
        return {"x-goog-api-key": self.api_key} if self.api_key else {}

    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "contents": _contents(m for m in request.messages if m.role != "system"),
            "generationConfig": {
                "temperature": request.temperature,
                "maxOutputTokens": request.max_tokens,
            },
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.top_p is not None:
            body["generationConfig"]["topP"] = request.top_p
        if request.stop:
            body["generationConfig"]["stopSequences"] = request.stop
        if request.tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in request.tools]}]
        if request.tool_choice:
            choice = request.tool_choice
            config: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE",
                                               "required": "ANY"}.get(choice, "ANY")}
            if choice not in ("auto", "none", "required"):
                config["allowedFunctionNames"] = [choice]
            body["toolConfig"] = {"functionCallingConfig": config}
        return body

    async def stream(self, request: GenerationRequest,
                     stop: StopSignal) -> AsyncIterator[StreamItem]:
        prompt_tokens = 0
        completion_tokens: int | None = None
        finish_reason: str | None = None
        chunks = 0
        calls: list[ToolCall] = []
        url = (f"{self.base_url}/v1beta/models/{quote(request.model, safe='')}"
               ":streamGenerateContent?alt=sse")

        def read(event: SSEEvent, texts: list[str]) -> bool:
            nonlocal prompt_tokens, completion_tokens, finish_reason, chunks
            doc = self.parse_json(event.data)
            if "error" in doc:
                err = doc["error"] if isinstance(doc["error"], dict) else {}
                raise self.error(
                    f"{self.label} error: {err.get('message') or 'failed'}",
                    status=_int(err.get("code")))
            usage = doc.get("usageMetadata")
            if isinstance(usage, dict):
                prompt_tokens = (_int(usage.get("promptTokenCount"))
                                 or prompt_tokens)
                if _int(usage.get("candidatesTokenCount")) is not None:
                    completion_tokens = _int(usage.get("candidatesTokenCount"))
            candidates = doc.get("candidates") or []
            first = (candidates[0] if candidates
                     and isinstance(candidates[0], dict) else {})
            for part in (first.get("content") or {}).get("parts") or ():
                call = (part.get("functionCall") if isinstance(part, dict)
                        else None)
                if isinstance(call, dict) and call.get("name"):
                    # Gemini gives calls no id: make one (the result names
                    # it back).
                    calls.append(ToolCall(
                        id=f"call_{uuid.uuid4().hex[:24]}",
                        name=str(call["name"]),
                        arguments=json.dumps(call.get("args") or {})))
                    continue
                text = part.get("text") if isinstance(part, dict) else None
                # "thought" parts are the model's hidden reasoning
                if isinstance(text, str) and text and not part.get("thought"):
                    chunks += 1
                    texts.append(text)
            if first.get("finishReason"):
                finish_reason = str(first["finishReason"])
            blocked = (doc.get("promptFeedback") or {}).get("blockReason")
            if blocked and not candidates:
                raise self.error(f"{self.label} refused the prompt: {blocked}",
                                 status=400)
            return False

        with self.unexpected_shape():
            reply = self.coalesced(url, headers=self._headers(),
                                   body=self.build_body(request), stop=stop, read=read)
            async with contextlib.aclosing(reply):
                async for chunk in reply:
                    yield chunk
        # candidatesTokenCount may lag the text: a stopped reply counts its chunks.
        done = self.finished(stopped=stop.is_set, complete=finish_reason is not None,
                             prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             chunks=chunks, length=finish_reason == "MAX_TOKENS")
        for call in calls:
            yield call
        if calls and done.finish_reason == "stop":
            done = Finished(done.prompt_tokens, done.completion_tokens, "tool_calls")
        yield done

    async def fetch_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        params = {"pageSize": "1000"}
        for _ in range(_MAX_PAGES):
            doc = await self.get_json(f"{self.base_url}/v1beta/models", headers=self._headers(),
                                      params=params)
            items = doc.get("models") if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise self.error(f"{self.label} model list has an unexpected shape")
            for m in items:
                if not isinstance(m, dict) or not m.get("name"):
                    continue
                if "generateContent" not in (m.get("supportedGenerationMethods") or ()):
                    continue
                model_id = str(m["name"]).removeprefix("models/")
                models.append(ModelInfo(id=model_id, provider=self.name,
                                        name=str(m.get("displayName") or model_id),
                                        context_length=_int(m.get("inputTokenLimit"))))
            token = doc.get("nextPageToken")
            if not token:
                break
            params = {"pageSize": "1000", "pageToken": str(token)}
        return models

    async def list_models(self) -> list[ModelInfo]:
        try:
            return self.models_or_fallback(await self.fetch_models(), None)
        except Exception as exc:  # a model list must never take the server down
            return self.models_or_fallback(None, exc)


def _parts(m: ChatMessage, names: dict[str, str]) -> list[dict[str, Any]]:
    if m.role == "tool":
        try:
            result = json.loads(m.content)
        except ValueError:
            result = None
        return [{"functionResponse": {
            "name": names.get(m.tool_call_id or "", ""),
            # Gemini wants an object: a JSON object result as it is, anything else wrapped.
            "response": result if isinstance(result, dict) else {"content": m.content}}}]
    # Gemini's vision format: inlineData parts (base64), then the text.
    parts: list[dict[str, Any]] = [{"inlineData": {"mimeType": image.media_type,
                                                   "data": image.data}} for image in m.images]
    if m.content or not (m.tool_calls or m.images):
        parts.append({"text": m.content})
    for call in m.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {}
        parts.append({"functionCall": {"name": call.name,
                                       "args": arguments if isinstance(arguments, dict) else {}}})
    return parts


def _contents(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    """Gemini roles are user/model; consecutive same-role turns are merged into one. A tool
    result is a user turn with a functionResponse naming the function that was called."""
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name (Gemini answers by name)
    for m in messages:
        for call in m.tool_calls:
            names[call.id] = call.name
        role = "model" if m.role == "assistant" else "user"
        parts = _parts(m, names)
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
