"""The database: one async engine per process, short sessions per unit of work.

SQLite (aiosqlite, WAL, foreign keys on) by default; PostgreSQL (asyncpg) when DATABASE_URL
says so. Migrations are Alembic's, applied at start (resolvers/kit/migrate.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sqlite3
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


# sqlite-vec (the vector search of file passages, resolvers/files/vectors.py) is a SQLite
# extension. CPython built with --enable-loadable-sqlite-extensions (python.org, Debian, the
# official Docker images) loads it per connection. pyenv's default build omits
# `enable_load_extension`; there the extension's entry point is registered once with SQLite's
# own `sqlite3_auto_extension` (the documented way to give every new connection an extension),
# on the libsqlite3 that the `_sqlite3` module is linked against. Either way it is only tried;
# resolvers/files/vectors.py asks `vec_version()` before using it.
_CAN_LOAD_EXTENSIONS = hasattr(sqlite3.Connection, "enable_load_extension")
_vec_state: dict[str, bool] = {}


def _sqlite_vec_path() -> str | None:
    try:
        import sqlite_vec
    except ImportError:
        return None
    path: str = sqlite_vec.loadable_path()
    return path


def _register_sqlite_vec_everywhere() -> None:
    """Once per process, where connections cannot load extensions themselves."""
    if "auto" in _vec_state:
        return
    _vec_state["auto"] = False
    path = _sqlite_vec_path()
    if path is None:
        return
    library = next((path + suffix for suffix in ("", ".so", ".dylib", ".dll")
                    if Path(path + suffix).is_file()), None)
    sqlite_library = ctypes.util.find_library("sqlite3")
    if library is None or sqlite_library is None:
        return
    try:
        entry = ctypes.CDLL(library).sqlite3_vec_init
        rc = ctypes.CDLL(sqlite_library).sqlite3_auto_extension(
            ctypes.cast(entry, ctypes.c_void_p))
    except (OSError, AttributeError) as exc:
        log.info("sqlite-vec could not be registered with SQLite: %s", exc)
        return
    _vec_state["auto"] = rc == 0


def _load_sqlite_vec(dbapi_connection: Any) -> None:
    path = _sqlite_vec_path()
    if path is None:
        return
    try:  # aiosqlite runs sqlite3 in its own thread: go through the adapter's run_async
        dbapi_connection.run_async(lambda conn: conn.enable_load_extension(True))
        try:
            dbapi_connection.run_async(lambda conn: conn.load_extension(path))
        finally:
            dbapi_connection.run_async(lambda conn: conn.enable_load_extension(False))
    except Exception as exc:  # an extension that does not load leaves full-text retrieval
        if not _vec_state.get("warned"):
            _vec_state["warned"] = True
            log.info("sqlite-vec could not be loaded: %s", exc)


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
    if _CAN_LOAD_EXTENSIONS:
        _load_sqlite_vec(dbapi_connection)


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
            if not _CAN_LOAD_EXTENSIONS:
                _register_sqlite_vec_everywhere()
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
