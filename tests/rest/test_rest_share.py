"""Share links over real HTTP, on SQLite and PostgreSQL: a snapshot anyone with the link can
read without a token, with nothing private in it, refreshed by sharing again, dead on revoke."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import bearer, register

MESSAGES = [
    {"id": "m0", "role": "system", "content": "Internal instructions: be terse",
     "timestamp": 1_700_000_000_000},
    {"id": "m1", "role": "user", "content": "What is <b>2+2</b>? 你好",
     "timestamp": 1_700_000_000_001},
    {"id": "m2", "role": "assistant", "content": "4", "timestamp": 1_700_000_000_002},
]


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    return await register(client, "alice")


async def make_conversation(http: httpx.AsyncClient, token: str) -> None:
    response = await http.post("/api/conversations", headers=bearer(token), json={
        "id": "conv_1", "title": "Arithmetic", "model": "gpt-4o-mini",
        "systemPrompt": "My private system prompt", "messages": MESSAGES})
    assert response.status_code == 200, response.text


async def share(http: httpx.AsyncClient, token: str, conversation_id: str = "conv_1"
                ) -> httpx.Response:
    return await http.post(f"/api/conversations/{conversation_id}/share",
                           headers=bearer(token))


async def test_a_share_link_opens_without_a_token_and_holds_nothing_private(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    await make_conversation(client, token)
    response = await share(client, token)
    assert response.status_code == 200, response.text
    link = response.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", link["token"])  # 256 random bits
    assert link["url"] == f"/api/shared/{link['token']}"
    public = await client.get(link["url"])  # no Authorization header
    assert public.status_code == 200, public.text
    assert public.headers["cache-control"] == "no-store"
    assert public.headers["x-robots-tag"] == "noindex"
    body = public.json()
    assert set(body) == {"title", "messages", "shared_at"}
    assert body["title"] == "Arithmetic"
    assert body["messages"] == [{key: m[key] for key in ("role", "content", "timestamp")}
                                for m in MESSAGES[1:]]
    me = (await client.get("/api/auth/me", headers=bearer(token))).json()
    for secret in ("My private system prompt", "Internal instructions", me["id"],
                   me["email"], "alice", "conv_1", '"m1"', "gpt-4o-mini"):
        assert secret not in public.text, secret


async def test_the_snapshot_is_frozen_until_shared_again_and_keeps_its_token(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    await make_conversation(client, token)
    first = (await share(client, token)).json()
    await client.put("/api/conversations/conv_1", headers=bearer(token), json={
        "title": "Arithmetic, more", "model": "m",
        "messages": [*MESSAGES, {"role": "user", "content": "And 3+3?"}]})
    before = (await client.get(first["url"])).json()
    assert len(before["messages"]) == 2 and before["title"] == "Arithmetic"
    again = (await share(client, token)).json()
    assert again["token"] == first["token"] and again["shared_at"] >= first["shared_at"]
    after = (await client.get(first["url"])).json()
    assert after["title"] == "Arithmetic, more"
    assert after["messages"][-1]["content"] == "And 3+3?"


async def test_revoking_kills_the_link_and_only_the_owner_can(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    await make_conversation(client, token)
    link = (await share(client, token)).json()
    bob = await register(client, "bob")
    assert (await share(client, bob["access_token"])).status_code == 404
    assert (await client.delete("/api/conversations/conv_1/share",
                                headers=bearer(bob["access_token"]))).status_code == 404
    assert (await client.post("/api/conversations/conv_1/share")).status_code == 401
    assert (await client.get(link["url"])).status_code == 200
    revoked = await client.delete("/api/conversations/conv_1/share", headers=bearer(token))
    assert revoked.status_code == 204
    assert (await client.get(link["url"])).status_code == 404
    assert (await client.delete("/api/conversations/conv_1/share",
                                headers=bearer(token))).status_code == 404
    # A new share is a new link: the revoked one stays dead.
    fresh = (await share(client, token)).json()
    assert fresh["token"] != link["token"]
    assert (await client.get(link["url"])).status_code == 404
    # Deleting the conversation deletes its link.
    await client.delete("/api/conversations/conv_1", headers=bearer(token))
    assert (await client.get(fresh["url"])).status_code == 404


@pytest.mark.parametrize("token", ["x", "A" * 43, "a" * 200, "..%2F..%2Fetc", "%00" * 30,
                                   "' OR 1=1 --"])
async def test_unknown_tokens_are_404(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"/api/shared/{token}")
    assert response.status_code == 404, response.text

