"""Vectors of file passages, when EMBEDDING_MODEL is set: made, stored, filled in, compared.

Where they live (alembic 0017_vectors): `file_chunk_vectors`, one row per passage, deleted with
it (foreign key), tagged with the model that made it. SQLite keeps float32 BLOBs compared by
sqlite-vec's `vec_distance_cosine`; PostgreSQL a pgvector `vector` compared by `<=>`. Both
rank exactly: every vector of the files the caller named (scoped by `user_id` and file id in
the query, like full-text) — the named files of one chat request are a small set, and an
approximate index would have to be filtered after ranking, losing passages.

Without a store (PostgreSQL without pgvector; SQLite that cannot load sqlite-vec) `available`
is False after `prepare()`, which logs why once: retrieval stays full-text.

Outages: a file whose passages could not be embedded while it was processed is `ready` all
the same (full-text finds it); `fill()` embeds what is missing — at start and every
EMBEDDING_RETRY_SECONDS — and also what an earlier EMBEDDING_MODEL made. A question that
cannot be embedded is answered by full-text alone. Both count in
`embedding_failures_total{stage}` and say so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from models import User
from resolvers.kit import metrics
from resolvers.kit.db import Database
from resolvers.llm.base import ProviderError
from resolvers.llm.embeddings import Embeddings

log = logging.getLogger("chat_studio.files")

FILL_BATCHES = 16  # embeddings requests per fill round before it yields to a new round


@dataclass(slots=True, frozen=True)
class Near:
    file_id: str
    filename: str
    ordinal: int
    text: str
    distance: float  # cosine distance: 0 the same direction, 2 the opposite


# The distances are ranked on the vectors' table alone (its own copy of user_id and file_id,
# taken from the passage when the vector was stored), and only the best `limit` are joined to
# their passages' text (joining first and sorting every row with its text cost a third more
# CPU at 3,000 passages).
NEAREST = """
SELECT c.file_id, f.filename, c.ordinal, c.text, near.distance
FROM (SELECT chunk_pk, {distance} AS distance
      FROM file_chunk_vectors
      WHERE model = :model AND user_id = :user_id AND file_id IN :file_ids
      ORDER BY distance, chunk_pk LIMIT :limit) AS near
JOIN file_chunks c ON c.pk = near.chunk_pk
JOIN files f ON f.id = c.file_id
WHERE c.user_id = :user_id AND c.file_id IN :file_ids
ORDER BY near.distance, c.file_id, c.ordinal
"""
SQLITE_NEAREST = NEAREST.format(distance="vec_distance_cosine(embedding, :query)")
POSTGRES_NEAREST = NEAREST.format(distance="embedding <=> CAST(CAST(:query AS text) AS vector)")
# Passages of ready files without a vector of the current model (new ones are inserted; one
# of an earlier model is replaced).
MISSING = """
SELECT c.pk, c.file_id, c.user_id, c.text
FROM file_chunks c
JOIN files f ON f.id = c.file_id
LEFT JOIN file_chunk_vectors v ON v.chunk_pk = c.pk AND v.model = :model
WHERE v.chunk_pk IS NULL AND f.status = 'ready'
ORDER BY c.pk LIMIT :limit
"""
# Only for a passage that still exists: a file deleted meanwhile takes nothing with it.
SQLITE_UPSERT = """
INSERT INTO file_chunk_vectors (chunk_pk, file_id, user_id, model, embedding)
SELECT pk, file_id, user_id, :model, :embedding FROM file_chunks WHERE pk = :pk
ON CONFLICT (chunk_pk) DO UPDATE SET model = excluded.model, embedding = excluded.embedding
"""
POSTGRES_UPSERT = """
INSERT INTO file_chunk_vectors (chunk_pk, file_id, user_id, model, embedding)
SELECT pk, file_id, user_id, CAST(:model AS text), CAST(CAST(:embedding AS text) AS vector)
FROM file_chunks WHERE pk = :pk
ON CONFLICT (chunk_pk) DO UPDATE SET model = excluded.model, embedding = excluded.embedding
"""
POSTGRES_TABLE = """
CREATE TABLE IF NOT EXISTS file_chunk_vectors (
    chunk_pk INTEGER PRIMARY KEY REFERENCES file_chunks (pk) ON DELETE CASCADE,
    file_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(40) NOT NULL,
    model VARCHAR(255) NOT NULL,
    embedding vector NOT NULL)
