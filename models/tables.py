"""SQLModel tables: what is stored. Nothing here knows about HTTP or GraphQL.

Times are integer epoch milliseconds (the contract's unit) except users.created_at, which the
contract shows as an ISO string and is kept as a timezone-aware datetime.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=40)
    username: str = Field(max_length=32)
    # Lower-cased copy: "Alice" and "alice" are one account name.
    username_key: str = Field(max_length=32, unique=True)
    email: str = Field(max_length=254, unique=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Raised by "log out everywhere": access tokens carry the generation they were issued in.
    token_generation: int = Field(default=0)
    # --- identity and administration (issue 14) ---
    role: str = Field(default="user", max_length=16,
                      sa_column_kwargs={"server_default": text("'user'")})  # user | admin
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                        server_default=true()))
    # None: every model; else the model ids this user may chat with (set by an admin).
    allowed_models: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # TOTP: the secret (encrypted with a key derived from SECRET_KEY) exists from setup on;
    # it only counts once totp_enabled is set by a correct code.
    totp_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    totp_enabled: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                               server_default=false()))
    # The last accepted 30-second step: a code is accepted once (no replay within its window).
    totp_last_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        # Ids are chosen by the client and scoped to their owner.
        UniqueConstraint("user_id", "id", name="uq_conversations_user_id_id"),
        # The chat list: one user's conversations, newest first.
        Index("ix_conversations_user_updated", "user_id", "updated_at", "pk"),
    )

    pk: str = Field(primary_key=True, max_length=36)
    id: str = Field(max_length=128)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    title: str = Field(sa_column=Column(Text, nullable=False))
    model: str = Field(max_length=128)
    system_prompt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Organize (issue 13): set by PATCH; the list filters on them.
    pinned: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                        server_default=false()))
    archived: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                          server_default=false()))
    # The sidebar's summary, kept by resolvers/summaries.py whenever messages are written, so
    # a chat list never reads a message body.
    message_count: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                          server_default="0"))
    last_message_preview: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ConversationTag(SQLModel, table=True):
    """A tag on a conversation (PATCH sets the whole list); `?tag=` filters on it."""

    __tablename__ = "conversation_tags"
    __table_args__ = (Index("ix_conversation_tags_tag", "tag", "conversation_pk"),)

    conversation_pk: str = Field(sa_column=Column(
        ForeignKey("conversations.pk", ondelete="CASCADE"), primary_key=True))
    tag: str = Field(primary_key=True, max_length=64)


class Share(SQLModel, table=True):
    """A public, read-only snapshot of a conversation, reached by an unguessable token."""

    __tablename__ = "shares"

    conversation_pk: str = Field(sa_column=Column(
        ForeignKey("conversations.pk", ondelete="CASCADE"), primary_key=True))
    token: str = Field(max_length=64, unique=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    # JSON list of {"role","content","timestamp"}: only what the public may see.
    snapshot: str = Field(sa_column=Column(Text, nullable=False))
    shared_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class Message(SQLModel, table=True):
    """One message of a conversation: its own row, so a chat list never loads message bodies.

    Messages form a tree (branches, issue 13): `parent_position` is the `position` of the
    message this one answers or follows (null for a first message). Positions are unique in a
    conversation and a child's is always larger than its parent's, so the `active` messages in
    position order are the active path: the linear chat every legacy shape shows.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # Unique: a parent is named by its position.
        Index("ix_messages_conversation_position", "conversation_pk", "position", unique=True),
        # Ids are unique within their conversation (they address a message: edits, replies).
        Index("uq_messages_conversation_id", "conversation_pk", "id", unique=True),
    )

    pk: int | None = Field(default=None, primary_key=True)
    conversation_pk: str = Field(
        sa_column=Column(ForeignKey("conversations.pk", ondelete="CASCADE"), nullable=False)
    )
    position: int
    id: str = Field(max_length=128)
    role: str = Field(max_length=16)
    content: str = Field(sa_column=Column(Text, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    tokens: int | None = None
    model: str | None = Field(default=None, max_length=128)
    # Assistant replies generated by the server: complete | stopped | error | interrupted |
    # streaming (interrupted: its worker died or shut down mid-reply; the text is partial).
    status: str | None = Field(default=None, max_length=16)
    parent_position: int | None = None
    active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=true())
    )
    # The sources a reply was given (files on the chat request, issue 16): the `citations`
    # event's list, kept with the reply.
    citations: list[dict[str, object]] | None = Field(default=None,
                                                      sa_column=Column(JSON, nullable=True))


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    # All tokens descended from one login share a family: replaying a rotated token revokes it.
    family_id: str = Field(max_length=36, index=True)
    token_hash: str = Field(max_length=64, unique=True)  # sha256 hex; the token itself is not kept
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    rotated_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class TokenUsage(SQLModel, table=True):
    __tablename__ = "token_usage"
    __table_args__ = (Index("ix_token_usage_user_created", "user_id", "created_at"),)

    pk: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    model: str = Field(max_length=128)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    request_id: str | None = Field(default=None, max_length=64)
    # What the reply cost, in integer micro-dollars (USD × 10⁶; prices per model), and the
    # API key that asked for it (None: a signed-in session).
    cost_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                         server_default="0"))
    api_key_id: str | None = Field(default=None, sa_column=Column(
        ForeignKey("api_keys.id", ondelete="SET NULL", name="fk_token_usage_api_key_id"),
        nullable=True))


