"""Query fields. Each is thin: parse, call an operation in resolvers/, shape the answer."""

from __future__ import annotations

import strawberry

from resolvers import conversations, organize, stats
from resolvers.health import check as health_check
from schema.context import Context
from schema.types import (
    Conversation,
    ConversationConnection,
    ConversationEdge,
    Health,
    PageInfo,
    Stats,
    User,
)


def ctx(info: strawberry.Info) -> Context:
    context: Context = info.context
    return context


@strawberry.type
class Query:
    @strawberry.field(description="Server state; no authentication needed.")
    async def health(self, info: strawberry.Info) -> Health:
        report = await health_check(ctx(info).services)
        return Health(
            status=report.status, timestamp=report.timestamp,
            active_connections=report.active_connections, total_users=report.total_users,
            total_conversations=report.total_conversations, database=report.database,
            redis=report.redis, version=report.version,
        )

    @strawberry.field(description="The authenticated user.")
    async def me(self, info: strawberry.Info) -> User:
        return User.from_model(await ctx(info).actor("read"))

    @strawberry.field(description="Your conversations, newest first, cursor-paged (first ≤ 100),"
                      " optionally only archived or not, pinned or not, or with a tag. Without"
                      " `messages` in the selection no message is read (a sidebar).")
    async def conversations(
        self, info: strawberry.Info, first: int = 50, after: str | None = None,
        archived: bool | None = None, pinned: bool | None = None, tag: str | None = None,
    ) -> ConversationConnection:
        context = ctx(info)
        actor = await context.actor("read")
        filters = organize.Filters(archived=archived, pinned=pinned, tag=tag)
        # Tags and the total are read only when the selection asks for them (a sidebar of
        # titles reads one query): `tags` through its DataLoader, `totalCount` below.
        async with context.session() as session:
            page = await organize.page(session, actor, first=first, after=after,
                                       filters=filters, with_total=False, with_tags=False)
        edges = [
            ConversationEdge(cursor=conversations.cursor_of(item.conversation),
                             node=Conversation.from_model(item.conversation))
            for item in page.items
        ]

        async def total() -> int:
            if first is None and not after:
                return page.total_count  # every conversation is on the page
            async with context.session() as session:
                return await organize.count(session, actor, filters=filters)

        return ConversationConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
            _total=total,
        )

    @strawberry.field(description="One of your conversations; null when absent or not yours.")
    async def conversation(self, info: strawberry.Info, id: strawberry.ID) -> Conversation | None:
        context = ctx(info)
        async with context.session() as session:
            row = await conversations.find(
                session, await context.actor("read"), conversation_id=str(id)
            )
        return Conversation.from_model(row) if row else None

    @strawberry.field(description="Statistics over your own data.")
    async def stats(self, info: strawberry.Info) -> Stats:
        context = ctx(info)
        async with context.session() as session:
            return Stats.from_data(
                await stats.for_user(session, await context.actor("read"))
            )
