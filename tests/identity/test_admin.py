"""Roles and the admin API over real HTTP and WebSockets, on SQLite and PostgreSQL: the first
admin made on the command line, every admin operation refused to a plain user on every face,
deactivation effective at once (tokens, sockets, running replies), per-user allowed models,
invites and the sign-up policy."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

import cli_admin
from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, bearer, make_settings, register
from tests.fakes import FakeOpenAI
from tests.graphql.helpers import code_of, data_of, gql
from tests.realtime.clients import GraphQLWS, close_code, recv_json, user_id

MODELS = ["gpt-4o-mini", "gpt-4o"]
ROOT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(chunks=[f"w{i} " for i in range(10)], completion_tokens=10,
                          models=list(MODELS)) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, database_url: str, fake: FakeOpenAI) -> Settings:
    return make_settings(tmp_path, database_url=database_url, openai_api_key="sk-test",
                         openai_base_url=fake.api_base, openai_models=list(MODELS),
                         default_model="gpt-4o-mini", rate_limit_auth_per_address=0,
                         rate_limit_auth_per_username=0, rate_limit_chat_per_minute=0)


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer.running(settings) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def promote(settings: Settings, username: str) -> None:
    """`chat-studio admin promote USERNAME`, in process (test_cli_promote runs the real
    command)."""
    status = await asyncio.to_thread(cli_admin.promote,
                                     argparse.Namespace(username=username), settings)
    assert status == 0


@pytest.fixture
async def admin(http: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    account = await register(http)
    await promote(settings, account["username"])
    return account


async def test_cli_promote(http: httpx.AsyncClient, settings: Settings) -> None:
    account = await register(http)
    env = {**os.environ, "DATABASE_URL": settings.effective_database_url,
           "SECRET_KEY": settings.secret_key, "DATA_DIR": str(settings.data_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # `chat-studio admin …`, as the installed script runs it (python -m: no install needed).
        return subprocess.run([sys.executable, "-m", "chat_studio_cli", "admin", *args],
                              cwd=ROOT_DIR, env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    done = await asyncio.to_thread(run, "promote", account["username"])
    assert done.returncode == 0, done.stderr
    assert f"{account['username']} (" in done.stdout and "is now an admin" in done.stdout
    me = await http.get("/api/auth/me", headers=bearer(account["access_token"]))
    assert me.json()["role"] == "admin"
    users = await http.get("/api/admin/users", headers=bearer(account["access_token"]))
    assert users.status_code == 200
    unknown = await asyncio.to_thread(run, "promote", "nobody_here")
    assert unknown.returncode == 1 and "No user named 'nobody_here'" in unknown.stderr


ADMIN_GRAPHQL = {
    "adminUsers": "{ adminUsers { users { id } } }",
    "auditLog": "{ auditLog { events { id } } }",
    "adminUpdateUser": 'mutation($id: ID!) { adminUpdateUser(id: $id, input: {active: false}) '
                       "{ id } }",
    "adminCreateInvite": "mutation { adminCreateInvite }",
}


async def test_every_admin_operation_refuses_a_plain_user_on_every_face(
        http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    plain = await register(http)
    victim = await register(http)
    victim_id = await user_id(http, victim["access_token"])
    rest = [
        ("GET", "/api/admin/users", None),
        ("GET", "/api/admin/users?q=a&limit=5", None),
        ("PATCH", f"/api/admin/users/{victim_id}", {"active": False}),
        ("PATCH", f"/api/admin/users/{victim_id}", {"role": "admin"}),
        ("PATCH", f"/api/admin/users/{await user_id(http, plain['access_token'])}",
         {"role": "admin"}),  # not even on oneself
        ("POST", "/api/admin/invites", None),
        ("GET", "/api/admin/audit", None),
    ]
    for method, path, body in rest:
        refused = await http.request(method, path, json=body,
                                     headers=bearer(plain["access_token"]))
        assert refused.status_code == 403, (method, path, refused.text)
        anonymous = await http.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
    for name, query in ADMIN_GRAPHQL.items():
        body = await gql(http, query, {"id": victim_id} if "$id" in query else None,
                         token=plain["access_token"])
        assert code_of(body) == "FORBIDDEN", name
        assert code_of(await gql(http, query, {"id": victim_id} if "$id" in query else None)
                       ) == "UNAUTHENTICATED", name
    # Nothing changed: the victim still works, the plain user is still plain.
    assert (await http.get("/api/auth/me", headers=bearer(victim["access_token"]))
            ).status_code == 200
    me = await http.get("/api/auth/me", headers=bearer(plain["access_token"]))
    assert me.json()["role"] == "user"
    # And the admin may do all of it.
    for method, path, body in rest[:2] + rest[-2:]:
        allowed = await http.request(method, path, json=body,
                                     headers=bearer(admin["access_token"]))
        assert allowed.status_code in (200, 201), (method, path, allowed.text)


async def test_list_search_and_pages(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    names = [f"zed{i}x{int(time.time() * 1000) % 100000}" for i in range(5)]
    for name in names:
        await register(http, name)
    headers = bearer(admin["access_token"])
    found = await http.get("/api/admin/users", params={"q": names[0][:3].upper()},
                           headers=headers)
    assert {u["username"] for u in found.json()["users"]} == set(names)
    user = found.json()["users"][0]
    assert set(user) == {"id", "username", "email", "created_at", "role", "active",
                         "allowed_models", "totp_enabled"}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "zed", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/api/admin/users", params=params, headers=headers)).json()
        seen += [u["username"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names, key=str.lower)
    by_email = await http.get("/api/admin/users", params={"q": f"{names[2]}@EXAMPLE"},
                              headers=headers)
    assert [u["username"] for u in by_email.json()["users"]] == [names[2]]
    graphql = await data_of(http, '{ adminUsers(q: "zed", limit: 10) { users { username role } '
                            "nextCursor } }", token=admin["access_token"])
    assert [u["username"] for u in graphql["adminUsers"]["users"]] == seen


async def test_deactivation_takes_effect_at_once_everywhere(
        http: httpx.AsyncClient, server: LiveServer, admin: dict[str, str],
        fake: FakeOpenAI) -> None:
    user = await register(http)
    token, refresh = user["access_token"], user["refresh_token"]
    uid = await user_id(http, token)
    fake.chunk_delay = 0.3  # ten chunks: a reply of ~3 s, stopped in the middle
    async with connect(f"{server.ws_url}/ws/{uid}?token={token}") as ws, \
            GraphQLWS.connect(server.ws_url, "graphql-transport-ws") as gws:
        assert (await gws.init({"token": token}))["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "chat", "content": "hi", "request_id": "long"}))
        while (await recv_json(ws))["type"] != "chat_chunk":
            pass
        started = time.monotonic()
        patched = await http.patch(f"/api/admin/users/{uid}", json={"active": False},
                                   headers=bearer(admin["access_token"]))
        assert patched.status_code == 200 and patched.json()["active"] is False
        assert await close_code(ws, 1.0) == 4401
        assert await close_code(gws.ws, 1.0) == 4401
        assert time.monotonic() - started < 1.5
    # Tokens, refresh tokens and password sign-in: refused at once.
    assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 401
    assert code_of(await gql(http, "{ me { id } }", token=token)) == "UNAUTHENTICATED"
    assert (await http.post("/api/auth/refresh", json={"refresh_token": refresh})
            ).status_code == 401
    login = await http.post("/api/auth/login", json={"username": user["username"],
                                                     "password": "correct horse battery"})
    assert login.status_code == 401 and login.json()["detail"] == "This account is deactivated"
    async with connect(f"{server.ws_url}/ws/{uid}?token={token}") as ws:
        assert await close_code(ws, 2.0) == 4401
    # Reactivated: a new sign-in works (the old tokens stay revoked).
    await http.patch(f"/api/admin/users/{uid}", json={"active": True},
                     headers=bearer(admin["access_token"]))
    login = await http.post("/api/auth/login", json={"username": user["username"],
                                                     "password": "correct horse battery"})
    assert login.status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 401


async def test_the_running_reply_is_stopped(http: httpx.AsyncClient, admin: dict[str, str],
                                            fake: FakeOpenAI, server: LiveServer) -> None:
    user = await register(http)
    uid = await user_id(http, user["access_token"])
    created = await http.post("/api/conversations", headers=bearer(user["access_token"]),
                              json={"id": "c1", "title": "t", "messages": [],
                                    "model": "gpt-4o-mini"})
    assert created.status_code == 200
    fake.chunk_delay = 0.3
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as streaming:
        async with streaming.stream("POST", "/api/chat", headers=bearer(user["access_token"]),
                                    json={"messages": [{"role": "user", "content": "hi"}],
                                          "stream": True, "conversation_id": "c1"}) as answer:
            events = []
            async for line in answer.aiter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[6:]))
                if len(events) == 1:
                    await http.patch(f"/api/admin/users/{uid}", json={"active": False},
                                     headers=bearer(admin["access_token"]))
    # The deactivated reader's stream ends at once, as every revoked session's does…
    assert events[-1]["type"] == "error" and events[-1]["code"] == "unauthenticated"
    chunks = [e for e in events if e["type"] == "chat_chunk"]
    assert 1 <= len(chunks) < 10
    assert time.monotonic() - started < 2.5  # not the whole ~3 s reply
    # … and the reply itself was stopped, not left generating: kept as stopped, partial.
    reactivated = await http.patch(f"/api/admin/users/{uid}", json={"active": True},
                                   headers=bearer(admin["access_token"]))
    assert reactivated.status_code == 200, reactivated.text
    login = await http.post("/api/auth/login", json={"username": user["username"],
                                                     "password": "correct horse battery"})
    token = login.json()["access_token"]
    for _ in range(50):  # the reply's task stores it just after its stop
        stored = (await http.get("/api/conversations/c1", headers=bearer(token))).json()
        if len(stored["messages"]) == 2:
            break
        await asyncio.sleep(0.1)
    reply = stored["messages"][-1]
    assert reply["role"] == "assistant" and reply["status"] == "stopped"
    assert 0 < len(reply["content"]) < len("".join(fake.chunks))


async def test_admins_cannot_lock_themselves_out(http: httpx.AsyncClient,
                                                 admin: dict[str, str]) -> None:
    uid = await user_id(http, admin["access_token"])
    for body in ({"active": False}, {"role": "user"}):
        refused = await http.patch(f"/api/admin/users/{uid}", json=body,
                                   headers=bearer(admin["access_token"]))
        assert refused.status_code == 409
    bad = await http.patch(f"/api/admin/users/{uid}", json={"role": "root"},
                           headers=bearer(admin["access_token"]))
    assert bad.status_code == 422
    missing = await http.patch("/api/admin/users/user_nobody", json={"active": False},
                               headers=bearer(admin["access_token"]))
    assert missing.status_code == 404
    # Promote another admin, through GraphQL this time.
    other = await register(http)
    other_id = await user_id(http, other["access_token"])
    data = await data_of(http, 'mutation($id: ID!) { adminUpdateUser(id: $id, input: '
                         '{role: "admin"}) { role active allowedModels } }', {"id": other_id},
                         token=admin["access_token"])
    assert data["adminUpdateUser"] == {"role": "admin", "active": True, "allowedModels": None}
    me = await http.get("/api/auth/me", headers=bearer(other["access_token"]))
    assert me.json()["role"] == "admin"


async def test_allowed_models_limit_lists_and_chat_on_every_face(
        http: httpx.AsyncClient, admin: dict[str, str], fake: FakeOpenAI,
        server: LiveServer) -> None:
    user = await register(http)
    token = user["access_token"]
    uid = await user_id(http, token)
    all_models = await http.get("/api/models", headers=bearer(token))
    assert {m["id"] for m in all_models.json()} >= set(MODELS)
    patched = await http.patch(f"/api/admin/users/{uid}", json={"allowed_models": ["gpt-4o"]},
                               headers=bearer(admin["access_token"]))
    assert patched.json()["allowed_models"] == ["gpt-4o"]
    listed = (await http.get("/api/models", headers=bearer(token))).json()
    assert [(m["id"], m["default"]) for m in listed] == [("gpt-4o", True)]
    graphql = await data_of(http, "{ models { id isDefault } }", token=token)
    assert graphql["models"] == [{"id": "gpt-4o", "isDefault": True}]
    before = len(fake.requests)
    refused = await http.post("/api/chat", headers=bearer(token), json={
        "messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"})
    assert refused.status_code == 400 and refused.json()["available"] == ["gpt-4o"]
    body = await gql(http, 'mutation { chat(input: {messages: [{role: user, content: "hi"}], '
                     'model: "gpt-4o-mini"}) { content } }', token=token)
    assert code_of(body) == "BAD_USER_INPUT"
    async with connect(f"{server.ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "content": "hi", "model": "gpt-4o-mini",
                                  "request_id": "r1"}))
        answer = await recv_json(ws)
        while answer["type"] not in ("error", "chat_complete"):
            answer = await recv_json(ws)
        assert answer["type"] == "error", answer
    assert len(fake.requests) == before  # no provider saw any of them
    # Without a model, the first allowed one is used.
    ok = await http.post("/api/chat", headers=bearer(token), json={
        "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.json()["model"] == "gpt-4o"
    # Another user is not limited; null lifts the limit.
    other = await register(http)
    assert len((await http.get("/api/models", headers=bearer(other["access_token"]))).json()
               ) >= 2
    await http.patch(f"/api/admin/users/{uid}", json={"allowed_models": None},
                     headers=bearer(admin["access_token"]))
    assert len((await http.get("/api/models", headers=bearer(token))).json()) >= 2


async def test_sign_up_policy_and_invites(http: httpx.AsyncClient, settings: Settings,
                                          admin: dict[str, str]) -> None:
    def body(name: str, **extra: str) -> dict[str, str]:
        return {"username": name, "email": f"{name}@example.com",
                "password": "correct horse battery", **extra}

    settings.signup = "closed"
    try:
        closed = await http.post("/api/auth/register", json=body("closed1"))
        assert closed.status_code == 403
        assert code_of(await gql(http, 'mutation { register(input: {username: "closed2", '
                                 'email: "c2@example.com", password: "correct horse battery"})'
                                 " { accessToken } }")) == "FORBIDDEN"
        settings.signup = "invite"
        assert (await http.post("/api/auth/register", json=body("inv0"))).status_code == 403
        wrong = await http.post("/api/auth/register", json=body("inv0", invite_code="nope"))
        assert wrong.status_code == 403
        made = await http.post("/api/admin/invites", headers=bearer(admin["access_token"]))
        assert made.status_code == 201
        code = made.json()["code"]
        ok = await http.post("/api/auth/register", json=body("inv1", invite_code=code))
        assert ok.status_code == 200, ok.text
        reused = await http.post("/api/auth/register", json=body("inv2", invite_code=code))
        assert reused.status_code == 403
        graphql_code = (await data_of(http, "mutation { adminCreateInvite }",
                                      token=admin["access_token"]))["adminCreateInvite"]
        data = await data_of(http, "mutation($c: String) { register(input: {username: "
                             '"inv3", email: "inv3@example.com", password: '
                             '"correct horse battery", inviteCode: $c}) { user { username } } }',
                             {"c": graphql_code})
        assert data["register"]["user"]["username"] == "inv3"
    finally:
        settings.signup = "open"
    assert (await http.post("/api/auth/register", json=body("open1"))).status_code == 200
