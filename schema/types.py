"""Strawberry types, built explicitly from the stored models (never the tables themselves,
so a column such as users.password_hash can never leak)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum

import strawberry

from models import User as UserRow
from resolvers.auth import TokenPair
from resolvers.conversations import ConversationView as ConversationRow
from resolvers.conversations import MessageView
from resolvers.kit.clock import as_utc
from resolvers.stats import Stats as StatsData
from schema.citations import Citation, citations_of
from schema.scalars import Timestamp


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    email: str
    created_at: datetime
    role: str = strawberry.field(default="user", description="admin or user")
    active: bool = True
    allowed_models: list[str] | None = strawberry.field(
        default=None, description="The models this user may use; null: all")
    totp_enabled: bool = False

    @classmethod
    def from_model(cls, row: UserRow) -> User:
        return cls(id=strawberry.ID(row.id), username=row.username, email=row.email,
                   created_at=as_utc(row.created_at), role=row.role, active=row.active,
                   allowed_models=row.allowed_models, totp_enabled=row.totp_enabled)


@strawberry.enum
class Role(Enum):
    # Lower-case names: the same values as the REST contract's "role".
    user = "user"
    assistant = "assistant"
    system = "system"


_ROLES = {role.value: role for role in Role}


@strawberry.type
class Message:
    id: strawberry.ID
    content: str
    role: Role
    timestamp: Timestamp
    tokens: int | None = None
    model: str | None = None
    status: str | None = strawberry.field(
        default=None, description="For server-generated replies: complete, stopped or error"
    )
    parent_id: strawberry.ID | None = strawberry.field(
        default=None, description="The message this one follows; null for a first message")
    sibling_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Its alternatives (edits, regenerated replies), "
        "itself included, oldest first; switch with switchBranch")
    active: bool = strawberry.field(default=True, description="On the active path")
    citations: list[Citation] = strawberry.field(
        default_factory=list, description="A reply's sources (the files its request named)")
    # The conversation's whole tree by position (parent and siblings are read from it).
    _tree: strawberry.Private[dict[int, MessageView] | None] = None
    _row: strawberry.Private[MessageView | None] = None

    @strawberry.field(description="The message this one follows (null for a first message).")
    def parent(self) -> Message | None:
        if self._row is None or self._tree is None or self._row.parent_position is None:
            return None
        row = self._tree.get(self._row.parent_position)
        return Message.from_model(row, self._tree) if row is not None else None

    @strawberry.field(description="Its alternatives, itself included, oldest first.")
    def siblings(self) -> list[Message]:
        if self._row is None or self._tree is None:
            return [self]
        parent = self._row.parent_position
        return [Message.from_model(row, self._tree) for row in self._tree.values()
                if row.parent_position == parent]

    @classmethod
    def from_model(cls, row: MessageView,
                   tree: dict[int, MessageView] | None = None) -> Message:
        # Built a thousand times for one chat list: ID and Timestamp are str and int at run
        # time (NewTypes), so the values go in as they are.
        return cls(id=row.id, content=row.content,  # type: ignore[arg-type]
                   role=_ROLES.get(row.role) or Role(row.role),
                   timestamp=row.timestamp,  # type: ignore[arg-type]
                   tokens=row.tokens, model=row.model, status=row.status,
                   parent_id=row.parent_id or None,  # type: ignore[arg-type]
                   sibling_ids=list(row.sibling_ids),  # type: ignore[arg-type]
                   active=row.active,
                   citations=citations_of(row.citations) if row.citations else [],
                   _tree=tree, _row=row)


@strawberry.type
class Conversation:
    id: strawberry.ID
    title: str
    model: str
    system_prompt: str | None
    created_at: Timestamp
    updated_at: Timestamp
    user_id: strawberry.ID
    _pk: strawberry.Private[str]
    _messages: strawberry.Private[list[MessageView] | None] = None
    pinned: bool = False
    archived: bool = False
    message_count: int = strawberry.field(
        default=0, description="How many messages it holds (stored: reads no message)")
    last_message_preview: str | None = strawberry.field(
        default=None, description="The newest message's first 200 characters")
    _tags: strawberry.Private[list[str] | None] = None

    @strawberry.field(description="Its tags; batched across conversations.")
    async def tags(self, info: strawberry.Info) -> list[str]:
        if self._tags is not None:
            return self._tags
        tags: list[str] = await info.context.loaders.tags.load(self._pk)
        return tags

    @strawberry.field(description="The active path in order (what the guide's clients show), "
                      "or with tree: true every message, parents first; batched across "
                      "conversations.")
    async def messages(self, info: strawberry.Info, tree: bool = False) -> list[Message]:
        rows = self._messages
        if rows is None:
            rows = await info.context.loaders.messages.load(self._pk)
        by_position = {row.position: row for row in rows}
        return [Message.from_model(row, by_position) for row in rows if tree or row.active]

    @classmethod
    def from_model(cls, row: ConversationRow, messages: list[MessageView] | None = None,
                   tags: list[str] | None = None) -> Conversation:
        return cls(id=strawberry.ID(row.id), title=row.title, model=row.model,
                   system_prompt=row.system_prompt, created_at=Timestamp(row.created_at),
                   updated_at=Timestamp(row.updated_at), user_id=strawberry.ID(row.user_id),
                   _pk=row.pk, _messages=messages, pinned=row.pinned, archived=row.archived,
                   message_count=row.message_count,
                   last_message_preview=row.last_message_preview, _tags=tags)


@strawberry.type
class ConversationEdge:
    cursor: str
    node: Conversation


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ConversationConnection:
    edges: list[ConversationEdge]
    page_info: PageInfo
    _total: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        # Counted only when asked (a query of its own).
        return await self._total()

    @strawberry.field
    def nodes(self) -> list[Conversation]:
        return [edge.node for edge in self.edges]


@strawberry.type
class Stats:
    total_conversations: int
    total_messages: int
    total_tokens: int
    average_messages_per_conversation: float
    total_cost_usd: float = strawberry.field(description="What your replies cost, in USD.")

    @classmethod
    def from_data(cls, data: StatsData) -> Stats:
        return cls(total_conversations=data.total_conversations,
                   total_messages=data.total_messages, total_tokens=data.total_tokens,
                   average_messages_per_conversation=data.average_messages_per_conversation,
                   total_cost_usd=data.total_cost_usd)


@strawberry.type
class Health:
    status: str
    timestamp: datetime
    active_connections: int
    total_users: int
    total_conversations: int
    database: str
    redis: str | None
    version: str


@strawberry.type
class AuthPayload:
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User

    @classmethod
    def from_pair(cls, pair: TokenPair) -> AuthPayload:
        return cls(access_token=pair.access_token, refresh_token=pair.refresh_token,
                   token_type=pair.token_type, expires_in=pair.expires_in,
                   user=User.from_model(pair.user))


@strawberry.input
class RegisterInput:
    username: str
    email: str
    password: str
    invite_code: str | None = strawberry.field(default=None,
                                               description="Needed when SIGNUP=invite")


@strawberry.input
class LoginInput:
    username: str
    password: str


@strawberry.input
class MessageInput:
    content: str
    role: Role
    id: strawberry.ID | None = None
    timestamp: Timestamp | None = None


@strawberry.input
class ConversationInput:
    title: str
    model: str
    messages: list[MessageInput] = strawberry.field(default_factory=list)
    id: strawberry.ID | None = strawberry.field(
        default=None, description="Client-chosen id (createConversation only)"
    )
    system_prompt: str | None = None
    created_at: Timestamp | None = strawberry.field(
        default=None, description="Kept from creation; ignored by updateConversation"
    )

