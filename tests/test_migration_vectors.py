"""Migration 0017_vectors upgrades a database that already holds files and passages: on SQLite
and on PostgreSQL with pgvector the vectors' table appears and the old passages get their
vectors filled in (then are found by vector); on the system PostgreSQL without pgvector the
migration passes and creates nothing. And back down, passages kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from models import FileChunk, StoredFile, User
from resolvers.files.vectors import Vectors
from resolvers.kit import textsearch
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from resolvers.llm.embeddings import Embeddings
from tests.conftest import scratch_postgres
from tests.fakes.providers import FakeOpenAI
from tests.test_migration_message_tree import downgrade, populate

BEFORE = "0016a"
BODIES = ["The automobile was repaired in June.", "Tomatoes need six hours of sun."]


@pytest.fixture(params=["sqlite", pytest.param("pgvector", marks=pytest.mark.postgres),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    admin = (request.getfixturevalue("pgvector_server") if request.param == "pgvector"
             else None)
    with (scratch_postgres("chatstudio_mig17", admin_url=admin) if admin
          else scratch_postgres("chatstudio_mig17")) as made:
        yield made


async def test_a_database_with_passages_upgrades_and_fills_them(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db.engine, "0001")
        await populate(db)  # users u1, u2 and their conversations, then up to 0013b
        await upgrade(db.engine, BEFORE)
        async with db.session() as session:
            session.add(StoredFile(id="f1", user_id="u1", filename="a.md",
                                   content_type="text/markdown", kind="markdown", size=10,
                                   status="ready", chunks=len(BODIES), created_at=1))
            await session.flush()
            session.add_all(FileChunk(file_id="f1", user_id="u1", ordinal=i, text=body,
                                      search_text=textsearch.index_text(body) or "")
                            for i, body in enumerate(BODIES))
            await session.commit()
        await upgrade(db.engine)  # → head
        async with db.engine.connect() as conn:
            extension = (await conn.execute(text(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))).first() \
                if db.dialect == "postgresql" else True
            exists = (await conn.execute(text(
                "SELECT count(*) FROM file_chunk_vectors" if extension else
                "SELECT to_regclass('file_chunk_vectors') IS NOT NULL"))).scalar_one()
        if not extension:  # the system PostgreSQL: nothing created, nothing broken
            assert exists is False
        else:
            assert exists == 0
            async with FakeOpenAI() as fake:
                vectors = Vectors(db=db, embedder=Embeddings(
                    model="text-embedding-3-small", base_url=fake.api_base))
                assert await vectors.prepare()
                assert await vectors.fill() == len(BODIES)
                query = await vectors.of_question("When was the car fixed?")
                assert query is not None
                await vectors.aclose()
            async with db.session() as session:
                owner = await session.get(User, "u1")
                assert owner is not None
                near = await vectors.nearest(session, owner, file_ids=["f1"], query=query,
                                             limit=2)
            assert [n.text for n in near] == BODIES  # the garage first, then the garden
        await downgrade(db.engine, BEFORE)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM file_chunks"))
                    ).scalar_one() == len(BODIES)
            gone = (await conn.execute(text(
                "SELECT count(*) FROM sqlite_master WHERE name = 'file_chunk_vectors'"
                if db.dialect == "sqlite" else
                "SELECT CAST(to_regclass('file_chunk_vectors') IS NULL AS int)"))).scalar_one()
            assert gone == (0 if db.dialect == "sqlite" else 1)
    finally:
        await db.dispose()
