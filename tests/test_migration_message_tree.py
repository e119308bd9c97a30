"""Migration 0013b (message tree) upgrades a populated database from the schema before it:
every conversation reads exactly as before, each message's parent is the one before it, and
the upgraded conversations branch like new ones. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text

from models import User
from resolvers import conversations
from resolvers.kit.db import Database
from resolvers.kit.migrate import alembic_config, upgrade
from tests.conftest import POSTGRES_URL, _unreachable

BEFORE = "0001"  # the schema this migration upgrades


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    name = f"chatstudio_mig_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unreachable("PostgreSQL", exc)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = POSTGRES_URL.rpartition("/")
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def populate(db: Database) -> dict[str, list[tuple[str, str, str]]]:
    """Two users' data written with the old schema's columns only."""
    expected: dict[str, list[tuple[str, str, str]]] = {}
    async with db.engine.begin() as conn:
        for user in ("u1", "u2"):
            await conn.execute(text(
                "INSERT INTO users (id, username, username_key, email, password_hash, "
                "created_at, token_generation) VALUES (:id, :id, :id, :email, 'x', :at, 0)"),
                {"id": user, "email": f"{user}@example.com", "at": datetime.now(UTC)})
        for number in range(6):
            user = "u1" if number < 4 else "u2"
            pk = str(uuid.uuid4())
            await conn.execute(text(
                "INSERT INTO conversations (pk, id, user_id, title, model, system_prompt, "
                "created_at, updated_at) VALUES (:pk, :id, :user, :title, 'gpt-4o-mini', "
                "NULL, 1, 2)"), {"pk": pk, "id": f"c{number}", "user": user,
                                  "title": f"Chat {number} 你好"})
            messages = [(f"m{i}", ("user", "assistant")[i % 2], f"message {i} of c{number}")
                        for i in range(number * 3)]  # c0 is empty, c5 has 15 messages
            for index, (message_id, role, content) in enumerate(messages):
                # c4 as a race between two appends could leave it: a position twice, a gap.
                position = index if number != 4 or index < 2 else (
                    1 if index == 2 else index + 2)
                await conn.execute(text(
                    "INSERT INTO messages (conversation_pk, position, id, role, content, "
                    "timestamp, tokens, model, status) VALUES (:pk, :position, :id, :role, "
                    ":content, :ts, NULL, NULL, NULL)"),
                    {"pk": pk, "position": position, "id": message_id, "role": role,
                     "content": content, "ts": 1000 + index})
            expected[f"{user}/c{number}"] = messages
    return expected


async def test_a_populated_database_upgrades_with_every_conversation_intact(
        empty_url: str, tmp_path: Path) -> None:
    db = Database(empty_url)
    try:
        await upgrade(db.engine, BEFORE)
        expected = await populate(db)
        await upgrade(db.engine)  # → head
        async with db.session() as session:
            for key, messages in expected.items():
                user_id, conversation_id = key.split("/")
                actor = await session.get(User, user_id)
                assert actor is not None
                stored = await conversations.get(session, actor,
                                                 conversation_id=conversation_id)
                assert [(m.id, m.role, m.content) for m in stored.messages] == messages
                ids = [m.id for m in stored.messages]
                assert [m.parent_id for m in stored.messages] == [None, *ids[:-1]][:len(ids)]
                assert all(m.sibling_ids == (m.id,) for m in stored.messages)
                whole = await conversations.get(session, actor,
                                                conversation_id=conversation_id,
                                                whole_tree=True)
                assert len(whole.messages) == len(messages)  # no row lost or added
            # An upgraded conversation grows and branches like a new one.
            actor = await session.get(User, "u1")
            assert actor is not None
            await conversations.append_messages(
                session, actor, conversation_id="c3",
                messages=[conversations.MessageInput(content="beside m7", role="assistant")],
                under=conversations.Under("m6"))
            after = await conversations.get(session, actor, conversation_id="c3")
            assert [m.id for m in after.messages][:7] == [f"m{i}" for i in range(7)]
            assert after.messages[-1].content == "beside m7"
            assert after.messages[-1].sibling_ids[0] == "m7"
        # Downgrading keeps what the old schema can show: every active path.
        await downgrade(db.engine, BEFORE)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT c.id, m.id FROM messages m JOIN conversations c ON c.pk = "
                "m.conversation_pk ORDER BY c.id, m.position"))).all()
        assert [m for c, m in rows if c == "c3"] == [*(f"m{i}" for i in range(7)),
                                                    after.messages[-1].id]
        # One message added; m7 and m8 (now off the active path) are gone.
        assert len(rows) == sum(len(m) for m in expected.values()) + 1 - 2
    finally:
        await db.dispose()


async def downgrade(engine: Any, revision: str) -> None:
    def run(sync_connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.downgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
