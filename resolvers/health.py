"""Server health: database and broker state plus the guide's counters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from resolvers import auth, conversations
from resolvers.kit.clock import utcnow
from resolvers.kit.version import VERSION
from resolvers.services import Services

log = logging.getLogger("chat_studio.health")


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str  # healthy | unhealthy
    timestamp: datetime
    active_connections: int
    total_users: int
    total_conversations: int
    database: str  # up | down
    redis: str | None  # up | down | None when REDIS_URL is not set
    version: str = VERSION


async def check(services: Services) -> HealthReport:
    users = total_conversations = 0
    database = "down"
    try:
        async with services.db.session() as session:
            users = await auth.count_users(session)
            total_conversations = await conversations.count_all(session)
        database = "up"
    except Exception as exc:  # /health must answer whatever the database does
        log.warning("health: database unreachable: %s", exc)
    redis: str | None = None
    connections = 0
    try:
        connections = await services.broker.connections_count()
        if services.settings.redis_url:
            redis = "up" if await services.broker.healthy() else "down"
    except Exception as exc:
        log.warning("health: broker unreachable: %s", exc)
        redis = "down" if services.settings.redis_url else None
    return HealthReport(
        status="healthy" if database == "up" else "unhealthy",
        timestamp=utcnow(),
        active_connections=connections,
        total_users=users,
        total_conversations=total_conversations,
        database=database,
        redis=redis,
    )
