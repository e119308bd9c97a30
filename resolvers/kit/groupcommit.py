"""Group commit: small writes that arrive together share one transaction.

    usage = GroupCommit(db, write_usage)         # write(session, item): statements, no commit
    await usage.submit(item)                      # returns once `item` is committed

The first item starts a flush at once (no timer, so an idle server adds no latency); items
submitted while a flush is writing wait for the next one, which takes them all. Under load
each transaction, and each thread hop of aiosqlite, is shared by every reply that ended
meanwhile. A flush that fails is retried item by item, so one bad item fails alone and the
others are still written.

A caller that is cancelled while waiting does not take its item back: it is written anyway
(the reply it belongs to has ended; its usage must not be lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from resolvers.kit.db import Database

log = logging.getLogger("chat_studio.db")

T = TypeVar("T")
# At most this many items per transaction: a burst is written in a few bounded steps.
MAX_BATCH = 256


class GroupCommit(Generic[T]):
    """One writer per kind of item per process; see the module's docstring."""

    def __init__(self, db: Database, write: Callable[[AsyncSession, T], Awaitable[None]]) -> None:
        self._db = db
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write `item` (in a transaction shared with others); raise what writing it raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="group commit")
        await asyncio.shield(done)

    async def aclose(self) -> None:
        """Wait for what was submitted (shutdown)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._together(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    log.warning("a group commit of %d items failed; writing them one by one",
                                len(batch), exc_info=True)
                    for one in batch:
                        try:
                            await self._together([one])
                        except Exception as exc:
                            _settle(one[1], exc)
                        else:
                            _settle(one[1], None)
                else:
                    for _item, done in batch:
                        _settle(done, None)
        finally:
            self._flusher = None
            if self._queue:  # arrived while the last step was finishing: never stranded
                self._flusher = asyncio.create_task(self._flush(), name="group commit")

    async def _together(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        async with self._db.session() as session:
            for item, _done in batch:
                await self._write(session, item)
            await session.commit()


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
        done.exception()  # retrieved: a caller that was cancelled must not log it as lost
