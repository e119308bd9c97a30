"""Conversation operations. Every query is scoped to the caller: another user's conversation
answers NotFound and is never read or touched.

Messages form a tree (resolvers/tree.py); every linear shape reads the active path. Every
operation that writes messages calls `written()` before it commits: the one place where
derived data (the search index) is kept in step with the conversation.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Table, Text, delete, func, insert, update
from sqlalchemy import cast as sa_cast
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation, Message, User
from resolvers import summaries, tree, validation
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import Conflict, NotFound, ValidationFailed
from resolvers.tree import Node, StoredMessage

PAGE_MAX = 100


@dataclass(slots=True)
class MessageInput:
    content: str
    role: str
    id: str | None = None
    timestamp: int | None = None
    tokens: int | None = None
    model: str | None = None
    status: str | None = None
    citations: list[dict[str, object]] | None = None  # a reply's sources (issue 16)


@dataclass(slots=True)
class ConversationInput:
    title: str
    model: str
    messages: list[MessageInput] = field(default_factory=list)
    id: str | None = None
    system_prompt: str | None = None
    created_at: int | None = None  # honoured on create only


@dataclass(slots=True)
class ConversationWithMessages:
    conversation: Conversation
    messages: list[MessageView]


class ConversationNotFound(NotFound):
    default_message = "Conversation not found"


def _validated(data: ConversationInput) -> ConversationInput:
    validation.bounded_text(data.title, field="title", limit=validation.TITLE_MAX)
    validation.bounded_text(data.model, field="model", limit=validation.MODEL_NAME_MAX)
    if data.system_prompt is not None:
        validation.bounded_text(
            data.system_prompt, field="systemPrompt", limit=validation.SYSTEM_PROMPT_MAX
        )
    if data.id is not None:
        validation.identifier(data.id, field="id")
    if data.created_at is not None:
        validation.timestamp(data.created_at, field="createdAt")
    if len(data.messages) > validation.MESSAGES_PER_CONVERSATION_MAX:
        raise ValidationFailed(
            f"A conversation holds at most {validation.MESSAGES_PER_CONVERSATION_MAX} messages",
            field="messages",
        )
    _validated_messages(data.messages)
    validation.unique_ids([message.id for message in data.messages])
    return data


def _validated_messages(messages: Sequence[MessageInput], *, tool_steps: bool = False) -> None:
    for message in messages:
        if not (tool_steps and message.role == "tool"):  # the server's own tool steps
            validation.role(message.role)
        validation.bounded_text(
            message.content, field="content", limit=validation.MESSAGE_CONTENT_MAX
        )
        if message.id is not None:
            validation.identifier(message.id, field="message id")
        if message.timestamp is not None:
            validation.timestamp(message.timestamp)
        if message.tokens is not None:
            validation.count(message.tokens, field="tokens")
        if message.model is not None:
            validation.bounded_text(message.model, field="model",
                                    limit=validation.MODEL_NAME_MAX)


def _message_rows(conversation_pk: str, messages: Sequence[MessageInput], start: int,
                  now: int, parent: int | None = None) -> list[dict[str, object]]:
    """Rows for messages that follow each other (a chain under `parent`), on the active
    path."""
    return [
        {
            "conversation_pk": conversation_pk,
            "position": start + index,
            "parent_position": parent if index == 0 else start + index - 1,
            "active": True,
            "id": message.id or f"msg_{uuid.uuid4().hex[:16]}",
            "role": message.role,
            "content": message.content,
            "timestamp": message.timestamp if message.timestamp is not None else now,
            "tokens": message.tokens,
            "model": message.model,
            "status": message.status,
            "citations": message.citations,
        }
        for index, message in enumerate(messages)
    ]


async def _insert_messages(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    # One executemany INSERT: 1,000 messages are one round trip, not 1,000.
    if rows:
        await session.exec(insert(Message), params=rows)


async def written(session: AsyncSession, conversation_pk: str) -> None:
    """Called by every operation that writes a conversation's messages or title (create,
    replace, append, branches, generated titles, imports, delete — after the rows are gone),
    in its transaction, before the commit.

    Derived data is kept in step here: the summary a sidebar reads (resolvers/summaries.py).
    The search index needs no call: the database maintains it (resolvers/search.py).
    """
    await summaries.refresh_pk(session, conversation_pk)


async def _owned(session: AsyncSession, actor: User, conversation_id: str) -> Conversation:
    row = (
        await session.exec(
            select(Conversation).where(
                Conversation.user_id == actor.id, Conversation.id == conversation_id
            )
        )
    ).first()
    if row is None:
        raise ConversationNotFound()
    return row


# A stored message as the faces read it (with its parent and siblings).
MessageView = StoredMessage


class ConversationView(Protocol):
    """A conversation as the lists read it: the ORM object, or a plain result row of the
    same columns (organize.page reads rows: no identity map, no model instances)."""

    @property
    def pk(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def system_prompt(self) -> str | None: ...
    @property
    def created_at(self) -> int: ...
    @property
    def updated_at(self) -> int: ...
    @property
    def pinned(self) -> bool: ...
    @property
    def archived(self) -> bool: ...
    @property
    def message_count(self) -> int: ...
    @property
    def last_message_preview(self) -> str | None: ...


_MESSAGES = cast(Table, Message.__table__)  # type: ignore[attr-defined]
_MESSAGE_COLUMNS = [*(_MESSAGES.c[name] for name in (
    "conversation_pk", "position", "parent_position", "active", "id", "role", "content",
    "timestamp", "tokens", "model", "status")),
    # The JSON as text, NULL for none: most messages have no citations, and decoding a JSON
    # `null` per row was a tenth of a chat list's CPU time (bench/). Decoded below.
    func.nullif(sa_cast(_MESSAGES.c.citations, Text), "null")]
_CITATIONS = 11


async def messages_for(
    session: AsyncSession, conversation_pks: Sequence[str], *, whole_tree: bool = False
) -> dict[str, list[MessageView]]:
    """Messages of several conversations in one query (the DataLoader's batch function):
    the active path of each, in order, or with `whole_tree` every message.

    Plain rows, not ORM objects: they are only read, and building a thousand tracked
    instances was most of a chat list's CPU time (measured in bench/).
    Callers pass only primary keys of conversations they already resolved for the actor.
    """
    grouped: dict[str, list[MessageView]] = defaultdict(list)
    if not conversation_pks:
        return grouped
    # Core-level execution on the session's connection: plain rows, same transaction.
    connection = await session.connection()
    rows = await connection.execute(
        sa_select(*_MESSAGE_COLUMNS)
        .where(col(Message.conversation_pk).in_(list(conversation_pks)))
        .order_by(col(Message.conversation_pk), col(Message.position))
    )
    raw: dict[str, list[Any]] = defaultdict(list)
    for row in rows.all():
        if row[_CITATIONS] is None:
            raw[row[0]].append(row)
        else:
            raw[row[0]].append((*row[:_CITATIONS], json.loads(row[_CITATIONS])))
    for key, found in raw.items():
        # Siblings need the whole tree, even for the active path.
        grouped[key] = tree.views(found, whole_tree=whole_tree)
    return grouped


async def structure(session: AsyncSession, conversation_pk: str) -> list[Node]:
    """The shape of a conversation's tree: positions, parents, ids; no bodies."""
    connection = await session.connection()
    rows = await connection.execute(
        sa_select(_MESSAGES.c.position, _MESSAGES.c.parent_position, _MESSAGES.c.id,
                  _MESSAGES.c.active)
        .where(_MESSAGES.c.conversation_pk == conversation_pk)
        .order_by(_MESSAGES.c.position)
    )
    return [Node(*row) for row in rows.all()]


async def activate(session: AsyncSession, conversation_pk: str, leaf: int,
                   nodes: list[Node] | None = None) -> None:
    """Make the path from the first message to `leaf` the active one (no commit)."""
    if nodes is None:
        nodes = await structure(session, conversation_pk)
    path = tree.path_to(nodes, leaf)
    await session.exec(update(Message).where(
        col(Message.conversation_pk) == conversation_pk, col(Message.active)
    ).values(active=False))
    if path:
        await session.exec(update(Message).where(
            col(Message.conversation_pk) == conversation_pk, col(Message.position).in_(path)
        ).values(active=True))


async def create(
    session: AsyncSession, actor: User, *, data: ConversationInput
) -> ConversationWithMessages:
    """Create a conversation. The id may be chosen by the client; it must be new for this
    user (another user's identical id is irrelevant)."""
    data = _validated(data)
    now = now_ms()
    conversation = Conversation(
        pk=str(uuid.uuid4()),
        id=data.id or f"conv_{uuid.uuid4().hex[:16]}",
        user_id=actor.id,
        title=data.title,
        model=data.model,
        system_prompt=data.system_prompt,
        created_at=data.created_at if data.created_at is not None else now,
        updated_at=now,
    )
    session.add(conversation)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"Conversation {conversation.id!r} already exists") from exc
    await _insert_messages(session, _message_rows(conversation.pk, data.messages, 0, now))
    await written(session, conversation.pk)
    await session.commit()
    return ConversationWithMessages(conversation, await _load_messages(session, conversation.pk))


