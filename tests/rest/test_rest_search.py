"""GET /api/search over real HTTP, on SQLite and PostgreSQL: the contract's shape, a Chinese
phrase and an English prefix found only in the caller's chats, and any input a result or a
clear 422 — never a 500."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, register


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    return await register(client, "alice")


async def create(http: httpx.AsyncClient, token: str, conversation_id: str, title: str,
                 *contents: str) -> None:
    roles = ("user", "assistant")
    response = await http.post("/api/conversations", headers=bearer(token), json={
        "id": conversation_id, "title": title, "model": "m",
        "messages": [{"id": f"{conversation_id}-{i}", "role": roles[i % 2], "content": c,
                      "timestamp": 1_700_000_000_000 + i} for i, c in enumerate(contents)]})
    assert response.status_code == 200, response.text


async def search(http: httpx.AsyncClient, token: str | None, **params: Any) -> httpx.Response:
    return await http.get("/api/search?" + urllib.parse.urlencode(params),
                          headers=bearer(token) if token else {})


async def test_search_finds_a_chinese_phrase_and_an_english_prefix_only_in_your_chats(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    token = alice["access_token"]
    await create(client, token, "trip", "Planning", "我们明天去北京，你好吗？",
                 "Sure — let me check the <schedule>")
    bob = await register(client, "bob")
    await create(client, bob["access_token"], "bobs", "你好 Bob", "你好, scheduling", "你好!")
    response = await search(client, token, q="你好")
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [{
        "conversation_id": "trip", "title": "Planning", "message_id": "trip-0", "role": "user",
        "snippet": "我们明天去北京，<mark>你好</mark>吗？", "timestamp": 1_700_000_000_000,
    }], "next_cursor": None}
    body = (await search(client, token, q="sched")).json()
    assert [(r["message_id"], r["snippet"]) for r in body["results"]] == [
        ("trip-1", "Sure — let me check the &lt;<mark>schedule</mark>&gt;")]
    bobs = (await search(client, bob["access_token"], q="你好")).json()["results"]
    assert [(r["conversation_id"], r["message_id"]) for r in bobs] == [
        ("bobs", None), ("bobs", "bobs-1"), ("bobs", "bobs-0")]


async def test_paging_with_limit_and_cursor(client: httpx.AsyncClient,
                                            alice: dict[str, str]) -> None:
    token = alice["access_token"]
    await create(client, token, "c", "Lemon title", *[f"lemon {i}" for i in range(5)])
    seen = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"q": "lemon", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await search(client, token, **params)).json()
        seen += [r["message_id"] for r in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [None, "c-4", "c-3", "c-2", "c-1", "c-0"]


@pytest.mark.parametrize("params", [
    {}, {"q": ""}, {"q": "   "}, {"q": "***"}, {"q": '""'}, {"q": "x" * 10_240},
    {"q": " ".join(["w"] * 20) + " " + " ".join(f"w{i}" for i in range(20))},
    {"q": "a", "limit": 0}, {"q": "a", "limit": 51}, {"q": "a", "limit": "ten"},
    {"q": "a", "cursor": "garbage"}, {"q": "a", "cursor": "\x00"},
])
async def test_bad_searches_are_a_clear_422(client: httpx.AsyncClient, alice: dict[str, str],
                                            params: dict[str, Any]) -> None:
    response = await search(client, alice["access_token"], **params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("q", ['"unclosed', "NEAR(a b)", "a OR b", "col:a", "a*", "(a",
                               "'; DROP TABLE messages; --", "a & !b", "a <-> b", "a\\", "a%_",
                               "<mark>", "🙂 你好", "e\u0301"])
async def test_operators_and_junk_are_just_text(client: httpx.AsyncClient,
                                                alice: dict[str, str], q: str) -> None:
    token = alice["access_token"]
    await create(client, token, "c", "t", "a b col near drop table messages mark")
    response = await search(client, token, q=q)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"results", "next_cursor"}


async def test_search_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await search(client, None, q="hello")).status_code == 401
