"""/ws/{user_id} as CONTRACT.md describes it, with real WebSocket clients against uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect

from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, bearer, register
from tests.fakes import FakeOpenAI
from tests.realtime.clients import (
    close_code,
    nothing_within,
    recv_json,
    recv_until,
    reply,
    short_lived_token,
    user_id,
)
from tests.realtime.conftest import CHUNKS, MODEL


async def account(http: httpx.AsyncClient) -> tuple[str, str]:
    token = (await register(http))["access_token"]
    return token, await user_id(http, token)


def ws_path(server: LiveServer, uid: str, **query: str) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{server.ws_url}/ws/{uid}" + (f"?{params}" if params else "")


async def create_conversation(http: httpx.AsyncClient, token: str, conversation_id: str) -> None:
    response = await http.post("/api/conversations", headers=bearer(token), json={
        "id": conversation_id, "title": "t", "messages": [], "model": MODEL})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- authentication


async def test_auth_by_query_then_ping(rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        pong = await recv_json(ws)
        assert pong["type"] == "pong"
        assert isinstance(pong["timestamp"], int)


async def test_auth_by_message_and_what_is_served_before(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        for kind in ("chat", "typing", "join", "resume", "stop"):
            await ws.send(json.dumps({"type": kind, "content": "hi", "request_id": "r"}))
            answer = await recv_json(ws)
            assert answer["type"] == "error" and answer["code"] == "unauthenticated", answer
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert await recv_json(ws) == {"type": "auth_ok", "user_id": uid}
        await ws.send(json.dumps({"type": "chat", "content": "hi", "request_id": "r1"}))
        events = await reply(ws, "r1")
        assert events[-1]["type"] == "chat_complete"


async def test_unauthenticated_socket_closes_with_4401_after_the_timeout(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    _token, uid = await account(http)
    started = time.monotonic()
    async with connect(ws_path(rt_server, uid)) as ws:
        await ws.send(json.dumps({"type": "ping"}))  # served, but does not authenticate
        assert await close_code(ws) == 4401
    assert 0.8 < time.monotonic() - started < 5  # WS_AUTH_TIMEOUT_SECONDS=1 in these tests


async def test_someone_elses_path_closes_with_4403(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, _uid = await account(http)
    _other_token, other_uid = await account(http)
    async with connect(ws_path(rt_server, other_uid, token=token)) as ws:
        assert await close_code(ws) == 4403
    async with connect(ws_path(rt_server, other_uid)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert await close_code(ws) == 4403


async def test_bad_token_closes_with_4401(rt_server: LiveServer,
                                          http: httpx.AsyncClient) -> None:
    _token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token="not-a-token")) as ws:
        assert await close_code(ws) == 4401
    async with connect(ws_path(rt_server, uid)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
        answer = await recv_json(ws)
        assert answer["type"] == "error" and answer["code"] == "unauthenticated"
        assert await close_code(ws) == 4401


# ---------------------------------------------------------------- bad input


async def test_bad_input_answers_an_error_and_keeps_the_connection(
        rt_server: LiveServer, rt_settings: Settings, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        cases: list[tuple[str | bytes, str]] = [
            ("{not json", "invalid_json"),
            ("[1, 2]", "invalid_json"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps({"no": "type"}), "unknown_type"),
            (json.dumps({"type": "chat", "content": "x" * (rt_settings.ws_max_message_bytes
                                                           + 10)}), "message_too_large"),
            (b"\x00" * (rt_settings.ws_max_message_bytes + 1), "message_too_large"),
            (json.dumps({"type": "chat"}), "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "temperature": "hot"}),
             "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "temperature": 5}), "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "max_tokens": 0}), "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "model": "nope"}), "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "request_id": "bad id!"}),
             "bad_request"),
            (json.dumps({"type": "chat", "content": "hi", "conversation_id": "absent"}),
             "not_found"),
            (json.dumps({"type": "chat", "content": "  "}), "bad_request"),  # blank
            (json.dumps({"type": "chat", "messages": [{"content": "hi"}]}), "bad_request"),
            (json.dumps({"type": "join"}), "bad_request"),
            (json.dumps({"type": "resume"}), "bad_request"),
            (json.dumps({"type": "stop", "request_id": "never-started"}), "not_found"),
        ]
        for frame, code in cases:
            await ws.send(frame)
            answer = await recv_json(ws)
            assert answer["type"] == "error", (frame[:80], answer)
            assert answer["code"] == code, (frame[:80], answer)
            assert answer.get("message"), answer
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


# ---------------------------------------------------------------- chat


async def test_chat_streams_numbered_chunks_then_complete(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "chat", "content": "Say hi", "request_id": "req_1",
                                  "max_tokens": 64, "temperature": 0.2}))
        events = await reply(ws, "req_1")
    chunks, complete = events[:-1], events[-1]
    # Chunks that reach a busy server together leave as one: the text and the numbering
    # (no gaps) are what a client relies on.
    assert chunks and [e["type"] for e in chunks] == ["chat_chunk"] * len(chunks)
    assert "".join(e["content"] for e in chunks) == "".join(CHUNKS)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert complete["type"] == "chat_complete"
    assert complete["tokens"] == len(CHUNKS) and complete["model"] == MODEL
    assert complete["finish_reason"] == "stop"
    # Only the documented fields reach the client (no internal status or timings).
    assert {key for e in chunks for key in e} == {"type", "content", "request_id", "seq"}
    assert set(complete) == {"type", "tokens", "model", "finish_reason", "request_id", "seq"}


async def test_replies_on_one_socket_interleave(
        rt_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    fake_llm.chunk_delay = 0.05
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        for request_id in ("a", "b"):
            await ws.send(json.dumps({"type": "chat", "content": "hi",
                                      "request_id": request_id}))
        order: list[str] = []
        done: set[str] = set()
        contents: dict[str, str] = {"a": "", "b": ""}
        while done != {"a", "b"}:
            event = await recv_json(ws)
            order.append(event["request_id"])
            if event["type"] == "chat_chunk":
                contents[event["request_id"]] += event["content"]
            else:
                assert event["type"] == "chat_complete", event
                done.add(event["request_id"])
    assert contents == {"a": "".join(CHUNKS), "b": "".join(CHUNKS)}
    # Interleaved: b's first event arrives before a's last.
    assert order.index("b") < len(order) - 1 - order[::-1].index("a")


async def test_stop_keeps_what_was_generated(
        rt_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    fake_llm.chunk_delay = 0.3
    token, uid = await account(http)
    await create_conversation(http, token, "conv_stop")
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "chat", "content": "tell me", "request_id": "s1",
                                  "conversation_id": "conv_stop"}))
        first = await recv_until(ws, "chat_chunk")
        await ws.send(json.dumps({"type": "stop", "request_id": "s1"}))
        rest = await reply(ws, "s1")
    received = first["content"] + "".join(e["content"] for e in rest
                                           if e["type"] == "chat_chunk")
    assert rest[-1]["type"] == "chat_complete"
    assert rest[-1]["finish_reason"] == "stopped"
    assert 0 < len(received) < len("".join(CHUNKS))
    stored = (await http.get("/api/conversations/conv_stop", headers=bearer(token))).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["content"] == received
    assert stored["messages"][1]["id"] == rest[-1]["message_id"]
    assert set(rest[-1]) == {"type", "tokens", "model", "finish_reason", "request_id",
                             "message_id", "seq"}


async def test_resume_after_a_dropped_connection_yields_each_chunk_once(
        rt_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    fake_llm.chunk_delay = 0.1
    token, uid = await account(http)
    seen: list[dict[str, object]] = []
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "chat", "content": "hi", "request_id": "res1"}))
        while len(seen) < 3:
            seen.append(await recv_until(ws, "chat_chunk"))
    # The socket is gone mid-reply; the reply is still being generated by the server.
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "resume", "request_id": "res1",
                                  "after": seen[-1]["seq"]}))
        rest = await reply(ws, "res1")
    events = seen + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "".join(str(e["content"]) for e in events[:-1]) == "".join(CHUNKS)
    assert events[-1]["type"] == "chat_complete"
    # A finished reply can still be read again (within its retention), from any point.
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "resume", "request_id": "res1", "after": 7}))
        tail = await reply(ws, "res1")
    assert [e["seq"] for e in tail] == [8, 9]


async def test_another_user_cannot_resume_or_stop(
        rt_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    fake_llm.chunk_delay = 0.1
    token, uid = await account(http)
    other_token, other_uid = await account(http)
    async with (connect(ws_path(rt_server, uid, token=token)) as ws,
                connect(ws_path(rt_server, other_uid, token=other_token)) as intruder):
        await ws.send(json.dumps({"type": "chat", "content": "hi", "request_id": "mine"}))
        await recv_until(ws, "chat_chunk")
        for kind in ("resume", "stop"):
            await intruder.send(json.dumps({"type": kind, "request_id": "mine", "after": 0}))
            answer = await recv_json(intruder)
            assert answer["type"] == "error" and answer["code"] == "not_found", answer
            assert answer["request_id"] == "mine"
        events = await reply(ws, "mine")
        assert events[-1]["type"] == "chat_complete"
        assert events[-1]["finish_reason"] == "stop"  # the intruder's stop did nothing
        assert await nothing_within(intruder, 0.3) == []


# ---------------------------------------------------------------- typing


async def test_typing_reaches_only_the_same_users_other_sockets_in_the_conversation(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    other_token, other_uid = await account(http)
    await create_conversation(http, token, "conv_123")
    await create_conversation(http, other_token, "conv_123")  # same id, another owner
    async with (
        connect(ws_path(rt_server, uid, token=token, conversation_id="conv_123")) as tab_a,
        connect(ws_path(rt_server, uid, token=token)) as tab_b,
        connect(ws_path(rt_server, uid, token=token, conversation_id="conv_other")) as tab_c,
        connect(ws_path(rt_server, other_uid, token=other_token,
                        conversation_id="conv_123")) as stranger,
    ):
        await tab_b.send(json.dumps({"type": "join", "conversation_id": "conv_123"}))
        assert await recv_json(tab_b) == {"type": "joined", "conversation_id": "conv_123"}
        for ws in (tab_a, tab_c, stranger):  # a pong: the socket is set up and joined
            await ws.send(json.dumps({"type": "ping"}))
            await recv_until(ws, "pong")
        await tab_a.send(json.dumps({"type": "typing", "conversation_id": "conv_123"}))
        event = await recv_until(tab_b, "user_typing")
        assert event["user_id"] == uid and event["conversation_id"] == "conv_123"
        # tab_b is in conv_123 by its join: typing without an id goes to its conversations.
        await tab_b.send(json.dumps({"type": "typing"}))
        event = await recv_until(tab_a, "user_typing")
        assert event["conversation_id"] == "conv_123"
        for ws in (tab_a, tab_b, tab_c, stranger):
            assert await nothing_within(ws, 0.4, "user_typing") == []
        # The stranger typing in their own conv_123 reaches nobody of the first user.
        await stranger.send(json.dumps({"type": "typing", "conversation_id": "conv_123"}))
        for ws in (tab_a, tab_b):
            assert await nothing_within(ws, 0.3, "user_typing") == []


async def test_the_guides_bare_typing_reaches_the_users_other_sockets_in_no_conversation(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    """The guide's client sends {"type":"typing"} with no conversation: accepted, never an
    error, and heard by the same user's other sockets that named no conversation either."""
    token, uid = await account(http)
    other_token, other_uid = await account(http)
    # tab_b authenticates by message, at once: this server's auth timeout is 1 s, and
    # opening the other sockets first can take longer than that on a loaded machine.
    async with connect(ws_path(rt_server, uid)) as tab_b:
        await tab_b.send(json.dumps({"type": "auth", "token": token}))
        await recv_until(tab_b, "auth_ok")
        async with (
            connect(ws_path(rt_server, uid, token=token)) as tab_a,
            connect(ws_path(rt_server, uid, token=token, conversation_id="conv_1")) as in_conv,
            connect(ws_path(rt_server, other_uid, token=other_token)) as stranger,
        ):
            await bare_typing_scenario(uid, tab_a, tab_b, in_conv, stranger)


