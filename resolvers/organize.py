"""Organizing conversations: pin, archive, tag, rename (PATCH), and the filtered, paged list
a sidebar reads — from the conversation rows alone, never a message body."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, and_, delete, exists, func, insert, or_
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation, ConversationTag, User
from resolvers import conversations, validation
from resolvers.conversations import ConversationView
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import ValidationFailed

TAG_MAX_CHARS = 64
TAGS_MAX = 20
PAGE_MAX = conversations.PAGE_MAX
_CONVERSATIONS = cast(Table, Conversation.__table__)  # type: ignore[attr-defined]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(slots=True)
class ConversationPatch:
    """Only the fields that are set change; `system_prompt=None` clears the prompt."""

    title: str | _Unset | None = UNSET
    model: str | _Unset | None = UNSET
    system_prompt: str | _Unset | None = UNSET
    pinned: bool | _Unset | None = UNSET
    archived: bool | _Unset | None = UNSET
    tags: list[str] | _Unset | None = UNSET


PATCH_FIELDS = ("title", "model", "system_prompt", "pinned", "archived", "tags")


@dataclass(slots=True, frozen=True)
class Filters:
    archived: bool | None = None
    pinned: bool | None = None
    tag: str | None = None


@dataclass(slots=True)
class Organized:
    """A conversation row with its tags (no messages)."""

    conversation: ConversationView
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OrganizedPage:
    items: list[Organized]
    has_next_page: bool
    end_cursor: str | None
    total_count: int


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Trimmed, non-empty, at most TAG_MAX_CHARS each and TAGS_MAX in all; duplicates go;
    sorted (tags are a set: every answer lists them in the same order)."""
    cleaned: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if not tag or len(tag) > TAG_MAX_CHARS or any(ord(c) < 32 for c in tag):
            raise ValidationFailed(
                f"Each tag must be 1-{TAG_MAX_CHARS} characters, without control characters",
                field="tags")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > TAGS_MAX:
        raise ValidationFailed(f"A conversation has at most {TAGS_MAX} tags", field="tags")
    return sorted(cleaned)


async def tags_for(session: AsyncSession, conversation_pks: Sequence[str]) -> dict[str, list[str]]:
    """Tags of several conversations in one query (callers pass pks they already resolved
    for the actor)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    if not conversation_pks:
        return grouped
    rows = await session.exec(
        select(ConversationTag.conversation_pk, ConversationTag.tag)
        .where(col(ConversationTag.conversation_pk).in_(list(conversation_pks)))
    )
    for pk, tag in rows.all():
        grouped[pk].append(tag)
    for tags in grouped.values():
        tags.sort()  # by code point, whatever the database's collation
    return grouped


async def patch(
    session: AsyncSession, actor: User, *, conversation_id: str, changes: ConversationPatch
) -> Organized:
    """Change title, model, system prompt, pinned, archived or tags; messages are untouched.
    A new title, model or system prompt moves `updatedAt`; pinning, archiving and tagging do
    not (the list keeps its order)."""
    for name in ("title", "model", "pinned", "archived", "tags"):
        if getattr(changes, name) is None:
            raise ValidationFailed(f"{name} cannot be null", field=name)
    if isinstance(changes.title, str):
        validation.bounded_text(changes.title, field="title", limit=validation.TITLE_MAX)
    if isinstance(changes.model, str):
        validation.bounded_text(changes.model, field="model", limit=validation.MODEL_NAME_MAX)
    if isinstance(changes.system_prompt, str):
        validation.bounded_text(changes.system_prompt, field="systemPrompt",
                                limit=validation.SYSTEM_PROMPT_MAX)
    tags = clean_tags(changes.tags) if isinstance(changes.tags, list) else None
    conversation = await conversations.find(session, actor, conversation_id=conversation_id)
    if conversation is None:
        raise conversations.ConversationNotFound()
    content_changed = False
    if isinstance(changes.title, str) and changes.title != conversation.title:
        conversation.title, content_changed = changes.title, True
    if isinstance(changes.model, str) and changes.model != conversation.model:
        conversation.model, content_changed = changes.model, True
    if (not isinstance(changes.system_prompt, _Unset)
            and changes.system_prompt != conversation.system_prompt):
        conversation.system_prompt, content_changed = changes.system_prompt, True
    if isinstance(changes.pinned, bool):
        conversation.pinned = changes.pinned
    if isinstance(changes.archived, bool):
        conversation.archived = changes.archived
    if content_changed:
        conversation.updated_at = max(now_ms(), conversation.updated_at + 1)
    session.add(conversation)
    if tags is not None:
        await session.exec(delete(ConversationTag).where(
            col(ConversationTag.conversation_pk) == conversation.pk))
        if tags:
            await session.exec(insert(ConversationTag), params=[
                {"conversation_pk": conversation.pk, "tag": tag} for tag in tags])
    await session.commit()
    stored = tags if tags is not None else (await tags_for(session, [conversation.pk]))[
        conversation.pk]
    return Organized(conversation, list(stored))


def _filtered(query: object, actor: User, filters: Filters) -> object:
    conditions = [col(Conversation.user_id) == actor.id]
    if filters.archived is not None:
        conditions.append(col(Conversation.archived) == filters.archived)
    if filters.pinned is not None:
        conditions.append(col(Conversation.pinned) == filters.pinned)
    if filters.tag is not None:
        conditions.append(exists().where(
            col(ConversationTag.conversation_pk) == col(Conversation.pk),
            col(ConversationTag.tag) == filters.tag))
    return query.where(*conditions)  # type: ignore[attr-defined]


async def count(session: AsyncSession, actor: User, *, filters: Filters = Filters()) -> int:
    """How many of the caller's conversations match `filters`."""
    counted = _filtered(select(func.count()).select_from(Conversation), actor, filters)
    return int((await session.exec(counted)).one())  # type: ignore[call-overload]


