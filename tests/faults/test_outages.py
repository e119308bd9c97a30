"""Dependencies fail loudly and briefly: a Redis and a PostgreSQL of the test's own, killed
and restarted under traffic.

While one is down every request that needs it answers 503 with Retry-After (GraphQL
SERVICE_UNAVAILABLE, /ws an `error` frame `service_unavailable` on a socket that stays open),
quickly — never a 500, never a hang; `/health` answers 503 and `/health/live` 200; the log says
so once. When it is back everything works again without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.chat.support import FakeThread, sse_events
from tests.conftest import LiveServer, bearer, make_settings
from tests.faults.conftest import OwnPostgres, OwnRedis
from tests.realtime.clients import GraphQLWS, close_code, recv_json, recv_until

pytestmark = pytest.mark.slow

# "Briefly": an outage answer must not wait for timeouts.
ANSWER_WITHIN_SECONDS = 5.0
PASSWORD = "correct horse battery"


@dataclass
class Client:
    http: httpx.AsyncClient
    server: LiveServer
    token: str
    user_id: str
    username: str


async def new_client(server: LiveServer, http: httpx.AsyncClient) -> Client:
    username = f"u{uuid.uuid4().hex[:10]}"
    response = await http.post("/api/auth/register", json={
        "username": username, "email": f"{username}@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await http.get("/api/auth/me", headers=bearer(token))
    return Client(http, server, token, me.json()["id"], username)


async def timed(request: Any) -> httpx.Response:
    started = time.monotonic()
    response: httpx.Response = await request
    assert time.monotonic() - started < ANSWER_WITHIN_SECONDS, "the outage answer was slow"
    return response


def assert_unavailable(name: str, response: httpx.Response) -> None:
    assert response.status_code == 503, f"{name}: {response.status_code} {response.text}"
    assert int(response.headers["retry-after"]) >= 1, name
    assert "detail" in response.json(), name


async def gql(client: Client, query: str, **variables: Any) -> dict[str, Any]:
    response = await timed(client.http.post(
        "/graphql", json={"query": query, "variables": variables},
        headers=bearer(client.token)))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def gql_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def ws_open(client: Client) -> ClientConnection:
    ws = await connect(f"{client.server.ws_url}/ws/{client.user_id}?token={client.token}")
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv_json(ws))["type"] == "pong"
    return ws


async def ws_chat_error(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "chat", "content": "Hello", "request_id":
                              uuid.uuid4().hex[:12], **fields}))
    error = await recv_until(ws, "error", ANSWER_WITHIN_SECONDS)
    # The socket stays open and usable.
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv_until(ws, "pong"))["type"] == "pong"
    return error


async def wait_healthy(http: httpx.AsyncClient, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get("/health")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, f"never healthy again: {response.text}"
        await asyncio.sleep(0.2)


def outage_lines(caplog: pytest.LogCaptureFixture, dependency: str) -> tuple[int, int]:
    records = [r for r in caplog.records if r.name == "chat_studio.outages"
               and r.getMessage().startswith(dependency)]
    down = sum("is unavailable" in r.getMessage() for r in records)
    back = sum("is back after" in r.getMessage() for r in records)
    return down, back


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.exc_info and r.name.startswith(("chat_studio", "resolvers"))]


def fake_openai(fakes: FakeThread) -> dict[str, Any]:
    fakes.reset()
    return {"openai_base_url": fakes.openai.api_base, "openai_api_key": "sk-test",
            "default_model": "gpt-4o-mini"}


CHAT = {"messages": [{"role": "user", "content": "Hello"}]}
LIST_CONVERSATIONS = "{ conversations(first: 5) { totalCount } }"
LOGIN = ("mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) "
         "{ accessToken } }")
CHAT_STREAM = ('subscription { chatStream(input: {messages: [{role: user, content: "Hi"}]}) '
               "{ __typename } }")
CHAT_MUTATION = ('mutation { chat(input: {messages: [{role: user, content: "Hi"}]}) '
                 "{ content } }")


async def test_a_signed_in_user_is_known_from_the_cache_during_an_outage(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    """With the user cache (the default), a token checked moments ago is still known while the
    database is down: /me answers from the cache; what needs the database is still a 503."""
    settings = make_settings(tmp_path, database_url=own_postgres.url, user_cache_seconds=60)
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            client = await new_client(server, http)  # its /me puts the user in the cache
            headers = bearer(client.token)
            own_postgres.kill()
            try:
                me = await timed(http.get("/api/auth/me", headers=headers))
                assert me.status_code == 200 and me.json()["id"] == client.user_id, me.text
                assert_unavailable("list", await timed(
                    http.get("/api/conversations", headers=headers)))
            finally:
                own_postgres.start()
            # Recovered before the server stops (the outage log state is per process).
            assert (await wait_healthy(http))["database"] == "up"


async def test_postgres_down_answers_503_everywhere_then_recovers(
        own_postgres: OwnPostgres, provider_fakes: FakeThread, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # The database path of every request: no per-process user cache (with it, a token check
    # and /me are answered from the cache during an outage — the test below).
    settings = make_settings(tmp_path, database_url=own_postgres.url, user_cache_seconds=0,
                             **fake_openai(provider_fakes))
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            client = await new_client(server, http)
            headers = bearer(client.token)
            created = await http.post("/api/conversations", headers=headers,
                                      json={"id": "c1", "title": "t", "model": "gpt-4o-mini"})
            assert created.status_code == 200, created.text
            ws = await ws_open(client)

            own_postgres.kill()

            health = await timed(http.get("/health"))
            assert health.status_code == 503 and health.json()["database"] == "down"
            assert (await timed(http.get("/health/live"))).status_code == 200
            for name, request in {
                "register": http.post("/api/auth/register", json={
                    "username": "newbie", "email": "n@example.com", "password": PASSWORD}),
                "login": http.post("/api/auth/login", json={
                    "username": client.username, "password": PASSWORD}),
                "me": http.get("/api/auth/me", headers=headers),
                "list": http.get("/api/conversations", headers=headers),
                "create": http.post("/api/conversations", headers=headers,
                                    json={"title": "t", "model": "gpt-4o-mini"}),
                "get": http.get("/api/conversations/c1", headers=headers),
                "stats": http.get("/api/stats", headers=headers),
                "chat": http.post("/api/chat", headers=headers, json=CHAT),
                "chat stream": http.post("/api/chat", headers=headers,
                                         json={**CHAT, "stream": True}),
            }.items():
                assert_unavailable(name, await timed(request))
            assert gql_code(await gql(client, LIST_CONVERSATIONS)) == "SERVICE_UNAVAILABLE"
            body = await gql(client, LOGIN, u=client.username, p=PASSWORD)
            assert gql_code(body) == "SERVICE_UNAVAILABLE"
            assert body["errors"][0]["extensions"]["retryAfter"] >= 1
            # /ws: a chat that needs the database gets an error frame; the socket stays.
            error = await ws_chat_error(ws, conversation_id="c1")
            assert error["code"] == "service_unavailable", error
            # A socket connecting now cannot be authenticated: "try again later", not 4401
            # (which tells a client its token is bad).
            async with connect(f"{server.ws_url}/ws/{client.user_id}?token={client.token}") \
                    as late:
                assert (await recv_json(late))["code"] == "service_unavailable"
                assert await close_code(late) == 1013

            own_postgres.start()

            body = await wait_healthy(http)
            assert body["database"] == "up"
            login = await http.post("/api/auth/login", json={
                "username": client.username, "password": PASSWORD})
            assert login.status_code == 200, login.text
            listed = await http.get("/api/conversations", headers=headers)
            assert [c["id"] for c in listed.json()] == ["c1"]
            chat = await http.post("/api/chat", headers=headers,
                                   json={**CHAT, "conversation_id": "c1"})
            assert chat.status_code == 200, chat.text
            assert "errors" not in await gql(client, LIST_CONVERSATIONS)
            await ws.close()
    assert outage_lines(caplog, "database") == (1, 1)
    assert tracebacks(caplog) == []


async def test_redis_down_answers_503_everywhere_then_recovers(
        own_redis: OwnRedis, provider_fakes: FakeThread, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db",
                             redis_url=own_redis.url, **fake_openai(provider_fakes))
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            client = await new_client(server, http)
            headers = bearer(client.token)
            ws = await ws_open(client)
            ok = await http.post("/api/chat", headers=headers, json=CHAT)
            assert ok.status_code == 200, ok.text

            own_redis.kill()

            health = await timed(http.get("/health"))
            assert health.status_code == 503, health.text
            assert health.json()["redis"] == "down" and health.json()["database"] == "up"
            assert (await timed(http.get("/health/live"))).status_code == 200
            for name, request in {
                "chat": http.post("/api/chat", headers=headers, json=CHAT),
                "chat stream": http.post("/api/chat", headers=headers,
                                         json={**CHAT, "stream": True}),
                "login": http.post("/api/auth/login", json={
                    "username": client.username, "password": PASSWORD}),
                "register": http.post("/api/auth/register", json={
                    "username": "newbie", "email": "n@example.com", "password": PASSWORD}),
                "stop": http.post("/api/chat/r1/stop", headers=headers),
            }.items():
                assert_unavailable(name, await timed(request))
            # What needs only the database still works.
            listed = await timed(http.get("/api/conversations", headers=headers))
            assert listed.status_code == 200, listed.text
            assert gql_code(await gql(client, CHAT_MUTATION)) == "SERVICE_UNAVAILABLE"
            error = await ws_chat_error(ws)
            assert error["code"] == "service_unavailable", error
            # A GraphQL subscription gets a coded error; its connection stays usable.
            async with GraphQLWS.connect(server.ws_url, "graphql-transport-ws") as gws:
                assert (await gws.init({"token": client.token}))["type"] == "connection_ack"
                await gws.subscribe("1", CHAT_STREAM)
                payload = await gws.next("1", ANSWER_WITHIN_SECONDS)
                assert payload is not None, "no error for the subscription"
                assert payload["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                await gws.send({"type": "ping"})
                assert (await recv_until(gws.ws, "pong"))["type"] == "pong"
            for _ in range(5):  # more traffic: still one log line
                await http.post("/api/chat", headers=headers, json=CHAT)

            own_redis.start()

            body = await wait_healthy(http)
            assert body["redis"] == "up"
            chat = await http.post("/api/chat", headers=headers, json=CHAT)
            assert chat.status_code == 200, chat.text
            assert chat.json()["content"]
            login = await http.post("/api/auth/login", json={
                "username": client.username, "password": PASSWORD})
            assert login.status_code == 200, login.text
            assert "errors" not in await gql(client, CHAT_MUTATION)
            await ws.close()
    assert outage_lines(caplog, "redis") == (1, 1)
    assert tracebacks(caplog) == []


async def test_redis_dying_mid_reply_ends_the_stream_with_an_error_event(
        own_redis: OwnRedis, provider_fakes: FakeThread, tmp_path: Path) -> None:
    """An SSE reader whose reply log disappears with Redis gets a terminal `error` event
    (`service_unavailable`) promptly, instead of a cut body or a hang."""
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db",
                             redis_url=own_redis.url, **fake_openai(provider_fakes))
    provider_fakes.openai.chunks = [f"part {i} " for i in range(40)]
    provider_fakes.openai.chunk_delay = 0.1
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            client = await new_client(server, http)
            async with http.stream("POST", "/api/chat", headers=bearer(client.token),
                                   json={**CHAT, "stream": True}) as response:
                assert response.status_code == 200
                events = sse_events(response)
                first = await anext(events)
                assert first.type == "chat_chunk"
                own_redis.kill()
                started = time.monotonic()
                rest = [event async for event in events]
                assert time.monotonic() - started < ANSWER_WITHIN_SECONDS
    assert rest, "the stream ended without a terminal event"
    assert rest[-1].type == "error" and rest[-1].data["code"] == "service_unavailable", rest
