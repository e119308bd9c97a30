"""Replies that outlive their worker, slow models on Redis, and revocation of running streams.

A worker that died is played by the broker itself: a reply log leased to a holder that never
renews it, exactly what a SIGKILLed worker leaves in Redis (tests/faults/ kills real
processes). Everything else is the real server over real HTTP and WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from resolvers.kit.broker.redis import RedisBroker
from tests.chat.conftest import provider_settings
from tests.chat.support import SSE, FakeThread, User, new_user, read_all, sse_events
from tests.conftest import IN_CI, LiveServer
from tests.realtime.clients import GraphQLWS, reply

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "gpt-4o-mini"

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"CI is set but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return REDIS_URL


@pytest.fixture(scope="module")
def redis_server(redis_url: str, fake_thread: FakeThread,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The live server on Redis, with a one-second lease so dead replies close quickly."""
    tmp = tmp_path_factory.mktemp("durable")
    settings = provider_settings(tmp, fake_thread, f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
                                 redis_url=redis_url, reply_lease_seconds=1.0)
    with LiveServer.running(settings) as server:
        yield server


@pytest.fixture
async def ruser(redis_server: LiveServer, fakes: FakeThread) -> AsyncIterator[User]:
    async with httpx.AsyncClient(base_url=redis_server.url, timeout=30) as http:
        yield await new_user(http)


@pytest.fixture
async def dead_worker(redis_url: str) -> AsyncIterator[RedisBroker]:
    """Another worker's broker (same key prefix as the server's) that will 'die'."""
    broker = RedisBroker(redis_url)
    yield broker
    await broker.aclose()


async def uid_of(user: User) -> str:
    response = await user.http.get("/api/auth/me", headers=user.headers)
    uid: str = response.json()["id"]
    return uid


def token_of(user: User) -> str:
    return user.headers["Authorization"].removeprefix("Bearer ")


async def orphan_reply(user: User, broker: RedisBroker, conversation_id: str,
                       chunks: list[str]) -> str:
    """A reply as a worker leaves it when it is SIGKILLed mid-stream: the user's message
    stored, some chunks in the log, a lease nobody renews."""
    request_id = f"r-{uuid.uuid4().hex[:10]}"
    key = f"{await uid_of(user)}/{request_id}"
    await broker.reply_start(key, owner_id=key.split("/")[0],
                             meta={"conversation_id": conversation_id, "model": MODEL,
                                   "request_id": request_id},
                             holder="worker-that-died", lease_seconds=1.0)
    for text in chunks:
        await broker.reply_append(key, {"type": "chat_chunk", "content": text,
                                        "request_id": request_id})
    return request_id


CHAT_EVENTS = """
subscription Resume($id: ID!, $after: Int!) {
  chatEvents(requestId: $id, after: $after) {
    __typename
    ... on ChatChunk { content seq requestId }
    ... on ChatError { code message requestId }
  }
}
"""


