"""Migration 0015a (mcp_servers) upgrades a database that already holds data, on SQLite and
PostgreSQL: rows are kept, the new table is empty and the schema is what the models say."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from resolvers.kit.db import Database
from resolvers.kit.migrate import include_object, upgrade
from tests.identity.test_migration import empty_database

__all__ = ["empty_database"]  # the fixture, shared with issue 14's migration test


async def test_upgrade_keeps_rows_and_adds_an_empty_server_table(empty_database: str) -> None:
    db = Database(empty_database)
    try:
        await upgrade(db.engine, "0013a")  # the revision before 0015a
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (id, username, username_key, email, password_hash, "
                "created_at, token_generation) VALUES ('u1', 'Old', 'old', 'o@example.com', "
                "'x', CURRENT_TIMESTAMP, 0)"))
            await conn.execute(text(
                "INSERT INTO conversations (pk, id, user_id, title, model, created_at, "
                "updated_at) VALUES ('pk1', 'c1', 'u1', 'kept', 'gpt-4o', 1, 2)"))
            await conn.execute(text(
                "INSERT INTO messages (conversation_pk, position, id, role, content, timestamp)"
                " VALUES ('pk1', 0, 'm1', 'user', 'hello from before', 1)"))
        await upgrade(db.engine)
        async with db.engine.begin() as conn:
            assert (await conn.execute(text("SELECT content FROM messages"))).scalar_one() == \
                "hello from before"
            assert (await conn.execute(text("SELECT count(*) FROM mcp_servers"))).scalar_one() == 0
            await conn.execute(text(
                "INSERT INTO mcp_servers (id, name, transport, args, env, headers, created_at)"
                " VALUES ('s1', 'docs', 'http', '[]', '{}', '{}', 1)"))
            assert (await conn.execute(text("SELECT visible FROM mcp_servers"))).scalar_one()
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(
                    sync, opts={"include_object": include_object}), SQLModel.metadata))
            assert diff == []
    finally:
        await db.dispose()
