"""Subscriptions (chatStream, chatEvents, typing), sendTyping, and the WebSocket transport.

Both subprotocols are served at /graphql: `graphql-transport-ws` and, unless
GRAPHQL_LEGACY_WS=false, the legacy `graphql-ws`. A connection authenticates once, in its
`connection_init` payload (`{"Authorization": "Bearer <token>"}` or `{"token": "<token>"}`);
Strawberry refuses `subscribe`/`start` before that (4401). Afterwards the connection is
closed with 4401 when its token expires, its user logs out everywhere or is deleted.

Subscription fields hold no database session: the user is resolved once at connect time with
a short session, and replies are read from the broker's reply log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator, Sequence
from datetime import timedelta
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket, WebSocketState
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.fastapi import GraphQLRouter as StrawberryRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from resolvers import chat, live, presence
from resolvers.chat import events
from resolvers.kit.errors import AppError
from resolvers.kit.security import bearer_token
from resolvers.kit.settings import Settings
from schema.chat import ChatInput, chat_params
from schema.citations import Citation, citations_of
from schema.context import Context, get_context
from schema.errors import shape_error
from schema.queries import ctx
from schema.scalars import Timestamp

log = logging.getLogger("chat_studio.graphql.ws")

# Close code for a connection whose rights ended (expired token, logout, deletion).
CLOSE_UNAUTHORIZED = 4401

# ---------------------------------------------------------------- types


@strawberry.type(description="A piece of the reply, in order; `seq` is its place in the reply.")
class ChatChunk:
    content: str
    seq: int
    request_id: strawberry.ID


@strawberry.type(description="The reply is done (also after stopChat: finishReason 'stopped').")
class ChatComplete:
    tokens: int
    model: str
    request_id: strawberry.ID
    finish_reason: str
    message_id: strawberry.ID | None = None
    seq: int = 0


@strawberry.type(description="The reply failed; what was generated before is kept.")
class ChatError:
    code: str
    message: str
    # Non-null like ChatChunk's and ChatComplete's: one selection of `requestId` across the
    # union's members must have a single type, or the query does not validate.
    request_id: strawberry.ID


@strawberry.type(description="The model calls a function the request offered (its tools); "
                 "run it and send the result in the next request.")
class ChatToolCall:
    id: strawberry.ID
    name: str
    arguments: str = strawberry.field(description="A JSON object, as text")
    seq: int
    request_id: strawberry.ID


@strawberry.type(description="What a tool the server ran answered (the model reads it next); "
                 "a tool that failed or timed out is isError.")
class ChatToolResult:
    id: strawberry.ID
    content: str
    is_error: bool
    seq: int
    request_id: strawberry.ID


@strawberry.type(description="The sources the reply was given (the request's files), before "
                 "its first chunk; the model cites them by number ([1] is the first).")
class ChatCitations:
    sources: list[Citation]
    seq: int
    request_id: strawberry.ID


ChatEvent = Annotated[ChatChunk | ChatToolCall | ChatToolResult | ChatCitations | ChatComplete
                      | ChatError,
                      strawberry.union("ChatEvent")]


@strawberry.type
class TypingEvent:
    user_id: strawberry.ID
    conversation_id: strawberry.ID
    timestamp: Timestamp


def chat_event(seq: int, event: events.ReplyEvent
               ) -> (ChatChunk | ChatToolCall | ChatToolResult | ChatCitations | ChatComplete
                     | ChatError):
    """A reply event as GraphQL's ChatEvent (only the fields the schema documents)."""
    request_id = strawberry.ID(event.request_id)
    match event:
        case events.ChatChunk():
            return ChatChunk(content=event.content, seq=seq, request_id=request_id)
        case events.ChatToolCall():
            return ChatToolCall(id=strawberry.ID(event.id), name=event.name,
                                arguments=event.arguments, seq=seq, request_id=request_id)
        case events.ChatToolResult():
            return ChatToolResult(id=strawberry.ID(event.id), content=event.content,
                                  is_error=event.is_error, seq=seq, request_id=request_id)
        case events.ChatCitations():
            return ChatCitations(sources=citations_of(event.sources), seq=seq,
                                 request_id=request_id)
        case events.ChatComplete():
            return ChatComplete(
                tokens=event.tokens, model=event.model, request_id=request_id,
                finish_reason=event.finish_reason, seq=seq,
                message_id=strawberry.ID(event.message_id) if event.message_id else None)
        case events.ChatError():
            error = chat.error_of(event)
            return ChatError(code=error.code, message=event.message or error.message,
                             request_id=request_id)


