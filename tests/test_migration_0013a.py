"""Migration 0013a upgrades a database that already holds conversations (SQLite and
PostgreSQL): every row is kept, the summaries are filled in, what was stored before is found by
search, new writes are indexed, and it downgrades and upgrades again."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from models import User
from resolvers import conversations, search
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from tests.conftest import POSTGRES_URL, _unreachable

ROWS: dict[str, list[tuple[Any, ...]]] = {
    "users": [("u1", "alice", "alice", "alice@example.com"), ("u2", "bob", "bob", "bob@e.com")],
    "conversations": [("p1", "c1", "u1", "旅行计划 Trip", 10, 20),
                      ("p2", "c2", "u1", "Empty one", 11, 21),
                      ("p3", "c1", "u2", "Bob's", 12, 22)],
    "messages": [("p1", 0, "m1", "user", "我们明天去北京，你好吗？", 100),
                 ("p1", 1, "m2", "assistant", "Certainly: the itinerary follows. " * 10, 101),
                 ("p3", 0, "m1", "user", "你好 from bob, itinerary", 102)],
}


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
        base = POSTGRES_URL.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed_0001(db: Database) -> None:
    async with db.engine.begin() as conn:
        for user in ROWS["users"]:
            await conn.execute(text(
                "INSERT INTO users (id, username, username_key, email, password_hash, "
                "created_at, token_generation) VALUES (:id, :u, :k, :e, 'x', :t, 0)"),
                {"id": user[0], "u": user[1], "k": user[2], "e": user[3],
                 "t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
        for c in ROWS["conversations"]:
            await conn.execute(text(
                "INSERT INTO conversations (pk, id, user_id, title, model, created_at, "
                "updated_at) VALUES (:pk, :id, :u, :t, 'm', :c, :up)"),
                {"pk": str(uuid.UUID(int=int(c[0][1:]))), "id": c[1], "u": c[2], "t": c[3],
                 "c": c[4], "up": c[5]})
        for m in ROWS["messages"]:
            await conn.execute(text(
                "INSERT INTO messages (conversation_pk, position, id, role, content, timestamp) "
                "VALUES (:pk, :pos, :id, :role, :content, :ts)"),
                {"pk": str(uuid.UUID(int=int(m[0][1:]))), "pos": m[1], "id": m[2],
                 "role": m[3], "content": m[4], "ts": m[5]})


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.engine.connect() as conn:
        return {
            "users": [tuple(r) for r in await conn.execute(text(
                "SELECT id, username, email FROM users ORDER BY id"))],
            "conversations": [tuple(r) for r in await conn.execute(text(
                "SELECT pk, id, user_id, title, created_at, updated_at FROM conversations "
                "ORDER BY pk"))],
            "messages": [tuple(r) for r in await conn.execute(text(
                "SELECT conversation_pk, position, id, role, content, timestamp FROM messages "
                "ORDER BY pk"))],
        }


async def found(db: Database, user_id: str, query: str) -> list[tuple[str, str | None]]:
    async with db.session() as session:
        actor = await session.get(User, user_id)
        assert actor is not None
        page = await search.search(session, actor, query=query)
    return [(h.conversation_id, h.message_id) for h in page.results]


async def test_upgrade_keeps_every_row_and_indexes_what_was_there(empty_url: str) -> None:
    db = Database(empty_url)
    try:
        await upgrade(db.engine, "0001")
        await seed_0001(db)
        before = await snapshot(db)
        await upgrade(db.engine)
        assert await snapshot(db) == before
        async with db.engine.connect() as conn:
            summary = [tuple(r) for r in await conn.execute(text(
                "SELECT id, user_id, pinned, archived, message_count, last_message_preview "
                "FROM conversations ORDER BY pk"))]
        assert summary == [
            ("c1", "u1", False, False, 2, ("Certainly: the itinerary follows. " * 10)[:200]),
            ("c2", "u1", False, False, 0, None),
            ("c1", "u2", False, False, 1, "你好 from bob, itinerary")]
        assert await found(db, "u1", "你好") == [("c1", "m1")]
        assert await found(db, "u1", "itin") == [("c1", "m2")]
        assert await found(db, "u1", "旅行") == [("c1", None)]
        assert await found(db, "u2", "你好") == [("c1", "m1")]
        async with db.session() as session:  # and what is written now is indexed too
            alice = await session.get(User, "u1")
            assert alice is not None
            await conversations.create(session, alice, data=conversations.ConversationInput(
                id="new", title="New", model="m", messages=[
                    conversations.MessageInput(role="user", content="fresh itinerary",
                                               id="n1")]))
        assert await found(db, "u1", "itinerary") == [("new", "n1"), ("c1", "m2")]
        # Down and up again: nothing lost either way.
        await upgrade_to(db, "0001", down=True)
        after_down = await snapshot(db)
        assert after_down["users"] == before["users"]
        assert [c for c in after_down["conversations"] if c[1] != "new"] == before[
            "conversations"]
        assert after_down["messages"][:3] == before["messages"]
        await upgrade(db.engine)
        assert await found(db, "u1", "itinerary") == [("new", "n1"), ("c1", "m2")]
    finally:
        await db.dispose()


async def upgrade_to(db: Database, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from resolvers.kit.migrate import alembic_config

    def run(sync_connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
