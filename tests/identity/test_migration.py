"""Migration 0014a upgrades a database that already holds data, on SQLite and PostgreSQL:
existing users become active plain users without 2FA, keep their password and data, and the
migrated schema is exactly what the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from resolvers.kit.db import Database
from resolvers.kit.migrate import include_object, upgrade
from resolvers.kit.security import Security
from tests.conftest import LiveServer, bearer, make_settings, scratch_postgres

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (not the session's migrated one)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    with scratch_postgres("chatstudio_mig") as url:
        yield url


async def test_upgrade_keeps_users_and_their_data(empty_database: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=empty_database)
    db = Database(empty_database)
    try:
        await upgrade(db.engine, "0001")
        password_hash = Security(settings).hash_password(PASSWORD)
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (id, username, username_key, email, password_hash, "
                "created_at, token_generation) VALUES ('user_old', 'Old', 'old', "
                "'old@example.com', :hash, :created, 0)"),
                {"hash": password_hash, "created": datetime(2026, 1, 2, tzinfo=UTC)})
            await conn.execute(text(
                "INSERT INTO conversations (pk, id, user_id, title, model, created_at, "
                "updated_at) VALUES ('pk1', 'c1', 'user_old', 'kept', 'gpt-4o', 1, 2)"))
            await conn.execute(text(
                "INSERT INTO messages (conversation_pk, position, id, role, content, timestamp)"
                " VALUES ('pk1', 0, 'm1', 'user', 'hello from before', 1)"))
        await upgrade(db.engine)
        async with db.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT role, active, totp_enabled, totp_secret, allowed_models FROM users"))
            ).one()
            assert (row.role, bool(row.active), bool(row.totp_enabled), row.totp_secret,
                    row.allowed_models) == ("user", True, False, None, None)
            # The migrated schema is the models' schema: nothing left to autogenerate.
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(
                    sync, opts={"include_object": include_object}), SQLModel.metadata))
            assert diff == []
    finally:
        await db.dispose()
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            login = await http.post("/api/auth/login", json={"username": "old",
                                                             "password": PASSWORD})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            me = (await http.get("/api/auth/me", headers=bearer(token))).json()
            assert (me["id"], me["role"], me["totp_enabled"]) == ("user_old", "user", False)
            kept = (await http.get("/api/conversations/c1", headers=bearer(token))).json()
            assert kept["messages"][0]["content"] == "hello from before"
