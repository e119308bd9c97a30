"""Migration 0016a (files, their chunks and index; citations on messages) upgrades a populated
database from the schema before it: every conversation reads as before (no citations), and
files uploaded afterwards are indexed and found. SQLite and PostgreSQL; and back down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from models import FileChunk, StoredFile, User
from resolvers import conversations
from resolvers.files import retrieval
from resolvers.kit import textsearch
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from tests.test_migration_message_tree import downgrade, empty_url, populate

BEFORE = "0013b"  # the schema this migration upgrades
__all__ = ["empty_url"]  # the fixture, shared with the message tree's migration test


@pytest.fixture
async def database(empty_url: str) -> AsyncIterator[Database]:
    db = Database(empty_url)
    try:
        yield db
    finally:
        await db.dispose()


async def test_a_populated_database_upgrades_and_indexes_new_files(
        database: Database, tmp_path: Path) -> None:
    await upgrade(database.engine, "0001")
    expected = await populate(database)  # the rows the 0001 schema holds, then up to 0013b
    await upgrade(database.engine, BEFORE)
    await upgrade(database.engine)  # → head
    async with database.session() as session:
        for key, messages in expected.items():
            user_id, conversation_id = key.split("/")
            actor = await session.get(User, user_id)
            assert actor is not None
            stored = await conversations.get(session, actor, conversation_id=conversation_id)
            assert [(m.id, m.role, m.content) for m in stored.messages] == messages
            assert all(m.citations is None for m in stored.messages)
        actor = await session.get(User, "u1")
        assert actor is not None
        session.add(StoredFile(id="f1", user_id="u1", filename="a.md", content_type="text/markdown",
                               kind="markdown", size=10, status="ready", chunks=1,
                               created_at=1))
        await session.flush()
        body = "Kingfishers dive for fish 翠鸟"
        session.add(FileChunk(file_id="f1", user_id="u1", ordinal=0, text=body,
                              search_text=textsearch.index_text(body) or ""))
        await session.commit()
        found = await retrieval.search(session, actor, file_ids=["f1"], question="翠鸟 dive")
        assert [p.file_id for p in found] == ["f1"]
    await downgrade(database.engine, BEFORE)
    async with database.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    assert count == sum(len(m) for m in expected.values())
