"""Export and import: our JSON (every branch) and Markdown (the active path) out; our JSON,
the guide's conversation objects and ChatGPT's `conversations.json` in.

Import is all-or-nothing per conversation: each is checked completely, then written in a
transaction of its own; a bad one is skipped with its index and the reason, the others are
imported. A document that is none of the known formats is refused whole (422), and so is
one with more than `max_conversations` conversations.

ChatGPT's export (`conversations.json`) is a list of conversations, each a `mapping` of nodes
`{id, message, parent, children}`; `message` has `author.role`, `content` (`content_type`,
`parts` or `text`), `create_time` in seconds, `recipient` and `metadata`. What ChatGPT's own
page shows is imported: user and assistant messages to everyone, and system messages with
text. Tool traffic (role `tool`, an assistant's calls to a tool, browsing and code output),
hidden context and reasoning notes are left out, and their children are attached to the
nearest message that is kept, so every branch survives. Parts that are not text (images,
files) become a placeholder such as `[image]`. `current_node` is the active path.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation, Message, User
from resolvers import conversations, validation
from resolvers.kit.clock import now_ms
from resolvers.kit.db import Database
from resolvers.kit.errors import ValidationFailed
from resolvers.tree import StoredMessage

FORMAT = "ai-chat-studio"
FORMAT_VERSION = 1
DEFAULT_TITLE = "Imported conversation"
DEFAULT_MODEL = "imported"
CHATGPT_MODEL = "chatgpt"

# ---------------------------------------------------------------- export


def message_export(row: StoredMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"id": row.id, "parentId": row.parent_id, "role": row.role,
                            "content": row.content, "timestamp": row.timestamp,
                            "active": row.active}
    for name in ("tokens", "model", "status"):
        if getattr(row, name) is not None:
            data[name] = getattr(row, name)
    return data


def conversation_export(row: Conversation, messages: Sequence[StoredMessage]) -> dict[str, Any]:
    return {"id": row.id, "title": row.title, "model": row.model,
            "systemPrompt": row.system_prompt, "createdAt": row.created_at,
            "updatedAt": row.updated_at,
            "messages": [message_export(message) for message in messages]}


def document(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "exported_at": now_ms(),
            "conversations": items}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def markdown(row: Conversation, messages: Sequence[StoredMessage]) -> str:
    """The active path as Markdown: a heading per message, its text as written."""
    lines = [f"# {' '.join(row.title.split()) or DEFAULT_TITLE}", "",
             f"- Model: {row.model}", f"- Created: {_when(row.created_at)}",
             f"- Updated: {_when(row.updated_at)}", ""]
    if row.system_prompt:
        lines += ["## System prompt", "", row.system_prompt, ""]
    for message in messages:
        who = message.role.capitalize()
        if message.role == "assistant" and message.model:
            who += f" ({message.model})"
        lines += [f"## {who} · {_when(message.timestamp)}", "", message.content, ""]
    return "\n".join(lines)


@dataclass(slots=True)
class Export:
    filename: str
    media_type: str
    body: str


async def export_one(session: AsyncSession, actor: User, *, conversation_id: str,
                     fmt: str) -> Export:
    """One conversation: `json` (our format, every branch) or `markdown` (active path)."""
    if fmt not in ("json", "markdown"):
        raise ValidationFailed("format must be json or markdown", field="format")
    stored = await conversations.get(session, actor, conversation_id=conversation_id,
                                     whole_tree=fmt == "json")
    name = f"conversation-{stored.conversation.id}"
    if fmt == "markdown":
        return Export(f"{name}.md", "text/markdown; charset=utf-8",
                      markdown(stored.conversation, stored.messages))
    body = document([conversation_export(stored.conversation, stored.messages)])
    return Export(f"{name}.json", "application/json",
                  json.dumps(body, ensure_ascii=False, indent=1))


async def export_all(session: AsyncSession, actor: User) -> Export:
    """Every conversation of the caller, every branch, in our JSON."""
    rows = list((await session.exec(
        select(Conversation).where(Conversation.user_id == actor.id)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.pk).desc()))).all())
    messages = await conversations.messages_for(session, [r.pk for r in rows], whole_tree=True)
    body = document([conversation_export(r, messages.get(r.pk, [])) for r in rows])
    return Export("conversations.json", "application/json",
                  json.dumps(body, ensure_ascii=False, indent=1))


# ---------------------------------------------------------------- import: parsing


class Skip(Exception):
    """This conversation cannot be imported; the message says why."""


@dataclass(slots=True)
class Item:
    """One message to import; `parent` is an index into the conversation's list."""

    id: str
    role: str
    content: str
    timestamp: int
    parent: int | None = None
    tokens: int | None = None
    model: str | None = None
    status: str | None = None


