"""Usage statistics over the caller's own data."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Conversation, Message, TokenUsage, User
from resolvers import billing


@dataclass(frozen=True, slots=True)
class Stats:
    total_conversations: int
    total_messages: int
    total_tokens: int
    average_messages_per_conversation: float
    total_cost_usd: float = 0.0  # what the user's replies cost (resolvers/billing)


async def for_user(session: AsyncSession, actor: User) -> Stats:
    conversations = (
        await session.exec(
            select(func.count()).select_from(Conversation).where(Conversation.user_id == actor.id)
        )
    ).one()
    messages = (
        await session.exec(
            select(func.count())
            .select_from(Message)
            .join(Conversation, col(Conversation.pk) == col(Message.conversation_pk))
            # The messages the conversations show (their active paths), not other branches.
            .where(Conversation.user_id == actor.id, col(Message.active))
        )
    ).one()
    tokens = (
        await session.exec(
            select(func.coalesce(func.sum(TokenUsage.completion_tokens), 0)).where(
                TokenUsage.user_id == actor.id
            )
        )
    ).one()
    cost = await billing.total_cost_micros(session, actor)
    return Stats(
        total_cost_usd=billing.usd(cost),
        total_conversations=int(conversations),
        total_messages=int(messages),
        total_tokens=int(tokens),
        average_messages_per_conversation=(
            round(messages / conversations, 2) if conversations else 0.0
        ),
    )


async def record_usage(
    session: AsyncSession, actor: User, *, model: str, prompt_tokens: int,
    completion_tokens: int, request_id: str | None, created_at: int,
) -> None:
    session.add(
        TokenUsage(
            user_id=actor.id, model=model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, created_at=created_at, request_id=request_id,
        )
    )
    await session.commit()
