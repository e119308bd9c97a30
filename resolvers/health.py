"""Server health: database and broker state plus the guide's counters.

`check()` is readiness: "unhealthy" whenever a dependency chat needs is down (the database,
and Redis when REDIS_URL is set). Liveness ("the process answers") needs no operation: the
faces answer it without calling anything here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from resolvers import auth, conversations
from resolvers.kit.clock import utcnow
from resolvers.kit.version import VERSION
from resolvers.services import Services

# A health check must answer even when a dependency hangs instead of refusing.
CHECK_TIMEOUT_SECONDS = 3.0


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
    """Outages are logged once by the clients themselves (kit/outages.py), not per check."""
    users = total_conversations = 0
    database = "down"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), services.db.session() as session:
            users = await auth.count_users(session)
            total_conversations = await conversations.count_all(session)
        database = "up"
    except Exception:  # /health must answer whatever the database does
        database = "down"
    redis: str | None = None
    connections = 0
    if services.settings.redis_url:
        redis = "up" if await services.broker.healthy() else "down"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            connections = await services.broker.connections_count()
    except Exception:  # a statistic; the state above is what matters
        connections = 0
    healthy = database == "up" and redis != "down"
    return HealthReport(
        status="healthy" if healthy else "unhealthy",
        timestamp=utcnow(),
        active_connections=connections,
        total_users=users,
        total_conversations=total_conversations,
        database=database,
        redis=redis,
    )
