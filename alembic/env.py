"""Alembic environment: runs on a connection handed over by resolvers.kit.migrate, or opens one
from Settings when invoked as the `alembic` command."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from resolvers.kit.migrate import include_object

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
        compare_type=True,
        include_object=include_object,  # the search index is SQL the models cannot describe
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    from resolvers.kit.db import Database
    from resolvers.kit.settings import Settings

    async def main() -> None:
        db = Database(Settings().effective_database_url)
        async with db.engine.begin() as conn:
            await conn.run_sync(_run)
        await db.dispose()

    asyncio.run(main())


_run_online()
