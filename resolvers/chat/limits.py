"""Chat limits: requests per user per minute (the rate limiter) and a daily token quota per
user (prompt + completion tokens of the current UTC day, from token_usage rows).

Checked by `Chat.start()`, so REST, SSE, the WebSocket and GraphQL all get them. A reply that
starts under the quota may finish a little over it (at most its max_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import TokenUsage, User
from resolvers.kit import metrics
from resolvers.kit.db import Database
from resolvers.kit.errors import RateLimited
from resolvers.kit.ratelimit import RateLimiter, enforce


@dataclass(frozen=True, slots=True)
class ChatLimits:
    per_minute: int = 0  # chat requests per user per minute; 0: unlimited
    daily_tokens: int = 0  # tokens per user per UTC day; 0: unlimited


def day_bounds(now: datetime | None = None) -> tuple[int, int]:
    """The current UTC day as [start, end) in epoch milliseconds."""
    now = now or datetime.now(UTC)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def tokens_today(session: AsyncSession, actor: User, *,
                       now: datetime | None = None) -> int:
    start, end = day_bounds(now)
    total = (
        await session.exec(
            select(func.coalesce(
                func.sum(col(TokenUsage.prompt_tokens) + col(TokenUsage.completion_tokens)), 0,
            )).where(col(TokenUsage.user_id) == actor.id, col(TokenUsage.created_at) >= start,
                     col(TokenUsage.created_at) < end)
        )
    ).one()
    return int(total)


async def check_chat_allowed(db: Database, actor: User, *,
                             limiter: RateLimiter | None, limits: ChatLimits,
                             now: datetime | None = None) -> None:
    """Raise RateLimited when the user is over the chat rate or the daily token quota."""
    await enforce(limiter, f"chat:user:{actor.id}", limit=limits.per_minute, window=60,
                  scope="chat", message="Too many chat requests")
    if limits.daily_tokens <= 0:
        return
    async with db.session() as session:  # short: released before the reply starts
        used = await tokens_today(session, actor, now=now)
    if used >= limits.daily_tokens:
        metrics.RATE_LIMITED.labels(scope="daily_tokens").inc()
        _, end = day_bounds(now)
        current = now or datetime.now(UTC)
        retry_after = max(1, int(end / 1000 - current.timestamp()))
        raise RateLimited(
            f"Daily token quota used up ({used} of {limits.daily_tokens} tokens); it resets at "
            "00:00 UTC", retry_after=retry_after,
        )
