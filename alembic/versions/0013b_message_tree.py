"""message tree: parent_position and active (branches, issue 13)

Existing conversations are linear: each message's parent becomes the message before it, and
every message is on the active path, so every conversation reads exactly as before.

Revision ID: 0013b
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013b"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("parent_position", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("active", sa.Boolean(), nullable=False,
                                        server_default=sa.true()))
    # One statement on both databases; the (conversation_pk, position) index serves the
    # correlated MAX().
    op.execute(
        "UPDATE messages SET parent_position = ("
        " SELECT MAX(earlier.position) FROM messages AS earlier"
        " WHERE earlier.conversation_pk = messages.conversation_pk"
        " AND earlier.position < messages.position)"
    )


def downgrade() -> None:
    # Only the active path survives a downgrade (the old schema has no branches).
    op.execute("DELETE FROM messages WHERE active = false")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("active")
        batch_op.drop_column("parent_position")