async def bare_typing_scenario(uid: str, tab_a: Any, tab_b: Any, in_conv: Any,
                               stranger: Any) -> None:
    for ws in (tab_a, in_conv, stranger):  # a pong: authenticated and listening
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
    await tab_a.send(json.dumps({"type": "typing"}))
    event = await recv_until(tab_b, "user_typing")
    assert event["user_id"] == uid and "conversation_id" not in event
    assert isinstance(event["timestamp"], int)
    # And back the other way; the sender never hears itself, nor gets an error.
    await tab_b.send(json.dumps({"type": "typing"}))
    assert (await recv_until(tab_a, "user_typing"))["user_id"] == uid
    assert await nothing_within(tab_a, 0.4) == []
    assert await nothing_within(tab_b, 0.1) == []
    # A socket in a conversation, and another user's socket, hear none of it.
    for ws in (in_conv, stranger):
        assert await nothing_within(ws, 0.1, "user_typing") == []
    # The stranger's bare typing reaches none of the first user's sockets.
    await stranger.send(json.dumps({"type": "typing"}))
    for ws in (tab_a, tab_b, in_conv):
        assert await nothing_within(ws, 0.3, "user_typing") == []
    # Once tab_b names a conversation it is no longer among those in none.
    await tab_b.send(json.dumps({"type": "join", "conversation_id": "conv_1"}))
    await recv_until(tab_b, "joined")
    await tab_a.send(json.dumps({"type": "typing"}))
    assert await nothing_within(tab_b, 0.4, "user_typing") == []
    assert await nothing_within(tab_a, 0.1) == []


