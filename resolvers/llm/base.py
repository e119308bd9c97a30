"""The provider interface: one async stream of text chunks, then the final usage.

Every provider (embedded llama.cpp, OpenAI-compatible, Anthropic, Gemini) implements
`Provider`. The chat operation (resolvers/chat.py) is the only caller.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# "tool": the result of a tool call, sent back by the client (OpenAI's tool messages).
Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for. Streams yield it once it is whole; the client
    runs it and sends the result back as a `tool` message with `tool_call_id` = `id`."""

    id: str
    name: str
    arguments: str  # a JSON object, as text (OpenAI's wire form)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: OpenAI's `function` tool, passed through."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True, slots=True)
class Image:
    """An image a message shows the model: its bytes, base64, and their type."""

    media_type: str  # image/png | image/jpeg | image/gif | image/webp
    data: str  # base64

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: which call this is the result of
    images: tuple[Image, ...] = ()  # shown with the text (vision models only)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    model: str  # the provider's own model name (no "provider/" prefix)
    messages: list[ChatMessage]  # system prompt, if any, is the first message with role "system"
    # No defaults here: chat decides them (resolvers/chat/params.py) for every face.
    temperature: float
    max_tokens: int
    top_p: float | None = None  # None: the provider's default
    stop: list[str] | None = None  # stop sequences; None: none
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool's name


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The last item of every successful stream."""

    prompt_tokens: int
    completion_tokens: int  # what the provider reports for the reply
    # "stop" | "length" | "stopped" (our stop signal) | "tool_calls"
    finish_reason: str = "stop"


StreamItem = TextChunk | ToolCall | Finished


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # public id used by clients, e.g. "smollm2-135m-instruct", "gpt-4o-mini"
    provider: str  # "embedded" | "openai" | "anthropic" | "gemini"
    name: str = ""  # human-friendly
    context_length: int | None = None


class ProviderError(Exception):
    """Upstream failed: HTTP error, malformed stream, died mid-stream.

    `message` is safe to show to the user (the provider's own error text, never a traceback,
    never an API key). `timeout` marks connect timeouts and stalls (REST answers 504).
    """

    def __init__(self, message: str, *, provider: str, status: int | None = None,
                 timeout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.timeout = timeout


@dataclass(slots=True)
class StopSignal:
    """Set by stopChat / WS `stop`; a provider checks it between chunks and ends within one."""

    event: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self) -> None:
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


class Provider(Protocol):
    name: str
    supports_tools: bool  # False: a request with tools is refused before generation
    supports_vision: bool  # False: a message with images is refused before generation

    async def list_models(self) -> list[ModelInfo]:
        """Models this provider serves right now."""
        ...

    def stream(self, request: GenerationRequest, stop: StopSignal) -> AsyncIterator[StreamItem]:
        """Yield TextChunk items as they are produced, then exactly one Finished.

        When `stop` is set, end within one chunk and yield Finished(finish_reason="stopped").
        Raise ProviderError for any upstream failure (before or during the stream).
        """
        ...

    async def aclose(self) -> None:
        ...


# Models of vision-capable providers that take text only (older or non-chat models).
TEXT_ONLY_MODELS = re.compile(
    r"^(gpt-3\.5|gpt-4-(0314|0613|32k)|o1-mini|o3-mini|text-|davinci|babbage|"
    r"claude-(2|instant)|gemini-1\.0|gemini-pro$)|embedding", re.IGNORECASE)


def sees_images(provider: Provider, model: str) -> bool:
    """Whether `model` of `provider` accepts images (a request with images to one that does
    not is refused before generation)."""
    return provider.supports_vision and TEXT_ONLY_MODELS.search(model) is None
