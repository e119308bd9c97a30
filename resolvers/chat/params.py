"""What a chat request may ask for: defaults, ranges and message rules, for every face.

REST, GraphQL and /ws each parse their own input into `ChatParams` and leave every value
check to `validated()` (called by `Chat.start`), so a request that one face refuses is refused
by all of them, with the same error code. Faces import the defaults below to show them
(GraphQL's schema, OpenAPI), never to re-check them.

The message rules, the same on every face:
- 1 to MESSAGES_MAX messages; each has a role — user, assistant or system — and content up to
  MESSAGE_CONTENT_MAX characters. A missing role is refused, not guessed (on /ws the
  `content` shorthand is a user message by definition, not a message without a role).
- The newest message, the one to answer, must not be blank. Earlier ones may be empty (a
  failed reply is stored empty, and clients send their history back as it is).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from resolvers import validation
from resolvers.kit.errors import BadInput, ValidationFailed
from resolvers.llm.base import Tool, ToolCall

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 2048
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_TOKENS_RANGE = (1, 4096)
MESSAGES_MAX = 1_000
TOP_P_RANGE = (0.0, 1.0)
STOP_MAX = 4  # stop sequences per request (OpenAI's limit)
STOP_LENGTH_MAX = 256
TOOLS_MAX = 128  # OpenAI's limit
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICES = ("auto", "none", "required")
FILES_MAX = 20  # files per chat request


IMAGES_MAX = 10  # images per request


@dataclass(slots=True, frozen=True)
class ImageInput:
    """An image part of a message: a `data:` URL (or a remote URL), or one of the caller's
    uploaded files. Resolved (and checked) by Chat.start."""

    url: str | None = None
    file_id: str | None = None


def content_parts(content: Any, *, field: str = "content"
                  ) -> tuple[str, tuple[ImageInput, ...]]:
    """A message's `content` as every face receives it — a string, or a list of content parts
    (`{"type":"text","text"}`, `{"type":"image_url","image_url":{"url"}}`, `{"type":"file",
    "file_id"}`) — as its text and its images. BadInput names what is wrong."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise BadInput("content must be a string or a list of content parts", field=field)
    texts: list[str] = []
    images: list[ImageInput] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise BadInput('an image_url part needs {"image_url": {"url": ...}}',
                               field=field)
            images.append(ImageInput(url=url))
        elif kind == "file":
            file_id = part.get("file_id")
            if not isinstance(file_id, str) and isinstance(part.get("file"), dict):
                file_id = part["file"].get("file_id")  # OpenAI's nesting
            if not isinstance(file_id, str) or not file_id:
                raise BadInput('a file part needs {"file_id": ...}', field=field)
            images.append(ImageInput(file_id=file_id))
        else:
            raise BadInput(f"unknown content part {kind!r}: use text, image_url or file",
                           field=field)
    return "\n".join(texts), tuple(images)


@dataclass(slots=True)
class ChatMessageInput:
    role: str | None  # None: the client sent none (refused by validated())
    content: str
    id: str | None = None
    timestamp: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str | None = None  # role "tool": the call this is the result of
    images: tuple[ImageInput, ...] = ()  # image parts of the message (vision models)


@dataclass(slots=True, frozen=True)
class Branch:
    """Where a reply goes in the conversation's tree. Set by resolvers/branches.py (edit and
    regenerate), never parsed from a client: faces leave it None (the reply continues the
    active path)."""

    parent_id: str | None  # the message the new one follows (None: a new first message)
    store_newest: bool  # edit: store the newest (edited) message there; regenerate: it is


@dataclass(slots=True)
class ChatParams:
    messages: list[ChatMessageInput]
    model: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    conversation_id: str | None = None
    request_id: str | None = None  # the client's id; echoed on every event of the reply
    system_prompt: str | None = None
    top_p: float | None = None  # None: the provider's own default
    stop: list[str] | None = None  # sequences that end the reply (at most STOP_MAX)
    # Functions the model may call; the calls come back as `tool_call` events and the
    # client runs them (OpenAI's tools, passed through: /v1 only, so far).
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool's name
    branch: Branch | None = None
    # Tools the server runs itself (MCP, issue 15): `<server>.<tool>` names, or "*".
    server_tools: tuple[str, ...] = ()
    # Ids of the caller's files to answer from (issue 16): their best passages go into the
    # prompt and the reply starts with a `citations` event.
    files: tuple[str, ...] = ()


def _check_tool_name(name: str, field: str) -> None:
    if not TOOL_NAME_RE.fullmatch(name):
        raise ValidationFailed("tool names are 1-64 letters, digits, '_' or '-'", field=field)


