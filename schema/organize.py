"""GraphQL for conversations people live in: search, patchConversation (pin, archive, tags,
rename) and share links — the same operations as REST (compat_organize.py)."""

from __future__ import annotations

import strawberry

from resolvers import organize, search, sharing
from schema.queries import ctx
from schema.scalars import Timestamp
from schema.types import Conversation, PageInfo


@strawberry.type
class SearchResult:
    conversation_id: strawberry.ID
    title: str
    message_id: strawberry.ID | None = strawberry.field(
        description="null when the conversation's title matched")
    role: str | None
    snippet: str = strawberry.field(
        description="HTML: hits in <mark>…</mark>, everything else escaped")
    timestamp: Timestamp


@strawberry.type
class SearchEdge:
    cursor: str
    node: SearchResult


@strawberry.type
class SearchConnection:
    edges: list[SearchEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[SearchResult]:
        return [edge.node for edge in self.edges]


@strawberry.type
class ShareLink:
    token: str
    url: str
    shared_at: Timestamp

    @classmethod
    def from_link(cls, link: sharing.ShareLink) -> ShareLink:
        return cls(token=link.token, url=link.url, shared_at=Timestamp(link.shared_at))


@strawberry.type
class SharedMessage:
    role: str
    content: str
    timestamp: Timestamp


@strawberry.type
class SharedConversation:
    title: str
    messages: list[SharedMessage]
    shared_at: Timestamp


@strawberry.input(description="Only the fields given change; systemPrompt: null clears it.")
class ConversationPatchInput:
    title: str | None = strawberry.UNSET
    model: str | None = strawberry.UNSET
    system_prompt: str | None = strawberry.UNSET
    pinned: bool | None = strawberry.UNSET
    archived: bool | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET


def to_patch(data: ConversationPatchInput) -> organize.ConversationPatch:
    changes = organize.ConversationPatch()
    for name in organize.PATCH_FIELDS:
        value = getattr(data, name)
        if value is not strawberry.UNSET:
            setattr(changes, name, value)
    return changes


@strawberry.type
class OrganizeQuery:
    @strawberry.field(description="Search your conversation titles and messages: bare words "
                      "match words starting with them, \"quoted phrases\" whole adjacent "
                      "words, CJK text its characters in a row; every term must match. Titles "
                      "first, then messages newest first (first ≤ 50).")
    async def search(self, info: strawberry.Info, query: str, first: int = 20,
                     after: str | None = None) -> SearchConnection:
        context = ctx(info)
        async with context.session() as session:
            page = await search.search(session, await context.actor(), query=query,
                                       limit=first, cursor=after,
                                       names=("query", "first", "after"))
        edges = [SearchEdge(cursor=hit.cursor, node=SearchResult(
            conversation_id=strawberry.ID(hit.conversation_id), title=hit.title,
            message_id=strawberry.ID(hit.message_id) if hit.message_id is not None else None,
            role=hit.role, snippet=hit.snippet, timestamp=Timestamp(hit.timestamp)))
            for hit in page.results]
        return SearchConnection(edges=edges, page_info=PageInfo(
            has_next_page=page.next_cursor is not None, end_cursor=page.next_cursor))

    @strawberry.field(description="A shared conversation's snapshot; no authentication. "
                      "null when the link is unknown or revoked.")
    async def shared_conversation(self, info: strawberry.Info,
                                  token: str) -> SharedConversation | None:
        async with ctx(info).session() as session:
            try:
                snapshot = await sharing.shared(session, token=token)
            except sharing.ShareNotFound:
                return None
        return SharedConversation(
            title=snapshot.title, shared_at=Timestamp(snapshot.shared_at),
            messages=[SharedMessage(role=m.role, content=m.content,
                                    timestamp=Timestamp(m.timestamp))
                      for m in snapshot.messages])

    @strawberry.field(description="The live share link of one of your conversations, or null.")
    async def share_link(self, info: strawberry.Info,
                         conversation_id: strawberry.ID) -> ShareLink | None:
        context = ctx(info)
        async with context.session() as session:
            link = await sharing.link_of(session, await context.actor(),
                                         conversation_id=str(conversation_id))
        return ShareLink.from_link(link) if link else None


@strawberry.type
class OrganizeMutation:
    @strawberry.mutation(description="Change title, model, systemPrompt, pinned, archived or "
                         "tags without touching messages.")
    async def patch_conversation(self, info: strawberry.Info, id: strawberry.ID,
                                 input: ConversationPatchInput) -> Conversation:
        context = ctx(info)
        changes = to_patch(input)
        async with context.session() as session:
            result = await organize.patch(session, await context.actor(),
                                          conversation_id=str(id), changes=changes)
        return Conversation.from_model(result.conversation, tags=result.tags)

    @strawberry.mutation(description="Share a read-only snapshot of the conversation as it is "
                         "now; sharing again refreshes it and keeps the link.")
    async def share_conversation(self, info: strawberry.Info, id: strawberry.ID) -> ShareLink:
        context = ctx(info)
        async with context.session() as session:
            link = await sharing.share(session, await context.actor(), conversation_id=str(id))
        return ShareLink.from_link(link)

    @strawberry.mutation(description="Revoke a conversation's share link.")
    async def revoke_share(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        context = ctx(info)
        async with context.session() as session:
            await sharing.revoke(session, await context.actor(), conversation_id=str(id))
        return True
