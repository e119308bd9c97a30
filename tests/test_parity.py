"""The same scenarios through every face: REST (+ SSE), /ws and GraphQL (+ subscriptions) must
give the same answers — conversations, chat, errors for bad input, and ownership."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.chat.support import NO_RATE_LIMITS, read_all
from tests.conftest import LiveServer, bearer, make_settings, register
from tests.fakes import FakeOpenAI
from tests.graphql.helpers import data_of, gql
from tests.realtime.clients import GraphQLWS, recv_json, recv_until, reply, user_id

CREATED_AT = 1_700_000_000_000
FIRST = [
    {"id": "m1", "role": "system", "content": "Be brief", "timestamp": CREATED_AT},
    {"id": "m2", "role": "user", "content": "Hi 你好", "timestamp": CREATED_AT + 1},
]
SECOND = [*FIRST, {"id": "m3", "role": "assistant", "content": "Hello!",
                   "timestamp": CREATED_AT + 2}]
CONVERSATION_FIELDS = ("id title model systemPrompt createdAt updatedAt userId "
                       "messages { id role content timestamp }")


def normalized(conversation: dict[str, Any], user_id: str) -> dict[str, Any]:
    """What must agree between the faces: everything except who owns it and server times."""
    assert conversation["userId"] == user_id
    assert conversation["updatedAt"] > conversation["createdAt"] == CREATED_AT
    return {
        "id": conversation["id"], "title": conversation["title"],
        "model": conversation["model"], "systemPrompt": conversation.get("systemPrompt"),
        "messages": [{key: message[key] for key in ("id", "role", "content", "timestamp")}
                     for message in conversation["messages"]],
    }


async def via_rest(http: httpx.AsyncClient) -> dict[str, Any]:
    token = (await http.post("/api/auth/register", json={
        "username": "rest_user", "email": "rest@example.com",
        "password": "correct horse"})).json()["access_token"]
    auth = bearer(token)
    user_id = (await http.get("/api/auth/me", headers=auth)).json()["id"]
    body = {"id": "conv_123", "title": "Plans", "model": "gpt-4o-mini", "messages": FIRST,
            "createdAt": CREATED_AT, "systemPrompt": "Be brief"}
    created = (await http.post("/api/conversations", json=body, headers=auth)).json()
    updated = (await http.put("/api/conversations/conv_123", headers=auth, json={
        **body, "title": "Plans v2", "messages": SECOND})).json()
    fetched = (await http.get("/api/conversations/conv_123", headers=auth)).json()
    listed = (await http.get("/api/conversations", headers=auth)).json()
    stats = (await http.get("/api/stats", headers=auth)).json()
    deleted = (await http.delete("/api/conversations/conv_123", headers=auth)).status_code
    after = (await http.get("/api/conversations", headers=auth)).json()
    return {
        "created": normalized(created, user_id),
        "updated": normalized(updated, user_id),
        "fetched": normalized(fetched, user_id),
        "listed": [normalized(item, user_id) for item in listed],
        "stats": stats,
        "deleted": deleted == 200,
        "after": [item["id"] for item in after],
    }


async def via_graphql(http: httpx.AsyncClient) -> dict[str, Any]:
    registered = (await data_of(http, """
        mutation { register(input: {username: "gql_user", email: "gql@example.com",
                                    password: "correct horse"}) { accessToken user { id } } }
    """))["register"]
    token, user_id = registered["accessToken"], registered["user"]["id"]
    value = {"id": "conv_123", "title": "Plans", "model": "gpt-4o-mini", "messages": [
        {key: message[key] for key in ("id", "role", "content", "timestamp")}
        for message in FIRST], "createdAt": CREATED_AT, "systemPrompt": "Be brief"}
    created = (await data_of(
        http, f"mutation($i: ConversationInput!) {{ createConversation(input: $i) "
              f"{{ {CONVERSATION_FIELDS} }} }}", {"i": value}, token))["createConversation"]
    updated = (await data_of(
        http, f"mutation($i: ConversationInput!) {{ updateConversation(id: \"conv_123\", "
              f"input: $i) {{ {CONVERSATION_FIELDS} }} }}",
        {"i": {**value, "id": None, "title": "Plans v2", "messages": SECOND}},
        token))["updateConversation"]
    one = f'{{ conversation(id: "conv_123") {{ {CONVERSATION_FIELDS} }} }}'
    fetched = (await data_of(http, one, token=token))["conversation"]
    listed = (await data_of(http, f"{{ conversations {{ nodes {{ {CONVERSATION_FIELDS} }} }} }}",
                            token=token))["conversations"]["nodes"]
    stats = (await data_of(http, "{ stats { totalConversations totalMessages totalTokens "
                                 "averageMessagesPerConversation totalCostUsd } }",
                           token=token))["stats"]
    deleted = (await data_of(http, 'mutation { deleteConversation(id: "conv_123") }',
                             token=token))["deleteConversation"]
    after = (await data_of(http, "{ conversations { nodes { id } } }",
                           token=token))["conversations"]["nodes"]
    return {
        "created": normalized(created, user_id),
        "updated": normalized(updated, user_id),
        "fetched": normalized(fetched, user_id),
        "listed": [normalized(item, user_id) for item in listed],
        "stats": {"total_conversations": stats["totalConversations"],
                  "total_messages": stats["totalMessages"],
                  "total_tokens": stats["totalTokens"],
                  "average_messages_per_conversation": stats["averageMessagesPerConversation"],
                  "total_cost_usd": stats["totalCostUsd"]},
        "deleted": deleted,
        "after": [item["id"] for item in after],
    }


async def test_rest_and_graphql_agree(client: httpx.AsyncClient) -> None:
    rest = await via_rest(client)
    graphql = await via_graphql(client)
    for key in rest:
        assert rest[key] == graphql[key], key
    # And the scenario itself did what a user expects.
    assert rest["updated"]["title"] == "Plans v2"
    assert [m["id"] for m in rest["fetched"]["messages"]] == ["m1", "m2", "m3"]
    assert rest["listed"] == [rest["fetched"]]
    assert rest["stats"] == {"total_conversations": 1, "total_messages": 3, "total_tokens": 0,
                             "average_messages_per_conversation": 3.0, "total_cost_usd": 0.0}
    assert rest["deleted"] is True and rest["after"] == []


# ================================================================ chat, errors, ownership
# A live server whose chat talks to a fake OpenAI over real HTTP (OpenAI's streaming format).

MODEL = "gpt-4o-mini"
CHUNKS = ["Bon", "jour", " 你好", "!"]
REPLY_TOKENS = 7
HISTORY = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi 你好"}]
FACES = ("rest", "sse", "ws", "graphql", "graphql_ws")


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(chunks=list(CHUNKS), completion_tokens=REPLY_TOKENS,
                          prompt_tokens=11, chunk_delay=0.01) as fake:
        yield fake


@pytest.fixture
def chat_server(tmp_path: Path, database_url: str, fake_llm: FakeOpenAI) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, database_url=database_url, openai_api_key="sk-test",
                             openai_base_url=fake_llm.api_base, openai_models=[MODEL],
                             default_model=MODEL, **NO_RATE_LIMITS)
    with LiveServer.running(settings) as server:
        yield server


@pytest.fixture
async def http(chat_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chat_server.url, timeout=30) as client:
        yield client


async def new_account(http: httpx.AsyncClient) -> tuple[str, str]:
    token = (await register(http))["access_token"]
    return token, await user_id(http, token)


async def create_conversation(http: httpx.AsyncClient, token: str, conversation_id: str) -> None:
    response = await http.post("/api/conversations", headers=bearer(token), json={
        "id": conversation_id, "title": "Parity", "model": MODEL, "messages": []})
    assert response.status_code == 200, response.text


CHAT_MUTATION = """mutation($i: ChatInput!) {
  chat(input: $i) { content tokens model finishReason requestId } }"""
CHAT_STREAM = """subscription($i: ChatInput!) { chatStream(input: $i) {
  __typename
  ... on ChatChunk { content requestId }
  ... on ChatComplete { tokens model finishReason requestId messageId }
  ... on ChatError { code message requestId } } }"""
CHAT_EVENTS = """subscription($id: ID!) { chatEvents(requestId: $id, after: 0) {
  __typename ... on ChatComplete { tokens } } }"""


def graphql_input(body: dict[str, Any]) -> dict[str, Any]:
    """A REST ChatRequest body as GraphQL's ChatInput."""
    names = {"conversation_id": "conversationId", "request_id": "requestId",
             "max_tokens": "maxTokens", "system_prompt": "systemPrompt"}
    return {names.get(key, key): value for key, value in body.items()}


