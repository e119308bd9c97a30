"""message tree: parent_position and active (branches, issue 13)

Existing conversations are linear: each message's parent becomes the message before it, and
every message is on the active path, so every conversation reads exactly as before.

Positions become unique per conversation (parents are referred to by position). The old code
could, in a race between two appends, give two messages one position: those are renumbered
first (in their order, ties by row id), which changes nothing a client sees.

Revision ID: 0013b
Revises: 0012a
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013b"
down_revision: str | None = "0012a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_messages_conversation_position"


def upgrade() -> None:
    # 0, 1, 2 … in each conversation; rows already numbered so are not written.
    op.execute(
        "UPDATE messages SET position = ranked.number FROM ("
        " SELECT pk, ROW_NUMBER() OVER (PARTITION BY conversation_pk"
        " ORDER BY position, pk) - 1 AS number FROM messages) AS ranked"
        " WHERE messages.pk = ranked.pk AND messages.position <> ranked.number"
    )
    op.drop_index(INDEX, table_name="messages")
    op.create_index(INDEX, "messages", ["conversation_pk", "position"], unique=True)
    op.add_column("messages", sa.Column("parent_position", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("active", sa.Boolean(), nullable=False,
                                        server_default=sa.true()))
    op.execute("UPDATE messages SET parent_position = position - 1 WHERE position > 0")


def downgrade() -> None:
    # Only the active path survives a downgrade (the old schema has no branches).
    op.execute("DELETE FROM messages WHERE active = false")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("active")
        batch_op.drop_column("parent_position")
    op.drop_index(INDEX, table_name="messages")
    op.create_index(INDEX, "messages", ["conversation_pk", "position"], unique=False)
