"""files and their chunks, indexed for retrieval; replies keep their citations (issue 16)

Revision ID: 0016a
Revises: 0015a

SQLite: an FTS5 table `file_chunk_search` (rowid = file_chunks.pk) kept in step by triggers.
PostgreSQL: a stored generated tsvector column over `search_text` with a GIN index.
Existing rows are untouched (two new tables; messages gain a nullable column).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0016a'
down_revision: str | None = '0015a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE = [
    "CREATE VIRTUAL TABLE file_chunk_search USING fts5(body, tokenize = 'unicode61')",
    """CREATE TRIGGER file_chunk_search_ai AFTER INSERT ON file_chunks BEGIN
        INSERT INTO file_chunk_search(rowid, body) VALUES (new.pk, new.search_text);
    END""",
    """CREATE TRIGGER file_chunk_search_ad AFTER DELETE ON file_chunks BEGIN
        DELETE FROM file_chunk_search WHERE rowid = old.pk;
    END""",
]
POSTGRES = [
    """ALTER TABLE file_chunks ADD COLUMN search_vector tsvector GENERATED ALWAYS AS
        (to_tsvector('simple'::regconfig, search_text)) STORED""",
    "CREATE INDEX ix_file_chunks_search ON file_chunks USING gin (search_vector)",
]


def upgrade() -> None:
    op.create_table(
        'files',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_files_user_created', 'files', ['user_id', 'created_at'])
    op.create_table(
        'file_chunks',
        sa.Column('pk', sa.Integer(), nullable=False),
        sa.Column('file_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('ordinal', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('search_text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('pk'),
    )
    op.create_index('ix_file_chunks_file', 'file_chunks', ['file_id', 'ordinal'])
    op.create_index(op.f('ix_file_chunks_user_id'), 'file_chunks', ['user_id'])
    op.add_column('messages', sa.Column('citations', sa.JSON(), nullable=True))
    for statement in (SQLITE if op.get_bind().dialect.name == 'sqlite' else POSTGRES):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for trigger in ('file_chunk_search_ai', 'file_chunk_search_ad'):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS file_chunk_search")
    op.drop_table('file_chunks')
    op.drop_index('ix_files_user_created', table_name='files')
    op.drop_table('files')
    # A plain DROP COLUMN (SQLite 3.35+), never a batch recreate of messages.
    op.drop_column('messages', 'citations')
