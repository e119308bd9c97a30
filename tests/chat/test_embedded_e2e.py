"""The built-in SmolLM2 model answering for real, end to end: REST JSON, REST SSE and GraphQL
`chat` on one live server (the model loads once per process; one server start per module).

Small `max_tokens` keeps each generation well under a second on a laptop CPU.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.chat.support import NO_RATE_LIMITS, User, new_user, read_all
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
LIMIT = 60  # seconds: generous for a loaded 2-core machine, still bounded
QUESTION = [{"role": "user", "content": "What colour is the sky on a clear day?"}]


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("embedded")
    with LiveServer.running(make_settings(
            tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
            embedded_model_enabled=True, **NO_RATE_LIMITS)) as server:
        yield server


@pytest.fixture
async def user(embedded_server: LiveServer) -> AsyncIterator[User]:
    async with httpx.AsyncClient(base_url=embedded_server.url, timeout=LIMIT) as http:
        yield await new_user(http)


def assert_words(text: str) -> None:
    assert text.strip()
    assert re.search(r"[A-Za-z]{2,}", text), text


async def test_models_lists_the_embedded_model_as_default(user: User) -> None:
    response = await user.http.get("/api/models", headers=user.headers)
    assert response.status_code == 200
    models = response.json()
    assert models[0] == {"id": MODEL, "provider": "embedded",
                         "name": models[0]["name"], "default": True}


async def test_rest_json(user: User) -> None:
    conversation_id = await user.new_conversation(model=MODEL)
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=QUESTION, max_tokens=16,
                                        conversation_id=conversation_id)
        assert response.status_code == 200, response.text
        reply = response.json()
        stored = (await user.conversation(conversation_id))["messages"]
    assert reply["model"] == MODEL
    assert_words(reply["content"])
    assert 0 < reply["tokens"] <= 16
    assert stored[-1]["content"] == reply["content"]
    assert (stored[-1]["tokens"], stored[-1]["status"]) == (reply["tokens"], "complete")


async def test_rest_sse(user: User) -> None:
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": QUESTION, "model": MODEL, "max_tokens": 16,
                "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await read_all(response)
    chunks, last = events[:-1], events[-1]
    assert chunks and all(e.type == "chat_chunk" for e in chunks)
    assert_words("".join(e.data["content"] for e in chunks))
    assert last.type == "chat_complete"
    assert last.data["model"] == MODEL
    assert 0 < last.data["tokens"] <= 16
    # Token by token: a short reply is still more than one chunk.
    assert len(chunks) > 1


async def test_graphql_chat(user: User) -> None:
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(
            "mutation($input: ChatInput!) { chat(input: $input) { content tokens model } }",
            input={"messages": QUESTION, "model": MODEL, "maxTokens": 16})
    assert "errors" not in answer, answer
    reply = answer["data"]["chat"]
    assert reply["model"] == MODEL
    assert_words(reply["content"])
    assert 0 < reply["tokens"] <= 16
