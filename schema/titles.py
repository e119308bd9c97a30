"""conversationUpdated: your conversations' generated titles, live (resolvers/titles.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import titles
from schema.queries import ctx


@strawberry.type(description="One of your conversations changed outside your own request "
                 "(a generated title).")
class ConversationUpdated:
    conversation_id: strawberry.ID
    title: str


@strawberry.type
class TitleSubscription:
    @strawberry.subscription(description="Changes to your conversations made by the server "
                             "(titles generated after a first reply).")
    async def conversation_updated(
        self, info: strawberry.Info
    ) -> AsyncGenerator[ConversationUpdated, None]:
        context = ctx(info)
        actor = await context.actor()
        async with titles.subscribe_updates(context.services.broker, actor) as subscription:
            async for event in titles.updates(subscription):
                yield ConversationUpdated(conversation_id=strawberry.ID(event.conversation_id),
                                          title=event.title)
