"""POST /api/chat end to end: the real server, the real provider code, each provider's fake
over HTTP. Replies as JSON and as SSE, what reached the provider, what was kept in the
conversation and in the stats, resume, stop, and a client that hangs up mid-reply."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.chat.support import (
    DEFAULT_CHUNKS,
    MODELS,
    SSE,
    FakeThread,
    User,
    read_all,
    sent,
    sse_events,
)

PROVIDERS = list(MODELS)
LIMIT = 15  # seconds: no test may hang a run, whatever the server does

HISTORY = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]


def ask(text: str = "Hi there") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def wait_for_reply(user: User, conversation_id: str, count: int = 2,
                         ) -> list[dict[str, Any]]:
    """The conversation's messages once it holds `count` of them (the reply is kept by the
    server in the background, after the client may have gone)."""
    while True:
        messages: list[dict[str, Any]] = (await user.conversation(conversation_id))["messages"]
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- replies as JSON


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reply_is_the_providers_text_and_usage(user: User, fakes: FakeThread,
                                                     provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = ["Rome", " is", " the", " capital."]
    fake.completion_tokens = 17
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=HISTORY, model=MODELS[provider],
                                        temperature=0.3, max_tokens=123,
                                        system_prompt="Answer in one sentence.")
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["content"] == "Rome is the capital."
    assert reply["tokens"] == 17
    assert reply["model"] == MODELS[provider]
    assert reply["finish_reason"] == "stop"

    wire = sent(provider, fake)
    assert wire.model == MODELS[provider]
    assert wire.system == "Answer in one sentence."
    roles = {"openai": "assistant", "anthropic": "assistant", "gemini": "model"}
    assert wire.messages == [("user", "What is the capital of France?"),
                             (roles[provider], "Paris."), ("user", "And of Italy?")]
    assert wire.temperature == pytest.approx(0.3)
    assert wire.max_tokens == 123


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_conversation_system_prompt_reaches_the_provider(user: User, fakes: FakeThread,
                                                               provider: str) -> None:
    conversation_id = await user.new_conversation(systemPrompt="You are a pirate.")
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask(), model=MODELS[provider],
                                        conversation_id=conversation_id)
        assert response.status_code == 200, response.text
        assert sent(provider, fakes.all[provider]).system == "You are a pirate."

        # The request's own system prompt wins over the conversation's.
        response = await user.post_chat(messages=ask(), model=MODELS[provider],
                                        conversation_id=conversation_id,
                                        system_prompt="You are a poet.")
        assert response.status_code == 200, response.text
        assert sent(provider, fakes.all[provider]).system == "You are a poet."


async def test_defaults_reach_the_provider(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask())
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "gpt-4o-mini"  # DEFAULT_MODEL
    wire = sent("openai", fakes.openai)
    assert (wire.temperature, wire.max_tokens, wire.system) == (pytest.approx(0.7), 2048, None)
    assert wire.headers["authorization"].startswith("Bearer sk-")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_provider_prefixed_model_ids(user: User, fakes: FakeThread,
                                           provider: str) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask(), model=f"{provider}/{MODELS[provider]}")
    assert response.status_code == 200, response.text
    assert response.json()["content"] == "".join(DEFAULT_CHUNKS)
    assert response.json()["model"] == MODELS[provider]
    assert sent(provider, fakes.all[provider]).model == MODELS[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reply_cut_by_max_tokens_says_length(user: User, fakes: FakeThread,
                                                   provider: str) -> None:
    fakes.all[provider].finish = "length"
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask(), model=MODELS[provider], max_tokens=4)
    assert response.status_code == 200, response.text
    assert response.json()["finish_reason"] == "length"
    assert response.json()["content"] == "".join(DEFAULT_CHUNKS)


# ---------------------------------------------------------------- SSE


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_delivers_chunks_one_by_one(user: User, fakes: FakeThread,
                                                 provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = ["One", " two", " three", " four", " five"]
    fake.completion_tokens = 9
    fake.chunk_delay = 0.08
    arrivals: list[float] = []
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask(), "model": MODELS[provider], "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events: list[SSE] = []
            async for event in sse_events(response):
                arrivals.append(time.monotonic())
                events.append(event)

    chunks, last = events[:-1], events[-1]
    assert [e.type for e in chunks] == ["chat_chunk"] * 5
    assert [e.data["content"] for e in chunks] == fake.chunks
    ids = [e.id or 0 for e in events]
    assert ids == list(range(1, 7))  # every event has an id, increasing
    assert last.type == "chat_complete"
    assert last.data["tokens"] == 9
    assert last.data["model"] == MODELS[provider]
    assert last.data["finish_reason"] == "stop"
    # Only the documented fields reach the client (no internal status or timings).
    assert {key for e in chunks for key in e.data} == {"type", "content", "request_id"}
    assert set(last.data) == {"type", "tokens", "model", "finish_reason", "request_id"}
    # Streamed, not buffered: the chunks came spread over the upstream's pace.
    assert arrivals[4] - arrivals[0] > 4 * 0.08 * 0.5


# ---------------------------------------------------------------- kept in the conversation


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_conversation_keeps_message_and_reply(user: User, fakes: FakeThread,
                                                    stream: bool) -> None:
    fakes.anthropic.chunks = ["Bonjour", " !"]
    fakes.anthropic.completion_tokens = 3
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        body = {"messages": ask("Say hello in French"), "model": MODELS["anthropic"],
                "conversation_id": conversation_id, "stream": stream}
        if stream:
            async with user.http.stream("POST", "/api/chat", headers=user.headers,
                                        json=body) as response:
                events = await read_all(response)
            assert events[-1].type == "chat_complete"
        else:
            response = await user.post_chat(**body)
            assert response.status_code == 200, response.text
        messages = await wait_for_reply(user, conversation_id)

    assert len(messages) == 2
    question, answer = messages
    assert (question["role"], question["content"]) == ("user", "Say hello in French")
    assert answer["role"] == "assistant"
    assert answer["content"] == "Bonjour !"
    assert answer["tokens"] == 3
    assert answer["model"] == MODELS["anthropic"]
    assert answer["status"] == "complete"


async def test_stats_total_tokens_is_the_sum_of_replies(user: User, fakes: FakeThread) -> None:
    conversation_id = await user.new_conversation()
    tokens = {"openai": 5, "anthropic": 11, "gemini": 13}
    async with asyncio.timeout(LIMIT):
        for provider, count in tokens.items():
            fakes.all[provider].completion_tokens = count
            response = await user.post_chat(messages=ask(), model=MODELS[provider],
                                            conversation_id=conversation_id)
            assert response.json()["tokens"] == count
        # A chat outside any conversation counts too: it is the caller's usage.
        fakes.openai.completion_tokens = 2
        response = await user.post_chat(messages=ask())
        assert response.json()["tokens"] == 2
        stats = (await user.http.get("/api/stats", headers=user.headers)).json()
        messages = (await user.conversation(conversation_id))["messages"]

    stored = sum(m.get("tokens") or 0 for m in messages if m["role"] == "assistant")
    assert stored == 5 + 11 + 13
    assert stats["total_tokens"] == stored + 2
    assert stats["total_messages"] == 6
    assert stats["total_conversations"] == 1


# ---------------------------------------------------------------- bad requests


async def test_unknown_model_is_400_listing_the_available_ones(user: User,
                                                               fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        for stream in (False, True):
            response = await user.post_chat(messages=ask(), model="gpt-17-ultra",
                                            stream=stream)
            assert response.status_code == 400, response.text
            detail = response.json()["detail"]
            assert "gpt-17-ultra" in detail
            for model in MODELS.values():
                assert model in detail
            assert set(MODELS.values()) <= set(response.json()["available"])
    assert fakes.openai.requests == [r for r in fakes.openai.requests if r.method == "GET"]


@pytest.mark.parametrize("change", [
    {"messages": []},
    {"temperature": 3},
    {"temperature": -0.1},
    {"max_tokens": 0},
    {"max_tokens": 5000},
    {"messages": [{"role": "robot", "content": "hi"}]},
    {"messages": [{"content": "hi"}]},
    {"messages": [{"role": "user", "content": " \n\t"}]},
], ids=["no-messages", "temperature-3", "temperature-negative", "max-tokens-0",
        "max-tokens-5000", "bad-role", "no-role", "blank-content"])
async def test_invalid_requests_are_422(user: User, fakes: FakeThread,
                                        change: dict[str, Any]) -> None:
    body = {"messages": ask(), **change}
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(**body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert not [r for r in fakes.openai.requests if r.method == "POST"]


async def test_chat_needs_a_token(user: User) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.http.post("/api/chat", json={"messages": ask()})
    assert response.status_code == 401


async def test_someone_elses_conversation_is_404(user: User, fakes: FakeThread) -> None:
    from tests.chat.support import new_user

    other = await new_user(user.http)
    conversation_id = await other.new_conversation()
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask(), conversation_id=conversation_id)
    assert response.status_code == 404
    assert (await other.conversation(conversation_id))["messages"] == []
    assert not [r for r in fakes.openai.requests if r.method == "POST"]


# ---------------------------------------------------------------- models


async def test_models_lists_each_configured_provider(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.http.get("/api/models", headers=user.headers)
    assert response.status_code == 200, response.text
    models = response.json()
    by_provider: dict[str, set[str]] = {}
    for model in models:
        by_provider.setdefault(model["provider"], set()).add(model["id"])
    assert by_provider == {
        "openai": {"gpt-4o-mini", "gpt-4o"},  # the embedding model is not for chat
        "anthropic": {"claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"},
        "gemini": {"gemini-2.0-flash", "gemini-1.5-pro"},
    }
    assert [m["id"] for m in models if m["default"]] == ["gpt-4o-mini"]
    assert all(m["name"] for m in models)


# ---------------------------------------------------------------- the client goes away


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_client_hanging_up_mid_stream_still_gets_the_reply_kept(
        user: User, fakes: FakeThread, provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = [f"word{i} " for i in range(8)]
    fake.completion_tokens = 8
    fake.chunk_delay = 0.1
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask("Count"), "model": MODELS[provider], "stream": True,
                "conversation_id": conversation_id}) as response:
            received = []
            async for event in sse_events(response):
                received.append(event)
                if len(received) == 2:
                    break  # leaving the block closes the connection mid-reply
        assert [e.type for e in received] == ["chat_chunk", "chat_chunk"]
        started = time.monotonic()
        messages = await wait_for_reply(user, conversation_id)

    # The reply was still being generated when the client left.
    assert time.monotonic() - started > 0.2
    reply = messages[-1]
    assert reply["role"] == "assistant"
    assert reply["content"] == "".join(fake.chunks)
    assert reply["status"] == "complete"
    assert reply["tokens"] == 8


async def test_json_client_hanging_up_still_gets_the_reply_kept(user: User,
                                                               fakes: FakeThread) -> None:
    fakes.gemini.chunks = [f"part{i} " for i in range(6)]
    fakes.gemini.chunk_delay = 0.1
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):  # the client gives up before the reply is done
                await user.post_chat(messages=ask(), model=MODELS["gemini"],
                                     conversation_id=conversation_id)
        messages = await wait_for_reply(user, conversation_id)
    assert (messages[-1]["content"], messages[-1]["status"]) == ("".join(fakes.gemini.chunks),
                                                                 "complete")


async def test_resume_after_last_event_id(user: User, fakes: FakeThread) -> None:
    fakes.openai.chunks = ["a", "b", "c", "d", "e", "f"]
    fakes.openai.chunk_delay = 0.05
    request_id = "resume-me-1"
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask(), "stream": True, "request_id": request_id}) as response:
            first = []
            async for event in sse_events(response):
                first.append(event)
                if len(first) == 2:
                    break
        assert [(e.id, e.data["content"]) for e in first] == [(1, "a"), (2, "b")]

        # While the reply is still being generated, and again once it is complete.
        for _ in range(2):
            async with user.http.stream("GET", f"/api/chat/{request_id}/events", headers={
                    **user.headers, "Last-Event-ID": "2"}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                rest = await read_all(response)
            assert [e.data.get("content") for e in rest[:-1]] == ["c", "d", "e", "f"]
            assert [e.id for e in rest] == [3, 4, 5, 6, 7]
            assert rest[-1].type == "chat_complete"
            assert rest[-1].data["tokens"] == fakes.openai.completion_tokens

        response = await user.http.get(f"/api/chat/{request_id}/events?after=5",
                                       headers=user.headers)
        assert [e["content"] for e in _parse(response.text)[:-1]] == ["f"]


async def test_resume_after_the_end_is_204_not_an_error(user: User, fakes: FakeThread) -> None:
    """An EventSource reconnects after the stream ends, sending the terminal event's id: the
    reply is complete and the client has all of it, so there is nothing to send and nothing
    went wrong. 204 is what tells an EventSource to stop reconnecting."""
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask(), "stream": True, "request_id": "ended-1"}) as response:
            events = await read_all(response)
        assert events[-1].type == "chat_complete"
        response = await user.http.get("/api/chat/ended-1/events", headers={
            **user.headers, "Last-Event-ID": str(events[-1].id)})
    assert response.status_code == 204
    assert response.content == b""


def _parse(body: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


async def test_resume_of_someone_elses_reply_is_404(user: User, fakes: FakeThread) -> None:
    from tests.chat.support import new_user

    other = await new_user(user.http)
    async with asyncio.timeout(LIMIT):
        response = await other.post_chat(messages=ask(), request_id="private-1")
        assert response.status_code == 200
        response = await user.http.get("/api/chat/private-1/events", headers=user.headers)
        assert response.status_code == 404
        response = await user.http.post("/api/chat/private-1/stop", headers=user.headers)
        assert response.json() == {"stopped": False}


async def test_stopping_a_finished_reply_answers_false(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(messages=ask(), request_id="finished-1")
        assert response.status_code == 200
        response = await user.http.post("/api/chat/finished-1/stop", headers=user.headers)
    assert response.json() == {"stopped": False}  # the docstring's promise


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stop_mid_stream_keeps_the_partial_reply(user: User, fakes: FakeThread,
                                                       provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = [f"w{i} " for i in range(30)]
    fake.chunk_delay = 0.1
    conversation_id = await user.new_conversation()
    request_id = f"stop-{provider}"
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask(), "model": MODELS[provider], "stream": True,
                "conversation_id": conversation_id, "request_id": request_id}) as response:
            events: list[SSE] = []
            async for event in sse_events(response):
                events.append(event)
                if len(events) == 2:
                    stop = await user.http.post(f"/api/chat/{request_id}/stop",
                                                headers=user.headers)
                    assert stop.json() == {"stopped": True}
        messages = await wait_for_reply(user, conversation_id)

    last = events[-1]
    assert last.type == "chat_complete"
    assert last.data["finish_reason"] == "stopped"
    streamed = "".join(e.data["content"] for e in events[:-1])
    assert 2 <= len(events) - 1 < len(fake.chunks)
    reply = messages[-1]
    assert reply["status"] == "stopped"
    assert reply["content"] == streamed
    assert "".join(fake.chunks).startswith(streamed)
    assert last.data["tokens"] == reply["tokens"] > 0


async def test_many_concurrent_streams_do_not_exhaust_the_connection_pool(
        user: User, fakes: FakeThread) -> None:
    """More open streams than the database pool has connections (15 on SQLite, 30 on
    PostgreSQL): a stream holds no connection while it waits on the model, so every one ends
    with chat_complete (they used to hang once the pool was empty)."""
    fake = fakes.all["openai"]
    fake.chunk_delay = 0.05

    async def one_stream() -> list[str]:
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": ask(), "model": MODELS["openai"], "stream": True}) as response:
            assert response.status_code == 200
            return [event.type async for event in sse_events(response)]

    async def one_json() -> int:
        return (await user.post_chat(messages=ask(), model=MODELS["openai"])).status_code

    async with asyncio.timeout(LIMIT):
        streams, answers = await asyncio.gather(
            asyncio.gather(*(one_stream() for _ in range(40))),
            asyncio.gather(*(one_json() for _ in range(20))),
        )
    assert all(types[-1] == "chat_complete" for types in streams)
    assert answers == [200] * 20
