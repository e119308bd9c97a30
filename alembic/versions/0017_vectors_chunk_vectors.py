"""vectors of file passages, when EMBEDDING_MODEL is set (issue 16)

Revision ID: 0017_vectors
Revises: 0016a

One row per passage: `file_chunk_vectors(chunk_pk → file_chunks.pk ON DELETE CASCADE, file_id,
user_id, model, embedding)`. The size of a vector is not fixed in the schema (it is the
configured model's, unknown here); `model` says which model made it, and retrieval compares
only vectors of the model configured now. Ranking is exact (every vector of the caller's named
files is compared), so no index on the vectors is needed.

SQLite: `embedding` is a BLOB of float32s, the format sqlite-vec's functions read.
PostgreSQL: `embedding vector` (pgvector, without dimensions) — created only where the
extension can be enabled; elsewhere nothing is created and retrieval stays full-text
(resolvers/files/vectors.py says so at start, and creates the table itself once pgvector is
installed). SQL-only: resolvers/kit/migrate.py keeps autogenerate away from it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017_vectors'
down_revision: str | None = '0016a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = """
    chunk_pk INTEGER PRIMARY KEY REFERENCES file_chunks (pk) ON DELETE CASCADE,
    file_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(40) NOT NULL,
    model VARCHAR(255) NOT NULL,
    embedding {type} NOT NULL"""
INDEX = "CREATE INDEX ix_file_chunk_vectors_file ON file_chunk_vectors (file_id, model)"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        op.execute(f"CREATE TABLE file_chunk_vectors ({COLUMNS.format(type='BLOB')})")
        op.execute(INDEX)
        return
    available = bind.execute(sa.text(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is None:
        return
    try:
        with bind.begin_nested():  # a role that may not create it must not fail the migration
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        return
    op.execute(f"CREATE TABLE file_chunk_vectors ({COLUMNS.format(type='vector')})")
    op.execute(INDEX)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS file_chunk_vectors")