async def _load_messages(session: AsyncSession, conversation_pk: str, *,
                         whole_tree: bool = False) -> list[MessageView]:
    return (await messages_for(session, [conversation_pk], whole_tree=whole_tree)).get(
        conversation_pk, [])


async def get(
    session: AsyncSession, actor: User, *, conversation_id: str, whole_tree: bool = False
) -> ConversationWithMessages:
    """One conversation: its active path, or with `whole_tree` every message."""
    conversation = await _owned(session, actor, conversation_id)
    return ConversationWithMessages(
        conversation, await _load_messages(session, conversation.pk, whole_tree=whole_tree))


async def find(session: AsyncSession, actor: User, *, conversation_id: str) -> Conversation | None:
    try:
        return await _owned(session, actor, conversation_id)
    except ConversationNotFound:
        return None


def _rebuilt(conversation_pk: str, old: Sequence[StoredMessage],
             messages: Sequence[MessageInput], now: int,
             keep_branches: bool) -> list[dict[str, object]]:
    """The rows after a PUT (see `replace`), renumbered so that parents come first and older
    messages before newer ones (sibling order is age order)."""
    unmatched: dict[str, list[StoredMessage]] = defaultdict(list)
    for stored in sorted(old, key=lambda r: (not r.active, -r.position)):
        unmatched[stored.id].append(stored)  # an id's active row first, then the newest
    rows = _message_rows(conversation_pk, messages, 0, now)
    # Each row's age: its old position when it was stored already, else after all of them.
    ages: list[tuple[int, int]] = []
    parents: list[int | None] = []  # index into rows
    kept: dict[int, int] = {}  # old position → index into rows
    for index, (row, message) in enumerate(zip(rows, messages, strict=True)):
        parents.append(index - 1 if index else None)
        same = unmatched.get(message.id or "")
        if not same:
            ages.append((1, index))
            continue
        previous: StoredMessage = same.pop(0)
        kept[previous.position] = index
        ages.append((0, previous.position))
        # What the client's list does not carry is kept from the stored message.
        for name in ("tokens", "model", "status"):
            if row[name] is None:
                row[name] = getattr(previous, name)
        if message.timestamp is None:
            row["timestamp"] = previous.timestamp
    if keep_branches:
        # The PUT replaces the active path: its old messages that the list leaves out are
        # removed. Other branches (which a linear client cannot see) are kept, re-attached
        # to their nearest surviving ancestor.
        old_parents = {stored.position: stored.parent_position for stored in old}
        branches = [r for r in old if not r.active and r.position not in kept]
        for branch in branches:
            kept[branch.position] = len(rows)
            rows.append({
                "conversation_pk": conversation_pk, "active": False, "id": branch.id,
                "role": branch.role, "content": branch.content, "timestamp": branch.timestamp,
                "tokens": branch.tokens, "model": branch.model, "status": branch.status,
            })
            ages.append((0, branch.position))
        for branch in branches:
            parents.append(tree.surviving_parent(old_parents, branch.parent_position, kept))
    # Number them: a parent before its children, the oldest available row first.
    children: dict[int | None, list[int]] = defaultdict(list)
    for index, parent in enumerate(parents):
        children[parent].append(index)
    ready = [(ages[index], index) for index in children[None]]
    heapq.heapify(ready)
    position_of: dict[int, int] = {}
    while ready:
        _age, index = heapq.heappop(ready)
        position_of[index] = len(position_of)
        for child in children[index]:
            heapq.heappush(ready, (ages[child], child))
    for index, row in enumerate(rows):
        parent = parents[index]
        row["position"] = position_of[index]
        row["parent_position"] = position_of[parent] if parent is not None else None
    return rows


