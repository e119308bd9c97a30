"""Share links: a public, read-only snapshot of a conversation behind an unguessable token.

The snapshot is taken when the owner shares (and refreshed when they share again, keeping the
token): later messages do not appear, and nothing private is in it — no ids, no user, no
email, no system prompt or system messages; only the title and each message's role, content
and timestamp. Revoking deletes it; deleting the conversation or the account does too.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Share, User
from resolvers import conversations
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import NotFound

TOKEN_BYTES = 32  # 256 bits from the OS's CSPRNG
PUBLIC_ROLES = frozenset({"user", "assistant"})
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,64}")


class ShareNotFound(NotFound):
    default_message = "Shared conversation not found"


@dataclass(slots=True, frozen=True)
class ShareLink:
    token: str
    shared_at: int

    @property
    def url(self) -> str:
        return f"/api/shared/{self.token}"


@dataclass(slots=True, frozen=True)
class SharedMessage:
    role: str
    content: str
    timestamp: int


@dataclass(slots=True, frozen=True)
class SharedConversation:
    title: str
    messages: list[SharedMessage]
    shared_at: int


async def share(session: AsyncSession, actor: User, *, conversation_id: str) -> ShareLink:
    """Snapshot the conversation as it is now and return its link; sharing again refreshes
    the snapshot and keeps the token."""
    stored = await conversations.get(session, actor, conversation_id=conversation_id)
    snapshot = json.dumps([
        {"role": m.role, "content": m.content, "timestamp": m.timestamp}
        for m in stored.messages if m.role in PUBLIC_ROLES
    ], ensure_ascii=False)
    row = await session.get(Share, stored.conversation.pk)
    now = now_ms()
    if row is None:
        row = Share(conversation_pk=stored.conversation.pk,
                    token=secrets.token_urlsafe(TOKEN_BYTES), title=stored.conversation.title,
                    snapshot=snapshot, shared_at=now)
    else:
        row.title, row.snapshot, row.shared_at = stored.conversation.title, snapshot, now
    session.add(row)
    await session.commit()
    return ShareLink(row.token, row.shared_at)


async def link_of(session: AsyncSession, actor: User, *, conversation_id: str) -> ShareLink | None:
    """The conversation's live link, if it is shared."""
    conversation = await conversations.find(session, actor, conversation_id=conversation_id)
    if conversation is None:
        raise conversations.ConversationNotFound()
    row = await session.get(Share, conversation.pk)
    return ShareLink(row.token, row.shared_at) if row else None


async def revoke(session: AsyncSession, actor: User, *, conversation_id: str) -> None:
    """Delete the link: its URL answers 404 from now on. A conversation that is not shared
    answers ShareNotFound."""
    conversation = await conversations.find(session, actor, conversation_id=conversation_id)
    if conversation is None:
        raise conversations.ConversationNotFound()
    result = await session.exec(
        delete(Share).where(col(Share.conversation_pk) == conversation.pk))
    if not result.rowcount:
        raise ShareNotFound("This conversation is not shared")
    await session.commit()


async def shared(session: AsyncSession, *, token: str) -> SharedConversation:
    """The public snapshot behind a token; no authentication. Unknown or revoked → NotFound."""
    if not _TOKEN_RE.fullmatch(token):
        raise ShareNotFound()
    row = (await session.exec(select(Share).where(Share.token == token))).first()
    if row is None:
        raise ShareNotFound()
    messages = [SharedMessage(role=m["role"], content=m["content"], timestamp=m["timestamp"])
                for m in json.loads(row.snapshot)]
    return SharedConversation(title=row.title, messages=messages, shared_at=row.shared_at)
