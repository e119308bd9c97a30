"""The WebSocket half of the documented contract: `/ws/{user_id}` (see CONTRACT.md).

Thin like compat_rest.py: parse a message, call resolvers/, send the answer. One
`Connection` per socket; every reply is read by its own task, so several replies on one socket
interleave, each event carrying its `request_id` and `seq`.

    → {"type":"auth","token":"…"}            (or ?token=… on the URL)
    → {"type":"ping"}                         ← {"type":"pong","timestamp":…}
    → {"type":"chat","content":"Hi","request_id":"r1","conversation_id":"conv_1"}
    ← {"type":"chat_chunk","content":"Hel","request_id":"r1","seq":1} …
    ← {"type":"chat_complete","tokens":4,"model":"…","request_id":"r1","seq":5,…}
    → {"type":"stop","request_id":"r1"}       → {"type":"resume","request_id":"r1","after":3}
    → {"type":"join","conversation_id":"conv_1"}   ← {"type":"joined","conversation_id":…}
    → {"type":"typing"}                       (the user's other sockets in that conversation
                                               get {"type":"user_typing",…}; a socket in no
                                               conversation reaches the others in none)
    ← {"type":"conversation_updated","conversation_id":…,"title":…}   (a generated title, on
                                               every socket of the owner)
    → {"type":"regenerate","conversation_id":"c","message_id":"m","request_id":"r2"}
    → {"type":"edit","conversation_id":"c","message_id":"m","content":"…"}  (both stream like
                                               chat; options: model, temperature, max_tokens)
Close codes: 4401 unauthenticated (timeout, bad or expired token, logout everywhere, account
deleted), 4403 the token belongs to another user than the path's, 1013 the database is down
while authenticating (try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from models import User
from resolvers import branches, chat, live, presence, titles, validation
from resolvers.chat.events import ReplyEvent
from resolvers.kit.broker import Subscription, decode_shared
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import AppError, BadInput, Forbidden, ProviderTimeout, Unavailable
from resolvers.services import Services

log = logging.getLogger("chat_studio.ws")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the database is down while authenticating
# Bounds per socket: joined conversations and replies read at the same time.
MAX_CONVERSATIONS = 100
MAX_READERS = 32
# Frames from broker listeners (typing, title updates) waiting for a slow client.
SEND_BACKLOG = 256
# Served after authentication, each by `Connection.on_<type>`.
MESSAGE_TYPES = frozenset({"chat", "stop", "resume", "join", "typing", "regenerate", "edit"})

router = APIRouter()


def error_code(exc: AppError) -> str:
    """The contract's lower-case codes: not_found, rate_limited, provider_error, …"""
    if isinstance(exc, ProviderTimeout):
        return "provider_timeout"
    if isinstance(exc, BadInput):
        return "bad_request"
    return exc.code.lower()


def error(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        event["request_id"] = request_id
    return event


def ws_frame(seq: int, event: ReplyEvent) -> dict[str, Any]:
    """A reply event as a /ws frame: the documented JSON plus its place in the reply."""
    return {**event.to_wire(), "seq": seq}


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...],
           default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    # bool is an int in Python, never a number in JSON terms.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadInput(f"{name} has the wrong type", field=name)
    if not isinstance(value, kind):
        raise BadInput(f"{name} has the wrong type", field=name)
    return value


def chat_params(data: dict[str, Any]) -> chat.ChatParams:
    """A `chat` message → ChatParams (types checked here, values by resolvers/chat.py)."""
    content = _field(data, "content", str)
    raw_messages = _field(data, "messages", list, [])
    messages: list[chat.ChatMessageInput] = []
    for item in raw_messages:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str | list) \
                or not isinstance(item.get("role"), str | None):
            raise BadInput("messages must be objects with role and content", field="messages")
        text, images = chat.content_parts(item["content"])
        # A missing role stays missing: resolvers/chat/params.py refuses it on every face.
        messages.append(chat.ChatMessageInput(role=item.get("role"), content=text,
                                              images=images))
    if content is not None:  # the guide's shorthand: `content` is the user's message
        messages.append(chat.ChatMessageInput(role="user", content=content))
    return chat.ChatParams(
        messages=messages,
        model=_field(data, "model", str),
        temperature=float(_field(data, "temperature", (int, float), chat.DEFAULT_TEMPERATURE)),
        max_tokens=_field(data, "max_tokens", int, chat.DEFAULT_MAX_TOKENS),
        conversation_id=_field(data, "conversation_id", str),
        request_id=_field(data, "request_id", str),
        system_prompt=_field(data, "system_prompt", str),
        server_tools=_tool_names(data),
        files=_file_ids(data),
    )


