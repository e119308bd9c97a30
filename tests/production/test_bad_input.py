"""No bad input reaches a 500, on any face.

One table of hostile inputs — lone surrogates, NaN/Infinity/1e400 numbers, booleans where
numbers belong, timestamps outside any date, invalid UTF-8, absurdly deep JSON — sent to REST,
GraphQL and /ws. Each answer must be a clear 4xx (a GraphQL error, an /ws `error` frame), and
a WebSocket must stay open: the next `ping` gets its `pong`.
Bodies are written as raw JSON text: `NaN`, `1e400` and `"\\ud800"` are what a client sends,
and no JSON library of ours would produce them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.chat.support import FakeThread
from tests.conftest import LiveServer, bearer
from tests.production.conftest import Serve, fake_openai_settings
from tests.realtime.clients import recv_json

SURROGATE = '"\\ud800x"'  # a lone surrogate escape, as JSON text
DEEP = "[" * 30_000 + "]" * 30_000
BIG = "9223372036854775808"  # 2**63: one past BIGINT
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "true", '"0.5"']
TIMESTAMPS = ["1e30", "-1e30", BIG, "-" + BIG, "true", "1.5"]


@pytest.fixture
async def site(serve: Serve, provider_fakes: FakeThread) -> AsyncIterator[dict[str, Any]]:
    server: LiveServer = serve(**fake_openai_settings(provider_fakes))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        name = f"u{uuid.uuid4().hex[:10]}"
        response = await http.post("/api/auth/register", json={
            "username": name, "email": f"{name}@example.com", "password": "password123"})
        token = response.json()["access_token"]
        user_id = (await http.get("/api/auth/me", headers=bearer(token))).json()["id"]
        created = await http.post("/api/conversations", headers=bearer(token), json={
            "id": "c1", "title": "t", "model": "gpt-4o-mini",
            "messages": [{"id": "m1", "role": "user", "content": "hi"}]})
        assert created.status_code == 200, created.text
        yield {"http": http, "token": token, "user_id": user_id, "server": server}


def conversation(**fields: str) -> str:
    """A conversation body as JSON text; `fields` are raw JSON values."""
    message = {"id": '"m9"', "role": '"user"', "content": '"hello"', "timestamp": "1700000000000",
               **{k[2:]: v for k, v in fields.items() if k.startswith("m_")}}
    top = {"title": '"t"', "model": '"gpt-4o-mini"',
           **{k: v for k, v in fields.items() if not k.startswith("m_")}}
    parts = [f'"{k}": {v}' for k, v in top.items()]
    parts.append('"messages": [{' + ", ".join(f'"{k}": {v}' for k, v in message.items()) + "}]")
    return "{" + ", ".join(parts) + "}"


def chat_body(**fields: str) -> str:
    message = {"role": '"user"', "content": '"hello"',
               **{k[2:]: v for k, v in fields.items() if k.startswith("m_")}}
    top = {k: v for k, v in fields.items() if not k.startswith("m_")}
    parts = [f'"{k}": {v}' for k, v in top.items()]
    parts.append('"messages": [{' + ", ".join(f'"{k}": {v}' for k, v in message.items()) + "}]")
    return "{" + ", ".join(parts) + "}"


REST_CASES: list[tuple[str, str, str, str]] = [
    ("register surrogate username", "POST", "/api/auth/register",
     '{"username": ' + SURROGATE + ', "email": "a@example.com", "password": "password123"}'),
    ("register surrogate password", "POST", "/api/auth/register",
     '{"username": "someone", "email": "a@example.com", "password": "pass\\udfffword1"}'),
    ("register surrogate email", "POST", "/api/auth/register",
     '{"username": "someone", "email": "a\\ud800@example.com", "password": "password123"}'),
    ("login surrogate username", "POST", "/api/auth/login",
     '{"username": ' + SURROGATE + ', "password": "password123"}'),
    ("login surrogate password", "POST", "/api/auth/login",
     '{"username": "someone", "password": ' + SURROGATE + "}"),
    ("create surrogate title", "POST", "/api/conversations", conversation(title=SURROGATE)),
    ("create surrogate content", "POST", "/api/conversations",
     conversation(m_content=SURROGATE)),
    ("create surrogate system prompt", "POST", "/api/conversations",
     conversation(systemPrompt=SURROGATE)),
    ("create surrogate model", "POST", "/api/conversations", conversation(model=SURROGATE)),
    ("create duplicate message ids", "POST", "/api/conversations",
     '{"title": "t", "model": "m", "messages": [{"id": "a", "role": "user", "content": "1"},'
     ' {"id": "a", "role": "assistant", "content": "2"}]}'),
    ("put duplicate message ids", "PUT", "/api/conversations/c1",
     '{"title": "t", "model": "m", "messages": [{"id": "a", "role": "user", "content": "1"},'
     ' {"id": "a", "role": "assistant", "content": "2"}]}'),
    ("put surrogate content", "PUT", "/api/conversations/c1", conversation(m_content=SURROGATE)),
    ("deep JSON body", "POST", "/api/conversations", DEEP),
    ("chat deep JSON body", "POST", "/api/chat", DEEP),
    ("chat surrogate content", "POST", "/api/chat", chat_body(m_content=SURROGATE)),
    ("chat surrogate system prompt", "POST", "/api/chat", chat_body(system_prompt=SURROGATE)),
    ("chat surrogate model", "POST", "/api/chat", chat_body(model=SURROGATE)),
    ("chat surrogate conversation id", "POST", "/api/chat",
     chat_body(conversation_id=SURROGATE)),
    ("chat surrogate request id", "POST", "/api/chat", chat_body(request_id=SURROGATE)),
    ("chat duplicate message id", "POST", "/api/chat",
     chat_body(conversation_id='"c1"', m_id='"m1"')),
    ("chat stream not a boolean", "POST", "/api/chat", chat_body(stream='"yes"')),
    ("chat stream a number", "POST", "/api/chat", chat_body(stream="1")),
    *[(f"create timestamp {value}", "POST", "/api/conversations",
       conversation(m_timestamp=value)) for value in TIMESTAMPS],
    *[(f"create createdAt {value}", "POST", "/api/conversations",
       conversation(createdAt=value)) for value in TIMESTAMPS],
    *[(f"create tokens {value}", "POST", "/api/conversations", conversation(m_tokens=value))
      for value in ["1e30", BIG, "-1", "NaN", "true"]],
    *[(f"chat timestamp {value}", "POST", "/api/chat",
       chat_body(conversation_id='"c1"', m_timestamp=value)) for value in TIMESTAMPS],
    *[(f"chat temperature {value}", "POST", "/api/chat", chat_body(temperature=value))
      for value in NUMBERS],
    *[(f"chat max_tokens {value}", "POST", "/api/chat", chat_body(max_tokens=value))
      for value in [*NUMBERS, "1.5", BIG]],
]


@pytest.mark.parametrize(("name", "method", "path", "body"), REST_CASES,
                         ids=[case[0] for case in REST_CASES])
async def test_rest_answers_bad_input_with_a_4xx(site: dict[str, Any], name: str, method: str,
                                                 path: str, body: str) -> None:
    http: httpx.AsyncClient = site["http"]
    response = await http.request(method, path, content=body.encode("utf-8"), headers={
        **bearer(site["token"]), "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, f"{name}: {response.status_code} {response.text}"
    assert "detail" in response.json()


async def test_rest_invalid_utf8_body(site: dict[str, Any]) -> None:
    response = await site["http"].post("/api/conversations", content=b'{"title": "\xff\xfe"}',
                                       headers={**bearer(site["token"]),
                                                "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


CHAT_MUTATION = "mutation($input: ChatInput!) { chat(input: $input) { content } }"
CREATE = ("mutation($input: ConversationInput!) { createConversation(input: $input) "
          "{ id } }")
REGISTER = ("mutation($input: RegisterInput!) { register(input: $input) { accessToken } }")
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { accessToken } }"


def gql_body(query: str, variables: str) -> bytes:
    return ('{"query": ' + json.dumps(query) + ', "variables": ' + variables + "}").encode()


def chat_input(**fields: str) -> str:
    return '{"input": ' + chat_body(**fields) + "}"


def conversation_input(**fields: str) -> str:
    return '{"input": ' + conversation(**fields) + "}"


GRAPHQL_CASES: list[tuple[str, bytes]] = [
    ("register surrogate username", gql_body(REGISTER, '{"input": {"username": ' + SURROGATE
                                             + ', "email": "a@example.com", '
                                               '"password": "password123"}}')),
    ("register surrogate password", gql_body(REGISTER, '{"input": {"username": "someone", '
                                             '"email": "a@example.com", "password": '
                                             + SURROGATE + "}}")),
    ("login surrogate password", gql_body(LOGIN, '{"input": {"username": "someone", '
                                          '"password": ' + SURROGATE + "}}")),
    ("create surrogate title", gql_body(CREATE, conversation_input(title=SURROGATE))),
    ("create surrogate content", gql_body(CREATE, conversation_input(m_content=SURROGATE))),
    ("create duplicate message ids", gql_body(
        CREATE, '{"input": {"title": "t", "model": "m", "messages": ['
                '{"id": "a", "role": "user", "content": "1"},'
                '{"id": "a", "role": "user", "content": "2"}]}}')),
    *[(f"create timestamp {value}", gql_body(CREATE, conversation_input(m_timestamp=value)))
      for value in TIMESTAMPS],
    *[(f"create createdAt {value}", gql_body(CREATE, conversation_input(createdAt=value)))
      for value in TIMESTAMPS],
    ("chat surrogate content", gql_body(CHAT_MUTATION, chat_input(m_content=SURROGATE))),
    *[(f"chat temperature {value}", gql_body(CHAT_MUTATION, chat_input(temperature=value)))
      for value in NUMBERS],
    *[(f"chat maxTokens {value}", gql_body(CHAT_MUTATION, chat_input(maxTokens=value)))
      for value in [*NUMBERS, "1.5", BIG]],
    *[(f"chat timestamp {value}", gql_body(
        CHAT_MUTATION, chat_input(conversationId='"c1"', m_timestamp=value)))
      for value in TIMESTAMPS],
    ("chat duplicate message id", gql_body(CHAT_MUTATION,
                                           chat_input(conversationId='"c1"', m_id='"m1"'))),
    ("invalid UTF-8 body", b'{"query": "{ me { id \xff\xfe } }"}'),
    ("invalid UTF-8 in a variable", b'{"query": "query($a: String) { __typename }", '
                                    b'"variables": {"a": "\xc3\x28"}}'),
    ("deep JSON body", DEEP.encode()),
    ("deep JSON variables", gql_body(CHAT_MUTATION, '{"input": ' + DEEP + "}")),
    ("subscription over HTTP POST", gql_body(
        "subscription { chatStream(input: {messages: [{role: user, content: \"hi\"}]}) "
        "{ __typename } }", "{}")),
]


@pytest.mark.parametrize(("name", "body"), GRAPHQL_CASES, ids=[c[0] for c in GRAPHQL_CASES])
@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_graphql_answers_bad_input_with_an_error(site: dict[str, Any], name: str,
                                                       body: bytes, accept: str) -> None:
    response = await site["http"].post("/graphql", content=body, headers={
        **bearer(site["token"]), "Content-Type": "application/json", "Accept": accept})
    assert response.status_code < 500, f"{name}: {response.status_code} {response.text}"
    errors = response.json().get("errors")
    assert errors, f"{name} was accepted: {response.text}"
    codes = {(error.get("extensions") or {}).get("code") for error in errors}
    assert "INTERNAL" not in codes, f"{name}: {response.text}"


WS_CASES: list[tuple[str, str]] = [
    ("type is an object", '{"type": {"a": 1}}'),
    ("type is a list", '{"type": ["chat"]}'),
    ("type is a number", '{"type": 5}'),
    ("type missing", '{"content": "hi"}'),
    ("nested 30,000 deep", DEEP),
    ("object nested 30,000 deep", '{"type": "chat", "x": ' + DEEP + "}"),
    ("chat surrogate content", '{"type": "chat", "content": ' + SURROGATE + "}"),
    ("chat surrogate conversation id",
     '{"type": "chat", "content": "hi", "conversation_id": ' + SURROGATE + "}"),
    ("chat surrogate request id",
     '{"type": "chat", "content": "hi", "request_id": ' + SURROGATE + "}"),
    ("chat surrogate model", '{"type": "chat", "content": "hi", "model": ' + SURROGATE + "}"),
    ("join surrogate conversation", '{"type": "join", "conversation_id": ' + SURROGATE + "}"),
    ("typing surrogate conversation",
     '{"type": "typing", "conversation_id": ' + SURROGATE + "}"),
    ("stop surrogate request id", '{"type": "stop", "request_id": ' + SURROGATE + "}"),
    ("resume surrogate request id", '{"type": "resume", "request_id": ' + SURROGATE + "}"),
    ("resume after 1e400", '{"type": "resume", "request_id": "r1", "after": 1e400}'),
    ("resume after 2**63", '{"type": "resume", "request_id": "r1", "after": ' + BIG + "}"),
    *[(f"chat temperature {value}",
       '{"type": "chat", "content": "hi", "temperature": ' + value + "}") for value in NUMBERS],
    *[(f"chat max_tokens {value}",
       '{"type": "chat", "content": "hi", "max_tokens": ' + value + "}")
      for value in [*NUMBERS, "1.5", BIG]],
]


async def ws_open(site: dict[str, Any]) -> ClientConnection:
    server: LiveServer = site["server"]
    return await connect(f"{server.ws_url}/ws/{site['user_id']}?token={site['token']}",
                         max_size=2**22)


@pytest.mark.parametrize(("name", "frame"), WS_CASES, ids=[c[0] for c in WS_CASES])
async def test_ws_answers_bad_input_with_an_error_frame(site: dict[str, Any], name: str,
                                                        frame: str) -> None:
    async with await ws_open(site) as ws:
        await ws.send(frame)
        answer = await recv_json(ws)
        assert answer["type"] == "error", f"{name}: {answer}"
        assert answer["code"] != "internal", f"{name}: {answer}"
        await ws.send('{"type": "ping"}')
        assert (await recv_json(ws))["type"] == "pong", name
