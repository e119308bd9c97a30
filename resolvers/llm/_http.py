"""Shared plumbing for the HTTP providers: session ownership, timeouts, errors, SSE framing.

Every upstream call goes through aiohttp (httpx's pool bookkeeping collapsed at a few hundred
concurrent streams in our measurements; aiohttp's didn't). The timeouts are aiohttp's own:
`connect` bounds DNS, TCP and TLS set-up (and, on a session with a connection limit, the wait
for a free connection: an injected session should have no or a high limit), and `sock_read`
bounds each read from the socket, i.e. both the wait for the response headers and every gap
between two chunks. Both surface as `TimeoutError`, which `upstream_batches` turns into
ProviderError(timeout=True).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp

from .base import Finished, ModelInfo, ProviderError, StopSignal, TextChunk

logger = logging.getLogger("chat_studio.llm")

# A single SSE line longer than this is not a chat chunk; refuse it rather than buffer forever.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its name and its (joined) data lines."""

    event: str  # the `event:` field, "" when absent (OpenAI and Gemini never name events)
    data: str


class HTTPProvider:
    """Base for providers that talk HTTP: owns (or borrows) one aiohttp session."""

    name: str = "http"
    supports_tools = True  # every HTTP provider here has function calling
    supports_vision = True  # and takes images in its own format (openai, anthropic, gemini)
    label: str = "Upstream"  # how the provider is named in messages shown to users
    default_base_url: str = ""  # each provider's public API

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        models: Sequence[str] = (),
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        stall_timeout: float = 60.0,
    ) -> None:
        self.api_key = api_key or None
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.configured_models = list(models)
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=stall_timeout
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # limit=0: concurrency is bounded by our own rate limits, and a pool limit would turn
            # a busy moment into queued requests that look like upstream timeouts.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._owns_session = True
        return self._session

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None if self._owns_session else self._session

    # --- the end of a stream --------------------------------------------------------------
    def finished(self, *, stopped: bool, complete: bool, prompt_tokens: int | None,
                 completion_tokens: int | None, chunks: int, length: bool) -> Finished:
        """The closing Finished of a stream, or the error of one that ended early.

        Usage arrives only at the end of a reply, so a stopped one (and a server that reports
        none) counts its chunks instead: about one token each.
        """
        if stopped and not complete:
            return Finished(prompt_tokens or 0, max(completion_tokens or 0, chunks), "stopped")
        if not complete:
            raise self.error(f"{self.label} ended the reply before it was complete")
        return Finished(prompt_tokens or 0,
                        completion_tokens if completion_tokens is not None else chunks,
                        "length" if length else "stop")

    # --- errors -------------------------------------------------------------------------

    def error(self, message: str, *, status: int | None = None,
              timeout: bool = False) -> ProviderError:
        return ProviderError(self._scrub(message), provider=self.name, status=status,
                             timeout=timeout)

    def _scrub(self, text: str) -> str:
        # Upstreams sometimes echo the key they were given; it must never reach a user or a log.
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text

    async def http_error(self, resp: aiohttp.ClientResponse) -> ProviderError:
        """Turn a 4xx/5xx answer into a ProviderError carrying the provider's own message."""
        try:
            raw = await asyncio.wait_for(resp.read(), timeout=self.stall_timeout)
            body = raw.decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError):
            body = ""
        detail = extract_error_message(body) or resp.reason or "request failed"
        return self.error(f"{self.label} error (HTTP {resp.status}): {detail}",
                          status=resp.status)

    # --- requests -----------------------------------------------------------------------

    async def get_json(self, url: str, *, headers: dict[str, str],
                       params: dict[str, str] | None = None) -> Any:
        """GET a JSON document (model lists); failures raise ProviderError."""
        return await self.request_json("GET", url, headers=headers, params=params)

    async def request_json(self, method: str, url: str, *, headers: dict[str, str],
                           params: dict[str, str] | None = None, body: Any = None) -> Any:
        """One JSON request and its JSON answer (model lists, embeddings); failures raise
        ProviderError."""
        session = self._get_session()
        try:
            async with session.request(method, url, headers=headers, params=params, json=body,
                                       timeout=self._timeout) as resp:
                if resp.status >= 400:
                    raise await self.http_error(resp)
                return await resp.json(content_type=None)
        except ProviderError:
            raise
        except TimeoutError as exc:
            raise self.error(f"{self.label} did not answer in time", timeout=True) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise self.error(f"{self.label} request failed: {describe(exc)}") from exc

    async def coalesced(
        self, url: str, *, headers: dict[str, str], body: dict[str, Any], stop: StopSignal,
        read: Callable[[SSEEvent, list[str]], bool],
    ) -> AsyncGenerator[TextChunk, None]:
        """The reply's text, one TextChunk per batch of `upstream_batches`: tokens that arrived
        together leave together. `read` takes one event of the provider's wire format, appends
        its text to the list and answers True when the format says the reply ended. When `read`
        raises, the text before the failure still leaves first (it is part of the reply)."""
        batches = self.upstream_batches(url, headers=headers, body=body, stop=stop)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                texts: list[str] = []
                ended = False
                try:
                    for event in batch:
                        if read(event, texts):
                            ended = True
                            break
                except Exception:
                    if texts:
                        yield TextChunk("".join(texts))
                    raise
                if texts:
                    yield TextChunk("".join(texts))
                if ended or stop.is_set:
                    return

    async def upstream_batches(
        self, url: str, *, headers: dict[str, str], body: dict[str, Any], stop: StopSignal
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """POST `body` and yield the answer's SSE events until the upstream closes the stream,
        in batches: every event that had already arrived when the last read returned. A
        provider turns the text of one batch into one TextChunk, so that tokens which arrive
        together leave as one event (a fast model behind a buffering proxy, or a busy server
        that reads late) instead of paying the whole pipeline once per token.

        Returns early (without error) when `stop` is set; the caller checks `stop.is_set`.
        Every failure - HTTP status, connect/stall timeout, dropped connection - is raised as
        ProviderError. Whether the stream *ended properly* is the caller's judgement, since each
        wire format marks its end differently.
        """
        session = self._get_session()
        got_headers = False
        clean_end = False
        resp: aiohttp.ClientResponse | None = None
        # Stop must work in every phase: while the upstream thinks before its first byte (which
        # can take many seconds) and while it stalls mid-reply, not only between chunks.
        stopper = asyncio.create_task(stop.event.wait())
        sending = asyncio.create_task(self._post(session, url, headers=headers, body=body))
        try:
            try:
                await asyncio.wait({sending, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not sending.done():
                    return  # stopped before the upstream answered
                resp = sending.result()
                got_headers = True
                if resp.status >= 400:
                    raise await self.http_error(resp)
                # Closing the response wakes a pending read at once.
                stopper.add_done_callback(partial(_close_if_stopped, stop, resp))
                try:
                    async for batch in _sse_batches(resp, stop):
                        yield batch
                        if stop.is_set:
                            return
                    clean_end = not stop.is_set
                except (aiohttp.ClientError, ValueError):
                    if stop.is_set:
                        return
                    raise
            finally:
                stopper.cancel()
                if not sending.done():
                    sending.cancel()
                    with contextlib.suppress(BaseException):
                        await sending
                elif resp is None and not sending.cancelled() and sending.exception() is None:
                    sending.result().close()  # answered just as the stop came: discard
                if resp is not None:
                    # A fully read response returns its connection to the pool; anything
                    # else (stopped, failed) must not leave half a stream on a pooled socket.
                    if clean_end:
                        resp.release()
                    else:
                        resp.close()
        except ProviderError:
            raise
        except TimeoutError as exc:
            if got_headers:
                msg = f"{self.label} stopped sending data for {self.stall_timeout:g} s"
            else:
                msg = f"{self.label} did not respond within the time limit"
            raise self.error(msg, timeout=True) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self.error(f"{self.label} connection dropped mid-reply") from exc
        except aiohttp.ClientError as exc:
            if got_headers:
                raise self.error(f"{self.label} connection dropped mid-reply") from exc
            raise self.error(f"Could not reach {self.label}: {describe(exc)}") from exc
        except ValueError as exc:  # aiohttp: a line longer than the reader's limit
            raise self.error(f"{self.label} sent an unreadable stream: {exc}") from exc

    async def _post(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str],
                    body: dict[str, Any]) -> aiohttp.ClientResponse:
        return await session.post(url, json=body, headers=headers, timeout=self._timeout)

    @contextlib.contextmanager
    def unexpected_shape(self) -> Iterator[None]:
        """Valid JSON in a shape we do not know (a field of the wrong type) is the provider's
        fault too: it becomes a ProviderError, never an AttributeError in the chat loop."""
        try:
            yield
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise self.error(f"{self.label} sent data in an unexpected shape") from exc

    def parse_json(self, data: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise self.error(f"{self.label} sent malformed data in the stream") from exc
        if not isinstance(value, dict):
            raise self.error(f"{self.label} sent malformed data in the stream")
        return value

    def models_or_fallback(self, fetched: list[ModelInfo] | None,
                           exc: Exception | None) -> list[ModelInfo]:
        """Log why the live list was not used and answer the configured one instead."""
        if exc is not None:
            logger.warning("%s model list unavailable, using configured list: %s",
                           self.label, exc)
        elif fetched:
            return fetched
        return [ModelInfo(id=m, provider=self.name, name=m) for m in self.configured_models]


def _close_if_stopped(stop: StopSignal, resp: aiohttp.ClientResponse, _: object) -> None:
    if stop.is_set:
        resp.close()


async def _sse_batches(resp: aiohttp.ClientResponse,
                       stop: StopSignal) -> AsyncIterator[list[SSEEvent]]:
    """Server-sent events framing (WHATWG): fields per line, an empty line dispatches. Each
    read takes everything the connection has buffered; the events completed by it are
    yielded together (never an empty batch)."""
    parser = _SSEParser()
    while not stop.is_set:
        raw = await resp.content.readany()
        if not raw:  # EOF; an unterminated last event is dropped, as the spec says
            return
        batch = parser.feed(raw)
        if batch:
            yield batch


class _SSEParser:
    """Incremental SSE parsing: bytes in, complete events out. Lines end in LF (CR LF
    too); a line is decoded only once it is whole, so a character split between two reads
    is never mangled."""

    __slots__ = ("data", "event", "partial")

    def __init__(self) -> None:
        self.partial = b""  # an unfinished line
        self.event = ""
        self.data: list[str] = []

    def feed(self, raw: bytes) -> list[SSEEvent]:
        lines = raw.split(b"\n")
        if self.partial:
            lines[0] = self.partial + lines[0]
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE_BYTES:
            raise ValueError("line too long")
        out: list[SSEEvent] = []
        for raw_line in lines:
            if len(raw_line) > MAX_LINE_BYTES:
                raise ValueError("line too long")
            line = raw_line.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if self.data:
                    out.append(SSEEvent(self.event, "\n".join(self.data)))
                self.event, self.data = "", []
                continue
            if line.startswith(":"):  # comment / keep-alive
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                self.data.append(value)
            elif field == "event":
                self.event = value
        return out


def extract_error_message(body: str) -> str:
    """The human part of an upstream error body, whatever its dialect.

    OpenAI and Gemini: {"error": {"message": ...}}; Anthropic: {"type": "error", "error":
    {"type": ..., "message": ...}}; compatible servers also use {"error": "..."},
    {"detail": "..."} or {"message": "..."}. Plain-text bodies are used when short.
    """
    body = body.strip()
    if not body:
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        if body.startswith("<") or len(body) > 300:  # an HTML error page helps nobody
            return ""
        return body
    if isinstance(doc, list) and doc:  # Gemini wraps some errors in a one-element array
        doc = doc[0]
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error", doc)
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        for key in ("message", "detail", "msg"):
            value = err.get(key)
            if isinstance(value, str) and value:
                return value
    detail = doc.get("detail") or doc.get("message")
    return detail if isinstance(detail, str) else ""


def describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
