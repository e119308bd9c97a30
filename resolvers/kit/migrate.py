"""Apply Alembic migrations: at server start, and by `python -m resolvers.kit.migrate`.

Every worker of every host calls `upgrade()` when it starts, so it must be safe when many run
at once on a fresh database: one migrates, the others wait for it and then find the database
at the newest revision and skip. The lock is the database's own where it has one (a
PostgreSQL advisory lock, released with the transaction or the connection, even if the process
dies) and a file lock next to the SQLite file (released by the kernel when the process dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from resolvers.kit.db import Database
from resolvers.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("chat_studio.migrate")

# pg_advisory_xact_lock's key: any constant that no other lock of this database uses
# ("chatmigr" as bytes, read as a signed 64-bit integer).
ADVISORY_LOCK_KEY = int.from_bytes(b"chatmigr", "big", signed=True)


# The search indexes (resolvers/search.py, migration 0013a; file passages, 0016a) are SQL that
# SQLModel cannot describe:
# FTS5 virtual tables with their shadow tables and key table on SQLite, a generated tsvector
# column and GIN indexes on PostgreSQL. Autogenerate must neither drop nor re-create them.
# The vectors of passages (0017_vectors) are SQL-only too: their column type is the database's
# (a BLOB for sqlite-vec, pgvector's `vector`), and on PostgreSQL the table exists only with the
# extension.
SEARCH_TABLE_PREFIXES = ("message_search", "title_search", "file_chunk_search",
                         "file_chunk_vectors")
SEARCH_INDEXES = frozenset({"ix_messages_search", "ix_conversations_search",
                            "ix_file_chunks_search", "ix_file_chunk_vectors_file"})
SEARCH_COLUMNS = frozenset({"search_vector"})


def include_object(_object: object, name: str | None, type_: str, _reflected: bool,
                   _compare_to: object) -> bool:
    """Alembic's `include_object`: everything but the search index's own objects."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(SEARCH_TABLE_PREFIXES)
    if type_ == "index":
        return name not in SEARCH_INDEXES
    if type_ == "column":
        return name not in SEARCH_COLUMNS
    return True


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return config


def lock_path(engine: AsyncEngine) -> Path | None:
    """The SQLite migration lock file (next to the database), None for other databases or an
    in-memory SQLite database (one process only)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).with_name(Path(url.database).name + ".migrate.lock")


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        # flock blocks: wait for it on a thread so the event loop keeps running.
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _migrate(connection: Connection, revision: str) -> None:
    """Under the lock: migrate unless another process already brought the database to
    `revision` (later workers skip without running Alembic's environment at all)."""
    config = alembic_config()
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: every other migrator waits here.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": ADVISORY_LOCK_KEY})
    current = MigrationContext.configure(connection).get_current_heads()
    script = ScriptDirectory.from_config(config)
    wanted = tuple(script.get_revisions(revision))
    if revision == "head" and set(current) == {r.revision for r in wanted if r is not None}:
        log.info("database already at revision %s", ", ".join(current))
        return
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    log.info("database migrated to %s", revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Run `alembic upgrade` on an existing async engine's connection, one process at a
    time (see the module docstring)."""
    path = lock_path(engine)
    lock: Any = _file_lock(path) if path is not None else contextlib.nullcontext()
    async with lock, engine.begin() as conn:
        await conn.run_sync(_migrate, revision)


async def _main() -> None:
    settings = Settings()
    db = Database(settings.effective_database_url)
    try:
        await upgrade(db.engine)
        log.info("database is at the newest revision")
    finally:
        await db.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main())
