"""The HTTP providers against local fakes speaking each provider's real wire format."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from resolvers.assembly import llm_config
from resolvers.chat import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from resolvers.llm.anthropic import AnthropicProvider
from resolvers.llm.base import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ProviderError,
    StopSignal,
    StreamItem,
    TextChunk,
)
from resolvers.llm.embedded import MODEL_ID as EMBEDDED_ID
from resolvers.llm.gemini import GeminiProvider
from resolvers.llm.openai import OpenAIProvider
from resolvers.llm.registry import LLMConfig, ProviderRegistry, UnknownModel
from tests.conftest import make_settings
from tests.fakes import Failure, FakeAnthropic, FakeGemini, FakeOpenAI, FakeProvider

KEY = "sk-test-secret-key-0123456789"
STALL = 0.5  # seconds; small so that every failure test ends fast

HTTPProvider = OpenAIProvider | AnthropicProvider | GeminiProvider


@dataclass
class Case:
    fake: FakeProvider
    provider: HTTPProvider
    model: str


def _make(kind: str, fake: FakeProvider, *, stall: float = STALL) -> Case:
    if kind == "openai":
        assert isinstance(fake, FakeOpenAI)
        return Case(fake, OpenAIProvider(api_key=KEY, base_url=fake.api_base,
                                         connect_timeout=1.0, stall_timeout=stall),
                    "gpt-4o-mini")
    if kind == "anthropic":
        return Case(fake, AnthropicProvider(api_key=KEY, base_url=fake.base_url,
                                            connect_timeout=1.0, stall_timeout=stall),
                    "claude-3-5-haiku-20241022")
    return Case(fake, GeminiProvider(api_key=KEY, base_url=fake.base_url,
                                     connect_timeout=1.0, stall_timeout=stall),
                "gemini-2.0-flash")


FAKES: dict[str, Callable[[], FakeProvider]] = {
    "openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}


@pytest.fixture(params=["openai", "anthropic", "gemini"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    async with FAKES[request.param]() as fake:
        c = _make(request.param, fake)
        try:
            yield c
        finally:
            await c.provider.aclose()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def gemini_fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


def _request(model: str, *, temperature: float = DEFAULT_TEMPERATURE,
             max_tokens: int = DEFAULT_MAX_TOKENS) -> GenerationRequest:
    return GenerationRequest(
        model=model,
        messages=[ChatMessage("system", "You are terse."), ChatMessage("user", "Hi there"),
                  ChatMessage("assistant", "Hello!"), ChatMessage("user", "Say hello world")],
        temperature=temperature, max_tokens=max_tokens,
    )


async def _collect(provider: HTTPProvider, request: GenerationRequest,
                   stop: StopSignal | None = None) -> list[StreamItem]:
    return [item async for item in provider.stream(request, stop or StopSignal())]


def _texts(items: list[StreamItem]) -> list[str]:
    return [i.text for i in items if isinstance(i, TextChunk)]


# --- the happy path ---------------------------------------------------------------------


async def test_streams_the_text_in_order_then_usage(case: Case) -> None:
    case.fake.chunks = ["The", " quick", " brown", " fox", " — ünïcode ✓"]
    case.fake.prompt_tokens, case.fake.completion_tokens = 37, 9

    items = await _collect(case.provider, _request(case.model))

    assert "".join(_texts(items)) == "".join(case.fake.chunks)
    assert items[-1] == Finished(prompt_tokens=37, completion_tokens=9, finish_reason="stop")
    assert sum(isinstance(i, Finished) for i in items) == 1


async def test_chunks_that_arrive_apart_are_passed_on_at_once(case: Case) -> None:
    """Nothing is held back waiting for more: a token that arrives alone leaves alone."""
    case.fake.chunks = ["The", " quick", " brown", " fox"]
    case.fake.chunk_delay = 0.05
    items = await _collect(case.provider, _request(case.model))
    assert _texts(items) == case.fake.chunks


async def test_chunks_that_arrive_together_leave_as_one(case: Case) -> None:
    """Tokens already buffered when the stream is read are one TextChunk: the pipeline
    behind it (reply log, faces, clients) pays once for them, not once per token."""
    case.fake.chunks = [f" w{i}" for i in range(30)]
    case.fake.completion_tokens = 30
    case.fake.burst = True
    items = await _collect(case.provider, _request(case.model))
    assert _texts(items) == ["".join(case.fake.chunks)]
    assert items[-1] == Finished(prompt_tokens=21, completion_tokens=30, finish_reason="stop")


async def test_max_tokens_reached_is_reported_as_length(case: Case) -> None:
    case.fake.finish = "length"
    items = await _collect(case.provider, _request(case.model, max_tokens=4))
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "length"


async def test_openai_request_body_and_auth(openai_fake: FakeOpenAI) -> None:
    provider = OpenAIProvider(api_key=KEY, base_url=openai_fake.api_base)
    try:
        await _collect(provider, _request("gpt-4o-mini", temperature=0.25, max_tokens=77))
    finally:
        await provider.aclose()

    sent = openai_fake.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["messages"] == [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Say hello world"}]
    assert sent.json["temperature"] == 0.25
    assert sent.json["max_tokens"] == 77  # a compatible server: the classic field
    assert sent.json["stream"] is True
    assert sent.json["stream_options"] == {"include_usage": True}


async def test_openai_compatible_server_without_key_gets_no_auth_header(
        openai_fake: FakeOpenAI) -> None:
    provider = OpenAIProvider(base_url=openai_fake.api_base)
    try:
        items = await _collect(provider, _request("llama3.2"))
    finally:
        await provider.aclose()
    assert "authorization" not in openai_fake.last.headers
    assert "".join(_texts(items)) == "Hello, world!"


def test_official_openai_gets_max_completion_tokens() -> None:
    # OpenAI's newer models reject `max_tokens`; compatible servers only know `max_tokens`.
    body = OpenAIProvider(api_key=KEY).build_body(_request("gpt-4o-mini", max_tokens=9))
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


def test_anthropic_temperature_is_clamped_to_its_range() -> None:
    provider = AnthropicProvider(api_key=KEY)
    assert provider.build_body(_request("claude", temperature=1.7))["temperature"] == 1.0
    assert "system" not in provider.build_body(
        GenerationRequest(model="claude", messages=[ChatMessage("user", "hi")],
                          temperature=DEFAULT_TEMPERATURE, max_tokens=DEFAULT_MAX_TOKENS))


async def test_openai_compatible_server_without_usage_estimates_from_chunks(
        openai_fake: FakeOpenAI) -> None:
    openai_fake.send_usage = False
    openai_fake.chunks = ["a", "b", "c"]
    provider = OpenAIProvider(base_url=openai_fake.api_base)
    try:
        items = await _collect(provider, _request("llama3.2"))
    finally:
        await provider.aclose()
    assert items[-1] == Finished(prompt_tokens=0, completion_tokens=3, finish_reason="stop")


async def test_anthropic_request_puts_system_prompt_top_level(
        anthropic_fake: FakeAnthropic) -> None:
    provider = AnthropicProvider(api_key=KEY, base_url=anthropic_fake.base_url)
    request = GenerationRequest(
        model="claude-3-5-haiku-20241022", temperature=0.4, max_tokens=300,
        messages=[ChatMessage("system", "You are terse."), ChatMessage("user", "One"),
                  ChatMessage("user", "Two"), ChatMessage("assistant", "Ok"),
                  ChatMessage("user", "Three")])
    try:
        await _collect(provider, request)
    finally:
        await provider.aclose()

    sent = anthropic_fake.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json["system"] == "You are terse."
    # No system message in the list, and consecutive user turns merged (the API alternates).
    assert sent.json["messages"] == [
        {"role": "user", "content": "One\n\nTwo"}, {"role": "assistant", "content": "Ok"},
        {"role": "user", "content": "Three"}]
    assert sent.json["max_tokens"] == 300
    assert sent.json["temperature"] == 0.4
    assert sent.json["stream"] is True


async def test_gemini_request_uses_contents_system_instruction_and_header_key(
        gemini_fake: FakeGemini) -> None:
    provider = GeminiProvider(api_key=KEY, base_url=gemini_fake.base_url)
    try:
        await _collect(provider, _request("gemini-2.0-flash", temperature=1.3, max_tokens=55))
    finally:
        await provider.aclose()

    sent = gemini_fake.last
    assert sent.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}  # the key is never in the URL
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert sent.json["contents"] == [
        {"role": "user", "parts": [{"text": "Hi there"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "Say hello world"}]}]
    assert sent.json["generationConfig"] == {"temperature": 1.3, "maxOutputTokens": 55}


# --- failures -----------------------------------------------------------------------------

PROVIDER_MESSAGES = {
    ("openai", 401): "Incorrect API key provided",
    ("openai", 429): "Rate limit reached for gpt-4o-mini",
    ("openai", 500): "The server had an error while processing your request",
    ("anthropic", 401): "invalid x-api-key",
    ("anthropic", 429): "Number of request tokens has exceeded your per-minute rate limit",
    ("anthropic", 500): "Internal server error",
    ("gemini", 401): "Request had invalid authentication credentials.",
    ("gemini", 429): "Resource has been exhausted (e.g. check quota).",
    ("gemini", 500): "An internal error has occurred.",
}


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_http_errors_carry_status_and_the_providers_own_message(
        case: Case, status: int) -> None:
    case.fake.fail = Failure(status=status)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert err.value.status == status
    assert err.value.timeout is False
    assert err.value.provider == case.provider.name
    assert PROVIDER_MESSAGES[(case.provider.name, status)] in err.value.message
    assert f"HTTP {status}" in err.value.message


async def test_error_message_never_contains_the_api_key(case: Case) -> None:
    case.fake.fail = Failure(status=401, message=f"key {KEY} was revoked")
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert KEY not in err.value.message and KEY not in str(err.value)
    assert "was revoked" in err.value.message


async def test_hang_before_headers_is_a_timeout_not_a_hang(case: Case) -> None:
    case.fake.fail = Failure(hang_before_headers=True)
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert err.value.timeout is True
    assert "did not respond" in err.value.message
    assert time.monotonic() - started < STALL + 2


async def test_stall_between_chunks_is_a_timeout_after_the_first_chunks(case: Case) -> None:
    case.fake.fail = Failure(stall_after=2)
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        async for item in case.provider.stream(_request(case.model), StopSignal()):
            if isinstance(item, TextChunk):
                received.append(item.text)
    assert err.value.timeout is True
    assert "stopped sending data" in err.value.message
    assert time.monotonic() - started < STALL + 2
    # What arrived before the stall was delivered, in order.
    assert "".join(received) == "".join(case.fake.chunks[:2])


async def test_malformed_json_in_the_stream(case: Case) -> None:
    case.fake.fail = Failure(malformed_after=2)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert err.value.timeout is False
    assert "malformed" in err.value.message


async def test_connection_dropped_mid_stream(case: Case) -> None:
    case.fake.fail = Failure(drop_after=2)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert err.value.timeout is False
    assert "dropped" in err.value.message


async def test_stream_ending_without_the_end_marker(case: Case) -> None:
    case.fake.fail = Failure(truncate_after=2)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert "before it was complete" in err.value.message


async def test_error_event_inside_the_stream(case: Case) -> None:
    case.fake.fail = Failure(stream_error_after=1)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    expected = {"openai": "model crashed", "anthropic": "Overloaded",
                "gemini": "The model is overloaded"}[case.provider.name]
    assert expected in err.value.message


async def test_valid_json_of_an_unexpected_shape(case: Case) -> None:
    case.fake.fail = Failure(odd_shape_after=1)
    with pytest.raises(ProviderError) as err:
        await _collect(case.provider, _request(case.model))
    assert "unexpected shape" in err.value.message


async def test_unreachable_upstream() -> None:
    provider = OpenAIProvider(api_key=KEY, base_url="http://127.0.0.1:9/v1",
                              connect_timeout=1.0, stall_timeout=1.0)
    try:
        with pytest.raises(ProviderError) as err:
            await _collect(provider, _request("gpt-4o-mini"))
    finally:
        await provider.aclose()
    assert "Could not reach" in err.value.message
    assert err.value.status is None


# --- stop signal --------------------------------------------------------------------------


async def test_stop_ends_the_stream_within_a_chunk(case: Case) -> None:
    case.fake.chunks = [f"w{i} " for i in range(40)]
    case.fake.chunk_delay = 0.05
    stop = StopSignal()
    items: list[StreamItem] = []
    started = time.monotonic()
    async for item in case.provider.stream(_request(case.model), stop):
        items.append(item)
        if isinstance(item, TextChunk):
            stop.set()
    assert time.monotonic() - started < 1.5  # the whole reply would take 2 s
    texts = _texts(items)
    assert 1 <= len(texts) <= 2
    assert texts == case.fake.chunks[: len(texts)]
    last = items[-1]
    assert isinstance(last, Finished) and last.finish_reason == "stopped"
    assert last.completion_tokens >= len(texts)  # the estimate when usage had not arrived


async def test_stop_while_upstream_stalls_ends_promptly(case: Case) -> None:
    c = _make(case.provider.name, case.fake, stall=30.0)  # a stall would take 30 s
    case.fake.fail = Failure(stall_after=2)
    stop = StopSignal()
    items: list[StreamItem] = []
    started = time.monotonic()
    try:
        async for item in c.provider.stream(_request(c.model), stop):
            items.append(item)
            if isinstance(item, TextChunk):
                asyncio.get_running_loop().call_later(0.2, stop.set)
    finally:
        await c.provider.aclose()
    assert time.monotonic() - started < 3
    last = items[-1]
    assert isinstance(last, Finished) and last.finish_reason == "stopped"


async def test_stop_before_the_upstream_answers_ends_promptly(case: Case) -> None:
    c = _make(case.provider.name, case.fake, stall=30.0)  # the first byte may take long
    case.fake.fail = Failure(hang_before_headers=True)
    stop = StopSignal()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    started = time.monotonic()
    try:
        items = await _collect(c.provider, _request(c.model), stop)
    finally:
        await c.provider.aclose()
    assert time.monotonic() - started < 3
    assert items == [Finished(0, 0, "stopped")]


# --- model lists --------------------------------------------------------------------------


async def test_list_models_from_the_provider(case: Case) -> None:
    ids = [m.id for m in await case.provider.list_models()]
    expected = {"openai": ["gpt-4o", "gpt-4o-mini"],  # the embedding model cannot chat
                "anthropic": ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"],
                "gemini": ["gemini-2.0-flash", "gemini-1.5-pro"]}[case.provider.name]
    assert ids == expected
    if case.provider.name == "anthropic":
        assert case.fake.last.headers["x-api-key"] == KEY


async def test_list_models_falls_back_to_configured_list_and_logs(
        case: Case, caplog: pytest.LogCaptureFixture) -> None:
    case.fake.models_fail = 500
    case.provider.configured_models = ["configured-a", "configured-b"]
    with caplog.at_level(logging.WARNING, logger="chat_studio.llm"):
        models = await case.provider.list_models()
    assert [m.id for m in models] == ["configured-a", "configured-b"]
    assert {m.provider for m in models} == {case.provider.name}
    assert "model list unavailable" in caplog.text
    assert KEY not in caplog.text


# --- registry -------------------------------------------------------------------------------


Fakes = tuple[FakeOpenAI, FakeAnthropic, FakeGemini]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with FakeOpenAI() as o, FakeAnthropic() as a, FakeGemini() as g:
        yield o, a, g


def _config(fakes: Fakes, **kw: object) -> LLMConfig:
    o, a, g = fakes
    return LLMConfig(openai_api_key=KEY, openai_base_url=o.api_base,
                     anthropic_api_key=KEY, anthropic_base_url=a.base_url,
                     gemini_api_key=KEY, gemini_base_url=g.base_url,
                     connect_timeout=1.0, stall_timeout=STALL, **kw)  # type: ignore[arg-type]


async def test_registry_lists_embedded_first_then_each_provider(fakes: Fakes) -> None:
    registry = ProviderRegistry(_config(fakes))
    try:
        models = await registry.list_models()
    finally:
        await registry.aclose()
    assert models[0].id == EMBEDDED_ID and models[0].provider == "embedded"
    assert [m.provider for m in models[1:]] == (
        ["openai"] * 2 + ["anthropic"] * 2 + ["gemini"] * 2)


async def test_registry_resolves_plain_prefixed_and_default_ids(fakes: Fakes) -> None:
    registry = ProviderRegistry(_config(fakes))
    try:
        provider, model = await registry.resolve("gpt-4o-mini")
        assert (provider.name, model) == ("openai", "gpt-4o-mini")
        provider, model = await registry.resolve("anthropic/claude-3-5-haiku-20241022")
        assert (provider.name, model) == ("anthropic", "claude-3-5-haiku-20241022")
        provider, model = await registry.resolve("gemini/gemini-1.5-pro")
        assert (provider.name, model) == ("gemini", "gemini-1.5-pro")
        provider, model = await registry.resolve(None)
        assert (provider.name, model) == ("embedded", EMBEDDED_ID)
        # The resolved provider really streams from its upstream.
        provider, model = await registry.resolve("openai/gpt-4o")
        items = [i async for i in provider.stream(_request(model), StopSignal())]
        assert "".join(_texts(items)) == "Hello, world!"
        assert fakes[0].last.json["model"] == "gpt-4o"
    finally:
        await registry.aclose()


async def test_registry_default_model_setting(fakes: Fakes) -> None:
    registry = ProviderRegistry(_config(fakes, default_model="gemini-2.0-flash"))
    try:
        provider, model = await registry.resolve(None)
    finally:
        await registry.aclose()
    assert (provider.name, model) == ("gemini", "gemini-2.0-flash")


async def test_registry_unknown_model_lists_the_available_ones(fakes: Fakes) -> None:
    registry = ProviderRegistry(_config(fakes))
    try:
        with pytest.raises(UnknownModel) as err:
            await registry.resolve("gpt-9-ultra")
        with pytest.raises(UnknownModel):
            await registry.resolve("anthropic/gpt-4o-mini")  # right model, wrong provider
    finally:
        await registry.aclose()
    assert err.value.requested == "gpt-9-ultra"
    assert err.value.available[0] == EMBEDDED_ID
    assert "gpt-4o-mini" in err.value.available and "gemini-1.5-pro" in err.value.available
    assert "gpt-4o-mini" in str(err.value)


async def test_registry_caches_model_lists(fakes: Fakes) -> None:
    registry = ProviderRegistry(_config(fakes))
    try:
        for _ in range(5):
            await registry.resolve("gpt-4o-mini")
    finally:
        await registry.aclose()
    assert sum(r.path == "/v1/models" for r in fakes[0].requests) == 1


async def test_registry_falls_back_when_a_model_list_fails(fakes: Fakes) -> None:
    fakes[1].models_fail = 503
    registry = ProviderRegistry(_config(fakes, anthropic_models=["claude-configured"]))
    try:
        provider, model = await registry.resolve("claude-configured")
        ids = [m.id for m in await registry.list_models()]
    finally:
        await registry.aclose()
    assert (provider.name, model) == ("anthropic", "claude-configured")
    assert "gpt-4o-mini" in ids and "gemini-2.0-flash" in ids  # the others are unaffected


async def test_registry_activates_only_configured_providers(openai_fake: FakeOpenAI) -> None:
    # A local OpenAI-compatible server needs no key; no other key: no other provider.
    registry = ProviderRegistry(LLMConfig(openai_base_url=openai_fake.api_base,
                                          embedded_enabled=False))
    try:
        assert list(registry.providers) == ["openai"]
        with pytest.raises(UnknownModel) as err:
            await registry.resolve(None)  # the embedded default is switched off
    finally:
        await registry.aclose()
    assert err.value.available == ["gpt-4o", "gpt-4o-mini"]

    registry = ProviderRegistry(LLMConfig())  # official URL and no key: OpenAI inactive
    try:
        assert list(registry.providers) == ["embedded"]
    finally:
        await registry.aclose()


def test_llm_config_is_built_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, openai_api_key="sk-x", anthropic_models="claude-a, claude-b",
        embedded_threads=2, embedded_model_enabled=False, default_model="claude-a",
        provider_stall_timeout=7.5)
    config = llm_config(settings)
    assert config.openai_api_key == "sk-x"
    assert config.anthropic_api_key is None  # empty setting: the provider stays off
    assert config.anthropic_models == ["claude-a", "claude-b"]
    assert config.embedded_threads == 2
    # Named differently in Settings (EMBEDDED_MODEL_ENABLED): a copy by same-named fields
    # would have switched the embedded model back on.
    assert config.embedded_enabled is False
    assert (config.default_model, config.stall_timeout) == ("claude-a", 7.5)
    assert config.connect_timeout == settings.provider_connect_timeout
