"""Organize over real HTTP, on SQLite and PostgreSQL: PATCH (pin, archive, tags, rename), list
filters, cursor paging with X-Next-Cursor, and the summary view that reads no message body."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, bearer, count_statements, register


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    return await register(client, "alice")


async def create(http: httpx.AsyncClient, token: str, conversation_id: str,
                 *contents: str, title: str = "Chat") -> dict[str, Any]:
    roles = ("user", "assistant")
    response = await http.post("/api/conversations", headers=bearer(token), json={
        "id": conversation_id, "title": title, "model": "gpt-4o-mini",
        "messages": [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(http: httpx.AsyncClient, token: str, conversation_id: str,
                **body: Any) -> httpx.Response:
    return await http.patch(f"/api/conversations/{conversation_id}", headers=bearer(token),
                            json=body)


async def test_patch_changes_only_what_it_names_and_never_the_messages(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    created = await create(client, token, "c1", "hello", "hi there")
    assert (created["pinned"], created["archived"], created["tags"]) == (False, False, [])
    response = await patch(client, token, "c1", pinned=True, tags=["work", " urgent ", "work"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["pinned"], body["archived"], body["tags"]) == (True, False, ["urgent", "work"])
    assert (body["messageCount"], body["lastMessagePreview"]) == (2, "hi there")
    assert "messages" not in body
    assert body["updatedAt"] == created["updatedAt"]  # organizing keeps the list's order
    renamed = (await patch(client, token, "c1", title="Renamed", systemPrompt="Be brief")).json()
    assert renamed["updatedAt"] > created["updatedAt"]
    assert (renamed["title"], renamed["systemPrompt"], renamed["pinned"]) == (
        "Renamed", "Be brief", True)
    cleared = (await patch(client, token, "c1", systemPrompt=None, archived=True)).json()
    assert "systemPrompt" not in cleared and cleared["archived"] is True
    fetched = (await client.get("/api/conversations/c1", headers=bearer(token))).json()
    assert [m["content"] for m in fetched["messages"]] == ["hello", "hi there"]
    assert (fetched["title"], fetched["pinned"], fetched["archived"], fetched["tags"]) == (
        "Renamed", True, True, ["urgent", "work"])
    # A PUT of the guide's shape keeps what it does not know about.
    put = await client.put("/api/conversations/c1", headers=bearer(token), json={
        "title": "Put", "model": "m", "messages": [{"role": "user", "content": "new"}]})
    assert (put.json()["pinned"], put.json()["tags"]) == (True, ["urgent", "work"])


@pytest.mark.parametrize("body", [
    {"title": None}, {"model": None}, {"pinned": None}, {"tags": None}, {"title": "x" * 501},
    {"tags": [""]}, {"tags": ["x" * 65]}, {"tags": [f"t{i}" for i in range(21)]},
    {"tags": ["a\nb"]}, {"pinned": "yes please"}, {"tags": "work"},
])
async def test_bad_patches_are_422_and_change_nothing(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict[str, Any]
) -> None:
    token = alice["access_token"]
    await create(client, token, "c1", "hello", title="Kept")
    response = await patch(client, token, "c1", **body)
    assert response.status_code == 422, response.text
    fetched = (await client.get("/api/conversations/c1", headers=bearer(token))).json()
    assert (fetched["title"], fetched["pinned"], fetched["tags"]) == ("Kept", False, [])


async def test_another_users_conversation_is_not_found(client: httpx.AsyncClient,
                                                       alice: dict[str, str]) -> None:
    await create(client, alice["access_token"], "mine", "secret")
    bob = await register(client, "bob")
    assert (await patch(client, bob["access_token"], "mine", pinned=True)).status_code == 404
    assert (await patch(client, alice["access_token"], "nope", pinned=True)).status_code == 404
    assert (await client.patch("/api/conversations/mine", json={"pinned": True})
            ).status_code == 401
    fetched = (await client.get("/api/conversations/mine",
                                headers=bearer(alice["access_token"]))).json()
    assert fetched["pinned"] is False


async def test_filters_and_cursor_paging(client: httpx.AsyncClient,
                                         alice: dict[str, str]) -> None:
    token = alice["access_token"]
    for i in range(7):
        await create(client, token, f"c{i}", f"message {i}")
    await patch(client, token, "c1", pinned=True, tags=["work"])
    await patch(client, token, "c2", archived=True, tags=["work", "home"])
    await patch(client, token, "c3", pinned=True, archived=True)
    bob = await register(client, "bob")
    await create(client, bob["access_token"], "b0", "bob's")
    await patch(client, bob["access_token"], "b0", pinned=True, tags=["work"])

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/api/conversations?{query}", headers=bearer(token))
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()]

    assert await ids("") == ["c6", "c5", "c4", "c3", "c2", "c1", "c0"]
    assert await ids("pinned=true") == ["c3", "c1"]
    assert await ids("archived=false") == ["c6", "c5", "c4", "c1", "c0"]
    assert await ids("archived=true&pinned=true") == ["c3"]
    assert await ids("tag=work") == ["c2", "c1"]
    assert await ids("tag=home&view=summary") == ["c2"]
    assert await ids("tag=nothing") == []
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        response = await client.get(f"/api/conversations?archived=false&limit=2{cursor}",
                                    headers=bearer(token))
        pages += 1
        seen += [c["id"] for c in response.json()]
        next_cursor = response.headers.get("x-next-cursor")
        if not next_cursor:
            break
        cursor = f"&cursor={next_cursor}"
    assert (seen, pages) == (["c6", "c5", "c4", "c1", "c0"], 3)
    for bad in ("limit=101", "limit=-1", "limit=x", "cursor=nope", "archived=maybe",
                "view=tree", f"tag={'x' * 65}"):
        response = await client.get(f"/api/conversations?{bad}", headers=bearer(token))
        assert response.status_code == 422, (bad, response.text)


async def test_the_summary_view_reads_no_message_body(
    live_server: LiveServer, client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    big = "x" * 90_000
    for i in range(30):
        await create(client, token, f"c{i}", big, big + "tail", f"newest {i} " + big,
                     title=f"Chat {i}")
    engine = live_server.app.state.services.db.engine
    with count_statements(engine) as statements:
        response = await client.get("/api/conversations?view=summary", headers=bearer(token))
    assert response.status_code == 200
    summaries = response.json()
    assert len(summaries) == 30
    first = summaries[0]
    assert first["id"] == "c29" and first["messageCount"] == 3
    assert first["lastMessagePreview"] == ("newest 29 " + big)[:200]
    assert "messages" not in first
    # Three statements at most (user, conversations, tags) for 30 conversations, none of them
    # reads the messages table; and the answer is small though the messages hold 8 MB.
    assert len(statements) <= 3, statements
    assert not [s for s in statements if re.search(r"\bmessages\b", s, re.I)], statements
    assert len(response.content) < 30 * 700
    with count_statements(engine) as paged:
        response = await client.get("/api/conversations?view=summary&limit=10&pinned=false",
                                    headers=bearer(token))
    assert len(response.json()) == 10 and response.headers["x-next-cursor"]
    assert len(paged) <= 4, paged
    assert not [s for s in paged if re.search(r"\bmessages\b", s, re.I)], paged
