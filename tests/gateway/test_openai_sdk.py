"""The official `openai` Python SDK as the client of /v1, over every provider (the fakes speak
OpenAI's, Anthropic's and Gemini's real wire formats): models, completions, streams with the
usage chunk, content parts, and OpenAI-shaped errors the SDK turns into its own exceptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.chat.conftest import provider_settings
from tests.chat.support import MODELS, FakeThread
from tests.conftest import LiveServer
from tests.fakes.providers import Failure
from tests.gateway.conftest import REPLY_MICROS, KeyUser, key_user


@pytest.fixture
async def sdk(user: KeyUser, gateway: LiveServer) -> AsyncIterator[openai.AsyncOpenAI]:
    secret = (await user.make_key(name="sdk"))["key"]
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0,
                                timeout=30)
    async with client:
        yield client


async def test_models_are_the_same_list_as_api_models(sdk: openai.AsyncOpenAI,
                                                      user: KeyUser) -> None:
    listed = [m async for m in sdk.models.list()]
    ours = (await user.http.get("/api/models", headers=user.headers)).json()
    assert [m.id for m in listed] == [m["id"] for m in ours]
    assert {m.owned_by for m in listed} >= {"openai", "anthropic", "gemini"}
    assert all(m.object == "model" for m in listed)
    one = await sdk.models.retrieve(MODELS["anthropic"])
    assert one.id == MODELS["anthropic"] and one.owned_by == "anthropic"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_completion_over_every_provider(sdk: openai.AsyncOpenAI, fakes: FakeThread,
                                              provider: str) -> None:
    answer = await sdk.chat.completions.create(
        model=MODELS[provider], temperature=0.3, top_p=0.5, max_tokens=50, stop=["\n\n"],
        user="someone",
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Say"},
                                               {"type": "text", "text": "hello"}]}])
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == MODELS[provider]
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Hello, world!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens,
            answer.usage.total_tokens) == (21, 4, 25)
    body = fakes.all[provider].last.json
    if provider == "openai":
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["messages"][1]["content"] == "Say\nhello"
        assert (body["top_p"], body["stop"], body["temperature"]) == (0.5, ["\n\n"], 0.3)
    elif provider == "anthropic":
        assert body["system"] == "Be brief."
        assert (body["top_p"], body["stop_sequences"]) == (0.5, ["\n\n"])
    else:
        config = body["generationConfig"]
        assert (config["topP"], config["stopSequences"], config["maxOutputTokens"]) == (
            0.5, ["\n\n"], 50)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_stream_with_the_usage_chunk(sdk: openai.AsyncOpenAI, provider: str,
                                           user: KeyUser) -> None:
    stream = await sdk.chat.completions.create(
        model=MODELS[provider], stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}])
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world!"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (21, 4)
    assert all(c.usage is None for c in chunks[:-1])
    # Billed like /api/chat, under the key, and nothing stored in a conversation.
    usage = (await user.http.get("/api/usage?group_by=model", headers=user.headers)).json()
    assert usage["rows"] == [{"model": MODELS[provider], "requests": 1, "prompt_tokens": 21,
                              "completion_tokens": 4,
                              "cost_usd": REPLY_MICROS[MODELS[provider]] / 1e6}]
    assert (await user.http.get("/api/conversations", headers=user.headers)).json() == []


async def test_a_stream_without_include_usage_has_no_usage_chunk(
        sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(model=MODELS["openai"], stream=True,
                                               messages=[{"role": "user", "content": "hi"}])
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_errors_are_openai_shaped(sdk: openai.AsyncOpenAI, gateway: LiveServer,
                                        fakes: FakeThread) -> None:
    hello: Any = [{"role": "user", "content": "hi"}]  # plain dicts, as users' code sends
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.chat.completions.create(model="no-such-model", messages=hello)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as many:
        await sdk.chat.completions.create(model=MODELS["openai"], messages=hello, n=2)
    assert many.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        image: Any = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
        await sdk.chat.completions.create(model=MODELS["openai"], messages=image)
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model=MODELS["openai"], messages=[])
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model=MODELS["openai"], messages=hello,
                                          temperature=5)
    fakes.openai.fail = Failure(status=500, message="upstream exploded")
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk.chat.completions.create(model=MODELS["openai"], messages=hello)
    assert failed.value.status_code == 502
    # Cut off mid-reply: the SDK sees the text so far, then OpenAI's in-stream error.
    fakes.openai.fail = Failure(drop_after=2)
    fakes.openai.chunk_delay = 0.05
    stream = await sdk.chat.completions.create(model=MODELS["openai"], messages=hello,
                                               stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as cut:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "Hello,"
    assert "dropped" in cut.value.message
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="cs-not-a-key",
                                  max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            await stranger.models.list()
    assert refused.value.code == "invalid_api_key"
    assert "cs-not-a-key" not in str(refused.value)


async def test_an_access_token_works_too(user: KeyUser, gateway: LiveServer) -> None:
    token = user.headers["Authorization"].removeprefix("Bearer ")
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=token,
                                  max_retries=0) as client:
        answer = await client.chat.completions.create(
            model=MODELS["openai"], messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello, world!"


async def test_the_chat_rate_limit_is_openais_429_on_v1(tmp_path: Path, fakes: FakeThread,
                                                         database_url: str) -> None:
    settings = provider_settings(tmp_path, fakes, database_url, rate_limit_chat_per_minute=1)
    with LiveServer.running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            owner = await key_user(http)
            secret = (await owner.make_key())["key"]
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=secret,
                                      max_retries=0) as client:
            hello: Any = [{"role": "user", "content": "hi"}]  # plain dicts, as users' code sends
            await client.chat.completions.create(model=MODELS["openai"], messages=hello)
            with pytest.raises(openai.RateLimitError) as limited:
                await client.chat.completions.create(model=MODELS["openai"], messages=hello)
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1
