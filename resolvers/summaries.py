"""The sidebar's summary of a conversation — `message_count` and `last_message_preview` —
stored on the conversation row, so that a chat list reads no message bodies.

Every operation that writes messages or a title calls `conversations.written()` in its own
transaction, before it commits (create, replace, append, branches, titles, imports), and that
calls `refresh_pk()` here. With branches, the summary is the active path's: the messages every
legacy shape shows.
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
    message_count = (SELECT count(*) FROM messages m
                     WHERE m.conversation_pk = :pk AND m.active),
    last_message_preview = (SELECT substr(m.content, 1, {PREVIEW_CHARS}) FROM messages m
                            WHERE m.conversation_pk = :pk AND m.active
                            ORDER BY m.position DESC LIMIT 1)
WHERE pk = :pk
RETURNING message_count, last_message_preview
""")


async def refresh_pk(session: AsyncSession, conversation_pk: str) -> None:
    """`refresh` by primary key: the conversation object, if this session holds it, gets
    the new values too; nothing happens for a conversation that is gone."""
    await session.flush()  # the statement below must see the ORM's pending rows
    connection = await session.connection()
    row = (await connection.execute(_REFRESH, {"pk": conversation_pk})).one_or_none()
    if row is None:
        return
    held = session.identity_map.get(session.identity_key(Conversation, conversation_pk))
    if isinstance(held, Conversation):
        set_committed_value(held, "message_count", row.message_count)
        set_committed_value(held, "last_message_preview", row.last_message_preview)

