"""GraphQL `models`, `chat` and `stopChat` over HTTP, against the real server and the real
provider code talking to each provider's fake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.chat.support import MODELS, FakeThread, User, new_user, sent

LIMIT = 15  # seconds

CHAT = """
mutation Chat($input: ChatInput!) {
  chat(input: $input) { content tokens model requestId finishReason }
}
"""
STOP = "mutation Stop($id: ID!) { stopChat(requestId: $id) }"
MODELS_QUERY = "{ models { id provider name isDefault } }"
CONVERSATION = """
query Conversation($id: ID!) {
  conversation(id: $id) { messages { role content tokens model status } }
}
"""


def chat_input(text: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_models_query(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(MODELS_QUERY)
    assert "errors" not in answer, answer
    models = answer["data"]["models"]
    assert {(m["provider"], m["id"]) for m in models} == {
        ("openai", "gpt-4o-mini"), ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-haiku-20241022"), ("anthropic", "claude-sonnet-4-20250514"),
        ("gemini", "gemini-2.0-flash"), ("gemini", "gemini-1.5-pro"),
    }
    assert [m["id"] for m in models if m["isDefault"]] == ["gpt-4o-mini"]


async def test_models_needs_a_token(user: User) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.http.post("/graphql", json={"query": MODELS_QUERY})
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("provider", list(MODELS))
async def test_chat_mutation(user: User, fakes: FakeThread, provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = ["Ciao", " da", " Roma"]
    fake.completion_tokens = 6
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(CHAT, input=chat_input(
            "Greet me", model=MODELS[provider], temperature=0.2, maxTokens=64,
            systemPrompt="Be brief."))
    assert "errors" not in answer, answer
    reply = answer["data"]["chat"]
    assert reply["content"] == "Ciao da Roma"
    assert reply["tokens"] == 6
    assert reply["model"] == MODELS[provider]
    assert reply["finishReason"] == "stop"
    assert reply["requestId"]
    wire = sent(provider, fake)
    assert wire.messages == [("user", "Greet me")]
    assert wire.system == "Be brief."
    assert (wire.temperature, wire.max_tokens) == (pytest.approx(0.2), 64)


async def test_chat_mutation_keeps_the_conversation(user: User, fakes: FakeThread) -> None:
    fakes.gemini.completion_tokens = 5
    conversation_id = await user.new_conversation(systemPrompt="Speak like Yoda.")
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(CHAT, input=chat_input(
            "Hello?", model="gemini/gemini-2.0-flash", conversationId=conversation_id))
        assert "errors" not in answer, answer
        stored = await user.graphql(CONVERSATION, id=conversation_id)
    assert sent("gemini", fakes.gemini).system == "Speak like Yoda."
    assert stored["data"]["conversation"]["messages"] == [
        {"role": "user", "content": "Hello?", "tokens": None, "model": None, "status": None},
        {"role": "assistant", "content": "Hello, world!", "tokens": 5,
         "model": "gemini-2.0-flash", "status": "complete"},
    ]
    stats = (await user.http.get("/api/stats", headers=user.headers)).json()
    assert stats["total_tokens"] == 5


async def test_unknown_model(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(CHAT, input=chat_input(model="nope-1"))
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nope-1" in error["message"] and "gpt-4o-mini" in error["message"]
    assert set(MODELS.values()) <= set(error["extensions"]["available"])


@pytest.mark.parametrize("change", [
    {"messages": []}, {"temperature": 3.0}, {"maxTokens": 0}, {"maxTokens": 5000},
], ids=["no-messages", "temperature-3", "max-tokens-0", "max-tokens-5000"])
async def test_invalid_input(user: User, fakes: FakeThread, change: dict[str, Any]) -> None:
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(CHAT, input={**chat_input(), **change})
    assert answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert not [r for r in fakes.openai.requests if r.method == "POST"]


async def test_stop_chat(user: User, fakes: FakeThread) -> None:
    fakes.anthropic.chunks = [f"t{i} " for i in range(40)]
    fakes.anthropic.chunk_delay = 0.05
    conversation_id = await user.new_conversation()
    other = await new_user(user.http)
    async with asyncio.timeout(LIMIT):
        running = asyncio.create_task(user.graphql(CHAT, input=chat_input(
            model=MODELS["anthropic"], requestId="gql-stop-1",
            conversationId=conversation_id)))
        while True:  # the reply has started once its request reached the provider
            if any(r.method == "POST" for r in fakes.anthropic.requests):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # a few chunks out

        # Someone else's request id: refused, and the reply runs on.
        answer = await other.graphql(STOP, id="gql-stop-1")
        assert answer["data"]["stopChat"] is False
        assert not running.done()

        answer = await user.graphql(STOP, id="gql-stop-1")
        assert answer["data"]["stopChat"] is True
        reply = (await running)["data"]["chat"]
        stored = await user.graphql(CONVERSATION, id=conversation_id)

    assert reply["finishReason"] == "stopped"
    assert reply["content"]
    assert "".join(fakes.anthropic.chunks).startswith(reply["content"])
    assert len(reply["content"]) < len("".join(fakes.anthropic.chunks))
    kept = stored["data"]["conversation"]["messages"][-1]
    assert (kept["content"], kept["status"]) == (reply["content"], "stopped")


async def test_stop_chat_of_unknown_request(user: User) -> None:
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(STOP, id="never-started")
    assert answer["data"]["stopChat"] is False