async def replace(
    session: AsyncSession, actor: User, *, conversation_id: str, data: ConversationInput,
    keep_branches: bool = True,
) -> ConversationWithMessages:
    """PUT semantics: title, model, system prompt and the active path are replaced;
    createdAt is kept and updatedAt set by the server.

    The list becomes the active path. A listed message whose id is stored keeps its place in
    the tree, so its alternatives stay its siblings; active messages the list leaves out are
    removed (the client deleted them); messages on other branches are kept (re-attached to
    their nearest surviving ancestor) unless `keep_branches` is false."""
    data = _validated(data)
    conversation = await _owned(session, actor, conversation_id)
    now = max(now_ms(), conversation.updated_at + 1)
    conversation.title = data.title
    conversation.model = data.model
    conversation.system_prompt = data.system_prompt
    conversation.updated_at = now
    session.add(conversation)
    old = await _load_messages(session, conversation.pk, whole_tree=True)
    rows = _rebuilt(conversation.pk, old, data.messages, now, keep_branches)
    await session.exec(delete(Message).where(col(Message.conversation_pk) == conversation.pk))
    await _insert_messages(session, rows)
    await written(session, conversation.pk)
    await session.commit()
    return ConversationWithMessages(conversation, await _load_messages(session, conversation.pk))


