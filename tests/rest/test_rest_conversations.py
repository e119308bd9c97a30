"""REST conversations and stats over real HTTP: shapes, status codes and ownership."""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, register

MESSAGE_KEYS = {"id", "content", "role", "timestamp"}
CONVERSATION_KEYS = {"id", "title", "messages", "createdAt", "updatedAt", "model", "userId"}


def conversation(id: str | None = "conv_123", title: str = "Hello", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": title,
        "model": "gpt-4o-mini",
        "messages": [
            {"id": "msg_1", "content": "Hi", "role": "user", "timestamp": 1_700_000_000_000},
            {"id": "msg_2", "content": "Hello!", "role": "assistant",
             "timestamp": 1_700_000_001_000},
        ],
        "createdAt": 1_700_000_000_000,
        "updatedAt": 1_700_000_001_000,
        **extra,
    }
    if id is not None:
        body["id"] = id
    return body


def assert_conversation_shape(body: dict[str, Any]) -> None:
    assert CONVERSATION_KEYS <= body.keys()
    for key in ("createdAt", "updatedAt"):
        assert type(body[key]) is int and body[key] > 1_000_000_000_000  # epoch ms, not s
    assert isinstance(body["messages"], list)
    for message in body["messages"]:
        assert MESSAGE_KEYS <= message.keys()
        assert type(message["timestamp"]) is int
        assert message["role"] in {"user", "assistant", "system"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    user = await register(client, "alice")
    return bearer(user["access_token"])


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, str]:
    user = await register(client, "bob")
    return bearer(user["access_token"])


async def test_create_then_get(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    me = (await client.get("/api/auth/me", headers=alice)).json()
    before = int(time.time() * 1000)
    created = await client.post("/api/conversations", json=conversation(systemPrompt="Be kind"),
                                headers=alice)
    assert created.status_code == 200, created.text
    body = created.json()
    assert_conversation_shape(body)
    assert body["id"] == "conv_123"
    assert body["userId"] == me["id"]
    assert body["createdAt"] == 1_700_000_000_000  # kept from the client
    assert body["updatedAt"] >= before  # set by the server, not the client's value
    assert body["systemPrompt"] == "Be kind"
    assert [(m["id"], m["role"], m["content"], m["timestamp"]) for m in body["messages"]] == [
        ("msg_1", "user", "Hi", 1_700_000_000_000),
        ("msg_2", "assistant", "Hello!", 1_700_000_001_000),
    ]
    fetched = await client.get("/api/conversations/conv_123", headers=alice)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_create_without_id_gets_one(client: httpx.AsyncClient,
                                          alice: dict[str, str]) -> None:
    body = conversation(None)
    del body["createdAt"]
    created = (await client.post("/api/conversations", json=body, headers=alice)).json()
    assert_conversation_shape(created)
    assert created["id"]
    assert (await client.get(f"/api/conversations/{created['id']}",
                             headers=alice)).status_code == 200


async def test_user_id_in_the_body_is_ignored(client: httpx.AsyncClient, alice: dict[str, str],
                                             bob: dict[str, str]) -> None:
    bob_id = (await client.get("/api/auth/me", headers=bob)).json()["id"]
    alice_id = (await client.get("/api/auth/me", headers=alice)).json()["id"]
    created = await client.post("/api/conversations", json=conversation(userId=bob_id),
                                headers=alice)
    assert created.json()["userId"] == alice_id
    assert (await client.get("/api/conversations/conv_123", headers=bob)).status_code == 404
    updated = await client.put("/api/conversations/conv_123",
                               json=conversation(title="x", userId=bob_id), headers=alice)
    assert updated.json()["userId"] == alice_id
    assert (await client.get("/api/conversations", headers=bob)).json() == []


async def test_same_id_twice_is_409(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    assert (await client.post("/api/conversations", json=conversation(),
                              headers=alice)).status_code == 200
    again = await client.post("/api/conversations", json=conversation(title="other"),
                              headers=alice)
    assert again.status_code == 409
    assert isinstance(again.json()["detail"], str)
    kept = (await client.get("/api/conversations/conv_123", headers=alice)).json()
    assert kept["title"] == "Hello"


async def test_put_replaces_and_keeps_created_at(client: httpx.AsyncClient,
                                                 alice: dict[str, str]) -> None:
    created = (await client.post("/api/conversations", json=conversation(),
                                 headers=alice)).json()
    new_messages = [
        {"id": "m9", "content": "only one now", "role": "system", "timestamp": 1_700_000_009_000}
    ]
    response = await client.put("/api/conversations/conv_123", headers=alice, json={
        **created, "title": "Renamed", "messages": new_messages, "createdAt": 5, "updatedAt": 5})
    assert response.status_code == 200
    updated = response.json()
    assert_conversation_shape(updated)
    assert updated["title"] == "Renamed"
    assert updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] > created["updatedAt"]
    # Plus the tree (branches): a first message has no parent and is its only alternative.
    assert updated["messages"] == [{**new_messages[0], "parentId": None, "siblingIds": ["m9"]}]
    assert (await client.get("/api/conversations/conv_123", headers=alice)).json() == updated


async def test_list_is_newest_first_with_messages(client: httpx.AsyncClient,
                                                  alice: dict[str, str]) -> None:
    for id in ("a", "b", "c"):
        await client.post("/api/conversations", json=conversation(id), headers=alice)
    await client.put("/api/conversations/a", json=conversation(None, "touched"), headers=alice)
    response = await client.get("/api/conversations", headers=alice)
    assert response.status_code == 200
    listed = response.json()
    assert [c["id"] for c in listed] == ["a", "c", "b"]
    for item in listed:
        assert_conversation_shape(item)
        assert len(item["messages"]) == 2
    assert [c["updatedAt"] for c in listed] == sorted((c["updatedAt"] for c in listed),
                                                      reverse=True)


async def test_delete(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    await client.post("/api/conversations", json=conversation(), headers=alice)
    response = await client.delete("/api/conversations/conv_123", headers=alice)
    assert response.status_code == 200
    assert response.json() == {"message": "对话已删除"}
    assert (await client.get("/api/conversations/conv_123", headers=alice)).status_code == 404
    again = await client.delete("/api/conversations/conv_123", headers=alice)
    assert again.status_code == 404
    assert again.json() == {"detail": "Conversation not found"}


async def test_two_users_with_conv_123_as_curl_users_would_try(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    alice_body = conversation(title="Alice's plans")
    alice_body["messages"][0]["content"] = "alice secret"
    assert (await client.post("/api/conversations", json=alice_body,
                              headers=alice)).status_code == 200
    # Bob can create his own conv_123: ids are per user, and nothing tells him Alice has one.
    bob_created = await client.post("/api/conversations", json=conversation(title="Bob's"),
                                    headers=bob)
    assert bob_created.status_code == 200
    assert "alice" not in bob_created.text.lower()
    # Everything Bob does to conv_123 touches only his own.
    bob_put = await client.put("/api/conversations/conv_123", headers=bob,
                               json=conversation(None, "Bob renamed", messages=[]))
    assert bob_put.json()["messages"] == []
    assert (await client.delete("/api/conversations/conv_123", headers=bob)).status_code == 200
    # Now Bob has none: Alice's stays invisible and untouchable to him.
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, "/api/conversations/conv_123", headers=bob,
                                         json=conversation(None) if method == "PUT" else None)
        assert response.status_code == 404, method
        assert response.json() == {"detail": "Conversation not found"}
    assert (await client.get("/api/conversations", headers=bob)).json() == []
    assert (await client.get("/api/stats", headers=bob)).json()["total_conversations"] == 0
    # Alice's is exactly as she left it.
    mine = (await client.get("/api/conversations/conv_123", headers=alice)).json()
    assert mine["title"] == "Alice's plans"
    assert mine["messages"][0]["content"] == "alice secret"


@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/conversations", "GET"), ("/api/conversations", "POST"),
     ("/api/conversations/conv_123", "GET"), ("/api/conversations/conv_123", "PUT"),
     ("/api/conversations/conv_123", "DELETE"), ("/api/stats", "GET")],
)
async def test_every_conversation_route_needs_a_token(client: httpx.AsyncClient, path: str,
                                                      method: str) -> None:
    response = await client.request(method, path, json=conversation()
                                    if method in {"POST", "PUT"} else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (conversation(messages=[{"content": "x", "role": "robot"}]), "role"),
        (conversation(messages=[{"content": "x" * 100_001, "role": "user"}]), "content"),
        (conversation("bad id!"), "id"),
        (conversation(title="t" * 501), "title"),
        ({"model": "gpt-4o-mini"}, "title"),
        (conversation(messages=[{"role": "user"}]), "content"),
    ],
    ids=["role", "content-length", "id-characters", "title-length", "missing-title",
         "missing-content"],
)
async def test_invalid_conversation_is_422(client: httpx.AsyncClient, alice: dict[str, str],
                                           body: dict[str, Any], field: str) -> None:
    response = await client.post("/api/conversations", json=body, headers=alice)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail[0]["loc"][-1] == field
    assert (await client.get("/api/conversations", headers=alice)).json() == []