async def chat_through(face: str, server: LiveServer, http: httpx.AsyncClient, token: str,
                       body: dict[str, Any]) -> dict[str, Any]:
    """One chat request through `face`; the reply as a client sees it, in common terms."""
    if face == "rest":
        response = await http.post("/api/chat", json=body, headers=bearer(token))
        assert response.status_code == 200, response.text
        data = response.json()
        return {"content": data["content"], "tokens": data["tokens"], "model": data["model"],
                "finish_reason": data["finish_reason"], "request_id": data["request_id"]}
    if face == "sse":
        async with http.stream("POST", "/api/chat", json={**body, "stream": True},
                               headers=bearer(token)) as response:
            assert response.status_code == 200
            events = [event.data for event in await read_all(response)]
        *chunks, last = events
        assert [e["type"] for e in chunks] == ["chat_chunk"] * len(chunks)
        assert last["type"] == "chat_complete", last
        return {"content": "".join(e["content"] for e in chunks), "tokens": last["tokens"],
                "model": last["model"], "finish_reason": last["finish_reason"],
                "request_id": last["request_id"]}
    if face == "ws":
        uid = await user_id(http, token)
        async with connect(f"{server.ws_url}/ws/{uid}?token={token}") as ws:
            await ws.send(json.dumps({"type": "chat", **body}))
            *chunks, last = await reply(ws, body["request_id"])
        assert last["type"] == "chat_complete", last
        return {"content": "".join(e["content"] for e in chunks), "tokens": last["tokens"],
                "model": last["model"], "finish_reason": last["finish_reason"],
                "request_id": last["request_id"]}
    if face == "graphql":
        data = (await data_of(http, CHAT_MUTATION, {"i": graphql_input(body)}, token))["chat"]
        return {"content": data["content"], "tokens": data["tokens"], "model": data["model"],
                "finish_reason": data["finishReason"], "request_id": data["requestId"]}
    assert face == "graphql_ws"
    async with GraphQLWS.connect(server.ws_url, "graphql-transport-ws") as client:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        await client.subscribe("1", CHAT_STREAM, {"i": graphql_input(body)})
        *chunks, last = await client.collect("1", "chatStream")
    assert last["__typename"] == "ChatComplete", last
    return {"content": "".join(e["content"] for e in chunks), "tokens": last["tokens"],
            "model": last["model"], "finish_reason": last["finishReason"],
            "request_id": last["requestId"]}


