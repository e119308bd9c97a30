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

from dataclasses import dataclass

from resolvers import validation
from resolvers.kit.errors import ValidationFailed

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 2048
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_TOKENS_RANGE = (1, 4096)
MESSAGES_MAX = 1_000


@dataclass(slots=True)
class ChatMessageInput:
    role: str | None  # None: the client sent none (refused by validated())
    content: str
    id: str | None = None
    timestamp: int | None = None


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
    branch: Branch | None = None


def _number(value: float) -> str:
    return f"{value:g}"


def validated(params: ChatParams) -> ChatParams:
    """`params` when every rule holds; ValidationFailed (REST 422, GraphQL and /ws
    BAD_USER_INPUT / bad_request) naming the first field that breaks one."""
    if not params.messages:
        raise ValidationFailed("messages must hold at least one message", field="messages")
    if len(params.messages) > MESSAGES_MAX:
        raise ValidationFailed(f"at most {MESSAGES_MAX} messages per request", field="messages")
    for message in params.messages:
        validation.role(message.role)
        validation.bounded_text(message.content, field="content",
                                limit=validation.MESSAGE_CONTENT_MAX)
    if not params.messages[-1].content.strip():
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
    if params.request_id is not None:
        validation.identifier(params.request_id, field="request_id")
    if params.conversation_id is not None:
        validation.identifier(params.conversation_id, field="conversation_id")
    if params.system_prompt is not None:
        validation.bounded_text(params.system_prompt, field="system_prompt",
                                limit=validation.SYSTEM_PROMPT_MAX)
    return params