"""
POSTGRES_INDEX = """CREATE INDEX IF NOT EXISTS ix_file_chunk_vectors_file
    ON file_chunk_vectors (file_id, model)"""


def _sqlite_blob(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)  # sqlite-vec's float32 vector


# Vectors travel to PostgreSQL as text ('[0.1,…]') cast to `vector` by the server: the
# parameter is typed `text`, so asyncpg needs no codec for pgvector's type.
def _pg_literal(vector: Sequence[float]) -> str:
    return json.dumps([float(x) for x in vector], separators=(",", ":"))  # '[0.1,…]'


@dataclass
class Vectors:
    """The vectors of one process (built by assembly.py when EMBEDDING_MODEL is set)."""

    db: Database
    embedder: Embeddings
    batch: int = 64
    retry_seconds: float = 300.0
    available: bool = False
    _filler: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        """What the stored vectors are tagged with: the model, and its size when asked for."""
        dims = self.embedder.dimensions
        return f"{self.embedder.model}@{dims}" if dims else self.embedder.model

    @property
    def sqlite(self) -> bool:
        return self.db.dialect == "sqlite"

    async def prepare(self) -> bool:
        """Whether this database can store and compare vectors; says why not, once."""
        try:
            async with self.db.engine.begin() as conn:
                if self.sqlite:
                    await conn.execute(text("SELECT vec_version()"))
                else:
                    await self._prepare_postgres(conn)
        except DBAPIError as exc:
            reason = ("sqlite-vec could not be loaded into SQLite (a Python built without "
                      "loadable extensions and no libsqlite3 to register it with?)"
                      if self.sqlite else
                      "the pgvector extension is not installed in this PostgreSQL (install "
                      "it, e.g. the postgresql-NN-pgvector package, and restart; a role that "
                      "may not CREATE EXTENSION needs a superuser to run it once)")
            log.warning("EMBEDDING_MODEL=%s is set but %s: retrieval is full-text only (%s)",
                        self.embedder.model, reason, str(exc).splitlines()[0])
            self.available = False
            return False
        self.available = True
        log.info("vectors on: %s, stored with %s", self.model,
                 "sqlite-vec" if self.sqlite else "pgvector")
        return True

    @staticmethod
    async def _prepare_postgres(conn: AsyncConnection) -> None:
        """pgvector's table, created here when pgvector was installed after the migration
        ran (the migration creates it where it can)."""
        exists = (await conn.execute(text(
            "SELECT to_regclass('file_chunk_vectors') IS NOT NULL"))).scalar_one()
        if not exists:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            await conn.execute(text(POSTGRES_TABLE))
            await conn.execute(text(POSTGRES_INDEX))
        await conn.execute(text("SELECT CAST('[1]' AS vector)"))

    # ------------------------------------------------------------------ making vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of `texts`, EMBEDDING_BATCH at a time; ProviderError when a batch fails."""
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            out += await self.embedder.embed(texts[start:start + self.batch])
        return out

    async def of_passages(self, file_id: str, texts: Sequence[str]) -> list[list[float]] | None:
        """The passages' vectors for a file being processed; None (logged, counted) when the
        embeddings service fails: the file is searched by full-text until `fill` catches up."""
        if not self.available or not texts:
            return None
        try:
            return await self.embed(texts)
        except ProviderError as exc:
            metrics.EMBEDDING_FAILURES.labels(stage="index").inc()  # metrics
            log.warning("embedding the passages of file %s failed (%s): it is searched by "
                        "full-text until its vectors are filled in", file_id, exc.message)
            return None

    async def of_question(self, question: str) -> list[float] | None:
        """The question's vector; None (logged, counted) when it cannot be had: the caller
        answers with full-text alone."""
        if not self.available or not question.strip():
            return None
        try:
            return (await self.embedder.embed([question]))[0]
        except ProviderError as exc:
            metrics.EMBEDDING_FAILURES.labels(stage="query").inc()  # metrics
            log.warning("embedding a question failed (%s): retrieval is full-text only for "
                        "this request", exc.message)
            return None

    # ------------------------------------------------------------------ storing them

    async def store(self, session: AsyncSession, rows: Sequence[tuple[int, list[float]]]) -> None:
        """Upsert (passage pk, vector) pairs; the caller commits."""
        if not rows:
            return
        sql = SQLITE_UPSERT if self.sqlite else POSTGRES_UPSERT
        encode = _sqlite_blob if self.sqlite else _pg_literal
        params = [{"pk": pk, "model": self.model, "embedding": encode(vector)}
                  for pk, vector in rows]
        await session.exec(text(sql), params=params)  # type: ignore[call-overload]

    async def fill(self) -> int:
        """Embed every passage of a ready file that has no vector of the current model;
        returns how many got one. Stops at the first failure (counted, logged) — the next
        round goes on from there."""
        if not self.available:
            return 0
        filled = 0
        while True:
            async with self.db.session() as session:
                result = await session.exec(text(MISSING), params={  # type: ignore[call-overload]
                    "model": self.model, "limit": self.batch * FILL_BATCHES})
                missing = [(r[0], r[3]) for r in result.all()]
            if not missing:
                return filled
            try:
                vectors = await self.embed([body for _pk, body in missing])
            except ProviderError as exc:
                metrics.EMBEDDING_FAILURES.labels(stage="index").inc()  # metrics
                log.warning("filling in the vectors of %d passages failed (%s): retrying in "
                            "%g s", len(missing), exc.message, self.retry_seconds)
                return filled
            async with self.db.session() as session:
                await self.store(session, [(pk, v) for (pk, _), v in zip(missing, vectors,
                                                                        strict=True)])
                await session.commit()
            filled += len(missing)

    def start_filling(self) -> None:
        """Fill now, then every EMBEDDING_RETRY_SECONDS (0: now only), in the background."""
        if self.available and self._filler is None:
            self._filler = asyncio.create_task(self._fill_forever(), name="fill vectors")

    async def _fill_forever(self) -> None:
        while True:
            try:
                filled = await self.fill()
                if filled:
                    log.info("filled in the vectors of %d passages", filled)
            except Exception:  # a database outage: the next round tries again
                log.exception("filling in vectors failed")
            if not self.retry_seconds:
                return
            await asyncio.sleep(self.retry_seconds)

    async def aclose(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(BaseException):
                await self._filler
            self._filler = None
        await self.embedder.aclose()

    # ------------------------------------------------------------------ comparing

    async def nearest(self, session: AsyncSession, actor: User, *, file_ids: Sequence[str],
                      query: Sequence[float], limit: int) -> list[Near]:
        """The passages of `file_ids` (the caller's: scoped again in the query) nearest to
        the question's vector, nearest first."""
        if not self.available or not file_ids:
            return []
        sql = SQLITE_NEAREST if self.sqlite else POSTGRES_NEAREST
        encoded: bytes | str = _sqlite_blob(query) if self.sqlite else _pg_literal(query)
        statement = text(sql).bindparams(bindparam("file_ids", expanding=True))
        result = await session.exec(statement, params={  # type: ignore[call-overload]
            "query": encoded, "model": self.model, "user_id": actor.id,
            "file_ids": list(file_ids), "limit": limit})
        return [Near(file_id=r[0], filename=r[1], ordinal=r[2], text=r[3],
                     distance=float(r[4])) for r in result.all()]
