"""message ids unique per conversation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:30:00

Before the unique index can exist, a database that already holds duplicates is cleaned up:
- exact copies (same id, role, content and timestamp in one conversation) keep their first
  occurrence (by position) and the rest are deleted — a client that saved one message twice;
- different messages sharing an id keep it on the first occurrence, and each later one gets
  `<id>-dup<pk>` (pk is the row's unique integer key), so no message is lost.
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows that have an earlier row (by position, then pk) with the same id in the same
# conversation; {same} adds conditions for "an exact copy".
_LATER_DUPLICATES = """
SELECT later.pk FROM messages later
JOIN messages earlier
  ON earlier.conversation_pk = later.conversation_pk AND earlier.id = later.id {same}
 AND (earlier.position < later.position
      OR (earlier.position = later.position AND earlier.pk < later.pk))
"""
_SAME_MESSAGE = ("AND earlier.role = later.role AND earlier.content = later.content "
                 "AND earlier.timestamp = later.timestamp")


def upgrade() -> None:
    op.execute("DELETE FROM messages WHERE pk IN ("
               + _LATER_DUPLICATES.format(same=_SAME_MESSAGE) + ")")
    # Ids are at most 128 characters: 100 of the old id leave room for "-dup" and the pk.
    op.execute("UPDATE messages SET id = substr(id, 1, 100) || '-dup' || CAST(pk AS TEXT) "
               "WHERE pk IN (" + _LATER_DUPLICATES.format(same="") + ")")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('uq_messages_conversation_id', ['conversation_pk', 'id'],
                              unique=True)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('uq_messages_conversation_id')