def _tool_names(data: dict[str, Any]) -> tuple[str, ...]:
    names = _field(data, "tools", list, [])
    if not all(isinstance(name, str) for name in names):
        raise BadInput("tools must be a list of tool names", field="tools")
    return tuple(names)


def _file_ids(data: dict[str, Any]) -> tuple[str, ...]:
    ids = _field(data, "files", list, [])
    if not all(isinstance(item, str) for item in ids):
        raise BadInput("files must be a list of file ids", field="files")
    return tuple(ids)


class InvalidMessage(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """A client frame → a JSON object whose `type` is a string; raises InvalidMessage (an
    `error` frame is sent back; bad input never closes the socket)."""
    try:
        data = json.loads(raw)
        # JSON can spell a lone surrogate ("\ud800"); no UTF-8 can hold it, so no answer
        # echoing it could be sent.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage("invalid_json", "The message is not valid Unicode text (a lone "
                             "UTF-16 surrogate such as \\ud800)") from exc
    except RecursionError as exc:
        raise InvalidMessage("invalid_json", "The message is nested too deeply") from exc
    except ValueError as exc:  # also invalid UTF-8 in a binary frame
        raise InvalidMessage("invalid_json", "The message is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("invalid_json", "The message must be a JSON object")
    if not isinstance(data.get("type"), str):
        raise InvalidMessage("unknown_type", "The message needs a string `type`")
    return data


def _branch_fields(data: dict[str, Any]) -> tuple[str, str, branches.ReplyOptions]:
    """A `regenerate` or `edit` message → its target and chat options (types checked here,
    values by resolvers/)."""
    conversation_id = _field(data, "conversation_id", str)
    message_id = _field(data, "message_id", str)
    if conversation_id is None or message_id is None:
        raise BadInput("needs a conversation_id and a message_id", field="message_id")
    return conversation_id, message_id, branches.ReplyOptions(
        model=_field(data, "model", str),
        temperature=float(_field(data, "temperature", (int, float), chat.DEFAULT_TEMPERATURE)),
        max_tokens=_field(data, "max_tokens", int, chat.DEFAULT_MAX_TOKENS),
        request_id=_field(data, "request_id", str))


class Connection:
    """One /ws/{user_id} socket."""

    def __init__(self, websocket: WebSocket, services: Services, path_user_id: str) -> None:
        self.ws = websocket
        self.services = services
        self.path_user_id = path_user_id
        self.settings = services.settings
        self.user: User | None = None
        self.connection_id = uuid.uuid4().hex
        # An idle socket holds no task of its own: what it hears (typing, title updates,
        # revocation) reaches it through broker listeners, called in place; only a frame
        # to send starts a short task. Thousands of idle sockets stay cheap.
        self.conversations: dict[str, Subscription] = {}  # joined → typing listener
        # While the socket has named no conversation: the guide's bare typing of the user's
        # other sockets that named none either.
        self.bare_typing: Subscription | None = None
        # The user's conversation updates (generated titles), from authentication on.
        self.updates: Subscription | None = None
        self.pending_joins: list[str] = []  # named before authentication
        self.readers: set[asyncio.Task[None]] = set()
        self.live: live.LiveSocket | None = None
        self.send_lock = asyncio.Lock()
        self.closed = False
        self.deadline: asyncio.TimerHandle | None = None  # closes it unless authenticated
        self.queued = 0  # frames from listeners not sent yet (bounded: SEND_BACKLOG)

    # --- sending ---
    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        await self.send_text(json.dumps(message, ensure_ascii=False))

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True

    def send_soon(self, text: str) -> None:
        """Send from a broker listener (not a coroutine): a short task, kept until done. The
        send lock is first come first served, so frames leave in the order they came. A
        client that does not read gets at most SEND_BACKLOG frames queued; later ones are
        dropped (typing and title updates: the newest matter, and memory stays bounded)."""
        if self.closed or self.queued >= SEND_BACKLOG:
            return
        self.queued += 1
        task = asyncio.create_task(self._send_queued(text))
        _SENDING.add(task)
        task.add_done_callback(_SENDING.discard)

    async def _send_queued(self, text: str) -> None:
        try:
            await self.send_text(text)
        finally:
            self.queued -= 1

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        async with self.send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await self.ws.close(code=code, reason=reason[:120])

    # --- lifecycle ---
    async def serve(self) -> None:
        await self.ws.accept()
        # Counting, authentication and live authorization: resolvers/live.py, shared with
        # GraphQL's WebSocket. This face keeps the frames and the close codes.
        async with live.session(self.services, on_revoked=self._revoked) as socket:
            self.live = socket
            # A timer, not a task: cancelled as soon as the socket authenticates.
            self.deadline = asyncio.get_running_loop().call_later(
                self.settings.ws_auth_timeout_seconds, self._auth_deadline)
            try:
                joins = self.ws.query_params.getlist("conversation_id")
                self.pending_joins = [cid for cid in joins if cid]
                token = self.ws.query_params.get("token")
                if token and not await self.authenticate(token):
                    return
                await self.receive_loop()
            finally:
                self.closed = True
                if self.deadline is not None:
                    self.deadline.cancel()
                listeners = [*self.conversations.values(), self.bare_typing, self.updates]
                self.conversations, self.bare_typing, self.updates = {}, None, None
                for listener in listeners:
                    if listener is not None:
                        with contextlib.suppress(Exception):  # a broker outage
                            await listener.aclose()
                tasks = list(self.readers)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _auth_deadline(self) -> None:
        self.deadline = None
        if self.user is None and not self.closed:
            task = asyncio.create_task(
                self.close(CLOSE_UNAUTHENTICATED, "authentication timeout"))
            _SENDING.add(task)
            task.add_done_callback(_SENDING.discard)

    async def _revoked(self, reason: str) -> None:
        await self.send(error("unauthenticated", f"Token {reason}"))
        await self.close(CLOSE_UNAUTHENTICATED, f"token {reason}")

    async def authenticate(self, token: str) -> bool:
        assert self.live is not None
        try:
            user = await self.live.authenticate(token, user_id=self.path_user_id)
        except Forbidden as exc:
            await self.close(CLOSE_FORBIDDEN, exc.message)
            return False
        except Unavailable as exc:  # an outage, not a bad token: 1013 "try again later"
            await self.send(error(error_code(exc), exc.message))
            await self.close(CLOSE_TRY_AGAIN_LATER, exc.message)
            return False
        except AppError as exc:
            await self.send(error("unauthenticated", exc.message))
            await self.close(CLOSE_UNAUTHENTICATED, exc.message)
            return False
        first = self.user is None
        self.user = user
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        joins, self.pending_joins = self.pending_joins, []
        for conversation_id in joins:
            try:
                await self.join(conversation_id)
            except AppError as exc:
                await self.send(error(error_code(exc), exc.message))
        if first and not self.conversations:
            await self._listen_bare_typing(user)
        if first:
            self.updates = titles.subscribe_updates(self.services.broker, user,
                                                    on_message=self._heard_update)
            await self.updates.ready()  # live before auth_ok: no title is missed after it
        return True

    def _heard_update(self, text: str) -> None:
        frame = _update_frame(text)
        if frame is not None:
            self.send_soon(frame)

    async def receive_loop(self) -> None:
        limit = self.settings.ws_max_message_bytes
        while not self.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text: str | None = message.get("text")
            data_bytes: bytes | None = message.get("bytes")
            if text is not None:  # a character is at most 4 bytes: encode only when close
                size = len(text) if len(text) * 4 <= limit else len(text.encode())
            else:
                size = len(data_bytes or b"")
            if size > limit:
                await self.send(error("message_too_large",
                                      f"Messages are limited to {limit} bytes"))
                continue
            try:
                data = parse_message(text if text is not None else (data_bytes or b""))
            except InvalidMessage as exc:
                await self.send(error(exc.code, exc.message))
                continue
            await self.dispatch(data)

    # --- messages ---
    async def dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "ping":
            await self.send({"type": "pong", "timestamp": now_ms()})
            return
        if kind == "auth":
            token = data.get("token")
            if not isinstance(token, str) or not token:
                await self.send(error("bad_request", "auth needs a token"))
                return
            if await self.authenticate(token):
                await self.send({"type": "auth_ok", "user_id": self.path_user_id})
            return
        handler = getattr(self, f"on_{kind}", None) if kind in MESSAGE_TYPES else None
        if handler is None:
            await self.send(error("unknown_type", f"Unknown message type {kind!r}"))
            return
        if self.user is None:
            await self.send(error("unauthenticated",
                                  'Authenticate first: {"type":"auth","token":"..."}'))
            return
        request_id = data.get("request_id") if isinstance(data.get("request_id"), str) else None
        try:
            await handler(self.user, data)
        except AppError as exc:
            await self.send(error(error_code(exc), exc.message, request_id))

    async def on_chat(self, user: User, data: dict[str, Any]) -> None:
        assert self.live is not None
        # The scope first: a key without `chat` is refused whatever the message says.
        self.live.require("chat")
        await self._start(user, chat_params(data))

    async def on_regenerate(self, user: User, data: dict[str, Any]) -> None:
        conversation_id, message_id, options = _branch_fields(data)
        params = await branches.regenerate_request(
            self.services.db, user, conversation_id=conversation_id, message_id=message_id,
            options=options)
        await self._start(user, params)

    async def on_edit(self, user: User, data: dict[str, Any]) -> None:
        conversation_id, message_id, options = _branch_fields(data)
        content = _field(data, "content", str)
        if content is None:
            raise BadInput("edit needs the new content", field="content")
        params = await branches.edit_request(
            self.services.db, user, conversation_id=conversation_id, message_id=message_id,
            content=content, options=options)
        await self._start(user, params)

    async def _start(self, user: User, params: chat.ChatParams) -> None:
        assert self.live is not None
        self.live.require("chat")  # a socket opened with an API key needs its chat scope
        if len(self.readers) >= MAX_READERS:
            raise BadInput(f"At most {MAX_READERS} replies at a time on one connection")
        handle = await self.services.chat.start(user, params, api_key=self.live.key)
        if params.conversation_id is not None:
            await self.join(params.conversation_id)
        self._read(user, handle.request_id, after=0)

    async def on_stop(self, user: User, data: dict[str, Any]) -> None:
        assert self.live is not None
        self.live.require("chat")
        request_id = _field(data, "request_id", str)
        if request_id is None:
            raise BadInput("stop needs a request_id", field="request_id")
        # The reply's own chat_complete (finish_reason "stopped") answers a successful stop.
        if not await self.services.chat.stop(user, request_id):
            await self.send(error("not_found", "No such reply of yours", request_id))

    async def on_resume(self, user: User, data: dict[str, Any]) -> None:
        assert self.live is not None
        self.live.require("chat")
        request_id = _field(data, "request_id", str)
        after = _field(data, "after", int, 0)
        if request_id is None or after < 0:
            raise BadInput("resume needs a request_id and after ≥ 0", field="request_id")
        if len(self.readers) >= MAX_READERS:
            raise BadInput(f"At most {MAX_READERS} replies at a time on one connection")
        self._read(user, request_id, after=after)

    async def on_join(self, user: User, data: dict[str, Any]) -> None:
        conversation_id = _field(data, "conversation_id", str)
        if conversation_id is None:
            raise BadInput("join needs a conversation_id", field="conversation_id")
        await self.join(conversation_id)
        await self.send({"type": "joined", "conversation_id": conversation_id})

    async def on_typing(self, user: User, data: dict[str, Any]) -> None:
        """Typing goes to the user's other sockets in the conversation it names; without one,
        to the conversations this socket is in; in none (the guide's bare `{"type":"typing"}`),
        to the user's other sockets that named no conversation either."""
        conversation_id = _field(data, "conversation_id", str)
        if conversation_id is not None:
            await self.join(conversation_id)
        targets: list[str | None] = (
            [conversation_id] if conversation_id is not None else [*self.conversations])
        for target in targets or [None]:
            await presence.publish_typing(self.services.broker, user, conversation_id=target,
                                          connection_id=self.connection_id)

    # --- helpers ---
    def _read(self, user: User, request_id: str, *, after: int) -> None:
        task = asyncio.create_task(self._forward(user, request_id, after))
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)

    async def _forward(self, user: User, request_id: str, after: int) -> None:
        """Send a reply's events from the reply log; the reply itself runs on regardless."""
        try:
            async for seq, event in self.services.chat.events(user, request_id, after=after):
                await self.send(ws_frame(seq, event))
        except AppError as exc:
            await self.send(error(error_code(exc), exc.message, request_id))
        except Exception:
            log.exception("reading reply %s failed", request_id)
            await self.send(error("internal", "Reading the reply failed", request_id))

    async def join(self, conversation_id: str) -> None:
        """Be in the conversation: hear the user's other connections typing there."""
        validation.identifier(conversation_id, field="conversation_id")
        if conversation_id in self.conversations or self.user is None:
            return
        if len(self.conversations) >= MAX_CONVERSATIONS:
            raise BadInput(f"At most {MAX_CONVERSATIONS} conversations per connection")
        listener = presence.subscribe_typing(self.services.broker, self.user,
                                             conversation_id=conversation_id,
                                             on_message=self._heard_typing)
        self.conversations[conversation_id] = listener
        try:
            await listener.ready()  # live before we answer: nothing typed later is missed
        except BaseException:
            self.conversations.pop(conversation_id, None)
            raise
        bare, self.bare_typing = self.bare_typing, None
        if bare is not None:  # it has named a conversation now
            await bare.aclose()

    async def _listen_bare_typing(self, user: User) -> None:
        listener = presence.subscribe_typing(self.services.broker, user, conversation_id=None,
                                             on_message=self._heard_typing)
        self.bare_typing = listener
        try:
            await listener.ready()
        except BaseException:
            self.bare_typing = None
            raise

    def _heard_typing(self, text: str) -> None:
        sender, frame = _typing_frame(text)
        if sender != self.connection_id:  # never its own typing
            self.send_soon(frame)


def _user_typing(event: dict[str, Any]) -> tuple[str | None, str]:
    """A typing event → (the sending connection, the `user_typing` frame's text)."""
    frame = {"type": "user_typing", "user_id": event["user_id"]}
    if event.get("conversation_id") is not None:
        frame["conversation_id"] = event["conversation_id"]
    text = json.dumps({**frame, "timestamp": event["timestamp"]}, ensure_ascii=False)
    return event.get("connection_id"), text


def _conversation_updated(message: dict[str, Any]) -> str | None:
    event = titles.update_of(message)
    return None if event is None else json.dumps(event.to_wire(), ensure_ascii=False)


# Decoded and encoded once per message, however many sockets of the user hear it.
_typing_frame = decode_shared(_user_typing)
_update_frame = decode_shared(_conversation_updated)
# Sends started by listeners, held until done (the loop keeps only weak references).
_SENDING: set[asyncio.Task[None]] = set()


@router.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str) -> None:
    """The contract's WebSocket; authenticate with ?token= or a first `auth` message."""
    services: Services = websocket.app.state.services
    await Connection(websocket, services, user_id).serve()


def install(app: FastAPI) -> None:
    app.include_router(router)
