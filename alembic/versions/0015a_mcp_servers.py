"""MCP servers registered by admins (issue 15)

Revision ID: 0015a
Revises: 0013a

A new table only: existing rows are untouched. Tool calls and results are stored as
messages with role `tool` (the messages table already holds any role).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015a'
down_revision: str | None = '0013a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'mcp_servers',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('transport', sa.String(length=8), nullable=False),
        sa.Column('command', sa.Text(), nullable=True),
        sa.Column('args', sa.Text(), nullable=False),
        sa.Column('env', sa.Text(), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('headers', sa.Text(), nullable=False),
        sa.Column('visible', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('mcp_servers')