class RecoveryCode(SQLModel, table=True):
    """A 2FA recovery code: only its sha256 is kept; `used_at` makes it single-use."""

    __tablename__ = "recovery_codes"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    code_hash: str = Field(max_length=64, unique=True)
    used_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class OAuthIdentity(SQLModel, table=True):
    """A user's account at a sign-in provider: (provider, subject) names one person there."""

    __tablename__ = "oauth_identities"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_oauth_provider_subject"),)

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    provider: str = Field(max_length=32)
    subject: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=254)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class OAuthLogin(SQLModel, table=True):
    """A sign-in started at /authorize and not finished yet: the `state` we sent, with the
    nonce and PKCE verifier that belong to it. Deleted when the callback uses it (once)."""

    __tablename__ = "oauth_logins"

    state: str = Field(primary_key=True, max_length=128)
    provider: str = Field(max_length=32)
    nonce: str = Field(max_length=128)
    code_verifier: str = Field(max_length=128)
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class Invite(SQLModel, table=True):
    """A sign-up invite (SIGNUP=invite): the code is kept hashed and works once."""

    __tablename__ = "invites"

    id: str = Field(primary_key=True, max_length=36)
    code_hash: str = Field(max_length=64, unique=True)
    created_by: str | None = Field(
        default=None,
        sa_column=Column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    used_by: str | None = Field(
        default=None,
        sa_column=Column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    used_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class AuditEvent(SQLModel, table=True):
    """Append-only: rows are inserted in the transaction of the change they record and never
    updated or deleted by the application. No foreign keys: the record outlives its users."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at", "id"),
        Index("ix_audit_log_type_at", "type", "at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: int = Field(sa_column=Column(BigInteger, nullable=False))
    type: str = Field(max_length=48)
    actor_id: str | None = Field(default=None, max_length=40)
    target_id: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, object] = Field(default_factory=dict,
                                      sa_column=Column(JSON, nullable=False))


class ApiKey(SQLModel, table=True):
    """A long-lived credential for scripts and OpenAI SDKs. Only its SHA-256 is kept; the
    secret is shown once, at creation. Revoking keeps the row (usage still names it)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_created", "user_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)  # the first characters, to recognise a key in a list
    key_hash: str = Field(max_length=64, unique=True)  # sha256 hex of the whole key
    scopes: str = Field(max_length=64)  # comma-separated: chat, read, write
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    revoked_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_used_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    budget_micros: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class BudgetLedger(SQLModel, table=True):
    """Running spend of one budget: a user's month (`user:<id>:<YYYY-MM>`) or a key's life
    (`key:<id>`). Reservations and settlements are single conditional UPDATEs on this row, so
    concurrent requests on any worker can never reserve past the limit together."""

    __tablename__ = "budget_ledgers"

    id: str = Field(primary_key=True, max_length=80)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    spent_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    reserved_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class BudgetReservation(SQLModel, table=True):
    """One reply's hold on its ledgers until it settles. Kept so that a hold whose worker
    died is found and released (resolvers/billing `release_stale`), not held forever."""

    __tablename__ = "budget_reservations"
    __table_args__ = (Index("ix_budget_reservations_user_created", "user_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    month_ledger: str = Field(max_length=80)
    key_ledger: str | None = Field(default=None, max_length=80)
    amount_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class McpServer(SQLModel, table=True):
    """An MCP server an admin registered (issue 15): stdio (a command this server runs) or
    Streamable HTTP (a URL, through the outbound guard). Users see it when `visible`."""

    __tablename__ = "mcp_servers"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=32, unique=True)
    transport: str = Field(max_length=8)  # "stdio" | "http"
    command: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    args: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    env: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON object
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    headers: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON object
    visible: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=true())
    )
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class StoredFile(SQLModel, table=True):
    """An uploaded file (issue 16): its bytes live under DATA_DIR/files/<id>; its text, once
    extracted, in `file_chunks`. `status`: processing → ready | error (`error` says why)."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user_created", "user_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"),
                                          nullable=False))
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=127)  # sniffed from the bytes, not the client's
    # text | markdown | html | pdf | docx | csv | json | code | image
    kind: str = Field(max_length=16)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(max_length=16)  # processing | ready | error
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    chunks: int = Field(default=0)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class FileChunk(SQLModel, table=True):
    """A passage of a file's text, indexed for retrieval: SQLite keeps `search_text` in the
    FTS5 table `file_chunk_search` (triggers), PostgreSQL in a generated tsvector column with a
    GIN index (both from alembic 0016a)."""

    __tablename__ = "file_chunks"
    __table_args__ = (Index("ix_file_chunks_file", "file_id", "ordinal"),)

    pk: int | None = Field(default=None, primary_key=True)
    file_id: str = Field(sa_column=Column(ForeignKey("files.id", ondelete="CASCADE"),
                                          nullable=False))
    user_id: str = Field(max_length=40, index=True)
    ordinal: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    # The text as the index sees it (resolvers/kit/textsearch.index_text: CJK set apart).
    search_text: str = Field(sa_column=Column(Text, nullable=False))
