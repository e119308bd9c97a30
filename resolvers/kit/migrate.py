"""Apply Alembic migrations: at server start, and by `python -m resolvers.kit.migrate`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from resolvers.kit.db import Database
from resolvers.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("chat_studio.migrate")


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Run `alembic upgrade` on an existing async engine's connection."""

    def run(sync_connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


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
