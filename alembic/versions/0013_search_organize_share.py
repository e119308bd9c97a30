"""search index, organize (pinned, archived, tags, summary), share links

Upgrades a populated database: new columns get defaults, the summary columns and the search
index are filled from the rows already there.

Revision ID: 0013a
Revises: 0013b
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013a"
down_revision: str | None = "0013b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREVIEW_CHARS = 200

# The same ranges as resolvers/kit/textsearch.py (frozen here: a migration must not change
# when the code does).
CJK_RANGES = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0002fa1f"
)

# SQLite: FTS5 tables without content of their own (the text is in messages/conversations);
# rows are added and removed by triggers, so every write — from any code path — updates the
# index in its own transaction. `owner` holds the user as one token so that a search walks
# only the caller's rows. The trigger text comes from chat_search_text(), a function every
# connection registers (resolvers/kit/db.py).
TOKENIZE = "unicode61 remove_diacritics 0"
OWNER = "'u' || hex({user_id})"
SQLITE_UP = [
    f"""CREATE VIRTUAL TABLE message_search USING fts5(
        owner, body, content='', columnsize=0, prefix='1 2 3', tokenize="{TOKENIZE}")""",
    f"""CREATE VIRTUAL TABLE title_search USING fts5(
        owner, body, content='', columnsize=0, prefix='1 2 3', tokenize="{TOKENIZE}")""",
    # A stable integer per conversation for title_search's rowid (conversations.pk is text,
    # and SQLite may renumber an implicit rowid on VACUUM).
    """CREATE TABLE title_search_keys (
        id INTEGER PRIMARY KEY,
        conversation_pk VARCHAR(36) NOT NULL UNIQUE)""",
    f"""CREATE TRIGGER message_search_ai AFTER INSERT ON messages BEGIN
        INSERT INTO message_search(rowid, owner, body)
        SELECT new.pk, {OWNER.format(user_id='c.user_id')}, chat_search_text(new.content)
        FROM conversations c WHERE c.pk = new.conversation_pk;
    END""",
    f"""CREATE TRIGGER message_search_ad AFTER DELETE ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, owner, body)
        SELECT 'delete', old.pk, {OWNER.format(user_id='c.user_id')},
               chat_search_text(old.content)
        FROM conversations c WHERE c.pk = old.conversation_pk;
    END""",
    f"""CREATE TRIGGER message_search_au AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, owner, body)
        SELECT 'delete', old.pk, {OWNER.format(user_id='c.user_id')},
               chat_search_text(old.content)
        FROM conversations c WHERE c.pk = old.conversation_pk;
        INSERT INTO message_search(rowid, owner, body)
        SELECT new.pk, {OWNER.format(user_id='c.user_id')}, chat_search_text(new.content)
        FROM conversations c WHERE c.pk = new.conversation_pk;
    END""",
    f"""CREATE TRIGGER title_search_ai AFTER INSERT ON conversations BEGIN
        INSERT INTO title_search_keys(conversation_pk) VALUES (new.pk);
        INSERT INTO title_search(rowid, owner, body)
        VALUES (last_insert_rowid(), {OWNER.format(user_id='new.user_id')},
                chat_search_text(new.title));
    END""",
    f"""CREATE TRIGGER title_search_au AFTER UPDATE OF title ON conversations BEGIN
        INSERT INTO title_search(title_search, rowid, owner, body)
        SELECT 'delete', k.id, {OWNER.format(user_id='old.user_id')},
               chat_search_text(old.title)
        FROM title_search_keys k WHERE k.conversation_pk = old.pk;
        INSERT INTO title_search(rowid, owner, body)
        SELECT k.id, {OWNER.format(user_id='new.user_id')}, chat_search_text(new.title)
        FROM title_search_keys k WHERE k.conversation_pk = new.pk;
    END""",
    # Before the row goes (also by ON DELETE CASCADE from users): its messages leave the index
    # while the owner can still be looked up, then its title.
    f"""CREATE TRIGGER title_search_bd BEFORE DELETE ON conversations BEGIN
        DELETE FROM messages WHERE conversation_pk = old.pk;
        INSERT INTO title_search(title_search, rowid, owner, body)
        SELECT 'delete', k.id, {OWNER.format(user_id='old.user_id')},
               chat_search_text(old.title)
        FROM title_search_keys k WHERE k.conversation_pk = old.pk;
        DELETE FROM title_search_keys WHERE conversation_pk = old.pk;
    END""",
    # What is already stored.
    "INSERT INTO title_search_keys(conversation_pk) SELECT pk FROM conversations",
    f"""INSERT INTO title_search(rowid, owner, body)
        SELECT k.id, {OWNER.format(user_id='c.user_id')}, chat_search_text(c.title)
        FROM title_search_keys k JOIN conversations c ON c.pk = k.conversation_pk""",
    f"""INSERT INTO message_search(rowid, owner, body)
        SELECT m.pk, {OWNER.format(user_id='c.user_id')}, chat_search_text(m.content)
        FROM messages m JOIN conversations c ON c.pk = m.conversation_pk""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS title_search_bd",
    "DROP TRIGGER IF EXISTS title_search_au",
    "DROP TRIGGER IF EXISTS title_search_ai",
    "DROP TRIGGER IF EXISTS message_search_au",
    "DROP TRIGGER IF EXISTS message_search_ad",
    "DROP TRIGGER IF EXISTS message_search_ai",
    "DROP TABLE IF EXISTS title_search_keys",
    "DROP TABLE IF EXISTS title_search",
    "DROP TABLE IF EXISTS message_search",
]