async def set_generated_title(session: AsyncSession, actor: User, *, conversation_id: str,
                              title: str, replacing: str) -> bool:
    """Store a generated title only if the title is still `replacing` (a title the user set
    meanwhile wins). True when stored."""
    validation.bounded_text(title, field="title", limit=validation.TITLE_MAX)
    conversation = await _owned(session, actor, conversation_id)
    result = await session.exec(update(Conversation).where(
        col(Conversation.pk) == conversation.pk, col(Conversation.title) == replacing,
    ).values(title=title, updated_at=max(now_ms(), conversation.updated_at + 1)))
    stored = bool(result.rowcount)
    if stored:
        await written(session, conversation.pk)
    await session.commit()
    return stored


async def owned(session: AsyncSession, actor: User, conversation_id: str) -> Conversation:
    """The caller's conversation; ConversationNotFound for a missing one or another user's."""
    return await _owned(session, actor, conversation_id)


async def remove(session: AsyncSession, actor: User, *, conversation_id: str) -> None:
    conversation = await _owned(session, actor, conversation_id)
    await session.exec(delete(Message).where(col(Message.conversation_pk) == conversation.pk))
    await session.delete(conversation)
    await session.flush()
    await written(session, conversation.pk)  # now gone: derived data goes with it
    await session.commit()


