"""The unique-message-id migration (0002) upgrades a database that already holds data,
including the duplicates that the old schema accepted — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade


async def _insert(db: Database, sql: str, rows: list[dict[str, object]]) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(sql), rows)


async def test_upgrade_deduplicates_message_ids_of_a_populated_database(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        await upgrade(db.engine, "0001")
        await _insert(db, "INSERT INTO users (id, username, username_key, email, password_hash,"
                      " created_at, token_generation) VALUES (:id, :id, :id, :email, 'x', :at, 0)",
                      [{"id": "user_1", "email": "a@example.com", "at": datetime.now(UTC)}])
        await _insert(db, "INSERT INTO conversations (pk, id, user_id, title, model, created_at,"
                      " updated_at) VALUES (:pk, :id, 'user_1', 't', 'm', 1, 1)",
                      [{"pk": "p1", "id": "c1"}, {"pk": "p2", "id": "c2"}])
        message = ("INSERT INTO messages (conversation_pk, position, id, role, content, "
                   "timestamp) VALUES (:c, :pos, :id, :role, :content, :ts)")
        await _insert(db, message, [
            # c1: "a" saved twice as an exact copy, "b" used by two different messages.
            {"c": "p1", "pos": 0, "id": "a", "role": "user", "content": "hi", "ts": 10},
            {"c": "p1", "pos": 1, "id": "a", "role": "user", "content": "hi", "ts": 10},
            {"c": "p1", "pos": 2, "id": "b", "role": "user", "content": "first", "ts": 11},
            {"c": "p1", "pos": 3, "id": "b", "role": "assistant", "content": "second", "ts": 12},
            {"c": "p1", "pos": 4, "id": "b", "role": "user", "content": "third", "ts": 13},
            # c2 may use the same ids: uniqueness is per conversation.
            {"c": "p2", "pos": 0, "id": "a", "role": "user", "content": "hi", "ts": 10},
            {"c": "p2", "pos": 1, "id": "b", "role": "user", "content": "x", "ts": 10},
        ])

        await upgrade(db.engine, "0002")  # the migration under test; later ones follow below

        async with db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT conversation_pk, position, id, content FROM messages "
                "ORDER BY conversation_pk, position"))).all()
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))
                       ).scalar_one()
        assert version == "0002"
        c1 = [(r.position, r.id, r.content) for r in rows if r.conversation_pk == "p1"]
        assert [(pos, content) for pos, _, content in c1] == [
            (0, "hi"), (2, "first"), (3, "second"), (4, "third")]  # the exact copy is gone
        ids = [message_id for _, message_id, _ in c1]
        assert ids[:2] == ["a", "b"]  # first occurrences keep their ids
        assert ids[2].startswith("b-dup") and ids[3].startswith("b-dup")
        assert len(set(ids)) == 4
        assert [r.id for r in rows if r.conversation_pk == "p2"] == ["a", "b"]

        # The database itself now refuses a duplicate.
        with pytest.raises(IntegrityError):
            await _insert(db, message, [
                {"c": "p2", "pos": 2, "id": "a", "role": "user", "content": "y", "ts": 1}])

        # The rest of the chain applies to the deduplicated data and keeps every message.
        await upgrade(db.engine)
        async with db.engine.connect() as conn:
            after = (await conn.execute(text("SELECT id FROM messages"))).all()
        assert sorted(r.id for r in after) == sorted(r.id for r in rows)
    finally:
        await db.dispose()