async def page(
    session: AsyncSession, actor: User, *, filters: Filters = Filters(),
    first: int | None = 50, after: str | None = None, with_total: bool = True,
    names: tuple[str, str] = ("first", "after"), with_tags: bool = True,
) -> OrganizedPage:
    """The caller's conversations matching `filters`, newest `updatedAt` first, keyset-paged
    (`first=None`: all of them). Reads conversation rows and tags only. `names` are the
    face's names for `first` and `after` (REST: limit, cursor), for error messages.
    `with_total=False`: `total_count` is only this page's size (see `count`);
    `with_tags=False`: no tags are read (every item's `tags` is empty; GraphQL loads them
    per field, only when asked)."""
    if first is not None and not 0 <= first <= PAGE_MAX:
        raise ValidationFailed(f"{names[0]} must be between 0 and {PAGE_MAX}", field=names[0])
    if filters.tag is not None and len(filters.tag) > TAG_MAX_CHARS:
        raise ValidationFailed(f"A tag has at most {TAG_MAX_CHARS} characters", field="tag")
    # Plain rows of the table's columns (same attribute names as the model): a list only
    # reads them, and ORM instances cost more than the query (bench/, issue 11).
    query = _filtered(sa_select(*_CONVERSATIONS.columns), actor, filters)
    if after:
        try:
            updated_at, pk = conversations._decode_cursor(after)
        except ValidationFailed as exc:
            raise ValidationFailed("Invalid cursor", field=names[1]) from exc
        query = query.where(  # type: ignore[attr-defined]
            or_(col(Conversation.updated_at) < updated_at,
                and_(col(Conversation.updated_at) == updated_at, col(Conversation.pk) < pk)))
    query = query.order_by(  # type: ignore[attr-defined]
        col(Conversation.updated_at).desc(), col(Conversation.pk).desc())
    if first is not None:
        query = query.limit(first + 1)
    connection = await session.connection()
    rows = cast(list[ConversationView], (await connection.execute(query)).all())
    items = rows if first is None else rows[:first]
    total = len(rows)
    if with_total and (first is not None or after):
        total = await count(session, actor, filters=filters)
    tags = await tags_for(session, [row.pk for row in items]) if with_tags else {}
    return OrganizedPage(
        items=[Organized(row, tags.get(row.pk, [])) for row in items],
        has_next_page=first is not None and len(rows) > first,
        end_cursor=conversations.cursor_of(items[-1]) if items else None,
        total_count=total,
    )