@dataclass(slots=True, frozen=True)
class Under:
    """Where appended messages go: under the message with this id (None: as a new first
    message). Without one, they continue the active path."""

    message_id: str | None


APPEND_ATTEMPTS = 12  # each round of a race has a winner: enough for a dozen racing appends


async def append_messages(
    session: AsyncSession, actor: User, *, conversation_id: str, messages: list[MessageInput],
    under: Under | None = None, tool_steps: bool = False,
) -> list[Message]:
    """Append a chain of messages and make it the end of the active path (used by chat to
    keep replies on the server). `under` starts a branch: the chain follows that message
    (a reply under the message it answers, an edit beside the message it replaces). When
    that message is gone (a PUT removed it meanwhile), the chain continues the active path:
    a reply is never lost. A message id the conversation already holds is a Conflict: ids
    are unique per conversation. `tool_steps`: the chain may hold the server's tool calls
    and results (role `tool`, issue 15)."""
    _validated_messages(messages, tool_steps=tool_steps)
    validation.unique_ids([message.id for message in messages])
    for attempt in range(APPEND_ATTEMPTS):
        try:
            return await _append(session, actor, conversation_id, messages, under)
        except IntegrityError as exc:
            # Another append took the same position meanwhile (positions are unique): read
            # the tree again and go on from its new end. (A message id taken meanwhile is
            # found by _append's check on the next attempt: a Conflict.)
            await session.rollback()
            if attempt == APPEND_ATTEMPTS - 1:
                raise Conflict("The conversation changed too often meanwhile; try again",
                               field="messages") from exc
            await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
    raise AssertionError("unreachable")


async def _append(session: AsyncSession, actor: User, conversation_id: str,
                  messages: list[MessageInput], under: Under | None) -> list[Message]:
    conversation = await _owned(session, actor, conversation_id)
    wanted = [message.id for message in messages if message.id is not None]
    if wanted:
        taken = (await session.exec(
            select(Message.id).where(Message.conversation_pk == conversation.pk,
                                     col(Message.id).in_(wanted)))).first()
        if taken is not None:
            raise Conflict(f"Message id {taken!r} is already used in this conversation",
                           field="message id")
    nodes = await structure(session, conversation.pk)
    active = [node.position for node in nodes if node.active]
    leaf = active[-1] if active else None
    parent = leaf
    if under is not None:
        found = tree.find(nodes, under.message_id) if under.message_id is not None else None
        if under.message_id is None or found is not None:
            parent = found.position if found is not None else None
    now = now_ms()
    start = nodes[-1].position + 1 if nodes else 0
    rows = _message_rows(conversation.pk, messages, start, now, parent)
    await _insert_messages(session, rows)
    if parent != leaf and rows:
        new = [Node(int(cast(int, r["position"])), cast("int | None", r["parent_position"]),
                    str(r["id"])) for r in rows]
        await activate(session, conversation.pk, int(cast(int, rows[-1]["position"])),
                       [*nodes, *new])
    conversation.updated_at = max(now, conversation.updated_at + 1)
    session.add(conversation)
    await written(session, conversation.pk)
    await session.commit()
    ids = [str(row["id"]) for row in rows]
    stored = await session.exec(
        select(Message).where(
            Message.conversation_pk == conversation.pk, col(Message.id).in_(ids)
        ).order_by(col(Message.position))
    )
    return list(stored.all())


def cursor_of(conversation: ConversationView) -> str:
    raw = f"{conversation.updated_at}:{conversation.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated_at, pk = base64.urlsafe_b64decode(padded).decode().split(":", 1)
        number = int(updated_at)
        pk = str(uuid.UUID(pk))  # also keeps NUL bytes and the like away from the driver
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("Invalid cursor", field="after") from exc
    # A forged number beyond BIGINT would reach the driver and fail as a 500.
    if not 0 <= number < 2**63:
        raise ValidationFailed("Invalid cursor", field="after")
    return number, pk


async def count_all(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(Conversation))).one())
