#!/usr/bin/env python3
"""Smoke test for a running AI Chat Studio server: every documented endpoint, one line each.

    python test_api.py                                  # http://127.0.0.1:8000
    python test_api.py --base-url https://api.example.com --timeout 60
    python test_api.py --skip-chat                      # a server without a model/provider

It registers two fresh users (``smoke_<random>``), creates conversations with client ids
(``conv_<random>``), chats over REST, SSE, the WebSocket and GraphQL, checks the numbers add up,
and deletes its conversations again (the users stay: there is no endpoint to delete one).
Prints ``✓ name`` or ``✗ name: reason`` per check, then ``N passed, N failed``; exits 1 on any
failure. Needs only httpx and websockets (both are dependencies of the server).

Adding a check is one function decorated with ``@check("name")`` that raises ``CheckFailed``
(or fails an ``expect``); checks run in the order they are defined and share a ``Context``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

# --- GraphQL documents (the schema is still being written: adjust names here only) -----------

GRAPHQL_ME_QUERY = "{ me { id username } }"

# ChatEvent is a union of ChatChunk | ChatComplete | ChatError.
GRAPHQL_CHAT_STREAM_SUBSCRIPTION = """
subscription {
  chatStream(input: {messages: [{role: user, content: "Say hi"}], maxTokens: 16}) {
    __typename
    ... on ChatChunk { content }
    ... on ChatComplete { tokens model }
    ... on ChatError { code message }
  }
}
"""
GRAPHQL_CHUNK_TYPE = "ChatChunk"
GRAPHQL_COMPLETE_TYPE = "ChatComplete"
GRAPHQL_ERROR_TYPE = "ChatError"

CHAT_PROMPT = "Say hi"
CHAT_MAX_TOKENS = 16
DEFAULT_CONVERSATION_MODEL = "smollm2-135m-instruct"


# --- framework ---------------------------------------------------------------------------------


class CheckFailed(Exception):
    """A check's expectation did not hold; the message is the one-line reason shown."""


def expect(condition: object, reason: str) -> None:
    if not condition:
        raise CheckFailed(reason)


@dataclass
class User:
    username: str
    password: str
    token: str = ""
    id: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    http: httpx.AsyncClient
    ws_base: str
    out: TextIO
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    user: User | None = None  # the main user
    other: User | None = None  # a second user, for ownership checks
    conv_id: str = ""  # main conversation (client-chosen id)
    conv_b_id: str = ""  # a second conversation of the main user
    conv_created_at: int = 0
    # What the script did as the main user, for /api/stats.
    conversations: dict[str, int] = field(default_factory=dict)  # id -> messages stored
    tokens_used: int = 0

    @property
    def timeout(self) -> float:
        return float(self.args.timeout)

    def log(self, message: str) -> None:
        if self.args.verbose:
            print(f"    {message}", file=self.out)

    def need_user(self) -> User:
        if self.user is None or not self.user.token:
            raise CheckFailed("no user: the register check failed")
        return self.user

    def need_other(self) -> User:
        if self.other is None or not self.other.token:
            raise CheckFailed("no second user: the ownership check failed")
        return self.other

    def need_conversation(self) -> str:
        if not self.conv_id:
            raise CheckFailed("no conversation: the create check failed")
        return self.conv_id

    async def request(self, method: str, path: str, *, user: User | None = None,
                      json_body: Any = None, expect_status: int | None = 200) -> Any:
        """One HTTP call; checks the status, returns the decoded JSON body (or None)."""
        headers = {"Authorization": f"Bearer {user.token}"} if user else {}
        response = await self.http.request(method, path, json=json_body, headers=headers)
        self.log(f"{method} {path} -> {response.status_code} {_clip(response.text)}")
        if expect_status is not None and response.status_code != expect_status:
            raise CheckFailed(f"{method} {path}: expected {expect_status}, got "
                              f"{response.status_code} {_clip(response.text)}")
        try:
            return response.json()
        except ValueError:
            return None

    def ws_url(self, path: str, **query: str) -> str:
        return self.ws_base + path + (("?" + urlencode(query)) if query else "")


CheckFn = Callable[[Context], Awaitable[str | None]]


@dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn
    needs_chat: bool


CHECKS: list[Check] = []