# PostgreSQL: full-text GIN indexes (over a generated column for messages, an expression for
# titles), kept by PostgreSQL itself in every writing transaction. The 'simple' configuration (no stemming, no stop words: any language);
# the function sets every CJK character apart, as resolvers/kit/textsearch.py does for SQLite.
PG_UP = [
    f"""CREATE FUNCTION chat_search_text(t text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
        AS $$ SELECT pg_catalog.regexp_replace(
                   pg_catalog.regexp_replace(t, '[^[:alnum:]]+', ' ', 'g'),
                   '([{CJK_RANGES}])', ' \\1 ', 'g') $$""",
    # Stored, so that checking a row (a phrase's recheck, a newest-first scan) reads the
    # words instead of cutting the text again.
    """ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS
        (to_tsvector('simple'::regconfig, chat_search_text(content))) STORED""",
    "CREATE INDEX ix_messages_search ON messages USING gin (search_vector)",
    """CREATE INDEX ix_conversations_search ON conversations
        USING gin (to_tsvector('simple'::regconfig, chat_search_text(title)))""",
]
PG_DOWN = [
    "DROP INDEX IF EXISTS ix_conversations_search",
    "DROP INDEX IF EXISTS ix_messages_search",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
    "DROP FUNCTION IF EXISTS chat_search_text(text)",
]


def upgrade() -> None:
    op.add_column("conversations", sa.Column(
        "pinned", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("conversations", sa.Column(
        "archived", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("conversations", sa.Column(
        "message_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("conversations", sa.Column("last_message_preview", sa.Text(), nullable=True))
    op.execute(f"""UPDATE conversations SET
        message_count = (SELECT count(*) FROM messages m WHERE m.conversation_pk = conversations.pk),
        last_message_preview = (SELECT substr(m.content, 1, {PREVIEW_CHARS}) FROM messages m
            WHERE m.conversation_pk = conversations.pk ORDER BY m.position DESC LIMIT 1)""")

    op.create_table(
        "conversation_tags",
        sa.Column("conversation_pk", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["conversation_pk"], ["conversations.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("conversation_pk", "tag"),
    )
    op.create_index("ix_conversation_tags_tag", "conversation_tags", ["tag", "conversation_pk"])
    op.create_table(
        "shares",
        sa.Column("conversation_pk", sa.String(length=36), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("shared_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_pk"], ["conversations.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("conversation_pk"),
        sa.UniqueConstraint("token"),
    )

    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else PG_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else PG_DOWN:
        op.execute(statement)
    op.drop_table("shares")
    op.drop_index("ix_conversation_tags_tag", table_name="conversation_tags")
    op.drop_table("conversation_tags")
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), never batch mode: batch mode rebuilds
    # the table, and dropping the old `conversations` with foreign keys on would cascade to
    # every message.
    for column in ("last_message_preview", "message_count", "archived", "pinned"):
        op.execute(f"ALTER TABLE conversations DROP COLUMN {column}")