async def stored_messages(face: str, http: httpx.AsyncClient, token: str,
                          conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's messages as the face reads them (/ws has no read: REST's)."""
    if face.startswith("graphql"):
        query = (f'{{ conversation(id: "{conversation_id}") '
                 f'{{ messages {{ role content tokens model status }} }} }}')
        messages: list[dict[str, Any]] = (
            await data_of(http, query, token=token))["conversation"]["messages"]
        return messages
    response = await http.get(f"/api/conversations/{conversation_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return [{key: message.get(key) for key in ("role", "content", "tokens", "model", "status")}
            for message in response.json()["messages"]]


async def test_chat_gives_the_same_reply_and_keeps_the_same_messages_on_every_face(
        chat_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    results: dict[str, dict[str, Any]] = {}
    for face in FACES:
        token, _uid = await new_account(http)
        await create_conversation(http, token, "conv_chat")
        request_id = f"{face}-{uuid.uuid4().hex[:6]}"
        reply_seen = await chat_through(face, chat_server, http, token, {
            "messages": HISTORY, "conversation_id": "conv_chat", "request_id": request_id})
        assert reply_seen.pop("request_id") == request_id
        sent = fake_llm.last.json  # what reached the provider
        stats = (await http.get("/api/stats", headers=bearer(token))).json()
        results[face] = {
            "reply": reply_seen,
            "stored": await stored_messages(face, http, token, "conv_chat"),
            "sent": {"messages": sent["messages"], "temperature": sent["temperature"],
                     "max_tokens": sent["max_tokens"], "model": sent["model"]},
            "stats": (stats["total_messages"], stats["total_tokens"]),
        }
    for face in FACES:
        assert results[face] == results["rest"], face
    # And what every face agrees on is what a user expects.
    assert results["rest"] == {
        "reply": {"content": "".join(CHUNKS), "tokens": REPLY_TOKENS, "model": MODEL,
                  "finish_reason": "stop"},
        "stored": [
            {"role": "user", "content": "Hi 你好", "tokens": None, "model": None,
             "status": None},
            {"role": "assistant", "content": "".join(CHUNKS), "tokens": REPLY_TOKENS,
             "model": MODEL, "status": "complete"},
        ],
        # The defaults (one place: resolvers/chat/params.py) reach the provider from every face.
        "sent": {"messages": HISTORY, "temperature": 0.7, "max_tokens": 2048, "model": MODEL},
        "stats": (2, REPLY_TOKENS),
    }


# Bad input, as a change to a valid request; the code every face must answer with.
BAD_INPUT: dict[str, tuple[dict[str, Any], str]] = {
    "blank content": ({"messages": [{"role": "user", "content": " \n "}]}, "BAD_USER_INPUT"),
    "blank after history": ({"messages": [*HISTORY, {"role": "user", "content": ""}]},
                            "BAD_USER_INPUT"),
    "bad role": ({"messages": [{"role": "robot", "content": "hi"}]}, "BAD_USER_INPUT"),
    "missing role": ({"messages": [{"content": "hi"}]}, "BAD_USER_INPUT"),
    "no messages": ({"messages": []}, "BAD_USER_INPUT"),
    "temperature too high": ({"temperature": 2.5}, "BAD_USER_INPUT"),
    "temperature negative": ({"temperature": -0.1}, "BAD_USER_INPUT"),
    "max_tokens zero": ({"max_tokens": 0}, "BAD_USER_INPUT"),
    "max_tokens too many": ({"max_tokens": 4097}, "BAD_USER_INPUT"),
    "unknown model": ({"model": "gpt-17-ultra"}, "BAD_USER_INPUT"),
    "unknown conversation": ({"conversation_id": "conv_absent"}, "NOT_FOUND"),
}
REST_CODES = {400: "BAD_USER_INPUT", 422: "BAD_USER_INPUT", 404: "NOT_FOUND"}
WS_CODES = {"bad_request": "BAD_USER_INPUT", "not_found": "NOT_FOUND"}


async def test_the_same_bad_input_gives_the_same_code_on_every_face(
        chat_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    token, uid = await new_account(http)
    answers: dict[str, dict[str, str]] = {}
    async with connect(f"{chat_server.ws_url}/ws/{uid}?token={token}") as ws:
        for name, (change, _code) in BAD_INPUT.items():
            body = {"messages": [{"role": "user", "content": "hi"}], **change}
            rest = await http.post("/api/chat", json=body, headers=bearer(token))
            streamed = await http.post("/api/chat", json={**body, "stream": True},
                                       headers=bearer(token))
            graphql = await gql(http, CHAT_MUTATION, {"i": graphql_input(body)}, token)
            await ws.send(json.dumps({"type": "chat", "request_id": "bad", **body}))
            frame = await recv_json(ws)
            assert frame["type"] == "error" and frame["message"], frame
            answers[name] = {
                "rest": REST_CODES.get(rest.status_code, str(rest.status_code)),
                "sse": REST_CODES.get(streamed.status_code, str(streamed.status_code)),
                "graphql": graphql["errors"][0]["extensions"]["code"],
                "ws": WS_CODES.get(frame["code"], frame["code"]),
            }
    assert answers == {name: dict.fromkeys(("rest", "sse", "graphql", "ws"), code)
                       for name, (_change, code) in BAD_INPUT.items()}
    # Refused before any generation started: nothing reached the provider.
    assert [r for r in fake_llm.requests if r.method == "POST"] == []


async def test_no_face_lets_another_user_near_a_conversation_or_reply(
        chat_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    fake_llm.chunk_delay = 0.15  # the owner's reply is still running while others try
    owner_token, owner_uid = await new_account(http)
    intruder_token, intruder_uid = await new_account(http)
    await create_conversation(http, owner_token, "conv_mine")
    intruder = bearer(intruder_token)
    async with (connect(f"{chat_server.ws_url}/ws/{owner_uid}?token={owner_token}") as owner,
                connect(f"{chat_server.ws_url}/ws/{intruder_uid}?token={intruder_token}")
                as ws,
                GraphQLWS.connect(chat_server.ws_url, "graphql-transport-ws") as gql_ws):
        await owner.send(json.dumps({"type": "chat", "content": "secret plans",
                                     "conversation_id": "conv_mine", "request_id": "mine"}))
        await recv_until(owner, "chat_chunk")  # generating now
        await gql_ws.init({"token": intruder_token})
        hello = {"messages": [{"role": "user", "content": "let me in"}],
                 "conversation_id": "conv_mine"}
        refused: dict[str, dict[str, Any]] = {}

        # REST
        refused["rest"] = {
            "read": (await http.get("/api/conversations/conv_mine", headers=intruder)
                     ).status_code,
            "chat into": (await http.post("/api/chat", json=hello, headers=intruder)
                          ).status_code,
            "resume": (await http.get("/api/chat/mine/events", headers=intruder)).status_code,
            "stop": (await http.post("/api/chat/mine/stop", headers=intruder)).json(),
        }
        # GraphQL (HTTP and WebSocket)
        read = await gql(http, '{ conversation(id: "conv_mine") { id } }', token=intruder_token)
        chat_into = await gql(http, CHAT_MUTATION, {"i": graphql_input(hello)}, intruder_token)
        stop = await gql(http, 'mutation { stopChat(requestId: "mine") }', token=intruder_token)
        await gql_ws.subscribe("r", CHAT_EVENTS, {"id": "mine"})
        resumed = await gql_ws.next("r")
        assert resumed is not None
        refused["graphql"] = {
            "read": read["data"],
            "chat into": chat_into["errors"][0]["extensions"]["code"],
            "resume": resumed["errors"][0]["extensions"]["code"],
            "stop": stop["data"],
        }
        # /ws (it has no read of conversations)
        answers = {}
        for name, message in (("chat into", {"type": "chat", **hello, "request_id": "in"}),
                              ("resume", {"type": "resume", "request_id": "mine"}),
                              ("stop", {"type": "stop", "request_id": "mine"})):
            await ws.send(json.dumps(message))
            frame = await recv_json(ws)
            answers[name] = (frame["type"], frame["code"])
        refused["ws"] = answers

        # The owner's reply ran on untouched, to its natural end.
        *_chunks, last = await reply(owner, "mine")
    assert refused == {
        "rest": {"read": 404, "chat into": 404, "resume": 404, "stop": {"stopped": False}},
        "graphql": {"read": {"conversation": None}, "chat into": "NOT_FOUND",
                    "resume": "NOT_FOUND", "stop": {"stopChat": False}},
        "ws": {"chat into": ("error", "not_found"), "resume": ("error", "not_found"),
               "stop": ("error", "not_found")},
    }
    assert (last["type"], last["finish_reason"]) == ("chat_complete", "stop")
    stored = await stored_messages("rest", http, owner_token, "conv_mine")
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "secret plans"), ("assistant", "".join(CHUNKS))]
    # The intruder's attempts left nothing of theirs either.
    assert (await http.get("/api/conversations", headers=intruder)).json() == []
    assert (await http.get("/api/stats", headers=intruder)).json()["total_tokens"] == 0


# ================================================================ branches (issue 13)

REGENERATE_STREAM = """subscription($c: ID!, $m: ID!, $o: ReplyOptionsInput) {
  regenerateStream(conversationId: $c, messageId: $m, options: $o) {
    __typename ... on ChatChunk { content } ... on ChatComplete { messageId } } }"""
REGENERATE = """mutation($c: ID!, $m: ID!, $o: ReplyOptionsInput) {
  regenerateMessage(conversationId: $c, messageId: $m, options: $o) { content messageId } }"""


async def regenerate_through(face: str, server: LiveServer, http: httpx.AsyncClient,
                             token: str, conversation_id: str, message_id: str) -> str:
    """Regenerate a reply through `face` with max_tokens 99; the new reply's text."""
    url = f"/api/conversations/{conversation_id}/messages/{message_id}/regenerate"
    if face == "rest":
        response = await http.post(url, json={"max_tokens": 99}, headers=bearer(token))
        assert response.status_code == 200, response.text
        return str(response.json()["content"])
    if face == "sse":
        async with http.stream("POST", url, json={"max_tokens": 99, "stream": True},
                               headers=bearer(token)) as response:
            events = [event.data for event in await read_all(response)]
        assert events[-1]["type"] == "chat_complete"
        return "".join(e.get("content", "") for e in events)
    if face == "ws":
        uid = await user_id(http, token)
        async with connect(f"{server.ws_url}/ws/{uid}?token={token}") as ws:
            await ws.send(json.dumps({"type": "regenerate", "conversation_id": conversation_id,
                                      "message_id": message_id, "max_tokens": 99,
                                      "request_id": "regen"}))
            events = await reply(ws, "regen")
        assert events[-1]["type"] == "chat_complete"
        return "".join(e.get("content", "") for e in events)
    variables = {"c": conversation_id, "m": message_id, "o": {"maxTokens": 99}}
    if face == "graphql":
        return str((await data_of(http, REGENERATE, variables, token))
                   ["regenerateMessage"]["content"])
    async with GraphQLWS.connect(server.ws_url, "graphql-transport-ws") as client:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        await client.subscribe("1", REGENERATE_STREAM, variables)
        events = await client.collect("1", "regenerateStream")
    assert events[-1]["__typename"] == "ChatComplete"
    return "".join(e.get("content", "") for e in events)