async def test_invalid_put_is_422_and_changes_nothing(client: httpx.AsyncClient,
                                                      alice: dict[str, str]) -> None:
    created = (await client.post("/api/conversations", json=conversation(),
                                 headers=alice)).json()
    response = await client.put("/api/conversations/conv_123", headers=alice,
                                json=conversation(messages=[{"content": "x", "role": "bot"}]))
    assert response.status_code == 422
    assert (await client.get("/api/conversations/conv_123", headers=alice)).json() == created


async def test_stats(client: httpx.AsyncClient, alice: dict[str, str],
                     bob: dict[str, str]) -> None:
    empty = await client.get("/api/stats", headers=alice)
    assert empty.status_code == 200
    assert empty.json() == {"total_conversations": 0, "total_messages": 0, "total_tokens": 0,
                            "average_messages_per_conversation": 0.0, "total_cost_usd": 0.0}
    await client.post("/api/conversations", json=conversation("a"), headers=alice)
    three = conversation("b")
    three["messages"].append({"content": "third", "role": "user"})
    await client.post("/api/conversations", json=three, headers=alice)
    await client.post("/api/conversations", json=conversation("a"), headers=bob)
    body = (await client.get("/api/stats", headers=alice)).json()
    assert body == {"total_conversations": 2, "total_messages": 5, "total_tokens": 0,
                    "average_messages_per_conversation": 2.5, "total_cost_usd": 0.0}
    assert type(body["total_messages"]) is int


async def test_a_large_list_is_gzipped(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    long = conversation(messages=[{"content": "lorem ipsum " * 200, "role": "user"}] * 5)
    await client.post("/api/conversations", json=long, headers=alice)
    async with client.stream("GET", "/api/conversations",
                             headers={**alice, "Accept-Encoding": "gzip"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert len(raw) < 2000  # 12 kB of text compresses to a fraction
    assert gzip.decompress(raw).decode().count("lorem ipsum") == 1000
    plain = await client.get("/api/conversations", headers={**alice, "Accept-Encoding":
                                                            "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json()[0]["messages"][0]["content"] == "lorem ipsum " * 200
