"""Vectors of file passages (EMBEDDING_MODEL), called directly over the real operations: SQLite
with sqlite-vec, PostgreSQL with pgvector (a pgserver of the test session) — and the system
PostgreSQL without pgvector, which must fall back to full-text. Embeddings come from the fake
OpenAI server's `/v1/embeddings` over real HTTP, in OpenAI's wire format (its vectors put
synonyms together: tests/fakes/embeddings.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from models import StoredFile, User
from resolvers.assembly import running_services
from resolvers.files import retrieval
from resolvers.files.vectors import Vectors
from resolvers.services import Services
from tests.conftest import make_settings, scratch_postgres
from tests.fakes.providers import FakeOpenAI

GARAGE = b"# Garage log\n\nThe automobile was repaired in June after its brakes failed.\n"
GARDEN = b"# Garden\n\nTomatoes need six hours of sun a day. Water the basil daily.\n"
CLINIC = b"The physician sees patients on Tuesdays and Thursdays.\n"
SYNONYM_QUESTION = "When was the car fixed?"  # no word of GARAGE: full-text finds nothing


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("pgvector", marks=pytest.mark.postgres)])
def vector_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
        return
    admin: str = request.getfixturevalue("pgvector_server")
    with scratch_postgres("chatstudio_vec", admin_url=admin) as url:
        yield url


async def _services(tmp_path: Path, url: str, fake: FakeOpenAI) -> AsyncIterator[Services]:
    settings = make_settings(tmp_path, database_url=url, embedding_model="text-embedding-3-small",
                             embedding_base_url=fake.api_base, embedding_api_key="sk-test",
                             embedding_batch=2, embedding_retry_seconds=0)
    async with running_services(settings) as built:
        yield built


@pytest.fixture
async def services(tmp_path: Path, vector_url: str, fake: FakeOpenAI
                   ) -> AsyncIterator[Services]:
    async for built in _services(tmp_path, vector_url, fake):
        yield built


def _vectors(services: Services) -> Vectors:
    assert services.files is not None and services.files.vectors is not None
    return services.files.vectors


async def _user(services: Services) -> User:
    name = f"u{uuid.uuid4().hex[:8]}"
    user = User(id=str(uuid.uuid4()), username=name, username_key=name,
                email=f"{name}@example.com", password_hash="x", created_at=datetime.now(UTC))
    async with services.db.session() as session:
        session.add(user)
        await session.commit()
        await session.refresh(user)
    return user


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upload(services: Services, user: User, name: str, data: bytes) -> StoredFile:
    assert services.files is not None
    row = await services.files.upload(user, filename=name, data=_once(data))
    await services.files.wait_idle()
    async with services.db.session() as session:
        stored = await session.get(StoredFile, row.id)
        assert stored is not None
        return stored


async def _ask(services: Services, user: User, ids: list[str], question: str, *,
               vector: bool = True) -> list[retrieval.Passage]:
    vectors = _vectors(services)
    query = await vectors.of_question(question) if vector else None
    async with services.db.session() as session:
        return await retrieval.search(session, user, file_ids=ids, question=question,
                                      vectors=vectors, query_vector=query)


async def _stored(services: Services, where: str = "1 = 1", **params: object) -> int:
    async with services.db.engine.connect() as conn:
        result = await conn.execute(text(f"SELECT count(*) FROM file_chunk_vectors WHERE {where}"),
                                    params)
        return int(result.scalar_one())


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_vectors_find_a_question_asked_in_other_words(
        services: Services, fake: FakeOpenAI) -> None:
    assert _vectors(services).available
    user = await _user(services)
    rows = [await _upload(services, user, name, data) for name, data in
            [("garage.md", GARAGE), ("garden.md", GARDEN), ("clinic.txt", CLINIC)]]
    assert [r.status for r in rows] == ["ready"] * 3
    ids = [r.id for r in rows]
    # Every passage got its vector, from OpenAI's wire format, in batches of EMBEDDING_BATCH.
    assert await _stored(services) == sum(r.chunks for r in rows)
    batches = [r.json["input"] for r in fake.requests if r.path == "/v1/embeddings"]
    assert all(len(b) <= 2 for b in batches)
    assert fake.last.headers["authorization"] == "Bearer sk-test"
    assert fake.last.json["model"] == "text-embedding-3-small"
    # Full-text alone finds nothing: no word of the question is in the garage log.
    assert await _ask(services, user, ids, SYNONYM_QUESTION, vector=False) == []
    found = await _ask(services, user, ids, SYNONYM_QUESTION)
    assert found[0].filename == "garage.md"
    assert fake.embedded_texts[-1] == SYNONYM_QUESTION
    # A question both find: the passage both lists rank first stays first.
    both = await _ask(services, user, ids, "Which physician sees patients?")
    assert both[0].filename == "clinic.txt"
    assert both[0].score == pytest.approx(2 / (retrieval.RRF_K + 1), abs=1e-4)


async def test_another_users_file_is_never_retrieved_by_vector(services: Services) -> None:
    alice, mallory = await _user(services), await _user(services)
    secret = await _upload(services, alice, "garage.md", GARAGE)
    own = await _upload(services, mallory, "garden.md", GARDEN)
    vectors = _vectors(services)
    query = await vectors.of_question(SYNONYM_QUESTION)
    assert query is not None
    async with services.db.session() as session:
        # Even with the id in hand (the operations refuse it before this), the query itself
        # reads nothing of another user's file — by vector as by full-text.
        assert await vectors.nearest(session, mallory, file_ids=[secret.id], query=query,
                                     limit=8) == []
        found = await retrieval.search(session, mallory, file_ids=[secret.id, own.id],
                                       question=SYNONYM_QUESTION, vectors=vectors,
                                       query_vector=query)
        assert {p.file_id for p in found} <= {own.id}
        assert [p.file_id for p in await vectors.nearest(
            session, alice, file_ids=[secret.id], query=query, limit=8)] == [secret.id]


async def test_deleting_a_file_removes_its_vectors(services: Services) -> None:
    user = await _user(services)
    gone = await _upload(services, user, "garage.md", GARAGE)
    kept = await _upload(services, user, "garden.md", GARDEN)
    assert await _stored(services, "file_id = :f", f=gone.id) == gone.chunks > 0
    assert services.files is not None
    async with services.db.session() as session:
        await services.files.remove(session, user, file_id=gone.id)
    assert await _stored(services, "file_id = :f", f=gone.id) == 0
    assert await _stored(services, "file_id = :f", f=kept.id) == kept.chunks
    found = await _ask(services, user, [gone.id, kept.id], SYNONYM_QUESTION)
    assert found and {p.file_id for p in found} == {kept.id}


async def test_an_embeddings_outage_while_processing_loses_nothing(
        services: Services, fake: FakeOpenAI) -> None:
    """The file is ready and found by full-text at once; its vectors are filled in when the
    service is back (and again for a new model)."""
    user = await _user(services)
    before = _sample("embedding_failures_total", {"stage": "index"})
    fake.embeddings_fail = 503
    row = await _upload(services, user, "garage.md", GARAGE)
    assert (row.status, row.error) == ("ready", None) and row.chunks > 0
    assert _sample("embedding_failures_total", {"stage": "index"}) == before + 1
    assert await _stored(services) == 0
    found = await _ask(services, user, [row.id], "automobile brakes")  # full-text: yes
    assert [p.filename for p in found] == ["garage.md"]
    assert await _ask(services, user, [row.id], SYNONYM_QUESTION) == []
    vectors = _vectors(services)
    assert await vectors.fill() == 0  # still down: nothing, and no error
    fake.embeddings_fail = None
    assert await vectors.fill() == row.chunks
    assert await _stored(services) == row.chunks
    assert [p.filename for p in await _ask(services, user, [row.id], SYNONYM_QUESTION)] == [
        "garage.md"]
    # Another model (here: a shorter size of the same one) replaces every vector.
    vectors.embedder.dimensions = 64
    assert await vectors.fill() == row.chunks
    assert await _stored(services, "model = :m", m="text-embedding-3-small@64") == row.chunks
    assert await _stored(services) == row.chunks
    assert fake.last.json["dimensions"] == 64
    assert [p.filename for p in await _ask(services, user, [row.id], SYNONYM_QUESTION)] == [
        "garage.md"]


async def test_an_embeddings_outage_at_question_time_falls_back_to_full_text(
        services: Services, fake: FakeOpenAI) -> None:
    user = await _user(services)
    row = await _upload(services, user, "garage.md", GARAGE)
    before = _sample("embedding_failures_total", {"stage": "query"})
    fake.embeddings_fail = 500
    assert await _vectors(services).of_question("automobile brakes") is None
    assert _sample("embedding_failures_total", {"stage": "query"}) == before + 1
    found = await _ask(services, user, [row.id], "automobile brakes")
    assert [p.filename for p in found] == ["garage.md"]


def test_fusion_puts_what_both_lists_rank_first() -> None:
    def passage(name: str) -> retrieval.Passage:
        return retrieval.Passage(file_id=name, filename=name, ordinal=0, text=name, score=1.0)

    words = [passage("a"), passage("b"), passage("c")]
    near = [passage("b"), passage("d"), passage("a")]
    fused = retrieval.fuse(words, near, limit=3)
    assert [p.file_id for p in fused] == ["b", "a", "d"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62, abs=1e-5)


@pytest.fixture
def plain_postgres_url() -> Iterator[str]:
    with scratch_postgres("chatstudio_novec") as url:
        yield url


@pytest.mark.postgres
async def test_postgres_without_pgvector_retrieves_by_full_text(
        tmp_path: Path, plain_postgres_url: str, fake: FakeOpenAI,
        caplog: pytest.LogCaptureFixture) -> None:
    """The system PostgreSQL (15, no pgvector package in Debian bookworm): the migration
    passes, the start says why vectors are off, and files are found by full-text — with no
    embeddings requested for nothing."""
    caplog.set_level(logging.WARNING, logger="chat_studio.files")
    async for services in _services(tmp_path, plain_postgres_url, fake):
        async with services.db.engine.connect() as conn:
            if (await conn.execute(text("SELECT 1 FROM pg_available_extensions "
                                        "WHERE name = 'vector'"))).first() is not None:
                pytest.skip("this PostgreSQL has pgvector; the fallback needs one without")
        assert not _vectors(services).available
        assert any("pgvector" in r.getMessage() and "full-text only" in r.getMessage()
                   for r in caplog.records)
        user = await _user(services)
        row = await _upload(services, user, "garage.md", GARAGE)
        assert row.status == "ready"
        found = await _ask(services, user, [row.id], "automobile brakes")
        assert [p.filename for p in found] == ["garage.md"]
        assert fake.embedded_texts == []