def check(name: str, *, needs_chat: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register a check. It may return a short note shown after its name."""

    def register(fn: CheckFn) -> CheckFn:
        CHECKS.append(Check(name, fn, needs_chat))
        return fn

    return register


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _message(role: str, content: str) -> dict[str, Any]:
    return {"id": f"msg_{secrets.token_hex(6)}", "role": role, "content": content,
            "timestamp": _now_ms()}


def _chat_body(ctx: Context, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [_message("user", CHAT_PROMPT)],
                            "max_tokens": CHAT_MAX_TOKENS, **extra}
    if ctx.args.model:
        body["model"] = ctx.args.model
    return body


def _conversation(ctx: Context, conv_id: str, title: str,
                  messages: list[dict[str, Any]]) -> dict[str, Any]:
    now = _now_ms()
    return {"id": conv_id, "title": title, "messages": messages, "createdAt": now,
            "updatedAt": now, "model": ctx.args.model or DEFAULT_CONVERSATION_MODEL,
            "userId": "ignored-by-server"}


async def _recv_json(ws: Any, seconds: float) -> dict[str, Any]:
    try:
        raw = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        raise CheckFailed(f"no WebSocket message within {seconds:g}s") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise CheckFailed(f"WebSocket sent non-JSON: {_clip(str(raw))}") from None
    expect(isinstance(data, dict), f"WebSocket sent a non-object: {_clip(str(raw))}")
    return data


async def _recv_until(ws: Any, ctx: Context, wanted: str) -> dict[str, Any]:
    """Next message of type `wanted`, skipping unrelated ones (e.g. another tab's typing)."""
    deadline = time.monotonic() + ctx.timeout
    while True:
        remaining = deadline - time.monotonic()
        expect(remaining > 0, f"no {wanted!r} within {ctx.timeout:g}s")
        message = await _recv_json(ws, remaining)
        ctx.log(f"ws <- {_clip(json.dumps(message))}")
        if message.get("type") == wanted:
            return message
        expect(message.get("type") != "error", f"error instead of {wanted!r}: {message}")


# --- REST: basics and auth ---------------------------------------------------------------------


@check("GET / describes the API")
async def check_root(ctx: Context) -> str | None:
    body = await ctx.request("GET", "/")
    expect(isinstance(body, dict), f"not a JSON object: {body!r}")
    expect(body.get("name") == "AI Chat Studio API", f"name is {body.get('name')!r}")
    expect(body.get("status") == "running", f"status is {body.get('status')!r}")
    endpoints = body.get("endpoints") or {}
    missing = {"auth", "chat", "conversations", "websocket", "docs"} - set(endpoints)
    expect(not missing, f"endpoints lacks {sorted(missing)}")
    return f"version {body.get('version')}"


@check("GET /health is healthy")
async def check_health(ctx: Context) -> str | None:
    body = await ctx.request("GET", "/health")
    expect(body.get("status") == "healthy", f"status is {body.get('status')!r}")
    for key in ("timestamp", "active_connections", "total_users", "total_conversations"):
        expect(key in body, f"missing {key!r}")
    return None


@check("POST /api/auth/register + login")
async def check_register_login(ctx: Context) -> str | None:
    user = User(f"smoke_{ctx.run_id}", secrets.token_urlsafe(16))
    body = await ctx.request("POST", "/api/auth/register", json_body={
        "username": user.username, "email": f"{user.username}@example.com",
        "password": user.password})
    expect(body.get("access_token"), "register returned no access_token")
    expect(str(body.get("token_type", "")).lower() == "bearer",
           f"token_type is {body.get('token_type')!r}")
    await ctx.request("POST", "/api/auth/register", expect_status=400, json_body={
        "username": user.username, "email": f"other_{user.username}@example.com",
        "password": user.password})
    body = await ctx.request("POST", "/api/auth/login",
                             json_body={"username": user.username, "password": user.password})
    expect(body.get("access_token"), "login returned no access_token")
    await ctx.request("POST", "/api/auth/login", expect_status=401,
                      json_body={"username": user.username, "password": user.password + "x"})
    user.token = body["access_token"]
    ctx.user = user
    return user.username


@check("GET /api/auth/me")
async def check_me(ctx: Context) -> str | None:
    user = ctx.need_user()
    body = await ctx.request("GET", "/api/auth/me", user=user)
    expect(body.get("username") == user.username, f"username is {body.get('username')!r}")
    expect(body.get("email") == f"{user.username}@example.com", f"email is {body.get('email')!r}")
    expect(body.get("id"), "no id")
    expect(body.get("created_at"), "no created_at")
    user.id = str(body["id"])
    await ctx.request("GET", "/api/auth/me", expect_status=401)
    await ctx.request("GET", "/api/auth/me", expect_status=401,
                      user=User("x", "x", token="not-a-token"))
    return f"id {user.id}"


# --- REST: conversations -----------------------------------------------------------------------


@check("POST /api/conversations with a client id")
async def check_create_conversation(ctx: Context) -> str | None:
    user = ctx.need_user()
    conv_id = f"conv_{secrets.token_hex(6)}"
    sent = _conversation(ctx, conv_id, "Smoke test", [_message("user", "Hello")])
    body = await ctx.request("POST", "/api/conversations", user=user, json_body=sent)
    expect(body.get("id") == conv_id, f"id is {body.get('id')!r}, sent {conv_id!r}")
    expect(body.get("title") == "Smoke test", f"title is {body.get('title')!r}")
    expect(len(body.get("messages") or []) == 1, f"messages: {body.get('messages')!r}")
    expect(str(body.get("userId")) == user.id, f"userId is {body.get('userId')!r}, not {user.id}")
    for key in ("createdAt", "updatedAt"):
        expect(isinstance(body.get(key), int), f"{key} is not epoch ms: {body.get(key)!r}")
    ctx.conv_id, ctx.conv_created_at = conv_id, body["createdAt"]
    ctx.conversations[conv_id] = 1
    await ctx.request("POST", "/api/conversations", user=user, json_body=sent, expect_status=409)
    return conv_id


@check("GET /api/conversations lists newest first")
async def check_list_conversations(ctx: Context) -> str | None:
    user, first = ctx.need_user(), ctx.need_conversation()
    await asyncio.sleep(0.05)  # updatedAt is in ms: make the second one strictly newer
    second = f"conv_{secrets.token_hex(6)}"
    await ctx.request("POST", "/api/conversations", user=user,
                      json_body=_conversation(ctx, second, "Second", []))
    ctx.conv_b_id, ctx.conversations[second] = second, 0
    body = await ctx.request("GET", "/api/conversations", user=user)
    expect(isinstance(body, list), f"not a list: {_clip(repr(body))}")
    ids = [c.get("id") for c in body]
    expect(ids[:2] == [second, first], f"expected [{second}, {first}] first, got {ids}")
    stamps = [c.get("updatedAt") for c in body]
    expect(stamps == sorted(stamps, reverse=True), f"not newest first: {stamps}")
    expect(set(ids) == set(ctx.conversations), f"unexpected ids {ids}")
    return f"{len(body)} conversations"


@check("GET /api/conversations/{id}")
async def check_get_conversation(ctx: Context) -> str | None:
    user, conv_id = ctx.need_user(), ctx.need_conversation()
    body = await ctx.request("GET", f"/api/conversations/{conv_id}", user=user)
    expect(body.get("id") == conv_id and body.get("title") == "Smoke test",
           f"got {_clip(json.dumps(body))}")
    await ctx.request("GET", f"/api/conversations/conv_missing_{ctx.run_id}", user=user,
                      expect_status=404)
    return None


@check("PUT /api/conversations/{id}")
async def check_update_conversation(ctx: Context) -> str | None:
    user, conv_id = ctx.need_user(), ctx.need_conversation()
    current = await ctx.request("GET", f"/api/conversations/{conv_id}", user=user)
    updated = dict(current, title="Smoke test (renamed)",
                   messages=[*current["messages"], _message("assistant", "Hi there")])
    body = await ctx.request("PUT", f"/api/conversations/{conv_id}", user=user, json_body=updated)
    expect(body.get("title") == "Smoke test (renamed)", f"title is {body.get('title')!r}")
    expect(len(body.get("messages") or []) == 2, f"{len(body.get('messages') or [])} messages")
    expect(body.get("createdAt") == ctx.conv_created_at, "createdAt changed")
    expect(body.get("updatedAt", 0) >= current["updatedAt"], "updatedAt went backwards")
    ctx.conversations[conv_id] = 2
    return None


@check("conversation ids are per user")
async def check_same_id_other_user(ctx: Context) -> str | None:
    ctx.need_user()
    conv_id = ctx.need_conversation()
    other = User(f"smoke_{ctx.run_id}_b", secrets.token_urlsafe(16))
    body = await ctx.request("POST", "/api/auth/register", json_body={
        "username": other.username, "email": f"{other.username}@example.com",
        "password": other.password})
    other.token = body["access_token"]
    other.id = str((await ctx.request("GET", "/api/auth/me", user=other))["id"])
    ctx.other = other
    body = await ctx.request("POST", "/api/conversations", user=other,
                             json_body=_conversation(ctx, conv_id, "Other user's", []))
    expect(body.get("id") == conv_id, f"second user's id is {body.get('id')!r}")
    mine = await ctx.request("GET", f"/api/conversations/{conv_id}", user=other)
    expect(mine.get("title") == "Other user's" and str(mine.get("userId")) == other.id,
           f"second user sees {_clip(json.dumps(mine))}")
    listed = await ctx.request("GET", "/api/conversations", user=other)
    expect([c.get("id") for c in listed] == [conv_id], f"second user lists {listed!r}")
    first = await ctx.request("GET", f"/api/conversations/{conv_id}", user=ctx.user)
    expect(first.get("title") == "Smoke test (renamed)", "first user's conversation changed")
    return None


@check("another user's conversation is 404")
async def check_foreign_conversation(ctx: Context) -> str | None:
    user, other = ctx.need_user(), ctx.need_other()
    expect(ctx.conv_b_id, "no second conversation: the list check failed")
    path = f"/api/conversations/{ctx.conv_b_id}"
    await ctx.request("GET", path, user=other, expect_status=404)
    await ctx.request("PUT", path, user=other, expect_status=404,
                      json_body=_conversation(ctx, ctx.conv_b_id, "hijacked", []))
    await ctx.request("DELETE", path, user=other, expect_status=404)
    body = await ctx.request("GET", path, user=user)
    expect(body.get("title") == "Second", f"owner now sees title {body.get('title')!r}")
    await ctx.request("GET", "/api/conversations", expect_status=401)
    return None


# --- REST: chat and stats ----------------------------------------------------------------------


@check("POST /api/chat", needs_chat=True)
async def check_chat(ctx: Context) -> str | None:
    user, conv_id = ctx.need_user(), ctx.need_conversation()
    body = await ctx.request("POST", "/api/chat", user=user,
                             json_body=_chat_body(ctx, conversation_id=conv_id))
    content, tokens = body.get("content"), body.get("tokens")
    expect(isinstance(content, str) and content.strip(), f"empty content: {body!r}")
    expect(isinstance(tokens, int) and tokens > 0, f"tokens is {tokens!r}")
    expect(body.get("model"), "no model")
    ctx.tokens_used += tokens
    # conversation_id: the server keeps the user message and the reply itself.
    stored = await ctx.request("GET", f"/api/conversations/{conv_id}", user=user)
    messages = stored.get("messages") or []
    expect(len(messages) == ctx.conversations[conv_id] + 2,
           f"conversation has {len(messages)} messages, expected "
           f"{ctx.conversations[conv_id] + 2} after a chat with conversation_id")
    expect(messages[-1].get("role") == "assistant", f"last message is {messages[-1]!r}")
    ctx.conversations[conv_id] += 2
    return f"{tokens} tokens from {body['model']}"


@check("POST /api/chat streaming (SSE)", needs_chat=True)
async def check_chat_stream(ctx: Context) -> str | None:
    user = ctx.need_user()
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {user.token}", "Accept": "text/event-stream"}
    async with ctx.http.stream("POST", "/api/chat", headers=headers,
                               json=_chat_body(ctx, stream=True)) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise CheckFailed(f"status {response.status_code}: {_clip(text)}")
        ctype = response.headers.get("content-type", "")
        expect(ctype.startswith("text/event-stream"), f"content-type is {ctype!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                event = json.loads(payload)
            except ValueError:
                raise CheckFailed(f"non-JSON SSE data: {_clip(payload)}") from None
            ctx.log(f"sse <- {_clip(payload)}")
            events.append(event)
            if event.get("type") in ("chat_complete", "error"):
                break
    types = [e.get("type") for e in events]
    expect(types, "no SSE events")
    expect(types[-1] != "error", f"error event: {events[-1]}")
    expect(types[-1] == "chat_complete", f"stream did not end with chat_complete: {types}")
    chunks = [e for e in events if e.get("type") == "chat_chunk"]
    expect(chunks, "no chat_chunk before chat_complete")
    expect(set(types[:-1]) == {"chat_chunk"}, f"unexpected event types {types}")
    expect("".join(str(c.get("content", "")) for c in chunks).strip(), "chunks are empty")
    tokens = events[-1].get("tokens")
    expect(isinstance(tokens, int) and tokens > 0, f"chat_complete tokens is {tokens!r}")
    ctx.tokens_used += tokens
    return f"{len(chunks)} chunks, {tokens} tokens"


@check("GET /api/stats matches what was created")
async def check_stats(ctx: Context) -> str | None:
    user = ctx.need_user()
    body = await ctx.request("GET", "/api/stats", user=user)
    n_conv = len(ctx.conversations)
    n_msg = sum(ctx.conversations.values())
    expect(body.get("total_conversations") == n_conv,
           f"total_conversations {body.get('total_conversations')!r}, expected {n_conv}")
    expect(body.get("total_messages") == n_msg,
           f"total_messages {body.get('total_messages')!r}, expected {n_msg}")
    expect(body.get("total_tokens") == ctx.tokens_used,
           f"total_tokens {body.get('total_tokens')!r}, expected {ctx.tokens_used}")
    average = body.get("average_messages_per_conversation")
    wanted = n_msg / n_conv if n_conv else 0
    expect(isinstance(average, int | float) and abs(average - wanted) <= 0.051,
           f"average_messages_per_conversation {average!r}, expected {wanted:.2f}")
    return f"{n_conv} conversations, {n_msg} messages, {ctx.tokens_used} tokens"


# --- WebSocket /ws/{user_id} -------------------------------------------------------------------


@check("WS /ws/{user_id} ping -> pong")
async def check_ws_ping(ctx: Context) -> str | None:
    user = ctx.need_user()
    async with websockets.connect(ctx.ws_url(f"/ws/{user.id}", token=user.token),
                                  open_timeout=ctx.timeout) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await _recv_until(ws, ctx, "pong")
    return None


@check("WS chat -> chat_chunk … chat_complete", needs_chat=True)
async def check_ws_chat(ctx: Context) -> str | None:
    user = ctx.need_user()
    request_id = f"req_{secrets.token_hex(4)}"
    chunks = 0
    async with websockets.connect(ctx.ws_url(f"/ws/{user.id}", token=user.token),
                                  open_timeout=ctx.timeout) as ws:
        await ws.send(json.dumps({"type": "chat", "content": CHAT_PROMPT,
                                  "max_tokens": CHAT_MAX_TOKENS, "request_id": request_id}))
        deadline = time.monotonic() + ctx.timeout
        while True:
            message = await _recv_json(ws, max(deadline - time.monotonic(), 0.01))
            ctx.log(f"ws <- {_clip(json.dumps(message))}")
            kind = message.get("type")
            if kind not in ("chat_chunk", "chat_complete", "error"):
                continue
            expect(message.get("request_id") == request_id,
                   f"{kind} does not echo request_id: {message}")
            expect(kind != "error", f"error: {message}")
            if kind == "chat_chunk":
                chunks += 1
                continue
            expect(chunks > 0, "chat_complete before any chat_chunk")
            return f"{chunks} chunks"


@check("WS typing reaches the user's other tab only")
async def check_ws_typing(ctx: Context) -> str | None:
    user, other, conv_id = ctx.need_user(), ctx.need_other(), ctx.need_conversation()
    connect = websockets.connect
    async with (
        connect(ctx.ws_url(f"/ws/{user.id}", token=user.token, conversation_id=conv_id),
                open_timeout=ctx.timeout) as tab_a,
        connect(ctx.ws_url(f"/ws/{user.id}", token=user.token, conversation_id=conv_id),
                open_timeout=ctx.timeout) as tab_b,
        # The second user owns a conversation with the same id: must hear nothing.
        connect(ctx.ws_url(f"/ws/{other.id}", token=other.token, conversation_id=conv_id),
                open_timeout=ctx.timeout) as stranger,
    ):
        for ws in (tab_b, stranger):  # a pong proves the connection is set up and joined
            await ws.send(json.dumps({"type": "ping"}))
            await _recv_until(ws, ctx, "pong")
        await tab_a.send(json.dumps({"type": "typing", "conversation_id": conv_id}))
        event = await _recv_until(tab_b, ctx, "user_typing")
        expect(str(event.get("user_id")) == user.id, f"user_typing from {event.get('user_id')!r}")
        expect(event.get("conversation_id") == conv_id, f"conversation_id in {event}")
        deadline = time.monotonic() + 1.0  # give a leak a moment to show up
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(stranger.recv(), remaining)
            except TimeoutError:
                break
            expect("user_typing" not in str(raw), f"another user received: {_clip(str(raw))}")
    return None


@check("WS with someone else's user id is closed with 4403")
async def check_ws_wrong_user(ctx: Context) -> str | None:
    user, other = ctx.need_user(), ctx.need_other()
    try:
        async with websockets.connect(ctx.ws_url(f"/ws/{other.id}", token=user.token),
                                      open_timeout=ctx.timeout) as ws:
            try:
                await ws.send(json.dumps({"type": "ping"}))
                while True:
                    message = await asyncio.wait_for(ws.recv(), ctx.timeout)
                    expect(json.loads(message).get("type") != "pong",
                           "the server answered ping as someone else")
            except TimeoutError:
                raise CheckFailed(f"still open after {ctx.timeout:g}s") from None
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                expect(code == 4403, f"closed with {code}, expected 4403")
    except InvalidHandshake as refused:
        # websockets >= 14 puts the response on the exception, older versions the status code.
        response = getattr(refused, "response", None)
        status = getattr(response, "status_code", None) or getattr(refused, "status_code", "?")
        raise CheckFailed(f"handshake refused with HTTP {status}; "
                          "the contract wants accept, then close 4403") from None
    return None


# --- GraphQL -----------------------------------------------------------------------------------


@check("GraphQL query { me }")
async def check_graphql_me(ctx: Context) -> str | None:
    user = ctx.need_user()
    body = await ctx.request("POST", "/graphql", user=user,
                             json_body={"query": GRAPHQL_ME_QUERY})
    expect(not body.get("errors"), f"errors: {body.get('errors')}")
    me = (body.get("data") or {}).get("me") or {}
    expect(me.get("username") == user.username, f"me is {me!r}")
    anonymous = await ctx.request("POST", "/graphql", json_body={"query": GRAPHQL_ME_QUERY},
                                  expect_status=None)
    codes = [(e.get("extensions") or {}).get("code") for e in anonymous.get("errors") or []]
    expect("UNAUTHENTICATED" in codes, f"anonymous me gave {_clip(json.dumps(anonymous))}")
    return None


@check("GraphQL subscription chatStream (graphql-transport-ws)", needs_chat=True)
async def check_graphql_subscription(ctx: Context) -> str | None:
    user = ctx.need_user()
    async with websockets.connect(ctx.ws_url("/graphql"), subprotocols=["graphql-transport-ws"],
                                  open_timeout=ctx.timeout) as ws:
        expect(ws.subprotocol == "graphql-transport-ws",
               f"server chose subprotocol {ws.subprotocol!r}")
        await ws.send(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": f"Bearer {user.token}"}}))
        ack = await _recv_json(ws, ctx.timeout)
        expect(ack.get("type") == "connection_ack", f"expected connection_ack, got {ack}")
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": GRAPHQL_CHAT_STREAM_SUBSCRIPTION}}))
        typenames: list[str] = []
        deadline = time.monotonic() + ctx.timeout
        while True:
            message = await _recv_json(ws, max(deadline - time.monotonic(), 0.01))
            ctx.log(f"graphql <- {_clip(json.dumps(message))}")
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            expect(kind != "error", f"subscription error: {message.get('payload')}")
            if kind == "complete":
                break
            if kind != "next":
                continue
            payload = message.get("payload") or {}
            expect(not payload.get("errors"), f"errors: {payload.get('errors')}")
            event = (payload.get("data") or {}).get("chatStream") or {}
            typename = event.get("__typename")
            expect(typename != GRAPHQL_ERROR_TYPE, f"ChatError {event}")
            typenames.append(str(typename))
            if typename == GRAPHQL_COMPLETE_TYPE:
                tokens = event.get("tokens")
                expect(isinstance(tokens, int) and tokens > 0, f"ChatComplete tokens {tokens!r}")
    expect(typenames and typenames[-1] == GRAPHQL_COMPLETE_TYPE,
           f"stream did not end with {GRAPHQL_COMPLETE_TYPE}: {typenames}")
    chunks = typenames.count(GRAPHQL_CHUNK_TYPE)
    expect(chunks == len(typenames) - 1 and chunks > 0, f"events were {typenames}")
    return f"{chunks} chunks"


# --- cleanup -----------------------------------------------------------------------------------


@check("DELETE /api/conversations/{id}")
async def check_delete_conversation(ctx: Context) -> str | None:
    user, conv_id = ctx.need_user(), ctx.need_conversation()
    body = await ctx.request("DELETE", f"/api/conversations/{conv_id}", user=user)
    expect(body == {"message": "对话已删除"}, f"answer is {body!r}")
    await ctx.request("GET", f"/api/conversations/{conv_id}", user=user, expect_status=404)
    await ctx.request("DELETE", f"/api/conversations/{conv_id}", user=user, expect_status=404)
    if ctx.other is not None:  # the same id of the second user is untouched, then removed too
        await ctx.request("GET", f"/api/conversations/{conv_id}", user=ctx.other)
        await ctx.request("DELETE", f"/api/conversations/{conv_id}", user=ctx.other)
    if ctx.conv_b_id:
        await ctx.request("DELETE", f"/api/conversations/{ctx.conv_b_id}", user=user)
    return None


# --- runner ------------------------------------------------------------------------------------


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = bool(getattr(out, "isatty", lambda: False)()) and not os.environ.get(
            "NO_COLOR")
        encoding = getattr(out, "encoding", None) or "utf-8"
        try:
            "✓✗…".encode(encoding)
            self.ok, self.bad = "✓", "✗"
        except (UnicodeEncodeError, LookupError):
            self.ok, self.bad = "OK", "FAIL"

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def passed(self, name: str, note: str | None, seconds: float) -> None:
        detail = f" ({note})" if note else ""
        timing = self._paint("2", f" {seconds:.2f}s")
        print(f"{self._paint('32', self.ok)} {name}{detail}{timing}", file=self.out, flush=True)

    def failed(self, name: str, reason: str) -> None:
        print(f"{self._paint('31', f'{self.bad} {name}')}: {reason}", file=self.out, flush=True)

    def skipped(self, name: str, reason: str) -> None:
        print(self._paint("2", f"- {name} (skipped: {reason})"), file=self.out, flush=True)


def _ws_base(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("API_BASE_URL",
                                                             "http://127.0.0.1:8000"),
                        help="server to test (default: $API_BASE_URL or %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per request / per streamed reply (default: %(default)s)")
    parser.add_argument("--skip-chat", action="store_true",
                        help="skip the checks that generate text (server without a model)")
    parser.add_argument("--model", default=None,
                        help="model for chat requests (default: the server's default model)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print every request and message exchanged")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run every registered check against args.base_url; return the process exit code."""
    out = out or sys.stdout
    printer = Printer(out)
    base_url = args.base_url.rstrip("/")
    print(f"AI Chat Studio smoke test: {base_url}", file=out, flush=True)
    passed = failed = skipped = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=args.timeout) as http:
        ctx = Context(args=args, http=http, ws_base=_ws_base(base_url), out=out)
        for item in CHECKS:
            if item.needs_chat and args.skip_chat:
                printer.skipped(item.name, "--skip-chat")
                skipped += 1
                continue
            started = time.monotonic()
            try:
                note = await item.fn(ctx)
            except CheckFailed as failure:
                printer.failed(item.name, str(failure))
                failed += 1
            except Exception as error:  # a transport error is a failed check, not a crash
                reason = str(error) or "no detail"
                printer.failed(item.name, f"{type(error).__name__}: {_clip(reason)}")
                failed += 1
            else:
                printer.passed(item.name, note, time.monotonic() - started)
                passed += 1
    if skipped:
        print(f"({skipped} skipped)", file=out)
    print(f"{passed} passed, {failed} failed", file=out, flush=True)
    return 1 if failed else 0


async def amain(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """For callers already inside an event loop (async tests)."""
    return await run(parse_args(argv), out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    return asyncio.run(run(parse_args(argv), out))


if __name__ == "__main__":
    sys.exit(main())
