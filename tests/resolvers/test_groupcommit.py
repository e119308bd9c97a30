"""GroupCommit: writes that arrive together share a transaction; none is lost to another's
failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlmodel.ext.asyncio.session import AsyncSession

from resolvers.kit.db import Database
from resolvers.kit.groupcommit import GroupCommit


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE rows (n INTEGER NOT NULL UNIQUE)"))
    yield database
    await database.engine.dispose()


async def write(session: AsyncSession, n: int) -> None:
    if n < 0:
        raise ValueError("a bad item")
    await session.exec(text("INSERT INTO rows (n) VALUES (:n)").bindparams(n=n))  # type: ignore[call-overload]


async def stored(db: Database) -> list[int]:
    async with db.session() as session:
        rows = await session.exec(text("SELECT n FROM rows ORDER BY n"))  # type: ignore[call-overload]
        return [row[0] for row in rows]


async def test_items_that_arrive_together_share_a_transaction(db: Database) -> None:
    commits: list[int] = []
    event.listen(db.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    writer = GroupCommit(db, write)
    await asyncio.gather(*(writer.submit(n) for n in range(40)))
    assert await stored(db) == list(range(40))  # every item, each once
    assert len(commits) < 40  # … in fewer transactions than items (here: 1 or 2)
    # Alone, an item is written at once (no timer to wait for).
    await asyncio.wait_for(writer.submit(40), 5)
    assert (await stored(db))[-1] == 40


async def test_a_failing_item_fails_alone(db: Database) -> None:
    writer = GroupCommit(db, write)
    results = await asyncio.gather(*(writer.submit(n) for n in (1, 2, -1, 3, 2)),
                                   return_exceptions=True)
    # The bad item and the duplicate raise to their own callers; the others are stored.
    assert [type(r).__name__ for r in results] == [
        "NoneType", "NoneType", "ValueError", "NoneType", "IntegrityError"]
    assert await stored(db) == [1, 2, 3]
