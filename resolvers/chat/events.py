"""Reply events: what a reply's log holds, typed.

A reply is a numbered sequence of events in the broker's reply log: `ChatChunk` …, then one
terminal event, `ChatComplete` or `ChatError`. The broker stores plain dicts and never looks
inside them; this module is the one place that turns an event into a dict and back:

    event.to_log()     -> dict for the broker: every field, internal ones included
    from_log(data)     -> the typed event again (the `type` string picks the class)
    event.to_wire()    -> the documented JSON of the SSE stream and of /ws (no internal field)

GraphQL builds its own types from the typed events (schema/subscriptions.py). Internal fields
(`status`, `elapsed_ms`) are kept in the log for the server and never reach a client: each
class lists the fields the contract documents in `WIRE`, and `to_wire()` sends only those.

Other event kinds (tool calls, citations, a conversation's new title) are added by writing a
dataclass with `type` and `WIRE` and decorating it with `@event`; `ReplyEvent` grows with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

# How a reply ended; stored with the assistant message.
COMPLETE = "complete"
STOPPED = "stopped"
ERROR = "error"
# Cut by the server (its worker died, or shutdown outlasted the drain): the stored status
# and the terminal `error` event's code.
INTERRUPTED = "interrupted"


class UnknownEvent(ValueError):
    """A log entry whose `type` this process does not know (a newer worker wrote it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    type: ClassVar[str]
    WIRE: ClassVar[tuple[str, ...]]  # documented fields, in wire order (besides `type`)
    terminal: ClassVar[bool] = False
    request_id: str

    def to_log(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        data.update((name, getattr(self, name)) for name in _FIELDS[type(self)])
        return data

    def to_wire(self) -> dict[str, Any]:
        """The documented JSON (SSE `data:` and /ws frames). Optional fields that are unset
        are left out rather than sent as null."""
        data: dict[str, Any] = {"type": self.type}
        for name in self.WIRE:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


_E = TypeVar("_E", bound=type[_Event])
_REGISTRY: dict[str, type[_Event]] = {}
_FIELDS: dict[type[_Event], tuple[str, ...]] = {}  # each class's fields, looked up once


def event(cls: _E) -> _E:
    """Register an event class under its `type` string (for `from_log`)."""
    if cls.type in _REGISTRY:
        raise ValueError(f"event type {cls.type!r} is registered twice")
    _REGISTRY[cls.type] = cls
    _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return cls


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatChunk(_Event):
    """A piece of the reply's text, in order."""

    type: ClassVar[str] = "chat_chunk"
    WIRE: ClassVar[tuple[str, ...]] = ("content", "request_id")
    content: str


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatToolCall(_Event):
    """The model calls a function the client offered (`tools`); the client runs it and
    sends the result back in its next request. Same shape as CONTRACT-2 §6's tool_call."""

    type: ClassVar[str] = "tool_call"
    WIRE: ClassVar[tuple[str, ...]] = ("id", "name", "arguments", "request_id")
    id: str
    name: str
    arguments: str  # a JSON object, as text


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatToolResult(_Event):
    """What a tool the server ran answered (CONTRACT-2 §6): the model reads it next. A tool
    that failed or timed out is `is_error`, never the end of the reply."""

    type: ClassVar[str] = "tool_result"
    WIRE: ClassVar[tuple[str, ...]] = ("id", "content", "is_error", "request_id")
    id: str
    content: str
    is_error: bool = False


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatCitations(_Event):
    """The sources the reply was given (a chat request's `files`), before its first chunk:
    `sources` is a list of {file_id, filename, snippet, score}, best first; the model cites
    them by their place in it ([1] is the first)."""

    type: ClassVar[str] = "citations"
    WIRE: ClassVar[tuple[str, ...]] = ("sources", "request_id")
    sources: list[dict[str, Any]]


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatComplete(_Event):
    """The reply ended normally (also after a stop: finish_reason "stopped")."""

    type: ClassVar[str] = "chat_complete"
    WIRE: ClassVar[tuple[str, ...]] = ("tokens", "model", "finish_reason", "request_id",
                                       "message_id")
    terminal: ClassVar[bool] = True
    tokens: int
    model: str
    finish_reason: str = "stop"  # "stop" | "length" | "stopped" | "tool_calls"
    message_id: str | None = None  # the stored reply, when the request named a conversation
    # Internal: how the stored message is marked, how long the reply took, and the prompt
    # tokens the provider counted (the /v1 face reports them in `usage`).
    status: str = COMPLETE
    elapsed_ms: int | None = None
    prompt_tokens: int = 0


@event
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatError(_Event):
    """The reply failed; what was generated before is kept. `code` is any machine-readable
    string: provider_error, provider_timeout, internal, interrupted, …"""

    type: ClassVar[str] = "error"
    WIRE: ClassVar[tuple[str, ...]] = ("code", "message", "request_id", "message_id")
    terminal: ClassVar[bool] = True
    code: str
    message: str
    message_id: str | None = None  # the stored partial reply, if any
    elapsed_ms: int | None = None  # internal


ReplyEvent = (ChatChunk | ChatToolCall | ChatToolResult | ChatCitations | ChatComplete
              | ChatError)


def from_log(data: dict[str, Any]) -> ReplyEvent:
    """The typed event of a log entry (fields this version does not know are ignored, so an
    older worker reads what a newer one wrote)."""
    cls = _REGISTRY.get(str(data.get("type")))
    if cls is None:
        raise UnknownEvent(f"unknown reply event type {data.get('type')!r}")
    known = _FIELDS[cls]
    try:
        decoded = cls(**{key: value for key, value in data.items() if key in known})
    except TypeError as exc:  # a required field is missing
        raise UnknownEvent(f"malformed {cls.type} event: {exc}") from exc
    return cast("ReplyEvent", decoded)
