"""The documented REST + WebSocket contract (the integration guide), mapped onto the same
operations as GraphQL. Thin: parse, call resolvers/, shape the answer. No business rules."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from models import User
from resolvers import auth, chat, conversations, keys, live, organize, stats, validation
from resolvers.chat.events import ChatError, ReplyEvent
from resolvers.conversations import ConversationView as ConversationRow
from resolvers.health import check as health_check
from resolvers.kit import metrics, ratelimit
from resolvers.kit.clock import as_utc
from resolvers.kit.errors import AppError, Unauthenticated, ValidationFailed
from resolvers.kit.version import VERSION
from resolvers.services import Services

# ---------------------------------------------------------------- request/response shapes


class RegisterBody(BaseModel):
    username: str = Field(max_length=256)
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    invite_code: str | None = Field(default=None, max_length=64)  # SIGNUP=invite


class LoginBody(BaseModel):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class RefreshBody(BaseModel):
    refresh_token: str = Field(max_length=512)


class LogoutBody(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=512)
    everywhere: StrictBool = False


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    refresh_token: str
    expires_in: int


class UserOut(BaseModel):
    id: str
    username: str
    email: str
    created_at: str
    role: str = "user"
    totp_enabled: bool = False


class MfaOut(BaseModel):
    mfa_required: bool
    mfa_token: str


# JSON types are taken as they are: `true` is not a number, "0.5" is not a number, 1.5 is not
# an integer, NaN/Infinity (which Python's JSON parser lets through) are not numbers at all.
StrictInt = Annotated[int, Field(strict=True)]
StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    content: str
    role: Literal["user", "assistant", "system"]
    timestamp: StrictInt | None = None
    tokens: StrictInt | None = Field(default=None, ge=0)
    model: str | None = None


class ConversationIn(BaseModel):
    """A Conversation as clients send it; `userId` and `updatedAt` are ignored (the owner is
    the token's user; the server sets updatedAt)."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    title: str
    messages: list[MessageIn] = Field(default_factory=list)
    model: str
    systemPrompt: str | None = None
    createdAt: StrictInt | None = None
    updatedAt: int | None = None
    userId: str | None = None


class MessageOut(BaseModel):
    id: str
    content: str
    role: str
    timestamp: int
    tokens: int | None = None
    model: str | None = None
    status: str | None = None
    parentId: str | None = None
    siblingIds: list[str] = Field(default_factory=list, description=(
        "The alternatives of this message (edits, regenerated replies), itself included, "
        "oldest first"))
    active: bool | None = Field(None, description="Only with ?tree=true: on the active path")


class ConversationOut(BaseModel):
    id: str
    title: str
    messages: list[MessageOut]
    createdAt: int
    updatedAt: int
    model: str
    systemPrompt: str | None = None
    userId: str
    pinned: bool = False
    archived: bool = False
    tags: list[str] = Field(default_factory=list)


class ConversationSummaryOut(BaseModel):
    """`?view=summary`: no messages; their count and the newest one's start instead."""

    id: str
    title: str
    createdAt: int
    updatedAt: int
    model: str
    systemPrompt: str | None = None
    userId: str
    pinned: bool
    archived: bool
    tags: list[str]
    messageCount: int
    lastMessagePreview: str | None


class StatsOut(BaseModel):
    total_conversations: int
    total_messages: int
    total_tokens: int
    average_messages_per_conversation: float
    total_cost_usd: float


class MessageOnly(BaseModel):
    message: str


# Chat's rules (roles, ranges, blank content) are checked by resolvers/chat/params.py for
# every face; these shapes only type the JSON and show the rules in OpenAPI.
class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    content: str | list[dict[str, Any]] = Field(description=(
        "Text, or content parts: {type: text, text}, {type: image_url, image_url: {url: "
        "data:image/...;base64,...}}, {type: file, file_id} (an uploaded image)"))
    role: str | None = Field(None, json_schema_extra={"enum": [*sorted(validation.ROLES)]})
    timestamp: StrictInt | None = None


class ChatRequest(BaseModel):
    """The guide's ChatRequest plus additive fields (conversation_id, request_id,
    system_prompt)."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessageIn] = Field(json_schema_extra={"minItems": 1})
    model: str | None = None
    temperature: StrictFloat = Field(chat.DEFAULT_TEMPERATURE, json_schema_extra={
        "minimum": chat.TEMPERATURE_RANGE[0], "maximum": chat.TEMPERATURE_RANGE[1]})
    max_tokens: StrictInt = Field(chat.DEFAULT_MAX_TOKENS, json_schema_extra={
        "minimum": chat.MAX_TOKENS_RANGE[0], "maximum": chat.MAX_TOKENS_RANGE[1]})
    stream: StrictBool = False
    conversation_id: str | None = None
    request_id: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = Field(None, max_length=128, description=(
        "Tools the server runs for the model: <server>.<tool> names from GET /api/tools, "
        "or \"*\" for all of them"))
    files: list[str] = Field(default_factory=list, description=(
        "Ids of your files to answer from: their best passages go into the prompt, and the "
        "reply starts with a `citations` event"))


class ChatOut(BaseModel):
    content: str
    tokens: int
    model: str
    request_id: str
    finish_reason: str
    message_id: str | None = None
    citations: list[dict[str, Any]] | None = None


class ModelOut(BaseModel):
    id: str
    provider: str
    name: str
    default: bool


class StopOut(BaseModel):
    stopped: bool


# ---------------------------------------------------------------- shaping


class FastJSON(JSONResponse):
    """JSONResponse rendered by orjson: the same bytes as Starlette's compact, UTF-8 JSON for
    what these routes send (str, int, bool, None, lists, dicts), in a fraction of the CPU
    time; a chat list is ~140 KB of it (bench/, issue 11). The routes return it directly, so
    FastAPI never re-validates it against `response_model`, which only documents it."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)



def message_json(row: conversations.MessageView, *, whole_tree: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"id": row.id, "content": row.content, "role": row.role,
                            "timestamp": row.timestamp}
    # Extra fields only where they mean something (assistant replies).
    if row.tokens is not None:
        data["tokens"] = row.tokens
    if row.model is not None:
        data["model"] = row.model
    if row.status is not None:
        data["status"] = row.status
    if row.citations:
        data["citations"] = row.citations
    data["parentId"] = row.parent_id
    data["siblingIds"] = row.sibling_ids
    if whole_tree:
        data["active"] = row.active
    return data


def conversation_json(row: ConversationRow, messages: list[conversations.MessageView],
                      tags: list[str] | None = None, *,
                      whole_tree: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "title": row.title,
        "messages": [message_json(message, whole_tree=whole_tree) for message in messages],
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "model": row.model,
        "userId": row.user_id,
        "pinned": row.pinned,
        "archived": row.archived,
    }
    if tags is not None:
        data["tags"] = tags
    if row.system_prompt is not None:
        data["systemPrompt"] = row.system_prompt
    return data


def summary_json(row: ConversationRow, tags: list[str]) -> dict[str, Any]:
    """A conversation as a sidebar shows it: no messages, their count and the newest one's
    first characters instead (stored on the row: no message body is read)."""
    data = conversation_json(row, [], tags)
    del data["messages"]
    data["messageCount"] = row.message_count
    data["lastMessagePreview"] = row.last_message_preview
    return data


def to_input(body: ConversationIn, *, with_id: bool) -> conversations.ConversationInput:
    return conversations.ConversationInput(
        id=body.id if with_id else None,
        title=body.title,
        model=body.model,
        system_prompt=body.systemPrompt,
        created_at=body.createdAt if with_id else None,
        messages=[
            conversations.MessageInput(
                id=m.id, content=m.content, role=m.role, timestamp=m.timestamp,
                tokens=m.tokens, model=m.model,
            )
            for m in body.messages
        ],
    )


def token_json(pair: auth.TokenPair) -> dict[str, Any]:
    return {"access_token": pair.access_token, "token_type": pair.token_type,
            "refresh_token": pair.refresh_token, "expires_in": pair.expires_in}


def sign_in_json(result: auth.TokenPair | auth.MfaChallenge) -> dict[str, Any]:
    """Tokens, or for a 2FA account `{"mfa_required": true, "mfa_token"}` and no token."""
    if isinstance(result, auth.MfaChallenge):
        return {"mfa_required": True, "mfa_token": result.mfa_token}
    return token_json(result)


# ---------------------------------------------------------------- dependencies


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def db_session(
    services: Annotated[Services, Depends(services_of)],
) -> AsyncIterator[AsyncSession]:
    async with services.db.session() as session:
        yield session


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <access_token>`")


def authenticated(*scopes: keys.Scope) -> Any:
    """A dependency: the caller (access token or API key) allowed one of `scopes`."""

    async def caller(
        services: Annotated[Services, Depends(services_of)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> keys.Caller:
        # A short session of its own: chat routes wait for a whole reply (or stream it) and
        # must not hold a pooled connection meanwhile. With the user cached, it never
        # checks a connection out.
        async with services.db.session() as session:
            return await keys.authenticate(
                session, services.security, credentials.credentials if credentials else None,
                scopes=scopes, cache=services.users)

    return caller


_any_caller = authenticated(*keys.KEY_SCOPES)


async def current_user(request: Request,
                       caller: Annotated[keys.Caller, Depends(_any_caller)]) -> User:
    """The caller, for routes whose HTTP method says what they do: an API key needs `read`
    for GET, `write` for anything else."""
    keys.require(caller.key, ["read"] if request.method in ("GET", "HEAD") else ["write"])
    return caller.user


def client_address(connection: HTTPConnection) -> str:
    """Who is asking, for rate limits: the peer, or X-Forwarded-For from TRUSTED_PROXIES."""
    return ratelimit.client_address(
        connection.client.host if connection.client else None,
        connection.headers.get("x-forwarded-for"),
        services_of(connection).settings.trusted_proxies,
    )


ServicesDep = Annotated[Services, Depends(services_of)]
# scope="function": the session closes when the route returns, not after the response has
# been sent (a streamed response would otherwise hold its connection for its whole life).
SessionDep = Annotated[AsyncSession, Depends(db_session, scope="function")]
UserDep = Annotated[User, Depends(current_user)]
# The same credentials current_user checked (FastAPI runs the dependency once per request).
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
# Chat and /v1 (scope chat); the account itself (no API key ever).
ChatCallerDep = Annotated[keys.Caller, Depends(authenticated("chat"))]
AccountCallerDep = Annotated[keys.Caller, Depends(authenticated(keys.ACCOUNT))]
ModelsCallerDep = Annotated[keys.Caller, Depends(authenticated("chat", "read"))]

# ---------------------------------------------------------------- routes

router = APIRouter()


@router.get("/", tags=["meta"], summary="API information")
async def root() -> dict[str, Any]:
    return {
        "name": "AI Chat Studio API",
        "version": VERSION,
        "status": "running",
        "endpoints": {
            "auth": "/api/auth",
            "chat": "/api/chat",
            "conversations": "/api/conversations",
            "models": "/api/models",
            "stats": "/api/stats",
            "websocket": "/ws",
            "graphql": "/graphql",
            "docs": "/docs",
            "redoc": "/redoc",
            "health": "/health",
        },
    }


@router.get("/health", tags=["meta"],
            summary="Readiness: 503 when the database (or Redis, when configured) is down")
async def health(services: ServicesDep) -> JSONResponse:
    """Ready to serve chat: 200 `healthy`, or 503 `unhealthy` while a dependency chat needs
    is down (`database`/`redis` say which). For load balancers and readiness probes."""
    report = await health_check(services)
    body = {
        "status": report.status,
        "timestamp": report.timestamp.isoformat().replace("+00:00", "Z"),
        "active_connections": report.active_connections,
        "total_users": report.total_users,
        "total_conversations": report.total_conversations,
        "database": report.database,
        "redis": report.redis,
        "version": report.version,
    }
    return JSONResponse(body, status_code=200 if report.status == "healthy" else 503)


@router.get("/health/live", tags=["meta"], summary="Liveness: the process answers")
async def health_live() -> dict[str, str]:
    """200 while the process serves HTTP, whatever its dependencies do: for orchestrators
    that restart a process only when it is stuck (restarting would not bring a database
    back)."""
    return {"status": "alive"}


RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many attempts: wait `Retry-After` seconds"}}


@router.post("/api/auth/register", tags=["auth"], response_model=TokenOut,
             responses={400: {"description": "Username or email already registered"},
                        **RATE_LIMITED})
async def register(body: RegisterBody, request: Request, services: ServicesDep,
                   session: SessionDep) -> dict[str, Any]:
    """Create an account. Answers with an access token (and a refresh token)."""
    pair = await auth.register(session, services.security, username=body.username,
                               email=body.email, password=body.password,
                               limiter=services.limiter, address=client_address(request),
                               invite_code=body.invite_code)
    return token_json(pair)


@router.post("/api/auth/login", tags=["auth"], response_model=TokenOut | MfaOut,
             responses={401: {"description": "Incorrect username or password"}, **RATE_LIMITED})
async def login(body: LoginBody, request: Request, services: ServicesDep,
                session: SessionDep) -> dict[str, Any]:
    """Sign in. An unknown user and a wrong password get the same answer. With 2FA on, the
    answer is `{"mfa_required": true, "mfa_token"}`: finish at /api/auth/2fa/verify."""
    result = await auth.login(session, services.security, username=body.username,
                              password=body.password, limiter=services.limiter,
                              address=client_address(request))
    return sign_in_json(result)


@router.post("/api/auth/refresh", tags=["auth"], response_model=TokenOut)
async def refresh(body: RefreshBody, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """Exchange a refresh token for new tokens. Each refresh token works once."""
    pair = await auth.refresh(session, services.security, refresh_token=body.refresh_token)
    return token_json(pair)


@router.post("/api/auth/logout", tags=["auth"], response_model=MessageOnly)
async def logout(body: LogoutBody, services: ServicesDep, session: SessionDep,
                 caller: AccountCallerDep) -> dict[str, str]:
    """Revoke a refresh token, or with `everywhere` every token of yours."""
    await auth.logout(session, services.security, caller.user, refresh_token=body.refresh_token,
                      everywhere=body.everywhere, broker=services.broker)
    return {"message": "logged out"}


class DeleteAccountBody(BaseModel):
    password: str = Field(max_length=1024)


@router.delete("/api/auth/me", tags=["auth"], response_model=MessageOnly,
               responses={401: {"description": "Wrong password or token"}})
async def delete_me(body: DeleteAccountBody, services: ServicesDep, session: SessionDep,
                    caller: AccountCallerDep) -> dict[str, str]:
    """Delete your account and everything in it (needs your password); your open
    WebSockets close with 4401."""
    await auth.delete_account(session, services.security, caller.user, password=body.password,
                              broker=services.broker)
    return {"message": "account deleted"}


@router.get("/api/auth/me", tags=["auth"], response_model=UserOut)
async def me(user: UserDep) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "email": user.email,
            "created_at": as_utc(user.created_at).isoformat(), "role": user.role,
            "totp_enabled": user.totp_enabled}


@router.get("/api/conversations", tags=["conversations"],
            response_model=list[ConversationOut | ConversationSummaryOut],
            responses={200: {"headers": {"X-Next-Cursor": {
                "description": "With `limit`: the `cursor` of the next page, when there is one",
                "schema": {"type": "string"}}}}})
async def list_conversations(
    session: SessionDep, user: UserDep, archived: bool | None = None, pinned: bool | None = None,
    tag: str | None = None, limit: int | None = None, cursor: str | None = None,
    view: Literal["full", "summary"] = "full",
) -> JSONResponse:
    """Your conversations, newest `updatedAt` first: all of them with their messages (the
    guide's array), or filtered (`archived`, `pinned`, `tag`), paged (`limit` ≤ 100 and
    `cursor`; the next cursor is in `X-Next-Cursor`) and, with `view=summary`, without
    messages (`messageCount` and `lastMessagePreview` instead; reads no message bodies)."""
    page = await organize.page(session, user, filters=organize.Filters(archived, pinned, tag),
                               first=limit, after=cursor, with_total=False,
                               names=("limit", "cursor"))
    headers = {"X-Next-Cursor": page.end_cursor} if page.has_next_page and page.end_cursor else {}
    if view == "summary":
        return FastJSON([summary_json(i.conversation, i.tags) for i in page.items],
                        headers=headers)
    messages = await conversations.messages_for(session, [i.conversation.pk for i in page.items])
    return FastJSON([conversation_json(i.conversation, messages.get(i.conversation.pk, []),
                                       i.tags) for i in page.items], headers=headers)


@router.post("/api/conversations", tags=["conversations"], response_model=ConversationOut,
             responses={409: {"description": "You already have a conversation with this id"}})
async def create_conversation(body: ConversationIn, session: SessionDep,
                              user: UserDep) -> JSONResponse:
    stored = await conversations.create(session, user, data=to_input(body, with_id=True))
    return JSONResponse(conversation_json(stored.conversation, stored.messages, []))


@router.get("/api/conversations/{conversation_id}", tags=["conversations"],
            response_model=ConversationOut, responses={404: {"description": "Not found"}})
async def get_conversation(conversation_id: str, session: SessionDep, user: UserDep,
                           tree: bool = False) -> JSONResponse:
    """The conversation: `messages` is its active path, or with `?tree=true` every message
    (each with `parentId`, `siblingIds` and `active`)."""
    stored = await conversations.get(session, user, conversation_id=conversation_id,
                                     whole_tree=tree)
    tags = await organize.tags_for(session, [stored.conversation.pk])
    return FastJSON(conversation_json(stored.conversation, stored.messages,
                                      tags.get(stored.conversation.pk, []), whole_tree=tree))


@router.put("/api/conversations/{conversation_id}", tags=["conversations"],
            response_model=ConversationOut, responses={404: {"description": "Not found"}})
async def update_conversation(conversation_id: str, body: ConversationIn, session: SessionDep,
                              user: UserDep,
                              branches: Literal["keep", "drop"] = "keep") -> JSONResponse:
    """Replace the conversation (title, model, systemPrompt, messages). `messages` becomes the
    active path: listed messages keep their alternatives, active messages left out are
    removed, other branches are kept unless `?branches=drop`."""
    stored = await conversations.replace(session, user, conversation_id=conversation_id,
                                         data=to_input(body, with_id=False),
                                         keep_branches=branches == "keep")
    tags = await organize.tags_for(session, [stored.conversation.pk])
    return JSONResponse(conversation_json(stored.conversation, stored.messages,
                                          tags.get(stored.conversation.pk, [])))


@router.delete("/api/conversations/{conversation_id}", tags=["conversations"],
               response_model=MessageOnly, responses={404: {"description": "Not found"}})
async def delete_conversation(conversation_id: str, session: SessionDep,
                              user: UserDep) -> dict[str, str]:
    await conversations.remove(session, user, conversation_id=conversation_id)
    return {"message": "对话已删除"}


@router.get("/api/stats", tags=["stats"], response_model=StatsOut)
async def get_stats(session: SessionDep, user: UserDep) -> dict[str, Any]:
    data = await stats.for_user(session, user)
    return {
        "total_conversations": data.total_conversations,
        "total_messages": data.total_messages,
        "total_tokens": data.total_tokens,
        "average_messages_per_conversation": data.average_messages_per_conversation,
        "total_cost_usd": data.total_cost_usd,
    }


@router.get("/api/models", tags=["chat"], response_model=list[ModelOut])
async def list_models(services: ServicesDep, caller: ModelsCallerDep) -> list[dict[str, Any]]:
    """Models you can chat with right now (the embedded one always; providers with a key;
    only those an admin allowed you, when they set a list)."""
    user = caller.user
    default = await services.chat.default_model_for(user)
    return [{"id": m.id, "provider": m.provider, "name": m.name or m.id,
             "default": m.id == default} for m in await services.chat.models_for(user)]


def chat_message(m: ChatMessageIn) -> chat.ChatMessageInput:
    text, images = chat.content_parts(m.content)
    return chat.ChatMessageInput(role=m.role, content=text, id=m.id, timestamp=m.timestamp,
                                 images=images)


def chat_params(body: ChatRequest) -> chat.ChatParams:
    return chat.ChatParams(
        messages=[chat_message(m) for m in body.messages],
        model=body.model, temperature=body.temperature, max_tokens=body.max_tokens,
        conversation_id=body.conversation_id, request_id=body.request_id,
        system_prompt=body.system_prompt, server_tools=tuple(body.tools or ()),
        files=tuple(body.files),
    )


def sse(seq: int, event: ReplyEvent) -> bytes:
    """One reply event on the SSE stream: its place in the reply as `id:`, the documented
    JSON as `data:` (internal fields never reach a client)."""
    data = json.dumps(event.to_wire(), ensure_ascii=False)
    return f"id: {seq}\ndata: {data}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def event_stream(services: Services, caller: keys.Caller, request_id: str,
                       after: int, token: str) -> Response:
    """SSE of a reply's events. An error before any chunk becomes a plain 502/504 answer,
    so a client sees the failure in the status code when it still can. The stream ends
    (with an `unauthenticated` error event) when the caller's token or API key is revoked,
    like a WebSocket."""
    events = chat.until_revoked(
        services.chat.events(caller.user, request_id, after=after),
        live.wait_until_caller_revoked(services.broker, services.db, services.security,
                                       token, caller.key),
        request_id=request_id)
    try:
        first_seq, first = await anext(events)
    except StopAsyncIteration:
        # The client already has the whole reply (an EventSource reconnects after the end,
        # sending the terminal event's id); 204 tells an EventSource to stop reconnecting.
        return Response(status_code=204)
    if isinstance(first, ChatError) and after == 0:
        await events.aclose()
        return error_response(chat.error_of(first))

    async def body() -> AsyncIterator[bytes]:
        # A client that hangs up only stops this reader; the reply is still generated and
        # kept by its own task.
        seq = first_seq
        try:
            yield sse(first_seq, first)
            async for seq, event in events:
                yield sse(seq, event)
        except AppError as exc:  # e.g. Redis went down mid-reply: say so, then end
            yield sse(seq, ChatError(code=exc.code.lower(), message=exc.message,
                                     request_id=request_id))
        finally:
            await events.aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/api/chat", tags=["chat"], response_model=ChatOut, responses={
    200: {"content": {"text/event-stream": {}},
          "description": "The reply, or with `stream: true` an SSE stream of chat_chunk events "
                         "then chat_complete (or error); each event has an `id:` to resume."},
    400: {"description": "Unknown model (the answer lists the available ones)"},
    429: {"description": "Too many chat requests, or the daily token quota is used up "
                         "(`Retry-After` says when to try again)"},
    502: {"description": "The provider failed"}, 504: {"description": "The provider timed out"},
})
async def post_chat(body: ChatRequest, services: ServicesDep, caller: ChatCallerDep,
                    credentials: CredentialsDep) -> Any:
    """Chat with a model. With `conversation_id`, the user's message and the reply are kept
    in that conversation by the server, even if the client goes away mid-reply."""
    params = chat_params(body)
    user = caller.user
    if not body.stream:
        return chat_json(await services.chat.complete(user, params, api_key=caller.key))
    handle = await services.chat.start(user, params, api_key=caller.key)
    assert credentials is not None  # authenticated() refused the request otherwise
    return await event_stream(services, caller, handle.request_id, 0, credentials.credentials)


def chat_json(result: chat.ChatResult) -> dict[str, Any]:
    data: dict[str, Any] = {"content": result.content, "tokens": result.tokens,
                            "model": result.model, "request_id": result.request_id,
                            "finish_reason": result.finish_reason}
    if result.message_id is not None:
        data["message_id"] = result.message_id
    if result.citations:
        data["citations"] = result.citations
    return data


@router.get("/api/chat/{request_id}/events", tags=["chat"], responses={
    200: {"content": {"text/event-stream": {}}}, 404: {"description": "Unknown or not yours"}})
async def resume_chat(request_id: str, services: ServicesDep, caller: ChatCallerDep,
                      credentials: CredentialsDep, after: int = 0,
                      last_event_id: Annotated[str | None, Header()] = None) -> Any:
    """Resume a reply's SSE stream after its last received event (`Last-Event-ID` header or
    `?after=`); the rest arrives exactly once, then the completion."""
    if last_event_id and last_event_id.strip().isdigit():
        after = max(after, int(last_event_id.strip()))
    assert credentials is not None  # authenticated() refused the request otherwise
    return await event_stream(services, caller, request_id, after, credentials.credentials)


@router.post("/api/chat/{request_id}/stop", tags=["chat"], response_model=StopOut)
async def stop_chat(request_id: str, services: ServicesDep,
                    caller: ChatCallerDep) -> dict[str, bool]:
    """Stop a reply; what was generated so far is kept."""
    return {"stopped": await services.chat.stop(caller.user, request_id)}


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Prometheus metrics (METRICS_ENABLED); keep it private (deploy/nginx.conf does)."""
    if not services.settings.metrics_enabled:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    try:
        connections: int | None = await services.broker.connections_count()
    except Exception:  # a scrape must answer even when the broker cannot
        connections = None
    body, content_type = metrics.render(connections)
    return Response(body, media_type=content_type)


# ---------------------------------------------------------------- errors


def error_response(exc: AppError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after" in exc.extra:  # RateLimited, Unavailable (database busy)
        headers["Retry-After"] = str(exc.extra["retry_after"])
    if isinstance(exc, ValidationFailed):
        # FastAPI's own 422 shape, so clients parse one format.
        detail: Any = [{"type": "value_error", "loc": ["body", exc.extra.get("field", "")],
                        "msg": exc.message, "input": None}]
    else:
        detail = exc.message
    body: dict[str, Any] = {"detail": detail}
    if "code" in exc.extra:  # a machine-readable reason (budget_exceeded)
        body["code"] = exc.extra["code"]
    if "available" in exc.extra:
        body["available"] = exc.extra["available"]
    return JSONResponse(json_safe(body), status_code=exc.http_status, headers=headers)


async def _app_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc)


def json_safe(value: Any) -> Any:
    """`value` as JSON can carry it: errors echo what the client sent, which may hold NaN or
    Infinity (no JSON number) or lone surrogates (no UTF-8) — echoed as is, the error itself
    would fail to encode and become a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


async def _validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 shape, made safe to encode (see json_safe)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


def install(app: FastAPI) -> None:
    """Mount the REST routes and the one AppError → HTTP status mapping."""
    app.include_router(router)
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