async def test_a_reply_whose_worker_died_ends_interrupted_for_every_reader_and_is_kept(
        ruser: User, redis_server: LiveServer, dead_worker: RedisBroker) -> None:
    conversation_id = await ruser.new_conversation(messages=[
        {"id": "m1", "content": "Tell me a story", "role": "user", "timestamp": 1}])
    request_id = await orphan_reply(ruser, dead_worker, conversation_id,
                                    ["Once", " upon", " a"])
    uid = await uid_of(ruser)
    started = time.monotonic()

    async def sse_reader() -> list[SSE]:
        async with ruser.http.stream("GET", f"/api/chat/{request_id}/events?after=1",
                                     headers=ruser.headers) as response:
            assert response.status_code == 200
            return await read_all(response)

    async def ws_reader() -> list[dict[str, Any]]:
        async with connect(f"{redis_server.ws_url}/ws/{uid}?token={token_of(ruser)}") as ws:
            await ws.send(json.dumps({"type": "resume", "request_id": request_id, "after": 0}))
            return await reply(ws, request_id, wait=15)

    async def graphql_reader() -> list[dict[str, Any]]:
        async with GraphQLWS.connect(redis_server.ws_url, "graphql-transport-ws") as client:
            assert (await client.init({"token": token_of(ruser)}))["type"] == "connection_ack"
            await client.subscribe("1", CHAT_EVENTS, {"id": request_id, "after": 2})
            return await client.collect("1", "chatEvents", wait=15)

    sse, ws, gql = await asyncio.gather(sse_reader(), ws_reader(), graphql_reader())
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"readers waited {elapsed:.1f}s for the interrupted end"
    assert [e.data.get("content") for e in sse[:-1]] == [" upon", " a"]
    assert [e.get("content") for e in ws[:-1]] == ["Once", " upon", " a"]
    for last in (sse[-1].data, ws[-1]):
        assert last["type"] == "error" and last["code"] == "interrupted"
        assert last["request_id"] == request_id and last.get("message_id")
    assert sse[-1].data["message_id"] == ws[-1]["message_id"]
    assert [e.get("content") for e in gql[:-1]] == [" a"]
    assert gql[-1] == {"__typename": "ChatError", "code": "INTERRUPTED",
                       "message": ws[-1]["message"], "requestId": request_id}

    messages = (await ruser.conversation(conversation_id))["messages"]
    assert [(m["role"], m["content"], m.get("status")) for m in messages] == [
        ("user", "Tell me a story", None), ("assistant", "Once upon a", "interrupted")]
    assert messages[1]["id"] == sse[-1].data["message_id"]

    # Nobody generates it any more: /stop says so; resuming gets the same end again.
    response = await ruser.http.post(f"/api/chat/{request_id}/stop", headers=ruser.headers)
    assert response.json() == {"stopped": False}
    async with ruser.http.stream("GET", f"/api/chat/{request_id}/events?after=3",
                                 headers=ruser.headers) as again:
        assert [e.data["code"] for e in await read_all(again)] == ["interrupted"]
    metrics = (await ruser.http.get("/metrics")).text
    assert 'chat_interrupted_total{cause="worker_lost",model="gpt-4o-mini"}' in metrics
    assert len((await ruser.conversation(conversation_id))["messages"]) == 2  # stored once


async def test_stop_of_a_reply_nobody_generates_closes_it_instead_of_claiming_success(
        ruser: User, dead_worker: RedisBroker) -> None:
    conversation_id = await ruser.new_conversation()
    request_id = await orphan_reply(ruser, dead_worker, conversation_id, ["Half"])
    await asyncio.sleep(1.3)  # the lease lapses
    response = await ruser.http.post(f"/api/chat/{request_id}/stop", headers=ruser.headers)
    assert response.status_code == 200 and response.json() == {"stopped": False}
    async with ruser.http.stream("GET", f"/api/chat/{request_id}/events",
                                 headers=ruser.headers) as stream:
        events = await read_all(stream)
    assert [e.type for e in events] == ["chat_chunk", "error"]
    assert events[-1].data["code"] == "interrupted"
    messages = (await ruser.conversation(conversation_id))["messages"]
    assert [(m["content"], m.get("status")) for m in messages] == [("Half", "interrupted")]


async def test_a_running_reply_keeps_its_lease_and_is_never_closed_as_interrupted(
        ruser: User, fakes: FakeThread) -> None:
    # Several lease lengths long: the generating worker renews it all along.
    fakes.openai.chunks = [f"w{i} " for i in range(10)]
    fakes.openai.chunk_delay = 0.35
    conversation_id = await ruser.new_conversation()
    response = await ruser.post_chat(messages=[{"role": "user", "content": "Hi"}],
                                     conversation_id=conversation_id)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == "".join(fakes.openai.chunks)
    messages = (await ruser.conversation(conversation_id))["messages"]
    assert messages[-1]["status"] == "complete"