# ---------------------------------------------------------------- live authorization


async def test_an_expiring_token_closes_its_live_socket(
        rt_server: LiveServer, rt_settings: Settings, http: httpx.AsyncClient) -> None:
    _token, uid = await account(http)
    short = short_lived_token(rt_settings, uid, seconds=1.5)
    async with connect(ws_path(rt_server, uid, token=short)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        started = time.monotonic()
        assert await close_code(ws) == 4401
        assert time.monotonic() - started < 4


async def graphql(http: httpx.AsyncClient, token: str, query: str) -> dict[str, object]:
    response = await http.post("/graphql", headers=bearer(token), json={"query": query})
    body: dict[str, object] = response.json()
    assert not body.get("errors"), body
    return body


async def test_logout_everywhere_closes_live_sockets_but_not_newer_sessions(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    signed_up = await register(http)
    token, uid = signed_up["access_token"], await user_id(http, signed_up["access_token"])
    async with (connect(ws_path(rt_server, uid, token=token)) as tab_a,
                connect(ws_path(rt_server, uid)) as tab_b):
        await tab_b.send(json.dumps({"type": "auth", "token": token}))
        await recv_until(tab_b, "auth_ok")
        await tab_a.send(json.dumps({"type": "ping"}))
        await recv_until(tab_a, "pong")
        await graphql(http, token, "mutation { logout(everywhere: true) }")
        codes = await asyncio.gather(close_code(tab_a, 5), close_code(tab_b, 5))
        assert codes == [4401, 4401]
    # Signed in again afterwards: that socket stays open.
    login = await http.post("/api/auth/login", json={"username": signed_up["username"],
                                                     "password": "correct horse battery"})
    fresh = login.json()["access_token"]
    async with connect(ws_path(rt_server, uid, token=fresh)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        # The old token is refused outright now.
        async with connect(ws_path(rt_server, uid, token=token)) as old:
            assert await close_code(old) == 4401
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


async def test_deleting_the_account_closes_live_sockets(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    token, uid = await account(http)
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
        wrong = await http.post("/graphql", headers=bearer(token), json={
            "query": 'mutation { deleteAccount(password: "wrong password") }'})
        assert wrong.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"  # a wrong password changes nothing
        await graphql(http, token, 'mutation { deleteAccount(password: "correct horse battery") }')
        assert await close_code(ws, 5) == 4401
    me = await http.get("/api/auth/me", headers=bearer(token))
    assert me.status_code in (401, 404)


async def test_health_counts_open_websockets(rt_server: LiveServer,
                                             http: httpx.AsyncClient) -> None:
    async def count() -> int:
        value: int = (await http.get("/health")).json()["active_connections"]
        return value

    token, uid = await account(http)
    assert await count() == 0
    async with (connect(ws_path(rt_server, uid, token=token)) as ws,
                connect(f"{rt_server.ws_url}/graphql",
                        subprotocols=["graphql-transport-ws"]) as gql):  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
        await gql.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert (await recv_json(gql))["type"] == "connection_ack"
        assert await count() == 2
    for _ in range(50):  # the server notices the close a moment later
        if await count() == 0:
            break
        await asyncio.sleep(0.05)
    assert await count() == 0


async def test_rest_logout_everywhere_and_account_deletion_close_live_sockets(
        rt_server: LiveServer, http: httpx.AsyncClient) -> None:
    """The REST face broadcasts revocations too (one rule for every transport)."""
    signed_up = await register(http)
    token, uid = signed_up["access_token"], await user_id(http, signed_up["access_token"])
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
        response = await http.post("/api/auth/logout", headers=bearer(token),
                                   json={"everywhere": True})
        assert response.status_code == 200, response.text
        assert await close_code(ws, 5) == 4401
    fresh = (await http.post("/api/auth/login", json={
        "username": signed_up["username"], "password": "correct horse battery"})).json()
    token = fresh["access_token"]
    async with connect(ws_path(rt_server, uid, token=token)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
        wrong = await http.request("DELETE", "/api/auth/me", headers=bearer(token),
                                   json={"password": "not my password"})
        assert wrong.status_code == 401
        response = await http.request("DELETE", "/api/auth/me", headers=bearer(token),
                                      json={"password": "correct horse battery"})
        assert response.status_code == 200, response.text
        assert await close_code(ws, 5) == 4401
    assert (await http.get("/api/auth/me", headers=bearer(token))).status_code in (401, 404)
    login = await http.post("/api/auth/login", json={
        "username": signed_up["username"], "password": "correct horse battery"})
    assert login.status_code == 401
