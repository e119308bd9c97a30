"""API keys through the real server (SQLite and PostgreSQL): shown once and stored hashed,
usable on REST, GraphQL, /v1 and both WebSockets within their scopes, never for the account,
refused at once when revoked or expired — and the sockets they opened close."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from resolvers.kit.db import Database
from tests.conftest import LiveServer, bearer
from tests.gateway.conftest import KeyUser, key_user
from tests.realtime.clients import close_code, recv_json, user_id


def database(server: LiveServer) -> Database:
    return Database(server.app.state.services.settings.effective_database_url)


async def test_a_key_is_shown_once_listed_without_its_secret_and_stored_hashed(
        user: KeyUser, gateway: LiveServer) -> None:
    created = await user.make_key(name="laptop", scopes=["chat", "read"], expires_in_days=30,
                                  budget_usd=1.5)
    secret = created["key"]
    assert secret.startswith("cs-") and len(secret) >= 40
    assert created["prefix"] == secret[:11]
    assert created["scopes"] == ["chat", "read"]
    assert created["budget_usd"] == 1.5
    assert created["expires_at"] - created["created_at"] == 30 * 86_400_000
    listed = (await user.http.get("/api/keys", headers=user.headers)).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and secret not in json.dumps(listed)
    assert listed[0]["prefix"] == created["prefix"]
    db = database(gateway)
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    finally:
        await db.dispose()
    assert rows and all(secret not in json.dumps([str(v) for v in row]) for row in rows)


async def test_a_key_works_on_rest_graphql_and_v1_and_records_when_it_was_used(
        user: KeyUser) -> None:
    secret = (await user.make_key())["key"]
    auth = bearer(secret)
    me = await user.http.get("/api/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["username"] == user.username
    created = await user.http.post("/api/conversations", headers=auth, json={
        "id": "from-key", "title": "t", "model": "gpt-4o-mini", "messages": []})
    assert created.status_code == 200
    graphql = await user.http.post("/graphql", headers=auth,
                                   json={"query": "{ me { username } conversations { "
                                         "totalCount } }"})
    assert graphql.json()["data"] == {"me": {"username": user.username},
                                      "conversations": {"totalCount": 1}}
    models = await user.http.get("/v1/models", headers=auth)
    assert models.status_code == 200 and models.json()["object"] == "list"
    chat = await user.http.post("/api/chat", headers=auth, json={
        "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200 and chat.json()["content"] == "Hello, world!"
    listed = (await user.http.get("/api/keys", headers=user.headers)).json()
    assert listed[0]["last_used_at"] is not None


async def test_scopes_limit_what_a_key_may_do(user: KeyUser) -> None:
    chat_only = bearer((await user.make_key(scopes=["chat"]))["key"])
    read_only = bearer((await user.make_key(scopes=["read"]))["key"])
    assert (await user.http.get("/api/conversations", headers=chat_only)).status_code == 403
    assert (await user.http.get("/v1/models", headers=chat_only)).status_code == 200
    assert (await user.http.post("/api/chat", headers=chat_only, json={
        "messages": [{"role": "user", "content": "hi"}]})).status_code == 200
    assert (await user.http.get("/api/conversations", headers=read_only)).status_code == 200
    assert (await user.http.post("/api/conversations", headers=read_only, json={
        "id": "nope", "title": "t", "model": "m", "messages": []})).status_code == 403
    refused = await user.http.post("/v1/chat/completions", headers=read_only, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 403 and refused.json()["error"]["type"]
    mutation = await user.http.post("/graphql", headers=read_only, json={
        "query": 'mutation { deleteConversation(id: "x") }'})
    assert mutation.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    bad_scope = await user.http.post("/api/keys", headers=user.headers,
                                     json={"name": "x", "scopes": ["admin"]})
    assert bad_scope.status_code == 422


async def test_a_key_never_manages_keys_the_password_or_the_account(user: KeyUser) -> None:
    key = await user.make_key()
    auth = bearer(key["key"])
    assert (await user.http.post("/api/keys", headers=auth, json={"name": "x"})
            ).status_code == 403
    assert (await user.http.get("/api/keys", headers=auth)).status_code == 403
    assert (await user.http.delete(f"/api/keys/{key['id']}", headers=auth)).status_code == 403
    assert (await user.http.post("/api/auth/logout", headers=auth,
                                 json={"everywhere": True})).status_code == 403
    deleted = await user.http.request("DELETE", "/api/auth/me", headers=auth,
                                      json={"password": "correct horse battery"})
    assert deleted.status_code == 403
    for query in ('mutation { createApiKey(input: {name: "x"}) { key } }',
                  "{ apiKeys { id } }",
                  'mutation { deleteAccount(password: "correct horse battery") }'):
        answer = (await user.http.post("/graphql", headers=auth, json={"query": query})).json()
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer
    # Still there, still working.
    assert (await user.http.get("/api/auth/me", headers=auth)).status_code == 200


async def test_graphql_creates_lists_and_revokes_keys(user: KeyUser) -> None:
    created = await user.graphql(
        "mutation($input: ApiKeyInput!) { createApiKey(input: $input) "
        "{ key apiKey { id name prefix scopes budgetUsd } } }",
        input={"name": "ci", "scopes": ["chat"], "budgetUsd": 2})
    payload = created["data"]["createApiKey"]
    assert payload["key"].startswith(payload["apiKey"]["prefix"])
    assert payload["apiKey"]["scopes"] == ["chat"] and payload["apiKey"]["budgetUsd"] == 2
    listed = await user.graphql("{ apiKeys { id name } }")
    assert listed["data"]["apiKeys"] == [{"id": payload["apiKey"]["id"], "name": "ci"}]
    rest = (await user.http.get("/api/keys", headers=user.headers)).json()
    assert [k["id"] for k in rest] == [payload["apiKey"]["id"]]
    revoked = await user.graphql("mutation($id: ID!) { revokeApiKey(id: $id) }",
                                 id=payload["apiKey"]["id"])
    assert revoked["data"]["revokeApiKey"] is True
    assert (await user.http.get("/v1/models", headers=bearer(payload["key"]))).status_code \
        == 401


async def test_another_users_key_cannot_be_revoked(user: KeyUser, gateway: LiveServer) -> None:
    key = await user.make_key()
    other = await key_user(user.http)
    assert (await user.http.delete(f"/api/keys/{key['id']}", headers=other.headers)
            ).status_code == 404
    assert (await user.http.delete("/api/keys/key_unknown", headers=other.headers)
            ).status_code == 404
    assert (await user.http.get("/api/auth/me", headers=bearer(key["key"]))).status_code == 200


async def test_revoking_refuses_the_key_at_once_and_closes_its_sockets(
        user: KeyUser, gateway: LiveServer) -> None:
    key = await user.make_key()
    secret = key["key"]
    uid = await user_id(user.http, user.headers["Authorization"].removeprefix("Bearer "))
    other_key = await user.make_key(name="other")
    async with (connect(f"{gateway.ws_url}/ws/{uid}?token={secret}") as ws,
                connect(f"{gateway.ws_url}/ws/{uid}?token={other_key['key']}") as other_ws,
                connect(f"{gateway.ws_url}/graphql",
                        subprotocols=[Subprotocol("graphql-transport-ws")]) as gql):
        await gql.send(json.dumps({"type": "connection_init", "payload": {"token": secret}}))
        assert json.loads(await gql.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        response = await user.http.delete(f"/api/keys/{key['id']}", headers=user.headers)
        assert response.status_code == 204
        assert await close_code(ws) == 4401
        assert await close_code(gql) == 4401
        # A socket opened with another key of the same user stays open.
        await other_ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(other_ws))["type"] == "pong"
    for path in ("/api/conversations", "/v1/models"):
        refused = await user.http.get(path, headers=bearer(secret))
        assert refused.status_code == 401
        assert secret not in refused.text
    assert (await user.http.get("/v1/models", headers=bearer(secret))).json()["error"][
        "code"] == "invalid_api_key"
    assert [k["id"] for k in (await user.http.get("/api/keys", headers=user.headers)).json()
            ] == [other_key["id"]]


async def test_an_expired_key_is_refused_and_its_socket_closes_when_it_expires(
        user: KeyUser, gateway: LiveServer) -> None:
    key = await user.make_key(expires_in_days=1)
    uid = await user_id(user.http, user.headers["Authorization"].removeprefix("Bearer "))
    db = database(gateway)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE api_keys SET expires_at = :at WHERE id = :id"),
                               {"at": int(time.time() * 1000) + 1500, "id": key["id"]})
        async with connect(f"{gateway.ws_url}/ws/{uid}?token={key['key']}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"
            started = time.monotonic()
            assert await close_code(ws) == 4401
            assert time.monotonic() - started < 5
        assert (await user.http.get("/api/auth/me", headers=bearer(key["key"]))).status_code \
            == 401
    finally:
        await db.dispose()


async def test_keys_never_reach_logs_or_error_answers(
        user: KeyUser, caplog: pytest.LogCaptureFixture) -> None:
    key = await user.make_key(scopes=["read"])
    secret = key["key"]
    forged = secret[:-4] + "AAAA"
    caplog.set_level(logging.DEBUG)
    answers: list[httpx.Response] = [
        await user.http.get("/api/conversations", headers=bearer(forged)),
        await user.http.post("/api/chat", headers=bearer(secret),
                             json={"messages": [{"role": "user", "content": "hi"}]}),
        await user.http.post("/v1/chat/completions", headers=bearer(forged),
                             json={"model": "x", "messages": []}),
        await user.http.post("/graphql", headers=bearer(forged), json={"query": "{ me { id } }"}),
    ]
    assert [a.status_code for a in answers] == [401, 403, 401, 200]
    for answer in answers:
        assert secret not in answer.text and forged not in answer.text
        assert secret[3:20] not in answer.text
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert secret not in logged and forged not in logged


async def test_a_keys_calls_are_billed_to_it_on_every_face(user: KeyUser,
                                                           gateway: LiveServer) -> None:
    key = await user.make_key(name="everywhere")
    auth = bearer(key["key"])
    ask = [{"role": "user", "content": "hi"}]
    assert (await user.http.post("/api/chat", headers=auth, json={"messages": ask})
            ).status_code == 200
    graphql = await user.http.post("/graphql", headers=auth, json={
        "query": "mutation($i: ChatInput!) { chat(input: $i) { content } }",
        "variables": {"i": {"messages": ask}}})
    assert graphql.json()["data"]["chat"]["content"] == "Hello, world!"
    assert (await user.http.post("/v1/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "messages": ask})).status_code == 200
    uid = await user_id(user.http, user.headers["Authorization"].removeprefix("Bearer "))
    async with connect(f"{gateway.ws_url}/ws/{uid}?token={key['key']}") as ws:
        await ws.send(json.dumps({"type": "chat", "request_id": "ws1", "messages": ask}))
        while (await recv_json(ws))["type"] != "chat_complete":
            pass
    # A socket opened with a key that lacks `chat` cannot chat on it.
    read_only = (await user.make_key(scopes=["read"]))["key"]
    async with connect(f"{gateway.ws_url}/ws/{uid}?token={read_only}") as ws:
        await ws.send(json.dumps({"type": "chat", "request_id": "ws2", "messages": ask}))
        refused = await recv_json(ws)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
    await user.http.post("/api/chat", headers=user.headers, json={"messages": ask})
    by_key = (await user.http.get("/api/usage?group_by=key", headers=user.headers)).json()
    assert sorted((r["key_id"] or "-", r["requests"]) for r in by_key["rows"]) == [
        ("-", 1), (key["id"], 4)]
