"""GraphQL subscriptions at /graphql over both WebSocket subprotocols, with real clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, bearer, register
from tests.fakes import FakeOpenAI
from tests.realtime.clients import (
    GraphQLWS,
    close_code,
    recv_json,
    recv_until,
    short_lived_token,
    user_id,
)
from tests.realtime.conftest import CHUNKS, MODEL, realtime_settings

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]

CHAT_STREAM = """
subscription Chat($input: ChatInput!) {
  chatStream(input: $input) {
    __typename
    ... on ChatChunk { content seq requestId }
    ... on ChatComplete { tokens model requestId finishReason messageId seq }
    ... on ChatError { code message requestId }
  }
}
"""
CHAT_EVENTS = """
subscription Resume($id: ID!, $after: Int!) {
  chatEvents(requestId: $id, after: $after) {
    __typename
    ... on ChatChunk { content seq requestId }
    ... on ChatComplete { tokens model requestId finishReason seq }
    ... on ChatError { code message requestId }
  }
}
"""
TYPING = """
subscription Typing($id: ID!) { typing(conversationId: $id) { userId conversationId timestamp } }
"""
SEND_TYPING = "mutation Send($id: ID!) { sendTyping(conversationId: $id) }"


def chat_input(request_id: str, content: str = "hi") -> dict[str, Any]:
    return {"input": {"messages": [{"role": "user", "content": content}],
                      "requestId": request_id, "maxTokens": 64}}


async def account(http: httpx.AsyncClient) -> tuple[str, str]:
    token = (await register(http))["access_token"]
    return token, await user_id(http, token)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# ---------------------------------------------------------------- chat


async def test_chat_stream_chunk_by_chunk_then_complete(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    token, _uid = await account(http)
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        assert client.ws.subprotocol == protocol
        assert (await client.init({"Authorization": f"Bearer {token}"}))["type"] == \
            "connection_ack"
        await client.subscribe("1", CHAT_STREAM, chat_input("g1"))
        events = await client.collect("1", "chatStream")
    kinds = [e["__typename"] for e in events]
    # One message per chunk that arrived alone (chunks that reach a busy server together
    # leave as one), numbered without gaps.
    assert kinds == ["ChatChunk"] * (len(events) - 1) + ["ChatComplete"]
    assert "".join(e["content"] for e in events[:-1]) == "".join(CHUNKS)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["requestId"] for e in events} == {"g1"}
    complete = events[-1]
    assert complete["tokens"] == len(CHUNKS) and complete["model"] == MODEL
    assert complete["finishReason"] == "stop"


async def test_chat_stream_bad_input_is_an_error_not_a_closed_connection(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    token, _uid = await account(http)
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.init({"token": token})
        variables = chat_input("bad")
        variables["input"]["model"] = "no-such-model"
        await client.subscribe("1", CHAT_STREAM, variables)
        payload = await client.next("1")
        assert payload is not None and payload["errors"][0]["extensions"]["code"] == \
            "BAD_USER_INPUT"
        await client.subscribe("2", CHAT_STREAM, chat_input("good"))
        events = await client.collect("2", "chatStream")
        assert events[-1]["__typename"] == "ChatComplete"


async def test_chat_events_resumes_after_the_last_seen_seq(
        rt_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI,
        protocol: str) -> None:
    fake_llm.chunk_delay = 0.1
    token, _uid = await account(http)
    seen: list[dict[str, Any]] = []
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.init({"token": token})
        await client.subscribe("1", CHAT_STREAM, chat_input("resume-me"))
        while len(seen) < 3:
            payload = await client.next("1")
            assert payload is not None
            seen.append(payload["data"]["chatStream"])
    # Connection dropped mid-reply; resume on a new one.
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.init({"token": token})
        await client.subscribe("r", CHAT_EVENTS, {"id": "resume-me", "after": seen[-1]["seq"]})
        rest = await client.collect("r", "chatEvents")
    events = seen + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "".join(e["content"] for e in events[:-1]) == "".join(CHUNKS)
    assert events[-1]["__typename"] == "ChatComplete"


async def test_another_user_cannot_resume(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    token, _uid = await account(http)
    other_token, _other = await account(http)
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.init({"token": token})
        await client.subscribe("1", CHAT_STREAM, chat_input("private"))
        await client.collect("1", "chatStream")
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as intruder:
        await intruder.init({"token": other_token})
        await intruder.subscribe("r", CHAT_EVENTS, {"id": "private", "after": 0})
        payload = await intruder.next("r")
        assert payload is not None
        assert payload["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert not payload.get("data")


# ---------------------------------------------------------------- typing


async def test_typing_reaches_the_users_other_connections_only(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    token, uid = await account(http)
    other_token, _other = await account(http)
    async with (GraphQLWS.connect(rt_server.ws_url, protocol) as listener,
                GraphQLWS.connect(rt_server.ws_url, protocol) as typist,
                GraphQLWS.connect(rt_server.ws_url, protocol) as elsewhere,
                GraphQLWS.connect(rt_server.ws_url, protocol) as stranger):
        for client, who in ((listener, token), (typist, token), (elsewhere, token),
                            (stranger, other_token)):
            await client.init({"token": who})
        await stranger.subscribe("t", TYPING, {"id": "conv_123"})  # their own conv_123
        await elsewhere.subscribe("t", TYPING, {"id": "conv_456"})
        # Legacy graphql-ws runs subscriptions only: its clients send typing over HTTP.
        over_ws = protocol == "graphql-transport-ws"
        if over_ws:
            await typist.subscribe("t", TYPING, {"id": "conv_123"})  # must not hear itself
        await listener.subscribe("t", TYPING, {"id": "conv_123"})

        async def send_typing(n: int) -> None:
            if over_ws:
                await typist.subscribe(f"m{n}", SEND_TYPING, {"id": "conv_123"})
            else:
                response = await http.post("/graphql", headers=bearer(token), json={
                    "query": SEND_TYPING, "variables": {"id": "conv_123"}})
                assert response.json() == {"data": {"sendTyping": True}}

        async def first_event() -> dict[str, Any]:
            payload = await listener.next("t")
            assert payload is not None, "typing subscription ended"
            return dict(payload["data"]["typing"])

        # The subscription becomes live asynchronously: type until the listener hears it.
        heard = asyncio.create_task(first_event())
        n = 0
        while not heard.done() and n < 50:
            n += 1
            await send_typing(n)
            await asyncio.wait([heard], timeout=0.1)
        event = await heard
        assert event["userId"] == uid and event["conversationId"] == "conv_123"
        assert isinstance(event["timestamp"], int)
        await asyncio.sleep(0.3)
        await drain(listener)  # the other typing events sent while the subscription started
        for client in (typist, elsewhere, stranger):
            leaked = [m for m in await drain(client) if m.get("id") == "t"]
            assert leaked == [], leaked
        # Typing over HTTP (another device) and from the /ws face reach it as well.
        response = await http.post("/graphql", headers=bearer(token), json={
            "query": SEND_TYPING, "variables": {"id": "conv_123"}})
        assert response.json() == {"data": {"sendTyping": True}}
        assert (await first_event())["conversationId"] == "conv_123"
        async with connect(f"{rt_server.ws_url}/ws/{uid}?token={token}") as tab:
            await tab.send(json.dumps({"type": "typing", "conversation_id": "conv_123"}))
            assert (await first_event())["userId"] == uid
        # The stranger's own typing in their conv_123 never reaches this user.
        response = await http.post("/graphql", headers=bearer(other_token), json={
            "query": SEND_TYPING, "variables": {"id": "conv_123"}})
        assert response.json() == {"data": {"sendTyping": True}}
        await asyncio.sleep(0.3)
        assert [m for m in await drain(listener) if m.get("id") == "t"] == []


async def drain(client: GraphQLWS) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(await client.recv(0.05))
        except TimeoutError:
            return messages


# ---------------------------------------------------------------- authentication


async def test_no_subscription_without_connection_init(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    """CVE-2026-35523 regression: `subscribe`/`start` before `connection_init` is refused."""
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.subscribe("1", CHAT_STREAM, chat_input("sneaky"))
        assert await close_code(client.ws) == 4401


@pytest.mark.parametrize("payload", [{}, {"token": "forged"},
                                     {"Authorization": "Bearer forged"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_bad_or_missing_token_is_refused(
        rt_server: LiveServer, protocol: str, payload: dict[str, str]) -> None:
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.send({"type": "connection_init", "payload": payload})
        await client.subscribe("1", CHAT_STREAM, chat_input("sneaky"))
        if protocol == "graphql-transport-ws":
            assert await close_code(client.ws) == 4403
        else:
            answer = await recv_json(client.ws)
            assert answer["type"] == "connection_error", answer
            assert await close_code(client.ws) == 1011


async def test_an_expiring_token_closes_the_graphql_connection(
        rt_server: LiveServer, rt_settings: Settings, http: httpx.AsyncClient,
        protocol: str) -> None:
    _token, uid = await account(http)
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        ack = await client.init({"token": short_lived_token(rt_settings, uid, seconds=1.5)})
        assert ack["type"] == "connection_ack"
        await client.subscribe("t", TYPING, {"id": "conv_1"})
        assert await close_code(client.ws, 5) == 4401


async def test_logout_everywhere_closes_graphql_connections(
        rt_server: LiveServer, http: httpx.AsyncClient, protocol: str) -> None:
    token, _uid = await account(http)
    async with GraphQLWS.connect(rt_server.ws_url, protocol) as client:
        await client.init({"token": token})
        await client.subscribe("t", TYPING, {"id": "conv_1"})
        response = await http.post("/graphql", headers=bearer(token),
                                   json={"query": "mutation { logout(everywhere: true) }"})
        assert response.json() == {"data": {"logout": True}}
        assert await close_code(client.ws, 5) == 4401


# ---------------------------------------------------------------- legacy switch


@pytest.fixture
def legacy_off_server(tmp_path: Path, fake_llm: FakeOpenAI) -> Iterator[LiveServer]:
    with LiveServer.running(realtime_settings(tmp_path, fake_llm,
                                              graphql_legacy_ws=False)) as server:
        yield server


async def test_legacy_protocol_can_be_switched_off(legacy_off_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=legacy_off_server.url) as http:
        token, _uid = await account(http)
    async with GraphQLWS.connect(legacy_off_server.ws_url, "graphql-ws") as client:
        assert client.ws.subprotocol is None  # not agreed: the server closes at once
        assert await close_code(client.ws) == 4406
    async with GraphQLWS.connect(legacy_off_server.ws_url, "graphql-transport-ws") as client:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        await client.send({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}})
        payload = await client.next("1")
        assert payload is not None and payload["data"]["me"]["id"]
        await recv_until(client.ws, "complete")