def _check_tools(params: ChatParams) -> None:
    if len(params.tools) > TOOLS_MAX:
        raise ValidationFailed(f"at most {TOOLS_MAX} tools", field="tools")
    names = set()
    for tool in params.tools:
        _check_tool_name(tool.name, "tools")
        if tool.name in names:
            raise ValidationFailed(f"tool {tool.name!r} is listed twice", field="tools")
        names.add(tool.name)
        validation.bounded_text(tool.description, field="tools",
                                limit=validation.MESSAGE_CONTENT_MAX)
        if len(json.dumps(tool.parameters)) > validation.MESSAGE_CONTENT_MAX:
            raise ValidationFailed("a tool's parameters schema is too large", field="tools")
    choice = params.tool_choice
    if choice is not None and choice not in TOOL_CHOICES and choice not in names:
        raise ValidationFailed("tool_choice must be auto, none, required or one of the tools",
                               field="tool_choice")


def _number(value: float) -> str:
    return f"{value:g}"


def validated(params: ChatParams) -> ChatParams:
    """`params` when every rule holds; ValidationFailed (REST 422, GraphQL and /ws
    BAD_USER_INPUT / bad_request) naming the first field that breaks one."""
    if not params.messages:
        raise ValidationFailed("messages must hold at least one message", field="messages")
    if len(params.files) > FILES_MAX:
        raise ValidationFailed(f"at most {FILES_MAX} files per request", field="files")
    for file_id in params.files:
        validation.bounded_text(file_id, field="files", limit=64)
    if len(params.messages) > MESSAGES_MAX:
        raise ValidationFailed(f"at most {MESSAGES_MAX} messages per request", field="messages")
    for message in params.messages:
        if message.role == "tool":  # a tool's result, answering a call of the model
            if not message.tool_call_id:
                raise ValidationFailed("a tool message needs the tool_call_id it answers",
                                       field="tool_call_id")
            validation.bounded_text(message.tool_call_id, field="tool_call_id", limit=128)
        else:
            validation.role(message.role)
        if message.tool_calls and message.role != "assistant":
            raise ValidationFailed("only assistant messages carry tool_calls",
                                   field="tool_calls")
        for call in message.tool_calls:
            _check_tool_name(call.name, "tool_calls")
            validation.bounded_text(call.arguments, field="tool_calls",
                                    limit=validation.MESSAGE_CONTENT_MAX)
        validation.bounded_text(message.content, field="content",
                                limit=validation.MESSAGE_CONTENT_MAX)
    _check_tools(params)
    if len(params.server_tools) > TOOLS_MAX:
        raise ValidationFailed(f"at most {TOOLS_MAX} tools", field="tools")
    for name in params.server_tools:
        validation.bounded_text(name, field="tools", limit=128)
    if params.server_tools and params.tools:
        raise ValidationFailed("a request either names server tools or offers its own",
                               field="tools")
    newest = params.messages[-1]
    if sum(len(m.images) for m in params.messages) > IMAGES_MAX:
        raise ValidationFailed(f"at most {IMAGES_MAX} images per request", field="content")
    if any(m.images and m.role != "user" for m in params.messages):
        raise ValidationFailed("only user messages may hold images", field="content")
    # A tool's result may be empty ("no rows"); anything else must say something (an image
    # says something).
    if newest.role != "tool" and not newest.content.strip() and not newest.images:
        raise ValidationFailed("content must not be blank: the newest message is the one "
                               "to answer", field="content")
    low, high = TEMPERATURE_RANGE
    if not low <= params.temperature <= high:
        raise ValidationFailed(
            f"temperature must be between {_number(low)} and {_number(high)}",
            field="temperature")
    lo, hi = MAX_TOKENS_RANGE
    if not lo <= params.max_tokens <= hi:
        raise ValidationFailed(f"max_tokens must be between {lo} and {hi}", field="max_tokens")
    if params.top_p is not None and not TOP_P_RANGE[0] <= params.top_p <= TOP_P_RANGE[1]:
        raise ValidationFailed("top_p must be between 0 and 1", field="top_p")
    if params.stop is not None:
        if len(params.stop) > STOP_MAX:
            raise ValidationFailed(f"at most {STOP_MAX} stop sequences", field="stop")
        for sequence in params.stop:
            # Whitespace is a fine stop sequence ("\n\n"); nothing at all is not.
            if not sequence:
                raise ValidationFailed("stop sequences must not be empty", field="stop")
            validation.bounded_text(sequence, field="stop", limit=STOP_LENGTH_MAX)
    if params.request_id is not None:
        validation.identifier(params.request_id, field="request_id")
    if params.conversation_id is not None:
        validation.identifier(params.conversation_id, field="conversation_id")
    if params.system_prompt is not None:
        validation.bounded_text(params.system_prompt, field="system_prompt",
                                limit=validation.SYSTEM_PROMPT_MAX)
    return params