async def test_deleting_the_account_stops_its_running_reply(
        ruser: User, fakes: FakeThread, dead_worker: RedisBroker) -> None:
    fakes.openai.chunks = [f"w{i} " for i in range(40)]
    fakes.openai.chunk_delay = 0.25  # ten seconds if nothing stops it
    conversation_id = await ruser.new_conversation()
    uid = await uid_of(ruser)
    request_id = f"del-{uuid.uuid4().hex[:8]}"
    async with ruser.http.stream("POST", "/api/chat", headers=ruser.headers, json={
            "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "conversation_id": conversation_id, "request_id": request_id}) as response:
        events = sse_events(response)
        assert (await anext(events)).type == "chat_chunk"
        deleted = await ruser.http.request("DELETE", "/api/auth/me", headers=ruser.headers,
                                           json={"password": "correct horse battery"})
        assert deleted.status_code == 200, deleted.text
        started = time.monotonic()
        rest = [event async for event in events]
        # The SSE reader ends at once: its token belongs to a deleted account.
        assert rest[-1].data["code"] == "unauthenticated"
        assert time.monotonic() - started < 3
    # And the generation itself stopped (read the log as another worker would).
    key = f"{uid}/{request_id}"
    async with asyncio.timeout(5):
        log = [event async for _seq, event in dead_worker.reply_events(key)]
    assert log[-1]["type"] == "error" and log[-1]["code"] == "unauthenticated"
    assert len(log) - 1 < 20, "the reply ran on after the account was deleted"


async def test_logout_everywhere_ends_a_streaming_sse_reply(
        ruser: User, fakes: FakeThread) -> None:
    fakes.openai.chunks = [f"w{i} " for i in range(20)]
    fakes.openai.chunk_delay = 0.2
    async with ruser.http.stream("POST", "/api/chat", headers=ruser.headers, json={
            "messages": [{"role": "user", "content": "Hi"}], "stream": True}) as response:
        events = sse_events(response)
        assert (await anext(events)).type == "chat_chunk"
        out = await ruser.http.post("/api/auth/logout", headers=ruser.headers,
                                    json={"everywhere": True})
        assert out.status_code == 200
        started = time.monotonic()
        rest = [event async for event in events]
        assert time.monotonic() - started < 2
    assert rest[-1].data == {"type": "error", "code": "unauthenticated",
                             "message": "Token logout", "request_id": rest[-1].data["request_id"]}
    assert len(rest) < 15


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


@pytest.fixture(scope="module")
def patient_server(redis_url: str, fake_thread: FakeThread,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Redis, and a provider stall timeout above the thinking time of the model."""
    tmp = tmp_path_factory.mktemp("patient")
    settings = provider_settings(tmp, fake_thread, f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
                                 redis_url=redis_url, provider_stall_timeout=60.0)
    with LiveServer.running(settings) as server:
        yield server


@pytest.mark.slow
async def test_a_30_second_first_token_streams_normally_on_every_face(
        patient_server: LiveServer, fakes: FakeThread, tmp_path: Path) -> None:
    """One reply per face (REST JSON, SSE, /ws, GraphQL) plus an SSE resume, all at once:
    the whole test takes one thinking time, not five."""
    fakes.openai.first_chunk_delay = 30.0
    chunks = "".join(fakes.openai.chunks)
    async with httpx.AsyncClient(base_url=patient_server.url, timeout=90) as http:
        user = await new_user(http)
        uid = await uid_of(user)
        token = token_of(user)
        hi = [{"role": "user", "content": "Think hard"}]

        async def rest_json() -> str:
            response = await user.post_chat(messages=hi)
            assert response.status_code == 200, response.text
            content: str = response.json()["content"]
            return content

        async def sse() -> str:
            async with http.stream("POST", "/api/chat", headers=user.headers, json={
                    "messages": hi, "stream": True, "request_id": "slow-sse"}) as response:
                assert response.status_code == 200
                events = await read_all(response)
            assert events[-1].type == "chat_complete", events[-1]
            return "".join(str(e.data.get("content", "")) for e in events[:-1])

        async def sse_resume() -> str:
            await asyncio.sleep(1)  # the reply "slow-sse" has started, nothing sent yet
            async with http.stream("GET", "/api/chat/slow-sse/events?after=0",
                                   headers=user.headers) as response:
                assert response.status_code == 200
                events = await read_all(response)
            assert events[-1].type == "chat_complete", events[-1]
            return "".join(str(e.data.get("content", "")) for e in events[:-1])

        async def ws() -> str:
            async with connect(f"{patient_server.ws_url}/ws/{uid}?token={token}") as socket:
                await socket.send(json.dumps({"type": "chat", "content": "Think hard",
                                              "request_id": "slow-ws"}))
                events = await reply(socket, "slow-ws", wait=60)
            assert events[-1]["type"] == "chat_complete", events[-1]
            return "".join(str(e.get("content", "")) for e in events[:-1])

        async def graphql() -> str:
            async with GraphQLWS.connect(patient_server.ws_url, "graphql-transport-ws") as client:
                assert (await client.init({"token": token}))["type"] == "connection_ack"
                await client.subscribe("1", CHAT_STREAM, {"input": {"messages": hi}})
                events = await client.collect("1", "chatStream", wait=60)
            assert events[-1]["__typename"] == "ChatComplete", events[-1]
            return "".join(str(e.get("content", "")) for e in events[:-1])

        started = time.monotonic()
        results = await asyncio.gather(rest_json(), sse(), sse_resume(), ws(), graphql())
        elapsed = time.monotonic() - started
    assert results == [chunks] * 5
    assert 30 <= elapsed < 45
