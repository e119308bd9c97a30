"""The database: one async engine per process, short sessions per unit of work.

SQLite (aiosqlite, WAL, foreign keys on) by default; PostgreSQL (asyncpg) when DATABASE_URL
says so. Migrations are Alembic's, applied at start (resolvers/kit/migrate.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from resolvers.kit.errors import Unavailable
from resolvers.kit.outages import outage
from resolvers.kit.textsearch import register_sqlite_functions

log = logging.getLogger("chat_studio.db")

# SQLSTATE classes of a lost or refused connection: 08 connection exception, 57P operator
# intervention (admin shutdown, crash shutdown, "the database system is starting up").
_OUTAGE_SQLSTATES = ("08", "57P")
# SQLite's equivalents: the file cannot be opened or written, or stays locked past busy_timeout.
_SQLITE_OUTAGES = ("database is locked", "unable to open database", "disk i/o error",
                   "database or disk is full", "readonly database")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means "the database cannot be reached right now" (answered 503 and
    retried by the client) rather than a bug (500, logged)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # Refused or reset connections, connect timeouts (asyncpg raises the OSError itself
        # when pool_pre_ping reconnects; SQLAlchemy wraps it otherwise).
        if isinstance(current, OSError | TimeoutError):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            if "sqlite" in type(current.orig).__module__ and any(
                    phrase in str(current.orig).lower() for phrase in _SQLITE_OUTAGES):
                return True
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith(_OUTAGE_SQLSTATES):
            return True
        # asyncpg's "connection is closed" / "connection was closed in the middle of
        # operation" are InterfaceErrors without a SQLSTATE.
        if type(current).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") \
                and "connection" in str(current).lower() and "closed" in str(current).lower():
            return True
        # Drivers and SQLAlchemy chain the original with `orig` / `raise … from`; an unrelated
        # exception merely raised while handling one (__context__) is not followed.
        current = getattr(current, "orig", None) or current.__cause__
    return False


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: it rides out short write locks, including the one switching to WAL
    # takes while another process (a worker starting at the same time) holds the file.
    # WAL lets readers run while a writer commits.
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # The search index's triggers compute their text with it (resolvers/kit/textsearch.py).
    register_sqlite_functions(dbapi_connection)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False, autoflush=False
        )
        self.outage = outage("database")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for one unit of work; the caller commits. Rolled back on error.

        A database that cannot be reached raises `Unavailable` (503 with Retry-After on
        every face), logged once per outage rather than once per request.
        """
        try:
            async with self._sessions() as session:
                try:
                    yield session
                except BaseException:
                    # With the connection gone the rollback fails too; the original error
                    # is the one that explains what happened.
                    with contextlib.suppress(Exception):
                        await session.rollback()
                    raise
        except Unavailable:
            raise
        except PoolTimeout as exc:
            raise Unavailable("The database is busy; retry shortly", retry_after=1) from exc
        except Exception as exc:
            if not is_outage(exc):
                raise
            self.outage.down(exc)
            raise Unavailable("The database is unavailable; retry shortly",
                              retry_after=2) from exc
        self.outage.up()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "down" for /health
            self.outage.down(exc)
            return False
        self.outage.up()
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
