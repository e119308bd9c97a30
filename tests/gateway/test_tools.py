# The openai SDK types every request as strict TypedDicts; these tests send plain dicts, as
# users' code does, mixing message kinds in one list:
# mypy: disable-error-code="arg-type, call-overload, list-item, misc"
"""Tools passed through /v1 with the official openai SDK, over OpenAI, Anthropic and Gemini
(each fake speaks its provider's own function-calling wire format): the model's calls come
back in OpenAI's format, the client runs them and sends the results, and each provider gets
the whole exchange in its own dialect. A model that cannot use tools is refused up front."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.chat.support import MODELS, FakeThread
from tests.conftest import LiveServer
from tests.gateway.conftest import KeyUser

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ARGS = '{"city": "Paris"}'


@pytest.fixture
async def sdk(user: KeyUser, gateway: LiveServer) -> AsyncIterator[openai.AsyncOpenAI]:
    secret = (await user.make_key(name="tools"))["key"]
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret,
                                  max_retries=0, timeout=30) as client:
        yield client


def sent_tools(provider: str, body: dict[str, Any]) -> list[str]:
    if provider == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if provider == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]


def sent_exchange(provider: str, body: dict[str, Any]) -> tuple[Any, Any]:
    """The call and its result as the provider received them in the second request."""
    if provider == "openai":
        call = body["messages"][1]["tool_calls"][0]
        return ((call["function"]["name"], json.loads(call["function"]["arguments"])),
                (body["messages"][2]["role"], body["messages"][2]["content"]))
    if provider == "anthropic":
        use = next(b for b in body["messages"][1]["content"] if b["type"] == "tool_use")
        result = body["messages"][2]["content"][0]
        assert result["tool_use_id"] == use["id"]
        return (use["name"], use["input"]), (result["type"], result["content"])
    call = body["contents"][1]["parts"][-1]["functionCall"]
    response = body["contents"][2]["parts"][0]["functionResponse"]
    return (call["name"], call["args"]), (response["name"], response["response"])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_a_tool_call_round_trip_over_every_provider(
        sdk: openai.AsyncOpenAI, fakes: FakeThread, provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = []
    fake.tool_calls = [("get_weather", ARGS)]
    question = {"role": "user", "content": "Weather in Paris?"}
    first = await sdk.chat.completions.create(
        model=MODELS[provider], messages=[question], tools=[WEATHER],
        tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id
    assert sent_tools(provider, fake.last.json) == ["get_weather"]

    fake.tool_calls = []
    fake.chunks = ["It is ", "sunny."]
    second = await sdk.chat.completions.create(
        model=MODELS[provider], tools=[WEATHER],
        messages=[question,
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": call.id, "type": "function",
                       "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
                  {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])
    assert second.choices[0].message.content == "It is sunny."
    assert second.choices[0].finish_reason == "stop"
    (name, arguments), result = sent_exchange(provider, fake.last.json)
    assert (name, arguments) == ("get_weather", {"city": "Paris"})
    assert result == {"openai": ("tool", "sunny, 21 C"),
                      "anthropic": ("tool_result", "sunny, 21 C"),
                      "gemini": ("get_weather", {"content": "sunny, 21 C"})}[provider]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streamed_tool_calls_arrive_as_openai_deltas(
        sdk: openai.AsyncOpenAI, fakes: FakeThread, provider: str) -> None:
    fake = fakes.all[provider]
    fake.chunks = ["Checking."]
    fake.tool_calls = [("get_weather", ARGS), ("get_weather", '{"city": "Oslo"}')]
    stream = await sdk.chat.completions.create(
        model=MODELS[provider], messages=[{"role": "user", "content": "Paris and Oslo?"}],
        tools=[WEATHER], stream=True, stream_options={"include_usage": True},
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    calls: dict[int, dict[str, str]] = {}
    text, finish = "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for piece in delta.tool_calls or ():
            entry = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += piece.id or ""
            if piece.function is not None:
                entry["name"] += piece.function.name or ""
                entry["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Checking."
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    body = fake.last.json
    if provider == "openai":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}


async def test_bad_tools_are_refused_before_any_provider_call(
        sdk: openai.AsyncOpenAI, fakes: FakeThread) -> None:
    before = len(fakes.openai.requests)
    hello = [{"role": "user", "content": "hi"}]
    for bad in ([{"type": "function", "function": {"name": "no spaces allowed"}}],
                [{"type": "retrieval"}], [WEATHER, WEATHER]):
        with pytest.raises(openai.BadRequestError):
            await sdk.chat.completions.create(model=MODELS["openai"], messages=hello,
                                              tools=bad)
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model=MODELS["openai"], messages=hello,
                                          tools=[WEATHER], tool_choice={
                                              "type": "function", "function": {"name": "other"}})
    with pytest.raises(openai.BadRequestError):  # a tool result must name its call
        await sdk.chat.completions.create(model=MODELS["openai"], messages=[
            {"role": "tool", "content": "x"}])
    assert len(fakes.openai.requests) == before