async def test_regenerate_gives_the_same_reply_and_the_same_tree_on_every_face(
        chat_server: LiveServer, http: httpx.AsyncClient, fake_llm: FakeOpenAI) -> None:
    results: dict[str, dict[str, Any]] = {}
    for face in FACES:
        token, _uid = await new_account(http)
        await create_conversation(http, token, "conv_branch")
        first = (await http.post("/api/chat", headers=bearer(token), json={
            "messages": HISTORY, "conversation_id": "conv_branch"})).json()
        fake_llm.chunks = ["Salut"]
        content = await regenerate_through(face, chat_server, http, token, "conv_branch",
                                           first["message_id"])
        fake_llm.chunks = list(CHUNKS)
        sent = fake_llm.last.json
        rest_tree = (await http.get("/api/conversations/conv_branch?tree=true",
                                    headers=bearer(token))).json()["messages"]
        graphql_tree = (await data_of(http, '{ conversation(id: "conv_branch") { messages('
                                            'tree: true) { role content active siblingIds } } }',
                                      token=token))["conversation"]["messages"]
        results[face] = {
            "reply": content,
            "sent": (sent["messages"], sent["max_tokens"]),
            "tree": [(m["role"], m["content"], m["active"], len(m["siblingIds"]))
                     for m in rest_tree],
            "graphql_tree": [(m["role"], m["content"], m["active"], len(m["siblingIds"]))
                             for m in graphql_tree],
        }
    for face in FACES:
        assert results[face] == results["rest"], face
    assert results["rest"]["reply"] == "Salut"
    # The model saw the history up to the question, not the reply being replaced.
    assert results["rest"]["sent"] == (HISTORY[1:], 99)
    assert results["rest"]["tree"] == results["rest"]["graphql_tree"] == [
        ("user", "Hi 你好", True, 1), ("assistant", "".join(CHUNKS), False, 2),
        ("assistant", "Salut", True, 2)]
