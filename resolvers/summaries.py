"""The sidebar's summary of a conversation — `message_count` and `last_message_preview` —
stored on the conversation row, so that a chat list reads no message bodies.

Every operation that writes messages calls `refresh()` in its own transaction, before it
commits (conversations.create/replace/append_messages; imports and branches do the same).
The search index needs no call: the database keeps it (see resolvers/search.py).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation

PREVIEW_CHARS = 200

_REFRESH = text(f"""
UPDATE conversations SET
    message_count = (SELECT count(*) FROM messages m WHERE m.conversation_pk = :pk),
    last_message_preview = (SELECT substr(m.content, 1, {PREVIEW_CHARS}) FROM messages m
                            WHERE m.conversation_pk = :pk ORDER BY m.position DESC LIMIT 1)
WHERE pk = :pk
RETURNING message_count, last_message_preview
""")


async def refresh(session: AsyncSession, conversation: Conversation) -> None:
    """Recount a conversation's messages and take its newest one's preview: one statement in
    the caller's transaction (the caller commits); `conversation` gets the new values."""
    connection = await session.connection()
    row = (await connection.execute(_REFRESH, {"pk": conversation.pk})).one()
    set_committed_value(conversation, "message_count", row.message_count)
    set_committed_value(conversation, "last_message_preview", row.last_message_preview)
