"""Conversation operations. Every query is scoped to the caller: another user's conversation
answers NotFound and is never read or touched."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from sqlalchemy import Table, and_, delete, func, insert, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation, Message, User
from resolvers import summaries, validation
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import Conflict, NotFound, ValidationFailed

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


@dataclass(slots=True)
class ConversationPage:
    items: list[Conversation]
    has_next_page: bool
    end_cursor: str | None
    total_count: int


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
    for message in data.messages:
        validation.role(message.role)
        validation.bounded_text(
            message.content, field="content", limit=validation.MESSAGE_CONTENT_MAX
        )
        if message.id is not None:
            validation.identifier(message.id, field="message id")
        if message.timestamp is not None:
            validation.timestamp(message.timestamp)
    return data


def _message_rows(conversation_pk: str, messages: Sequence[MessageInput], start: int,
                  now: int) -> list[dict[str, object]]:
    return [
        {
            "conversation_pk": conversation_pk,
            "position": start + index,
            "id": message.id or f"msg_{uuid.uuid4().hex[:16]}",
            "role": message.role,
            "content": message.content,
            "timestamp": message.timestamp if message.timestamp is not None else now,
            "tokens": message.tokens,
            "model": message.model,
            "status": message.status,
        }
        for index, message in enumerate(messages)
    ]


async def _insert_messages(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    # One executemany INSERT: 1,000 messages are one round trip, not 1,000.
    if rows:
        await session.exec(insert(Message), params=rows)


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


class MessageView(Protocol):
    """A stored message as the faces read it: an ORM row or a plain result row."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def tokens(self) -> int | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def conversation_pk(self) -> str: ...


_MESSAGES = cast(Table, Message.__table__)  # type: ignore[attr-defined]
_MESSAGE_COLUMNS = [_MESSAGES.c[name] for name in (
    "conversation_pk", "id", "role", "content", "timestamp", "tokens", "model", "status")]


async def messages_for(
    session: AsyncSession, conversation_pks: Sequence[str]
) -> dict[str, list[MessageView]]:
    """Messages of several conversations in one query (the DataLoader's batch function).

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
    for message in rows.all():
        grouped[message.conversation_pk].append(message)
    return grouped


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
    await summaries.refresh(session, conversation)
    await session.commit()
    return ConversationWithMessages(conversation, await _load_messages(session, conversation.pk))


async def _load_messages(session: AsyncSession, conversation_pk: str) -> list[MessageView]:
    return (await messages_for(session, [conversation_pk])).get(conversation_pk, [])


async def get(
    session: AsyncSession, actor: User, *, conversation_id: str
) -> ConversationWithMessages:
    conversation = await _owned(session, actor, conversation_id)
    return ConversationWithMessages(conversation, await _load_messages(session, conversation.pk))


async def find(session: AsyncSession, actor: User, *, conversation_id: str) -> Conversation | None:
    try:
        return await _owned(session, actor, conversation_id)
    except ConversationNotFound:
        return None


async def replace(
    session: AsyncSession, actor: User, *, conversation_id: str, data: ConversationInput
) -> ConversationWithMessages:
    """PUT semantics: title, model, system prompt and the whole message list are replaced;
    createdAt is kept and updatedAt set by the server."""
    data = _validated(data)
    conversation = await _owned(session, actor, conversation_id)
    now = max(now_ms(), conversation.updated_at + 1)
    conversation.title = data.title
    conversation.model = data.model
    conversation.system_prompt = data.system_prompt
    conversation.updated_at = now
    session.add(conversation)
    await session.exec(delete(Message).where(col(Message.conversation_pk) == conversation.pk))
    await _insert_messages(session, _message_rows(conversation.pk, data.messages, 0, now))
    await summaries.refresh(session, conversation)
    await session.commit()
    return ConversationWithMessages(conversation, await _load_messages(session, conversation.pk))


async def remove(session: AsyncSession, actor: User, *, conversation_id: str) -> None:
    conversation = await _owned(session, actor, conversation_id)
    await session.exec(delete(Message).where(col(Message.conversation_pk) == conversation.pk))
    await session.delete(conversation)
    await session.commit()


async def append_messages(
    session: AsyncSession, actor: User, *, conversation_id: str, messages: list[MessageInput]
) -> list[Message]:
    """Append messages at the end (used by chat to keep replies on the server)."""
    for message in messages:
        validation.role(message.role)
        validation.bounded_text(
            message.content, field="content", limit=validation.MESSAGE_CONTENT_MAX
        )
    conversation = await _owned(session, actor, conversation_id)
    last = (
        await session.exec(
            select(func.max(Message.position)).where(Message.conversation_pk == conversation.pk)
        )
    ).one()
    now = now_ms()
    rows = _message_rows(conversation.pk, messages, (last if last is not None else -1) + 1, now)
    await _insert_messages(session, rows)
    conversation.updated_at = max(now, conversation.updated_at + 1)
    session.add(conversation)
    await session.flush()
    await summaries.refresh(session, conversation)
    await session.commit()
    ids = [str(row["id"]) for row in rows]
    stored = await session.exec(
        select(Message).where(
            Message.conversation_pk == conversation.pk, col(Message.id).in_(ids)
        ).order_by(col(Message.position))
    )
    return list(stored.all())


def cursor_of(conversation: Conversation) -> str:
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


async def list_page(
    session: AsyncSession, actor: User, *, first: int = 50, after: str | None = None
) -> ConversationPage:
    """The caller's conversations, newest `updatedAt` first, keyset-paged (stable while
    conversations change, and an index scan however deep the page)."""
    if not 0 <= first <= PAGE_MAX:
        raise ValidationFailed(f"first must be between 0 and {PAGE_MAX}", field="first")
    query = select(Conversation).where(Conversation.user_id == actor.id)
    if after:
        updated_at, pk = _decode_cursor(after)
        query = query.where(
            or_(
                col(Conversation.updated_at) < updated_at,
                and_(col(Conversation.updated_at) == updated_at, col(Conversation.pk) < pk),
            )
        )
    query = query.order_by(col(Conversation.updated_at).desc(), col(Conversation.pk).desc())
    rows = list((await session.exec(query.limit(first + 1))).all())
    total = (
        await session.exec(
            select(func.count()).select_from(Conversation).where(Conversation.user_id == actor.id)
        )
    ).one()
    items = rows[:first]
    return ConversationPage(
        items=items,
        has_next_page=len(rows) > first,
        end_cursor=cursor_of(items[-1]) if items else None,
        total_count=int(total),
    )


async def list_all(session: AsyncSession, actor: User) -> list[ConversationWithMessages]:
    """Every conversation of the caller with its messages, in two queries (the REST list)."""
    rows = list(
        (
            await session.exec(
                select(Conversation)
                .where(Conversation.user_id == actor.id)
                .order_by(col(Conversation.updated_at).desc(), col(Conversation.pk).desc())
            )
        ).all()
    )
    messages = await messages_for(session, [row.pk for row in rows])
    return [ConversationWithMessages(row, messages.get(row.pk, [])) for row in rows]


async def count_all(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(Conversation))).one())
