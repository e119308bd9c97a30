"""Retrieval quality and latency (issue 16), in process over the real operations:

    python -m bench.retrieval --db sqlite|postgres [--chunks 10000] [--queries 200]

1. recall@5 on the labelled set in bench/data/retrieval_set.json: each document is uploaded as
   a file of one user (resolvers/files.Files.upload, extracted like any upload); each question
   is answered by resolvers/files/retrieval.search over all of them; a hit is the labelled file
   among the first five passages' files.
2. latency at N chunks: N synthetic passages of 150 words (function words, then 5,000
   made-up words, Zipf weights) in 100 files of one user, plus another user's N/2 (scoping
   must not cost), then `queries` questions of 3-8 words over all 100 files: p50 and p99.
3. with vectors (sqlite-vec on SQLite; pgvector on PostgreSQL, `--pgserver` starts one): every
   passage gets a random unit vector of `--dims` (384, a MiniLM's size) — latency does not
   depend on what the vectors mean — and each question a random one: p50/p99 of the vector
   list alone (`Vectors.nearest`) and of hybrid retrieval (`retrieval.search`, both lists and
   their fusion; the question's embedding, a network call, excluded). No recall figure for
   vectors: no embedding model runs offline here without PyTorch (see README "Files").

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from models import FileChunk, StoredFile, User
from resolvers.files import Files, retrieval
from resolvers.files.vectors import Vectors
from resolvers.kit import textsearch
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from resolvers.llm.embeddings import Embeddings

SET = Path(__file__).parent / "data" / "retrieval_set.json"


async def _user(db: Database) -> User:
    name = f"b{uuid.uuid4().hex[:8]}"
    user = User(id=str(uuid.uuid4()), username=name, username_key=name,
                email=f"{name}@bench.example", password_hash="x", created_at=datetime.now(UTC))
    async with db.session() as session:
        session.add(user)
        await session.commit()
        await session.refresh(user)
    return user


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def recall(db: Database, directory: Path, k: int = 5) -> dict[str, Any]:
    labelled = json.loads(SET.read_text())
    user = await _user(db)
    files = Files(db=db, directory=directory, max_bytes=10 * 1024 * 1024)
    ids: dict[str, str] = {}
    for name, body in labelled["documents"].items():
        row = await files.upload(user, filename=name, data=_once(body.encode()))
        ids[row.id] = name
    await files.wait_idle()
    hits, misses = 0, []
    for question, expected in labelled["questions"]:
        async with db.session() as session:
            found = await retrieval.search(session, user, file_ids=list(ids), question=question,
                                           limit=k)
        if expected in [p.filename for p in found]:
            hits += 1
        else:
            misses.append(question)
    total = len(labelled["questions"])
    return {"recall_at_5": round(hits / total, 3), "questions": total,
            "documents": len(ids), "missed": misses}


def _unit(rng: random.Random, dims: int) -> list[float]:
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def _percentiles(times: list[float], prefix: str = "") -> dict[str, float]:
    times = sorted(times)
    return {f"{prefix}p50_ms": round(statistics.median(times), 2),
            f"{prefix}p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}


async def latency(db: Database, chunks: int, queries: int, dims: int) -> dict[str, Any]:
    rng = random.Random(16)
    # The most frequent words are the function words real text starts with, then 5,000
    # made-up words of 3-10 letters (distinct, so prefixes collide no more than in English).
    made_up: set[str] = set()
    while len(made_up) < 5000:
        made_up.add("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10))))
    vocabulary = sorted(retrieval.STOPWORDS) + sorted(made_up - retrieval.STOPWORDS)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    user, other = await _user(db), await _user(db)

    async def fill(owner: User, count: int) -> list[str]:
        file_ids = [str(uuid.uuid4()) for _ in range(100)]
        async with db.session() as session:
            session.add_all(StoredFile(id=f, user_id=owner.id, filename=f"{f}.txt",
                                       content_type="text/plain", kind="text", size=1,
                                       status="ready", chunks=count // 100, created_at=1)
                            for f in file_ids)
            await session.commit()
            rows = []
            for n in range(count):
                body = " ".join(rng.choices(vocabulary, weights, k=150))
                rows.append({"file_id": file_ids[n % 100], "user_id": owner.id,
                             "ordinal": n // 100, "text": body,
                             "search_text": textsearch.index_text(body)})
                if len(rows) == 1000:
                    await session.exec(insert(FileChunk), params=rows)  # type: ignore[call-overload]
                    rows = []
            if rows:
                await session.exec(insert(FileChunk), params=rows)  # type: ignore[call-overload]
            await session.commit()
        return file_ids

    started = time.perf_counter()
    file_ids = await fill(user, chunks)
    await fill(other, chunks // 2)
    # Vectors: a store that never calls its embedder (the model name only tags the rows).
    vectors = Vectors(db=db, embedder=Embeddings(model="bench-random", base_url="http://-"))
    note = "sqlite-vec" if db.dialect == "sqlite" else "pgvector"
    if await vectors.prepare():
        async with db.session() as session:
            result = await session.exec(text("SELECT pk FROM file_chunks"))  # type: ignore[call-overload]
            pks = [row[0] for row in result.all()]
            for start in range(0, len(pks), 1000):
                await vectors.store(session, [(pk, _unit(rng, dims))
                                              for pk in pks[start:start + 1000]])
            await session.commit()
    else:
        note = "unavailable (no pgvector in this PostgreSQL)"
    async with db.engine.begin() as conn:  # what autovacuum (PostgreSQL) does after a load
        await conn.execute(text("ANALYZE"))
    seeded = time.perf_counter() - started
    # Wall-clock per query, and this process's CPU per query (all its threads: on SQLite
    # that includes the database's own work; less noisy on a shared machine).
    full, near, hybrid = [], [], []
    cpu = {"": 0.0, "vector_": 0.0, "hybrid_": 0.0}
    for _ in range(queries):
        question = " ".join(rng.choices(vocabulary, weights, k=rng.randint(3, 8)))
        query = _unit(rng, dims)
        began, cpu_began = time.perf_counter(), time.process_time()
        async with db.session() as session:
            await retrieval.search(session, user, file_ids=file_ids, question=question)
        full.append((time.perf_counter() - began) * 1000)
        cpu[""] += time.process_time() - cpu_began
        if not vectors.available:
            continue
        began, cpu_began = time.perf_counter(), time.process_time()
        async with db.session() as session:
            await vectors.nearest(session, user, file_ids=file_ids, query=query,
                                  limit=retrieval.CANDIDATES)
        near.append((time.perf_counter() - began) * 1000)
        cpu["vector_"] += time.process_time() - cpu_began
        began, cpu_began = time.perf_counter(), time.process_time()
        async with db.session() as session:
            await retrieval.search(session, user, file_ids=file_ids, question=question,
                                   vectors=vectors, query_vector=query)
        hybrid.append((time.perf_counter() - began) * 1000)
        cpu["hybrid_"] += time.process_time() - cpu_began
    await vectors.aclose()
    out: dict[str, Any] = {"chunks": chunks, "queries": queries, "seed_s": round(seeded, 1),
                           **_percentiles(full), "vectors": note, "dims": dims}
    if near:
        out.update(_percentiles(near, "vector_"), **_percentiles(hybrid, "hybrid_"))
    out.update({f"{mode}cpu_ms": round(seconds * 1000 / queries, 2)
                for mode, seconds in cpu.items() if seconds})
    return out


async def run(url: str, chunks: int, queries: int, dims: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if url.startswith("postgresql://"):
            url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        db = Database(url)
        try:
            await upgrade(db.engine)
            return {**await recall(db, Path(tmp) / "files"),
                    **await latency(db, chunks, queries, dims)}
        finally:
            await db.dispose()


def _pgserver(directory: str) -> Any:
    """A PostgreSQL 16 with pgvector from PyPI's pgserver (a dev dependency), on a Unix socket
    in `directory`; `cleanup()` stops it and deletes the directory."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(directory, cleanup_mode="delete")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="", help="database URL (default: a SQLite file)")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dims", type=int, default=384, help="size of the random vectors")
    parser.add_argument("--pgserver", action="store_true",
                        help="run on a PostgreSQL with pgvector of its own (pgserver)")
    args = parser.parse_args()
    url, server = args.url, None
    if args.pgserver:
        server = _pgserver(tempfile.mkdtemp(prefix="bench-pgvector-"))
        url = make_url(str(server.get_uri())).set(drivername="postgresql+asyncpg") \
            .render_as_string(hide_password=False)
    try:
        print(json.dumps(asyncio.run(run(url, args.chunks, args.queries, args.dims)),
                         ensure_ascii=False))
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