# ---------------------------------------------------------------- fields


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Start a reply and receive it: ChatChunk … then "
                             "ChatComplete or ChatError. Resume it with chatEvents.")
    async def chat_stream(
        self, info: strawberry.Info, input: ChatInput
    ) -> AsyncGenerator[ChatEvent, None]:
        context = ctx(info)
        caller = await context.caller("chat")
        actor = caller.user
        service = context.services.chat
        handle = await service.start(actor, chat_params(input), api_key=caller.key)
        # Unsubscribing stops only this reader: the reply is still generated and kept.
        async for seq, event in service.events(actor, handle.request_id):
            yield chat_event(seq, event)

    @strawberry.subscription(description="A reply of yours after the last `seq` you saw: "
                             "every later event exactly once, then the end.")
    async def chat_events(
        self, info: strawberry.Info, request_id: strawberry.ID, after: int = 0
    ) -> AsyncGenerator[ChatEvent, None]:
        context = ctx(info)
        actor = await context.actor("chat")
        async for seq, event in context.services.chat.events(actor, str(request_id),
                                                             after=after):
            yield chat_event(seq, event)

    @strawberry.subscription(description="Typing of your other connections in a conversation.")
    async def typing(
        self, info: strawberry.Info, conversation_id: strawberry.ID
    ) -> AsyncGenerator[TypingEvent, None]:
        context = ctx(info)
        actor = await context.actor("read")
        subscription = presence.subscribe_typing(context.services.broker, actor,
                                                 conversation_id=str(conversation_id))
        async with subscription:
            async for event in presence.others(subscription, context.connection_id):
                yield TypingEvent(user_id=strawberry.ID(event["user_id"]),
                                  conversation_id=strawberry.ID(event["conversation_id"]),
                                  timestamp=Timestamp(int(event["timestamp"])))


@strawberry.type
class TypingMutation:
    @strawberry.mutation(description="Tell your other connections in the conversation that "
                         "you are typing (never your own connection, never other users).")
    async def send_typing(self, info: strawberry.Info, conversation_id: strawberry.ID) -> bool:
        context = ctx(info)
        await presence.publish_typing(context.services.broker, await context.actor(),
                                      conversation_id=str(conversation_id),
                                      connection_id=context.connection_id)
        return True


# ---------------------------------------------------------------- transport


class StreamErrorCodes(SchemaExtension):
    """ErrorCodes for results sent over a WebSocket (subscriptions, and queries or mutations
    sent on one): each result gets `extensions.code` before it is sent."""

    def on_stream_result(self, result: Any) -> Iterator[None]:
        errors = getattr(result, "errors", None)
        if errors:
            pre_execution = isinstance(result, PreExecutionError)
            result.errors = [_rejected(error) if pre_execution else shape_error(error)
                             for error in errors]
        yield


def _rejected(error: GraphQLError) -> GraphQLError:
    # Before execution (e.g. a mutation sent over legacy graphql-ws, which only runs
    # subscriptions): Strawberry's own message is safe and says what is wrong.
    if isinstance(error.original_error, AppError):
        return shape_error(error)
    error.extensions = {**(error.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"}
    return error


def _token_of(params: object) -> str | None:
    if not isinstance(params, dict):
        return None
    header = params.get("Authorization") or params.get("authorization")
    if isinstance(header, str) and (token := bearer_token(header)):
        return token
    token = params.get("token")
    return token if isinstance(token, str) and token else None


class GraphQLRouter(StrawberryRouter[Context, None]):
    """Strawberry's FastAPI router plus connect-time authentication, live authorization and
    connection counting for /health."""

    def __init__(self, schema: strawberry.Schema, settings: Settings, **kwargs: Any) -> None:
        protocols: Sequence[str] = (GRAPHQL_TRANSPORT_WS_PROTOCOL,)
        if settings.graphql_legacy_ws:
            protocols = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
        super().__init__(
            schema, context_getter=get_context,
            graphql_ide="graphiql",
            subscription_protocols=protocols,
            connection_init_wait_timeout=timedelta(seconds=settings.ws_auth_timeout_seconds),
            allowed_origins=settings.allowed_origins, **kwargs,
        )
        # The live socket of each open WebSocket, by the context's connection id.
        self._sockets: dict[str, live.LiveSocket] = {}

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        token = _token_of(context.connection_params)
        if token is None:
            raise ConnectionRejectionError({"message": "Authentication required: "
                                            "connection_init payload {\"token\": \"...\"}"})
        socket = self._sockets[context.connection_id]
        try:
            user = await socket.authenticate(token)
        except AppError as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from exc
        context.authenticated(user, token, socket.key)
        return UNSET

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not self.is_websocket_request(request) or not isinstance(context, Context):
            return await super().run(request, context=context, root_value=root_value)

        async def close_revoked(reason: str) -> None:
            websocket = context.connection
            if isinstance(websocket, WebSocket) and \
                    websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close(code=CLOSE_UNAUTHORIZED, reason=f"token {reason}")

        # Counting, authentication and live authorization: resolvers/live.py, shared with
        # /ws. This face keeps the close code.
        async with live.session(context.services, on_revoked=close_revoked) as socket:
            self._sockets[context.connection_id] = socket
            try:
                return await super().run(request, context=context, root_value=root_value)
            finally:
                del self._sockets[context.connection_id]