@dataclass(slots=True)
class Parsed:
    id: str | None
    title: str
    model: str
    system_prompt: str | None
    created_at: int
    updated_at: int
    items: list[Item] = field(default_factory=list)
    active_leaf: int | None = None  # index of the active path's last message


@dataclass(slots=True)
class Skipped:
    index: int
    reason: str


@dataclass(slots=True)
class ImportResult:
    imported: int = 0
    conversation_ids: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _int(value: Any, what: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Skip(f"{what} must be an integer")
    return value


def _ms(seconds: Any) -> int | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    value = int(seconds * 1000)
    return value if 0 <= value <= 253_402_300_799_999 else None


def _id(value: Any) -> str | None:
    if isinstance(value, str) and validation.ID_RE.fullmatch(value):
        return value
    return None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _checked(parsed: Parsed) -> Parsed:
    """Every limit and rule of a stored conversation, as a Skip with the reason."""
    try:
        validation.bounded_text(parsed.title, field="title", limit=validation.TITLE_MAX)
        validation.bounded_text(parsed.model, field="model", limit=validation.MODEL_NAME_MAX)
        if parsed.system_prompt is not None:
            validation.bounded_text(parsed.system_prompt, field="systemPrompt",
                                    limit=validation.SYSTEM_PROMPT_MAX)
    except ValidationFailed as exc:
        raise Skip(exc.message) from exc
    if len(parsed.items) > validation.MESSAGES_PER_CONVERSATION_MAX:
        raise Skip(f"{len(parsed.items)} messages: a conversation holds at most "
                   f"{validation.MESSAGES_PER_CONVERSATION_MAX}")
    seen: set[str] = set()
    for number, item in enumerate(parsed.items, start=1):
        # Ids travel in URL paths and name one message: an unusable or repeated one is
        # replaced (parents are already resolved to indexes).
        if _id(item.id) is None or item.id in seen:
            item.id = _new_id("msg")
        seen.add(item.id)
        try:
            validation.role(item.role)
            validation.bounded_text(item.content, field="content",
                                    limit=validation.MESSAGE_CONTENT_MAX)
            validation.timestamp(item.timestamp)
        except ValidationFailed as exc:
            raise Skip(f"message {number} ({item.id}): {exc.message}") from exc
    return parsed


def parse_ours(data: Any) -> Parsed:
    """Our export's conversation, or the guide's Conversation object (a linear list)."""
    if not isinstance(data, dict):
        raise Skip("a conversation must be a JSON object")
    title = data.get("title") if data.get("title") is not None else DEFAULT_TITLE
    model = data.get("model") or DEFAULT_MODEL
    system_prompt = data.get("systemPrompt")
    if not isinstance(title, str) or not isinstance(model, str) \
            or not isinstance(system_prompt, str | None):
        raise Skip("title, model and systemPrompt must be strings")
    raw = data.get("messages", [])
    if not isinstance(raw, list):
        raise Skip("messages must be a list")
    now = now_ms()
    created = _int(data.get("createdAt"), "createdAt") or now
    parsed = Parsed(id=data.get("id") if isinstance(data.get("id"), str) else None,
                    title=title, model=model, system_prompt=system_prompt,
                    created_at=created, updated_at=_int(data.get("updatedAt"), "updatedAt")
                    or created)
    tree_shaped = any(isinstance(m, dict) and "parentId" in m for m in raw)
    index_of: dict[str, int] = {}
    parents: list[str | None] = []
    active: list[int] = []
    for number, message in enumerate(raw, start=1):
        if not isinstance(message, dict):
            raise Skip(f"message {number} must be a JSON object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise Skip(f"message {number} needs a role and a text content")
        message_id = message.get("id")
        if message_id is not None and not isinstance(message_id, str):
            raise Skip(f"message {number}: id must be a string")
        message_id = message_id or _new_id("msg")
        if tree_shaped and message_id in index_of:
            raise Skip(f"message {number}: the id {message_id!r} is used twice")
        index_of[message_id] = len(parsed.items)
        model_name = message.get("model")
        status = message.get("status")
        parsed.items.append(Item(
            id=message_id, role=role, content=content,
            timestamp=_int(message.get("timestamp"), f"message {number} timestamp") or created,
            tokens=_int(message.get("tokens"), f"message {number} tokens"),
            model=model_name if isinstance(model_name, str) else None,
            status=status if isinstance(status, str) and len(status) <= 16 else None))
        parent = message.get("parentId")
        parents.append(parent if isinstance(parent, str) else None)
        if message.get("active", True) is not False:
            active.append(len(parsed.items) - 1)
    for position, item in enumerate(parsed.items):
        if not tree_shaped:
            item.parent = position - 1 if position else None
            continue
        parent_id = parents[position]
        if parent_id is not None:
            if parent_id not in index_of:
                raise Skip(f"message {position + 1}: its parent {parent_id!r} is not in the "
                           "conversation")
            item.parent = index_of[parent_id]
    parsed.active_leaf = (active[-1] if tree_shaped and active
                          else len(parsed.items) - 1 if parsed.items else None)
    return _checked(parsed)


_SHOWN_ROLES = frozenset({"user", "assistant", "system"})
_TOOL_CONTENT = frozenset({"execution_output", "tether_browsing_display", "tether_quote",
                           "system_error", "user_editable_context", "thoughts",
                           "reasoning_recap", "computer_output"})


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        kind = str(part.get("content_type") or "attachment")
        if isinstance(part.get("text"), str):  # audio transcriptions and the like
            return str(part["text"])
        if kind == "image_asset_pointer":
            return "[image]"
        return f"[{kind.removesuffix('_asset_pointer')}]"
    return ""


def _chatgpt_text(message: dict[str, Any]) -> str | None:
    """What ChatGPT shows of a message, or None when it shows nothing of it."""
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if role not in _SHOWN_ROLES:
        return None  # "tool" and anything newer
    recipient = message.get("recipient", "all")
    if recipient not in (None, "all"):
        return None  # a call to a tool
    metadata = message.get("metadata")
    if isinstance(metadata, dict) and metadata.get("is_visually_hidden_from_conversation"):
        return None
    content = message.get("content")
    if not isinstance(content, dict):
        return None
    kind = content.get("content_type")
    if kind in _TOOL_CONTENT:
        return None
    if kind == "code" and isinstance(content.get("text"), str):
        text = f"```\n{content['text']}\n```"
    elif isinstance(content.get("parts"), list):
        text = "\n\n".join(t for t in (_part_text(p) for p in content["parts"]) if t)
    elif isinstance(content.get("text"), str):
        text = content["text"]
    else:
        return None
    return text if text.strip() else None


def parse_chatgpt(data: Any) -> Parsed:
    """One conversation of ChatGPT's conversations.json."""
    if not isinstance(data, dict):
        raise Skip("a conversation must be a JSON object")
    mapping = data.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise Skip("no `mapping` of messages")
    now = now_ms()
    created = _ms(data.get("create_time")) or now
    title = data.get("title")
    parsed = Parsed(id=_id(data.get("conversation_id")) or _id(data.get("id")),
                    title=title if isinstance(title, str) and title.strip() else DEFAULT_TITLE,
                    model=CHATGPT_MODEL, system_prompt=None, created_at=created,
                    updated_at=_ms(data.get("update_time")) or created)
    default_model = data.get("default_model_slug")
    parents: dict[str, str | None] = {}
    for key, node in mapping.items():
        if not isinstance(node, dict):
            raise Skip(f"node {key!r} is not an object")
        parent = node.get("parent")
        parents[str(key)] = parent if isinstance(parent, str) else None
    for key, parent in parents.items():
        if parent is not None and parent not in parents:
            raise Skip(f"node {key!r} names a parent {parent!r} that is not in the mapping")
    # Depth-first from the roots, children oldest first: parents always come first.
    children: dict[str | None, list[str]] = defaultdict(list)
    for key, parent in parents.items():
        children[parent].append(key)

    def created_of(key: str) -> float:
        message = mapping[key].get("message")
        when = message.get("create_time") if isinstance(message, dict) else None
        return float(when) if isinstance(when, int | float) else 0.0

    kept_index: dict[str, int | None] = {}  # node → index of itself or its nearest kept
    stack: list[tuple[str, int | None, int]] = [
        (key, None, created) for key in sorted(children[None], key=created_of, reverse=True)]
    visited = 0
    while stack:
        key, above, inherited = stack.pop()
        visited += 1
        node = mapping[key]
        message = node.get("message") if isinstance(node.get("message"), dict) else None
        text = _chatgpt_text(message) if message is not None else None
        here = above
        when = inherited
        if message is not None and text is not None:
            when = _ms(message.get("create_time")) or inherited
            role = message["author"]["role"]
            metadata = message.get("metadata") if isinstance(message.get("metadata"),
                                                             dict) else {}
            slug = metadata.get("model_slug")
            parsed.items.append(Item(
                id=_id(message.get("id")) or _id(key) or _new_id("msg"), role=role,
                content=text, timestamp=when, parent=above,
                model=slug if role == "assistant" and isinstance(slug, str) else None,
                status="complete" if role == "assistant" else None))
            here = len(parsed.items) - 1
        kept_index[key] = here
        for child in sorted(children[key], key=created_of, reverse=True):
            stack.append((child, here, when))
    if visited != len(parents):
        raise Skip("the mapping's parents form a cycle")
    if not parsed.items:
        raise Skip("no message that ChatGPT shows (only tool, hidden or empty nodes)")
    current = data.get("current_node")
    leaf = kept_index.get(current) if isinstance(current, str) else None
    parsed.active_leaf = leaf if leaf is not None else len(parsed.items) - 1
    models = [i.model for i in parsed.items if i.model]
    parsed.model = (default_model if isinstance(default_model, str) and default_model
                    else models[-1] if models else CHATGPT_MODEL)
    return _checked(parsed)


def recognize(data: Any, *, max_conversations: int) -> list[tuple[str, Any]]:
    """The conversations of an uploaded document, each with its parser's name; a document
    of no known format → ValidationFailed (422, nothing imported)."""
    items: list[Any]
    kind: str
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if not isinstance(data.get("conversations"), list):
            raise ValidationFailed("An ai-chat-studio export needs a `conversations` list",
                                   field="file")
        items, kind = data["conversations"], "ours"
    elif isinstance(data, dict) and isinstance(data.get("mapping"), dict):
        items, kind = [data], "chatgpt"
    elif isinstance(data, dict) and isinstance(data.get("messages"), list):
        items, kind = [data], "ours"
    elif isinstance(data, list):
        # A list is known by the conversations in it; other items are skipped with a reason.
        objects = [item for item in data if isinstance(item, dict)]
        if any("mapping" in item for item in objects) or not data:
            items, kind = data, "chatgpt"
        elif any("messages" in item for item in objects):
            items, kind = data, "ours"
        else:
            raise ValidationFailed("Not a known export: expected ChatGPT's conversations.json "
                                   "or an ai-chat-studio export", field="file")
    else:
        raise ValidationFailed("Not a known export: expected ChatGPT's conversations.json or "
                               "an ai-chat-studio export", field="file")
    if len(items) > max_conversations:
        raise ValidationFailed(f"{len(items)} conversations: one import takes at most "
                               f"{max_conversations}", field="file")
    return [(kind, item) for item in items]


def decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed("The file is not valid JSON (UTF-8)", field="file") from exc


# ---------------------------------------------------------------- import: writing


def _order(items: list[Item]) -> list[int]:
    """Indexes with every parent before its children (items already are, for ChatGPT; our
    own export lists parents first too, but a hand-edited file may not)."""
    children: dict[int | None, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        children[item.parent].append(index)
    order: list[int] = []
    stack = list(reversed(children[None]))
    while stack:
        index = stack.pop()
        order.append(index)
        stack.extend(reversed(children[index]))
    if len(order) != len(items):
        raise Skip("the messages' parents form a cycle")
    return order


def _path(items: list[Item], leaf: int | None) -> set[int]:
    path: set[int] = set()
    while leaf is not None and leaf not in path:
        path.add(leaf)
        leaf = items[leaf].parent
    return path


async def _store(session: AsyncSession, actor: User, parsed: Parsed) -> str:
    order = _order(parsed.items)
    position_of = {index: position for position, index in enumerate(order)}
    active = _path(parsed.items, parsed.active_leaf)
    conversation_id = parsed.id if parsed.id and _id(parsed.id) else _new_id("conv")
    taken = (await session.exec(select(Conversation.id).where(
        Conversation.user_id == actor.id, Conversation.id == conversation_id))).first()
    if taken is not None:
        conversation_id = _new_id("conv")  # ids that collide get new ones
    conversation = Conversation(
        pk=str(uuid.uuid4()), id=conversation_id, user_id=actor.id, title=parsed.title,
        model=parsed.model, system_prompt=parsed.system_prompt,
        created_at=parsed.created_at, updated_at=max(parsed.updated_at, parsed.created_at))
    session.add(conversation)
    await session.flush()
    rows = [{
        "conversation_pk": conversation.pk, "position": position_of[index],
        "parent_position": position_of[item.parent] if item.parent is not None else None,
        "active": index in active, "id": item.id, "role": item.role, "content": item.content,
        "timestamp": item.timestamp, "tokens": item.tokens, "model": item.model,
        "status": item.status,
    } for index, item in ((i, parsed.items[i]) for i in order)]
    if rows:
        await session.exec(insert(Message), params=rows)
    await conversations.written(session, conversation.pk)
    await session.commit()
    return conversation_id


async def import_document(db: Database, actor: User, *, data: Any,
                          max_conversations: int) -> ImportResult:
    """Import a decoded document (see the module's docstring)."""
    result = ImportResult()
    for index, (kind, item) in enumerate(recognize(data, max_conversations=max_conversations)):
        try:
            parsed = parse_chatgpt(item) if kind == "chatgpt" else parse_ours(item)
            async with db.session() as session:
                try:
                    conversation_id = await _store(session, actor, parsed)
                except IntegrityError:  # the id was taken meanwhile: once more, a new id
                    await session.rollback()
                    parsed.id = None
                    conversation_id = await _store(session, actor, parsed)
        except Skip as exc:
            result.skipped.append(Skipped(index=index, reason=str(exc)))
            continue
        result.imported += 1
        result.conversation_ids.append(conversation_id)
    return result
