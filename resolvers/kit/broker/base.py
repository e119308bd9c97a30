"""Message broker: pub/sub for live events and resumable reply logs.

Two implementations behind one interface: `MemoryBroker` (default, one worker) and
`RedisBroker` (resolvers/kit/broker/redis.py, when REDIS_URL is set) so that typing, reply
chunks and stop signals reach a client on any worker. `make_broker()` picks one.

Shared semantics (both backends, pinned by tests/resolvers/test_broker.py):

- Messages and events must be JSON-serialisable dicts. Every subscriber and every reader
  gets its own decoded copy, so a consumer that annotates an event (say, with a
  `request_id`) never changes what others see — and the memory backend behaves exactly
  like Redis, where everything goes through JSON anyway.
- Pub/sub is fire-and-forget: only live subscribers get a message. Each subscriber has a
  bounded buffer (`subscriber_buffer`, default 256); when a slow subscriber's buffer is full
  the *oldest* pending message is dropped (counted in `Subscription.dropped`). Publishers
  never block and memory stays bounded; for typing indicators and stop signals the newest
  messages are the ones worth keeping.
- A reply log numbers its events 1, 2, 3, …; the first event appended with
  `terminal=True` closes it. The broker never looks inside an event: what the events mean
  (chat's vocabulary) is resolvers/chat/events.py's business.
  A closed log is kept `retention_seconds` (so late or reconnecting readers still get the
  tail), then forgotten. An open log that receives nothing for `open_ttl_seconds` (its
  producer died without appending a terminal event) is forgotten too, and its readers end
  without a terminal event — callers should then report an error to their client.
- Leases: a log started with a `holder` is *leased* to it for `lease_seconds`; the holder
  renews it (`reply_renew`) every few seconds while it produces. When the holder dies the
  lease lapses (`ReplyInfo.lease_lapsed`), and exactly one caller of `reply_take_over` gets
  the log (atomically, on every worker) so that it can close it. A log started without a
  holder never lapses. The lease goes with the log's terminal event.
- `meta` (a JSON dict given to `reply_start`) is kept with the log, for whoever has to
  finish a reply whose producer died.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

Event = dict[str, Any]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS = 300
# Long enough for the slowest generation; short enough that a crashed producer's log does
# not live forever.
DEFAULT_OPEN_TTL_SECONDS = 3600
DEFAULT_SUBSCRIBER_BUFFER = 256
# A producer renews its lease about three times per lease: one missed renewal (a busy event
# loop, a slow Redis reply) does not make a live reply look dead.
DEFAULT_LEASE_SECONDS = 6.0


@dataclass(frozen=True, slots=True)
class ReplyInfo:
    """What the broker knows about one reply log."""

    owner_id: str
    meta: Event
    last_seq: int
    closed: bool
    # Started with a holder whose lease ran out while the log is still open: its producer
    # is gone, and the log will never get its terminal event unless somebody closes it.
    lease_lapsed: bool


class ReplyNotFound(LookupError):
    """The reply log was never started, or has expired."""


class ReplyExists(ValueError):
    """`reply_start` with an id that is already in use."""


class ReplyClosed(ValueError):
    """`reply_append` after the log's terminal event."""


class BrokerClosed(RuntimeError):
    """The broker was closed (`aclose()`); it cannot be used any more."""


def encode(message: Event) -> str:
    if not isinstance(message, dict):
        raise TypeError(f"broker messages are dicts, got {type(message).__name__}")
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def check_durations(retention_seconds: float, open_ttl_seconds: float) -> None:
    # Zero would delete a finished log together with its terminal event, before any
    # reader could see it.
    if retention_seconds <= 0 or open_ttl_seconds <= 0:
        raise ValueError("retention_seconds and open_ttl_seconds must be positive")


SubscriptionHook = Callable[["Subscription"], Awaitable[None]]
T = TypeVar("T")


def decode_shared(transform: Callable[[Event], T]) -> Callable[[str], T]:
    """`transform(json.loads(text))`, computed once per message for all the listeners that
    call the returned function: the backend hands each listener of a channel the same `str`
    object, so the last result is kept by that object's identity. The result is shared:
    treat it as read-only."""
    last: list[Any] = [None, None]  # [text, result]; the text is held, so `is` is safe

    def decode(text: str) -> T:
        if last[0] is not text:
            last[1] = transform(json.loads(text))
            last[0] = text
        result: T = last[1]
        return result

    return decode
# A listener (`subscribe(channel, on_message=...)`): called with each message's JSON text.
OnMessage = Callable[[str], None]


class Subscription:
    """One subscriber's live view of one pub/sub channel.

    Usage — entering the block returns only once the subscription is live, so anything
    published afterwards, by this or any other worker, is delivered::

        async with broker.subscribe(channel) as sub:
            await something_that_makes_others_publish()
            async for message in sub:
                ...

    Without `async with`, call `await sub.ready()` for the same guarantee (the first
    `__anext__` also calls it, but then a message published before that call can be
    missed), and `await sub.aclose()` when done: an unclosed subscription keeps its slot.
    Iteration ends after `aclose()` or when the broker closes.

    A *listener* (`on_message` given) is not iterated: the backend calls
    `on_message(json_text)` synchronously for each message, with no buffer and no task of
    its own — what a connection that lives for hours and hears a message a day should cost.
    Every listener of a channel gets the same `str` object per message, so a listener may
    decode it once for all (see `decode_shared`). A listener must not block; an exception
    it raises is logged and does not reach the publisher or other listeners.
    """

    def __init__(
        self,
        channel: str,
        *,
        buffer: int,
        on_open: SubscriptionHook | None,
        on_close: SubscriptionHook,
        on_message: OnMessage | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("subscriber buffer must hold at least one message")
        self.channel = channel
        # Messages dropped because this subscriber fell `buffer` messages behind.
        self.dropped = 0
        self._buffer = buffer
        self._on_message = on_message
        # Raw JSON, decoded on the way out: each subscriber gets its own copy. Made on the
        # first message (a listener never has one): an idle subscription costs no buffer.
        self._pending: deque[str] | None = None
        self._wakeup: asyncio.Event | None = None
        self._on_open = on_open
        self._on_close = on_close
        self._live = on_open is None
        self._closed = False
        self._open_lock: asyncio.Lock | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def ready(self) -> Subscription:
        """Wait until the subscription is live (idempotent); return self.

        Raises BrokerClosed after the broker closed, and TimeoutError (Redis) when the
        server does not confirm the subscription in time — Redis is down, and publish()
        would fail too.
        """
        if self._live:
            return self
        if self._closed:
            raise BrokerClosed("subscription is closed")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._live and self._on_open is not None:
                try:
                    await self._on_open(self)
                except BaseException:
                    # `__aexit__` never runs when `__aenter__` fails: release the slot here.
                    await self.aclose()
                    raise
                self._live = True
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._end()
        await self._on_close(self)

    # --- backend side ---
    def _deliver(self, raw: str) -> None:
        """Queue one message (JSON text); never blocks. Called by the backend."""
        if self._closed:
            return
        if self._on_message is not None:
            try:
                self._on_message(raw)
            except Exception:
                log.exception("a listener of %s failed", self.channel)
            return
        if self._pending is None:
            self._pending = deque(maxlen=self._buffer)
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1  # the deque drops the oldest one itself
        self._pending.append(raw)
        if self._wakeup is not None:
            self._wakeup.set()

    def _end(self) -> None:
        """Stop iteration (used by aclose and by the broker's shutdown)."""
        self._closed = True
        if self._pending is not None:
            self._pending.clear()
        if self._wakeup is not None:
            self._wakeup.set()

    # --- consumer side ---
    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._on_message is not None:
            raise TypeError("a listener subscription is not iterated")
        if not self._live and not self._closed:
            await self.ready()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                message: Event = json.loads(self._pending.popleft())
                return message
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def __aenter__(self) -> Subscription:
        return await self.ready()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Broker(Protocol):
    # --- fire-and-forget pub/sub (typing, stop signals, live-auth revocations) ---
    async def publish(self, channel: str, message: Event) -> None: ...

    def subscribe(self, channel: str, *, on_message: OnMessage | None = None) -> Subscription:
        """Messages published on `channel` after the subscription is live, until closed.

        The returned `Subscription` is an async iterator and an async context manager;
        `async with broker.subscribe(ch) as sub:` is live (on every worker) when the block
        starts. See `Subscription` for use without `async with`. With `on_message`, a
        listener: each message's JSON text is handed to it instead (see `Subscription`).
        """
        ...

    # --- resumable reply logs (numbered chunks) ---
    async def reply_start(self, reply_id: str, *, owner_id: str, meta: Event | None = None,
                          holder: str | None = None,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        """Open a new, empty log. Raises ReplyExists if the id is taken.

        `meta` is kept with the log (`reply_info`). With `holder`, the log is leased to it
        for `lease_seconds`; the holder must `reply_renew` before the lease runs out."""
        ...

    async def reply_renew(self, reply_id: str, *, holder: str,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Extend `holder`'s lease. False when the holder no longer has it (it lapsed and
        somebody took the log over, or the log is closed, unknown or expired): the holder
        must then stop producing."""
        ...

    async def reply_take_over(self, reply_id: str, *, holder: str,
                              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Take an open log whose lease lapsed; True for exactly one caller, on any
        worker. The new holder should close the log (its lease lapses in turn if it dies
        before doing so)."""
        ...

    async def reply_info(self, reply_id: str) -> ReplyInfo | None:
        """Owner, meta, progress and lease state; None when unknown or expired."""
        ...

    async def reply_append(self, reply_id: str, event: Event, *, terminal: bool = False) -> int:
        """Append an event, return its sequence number (1, 2, 3, …).

        Appending with `terminal=True` closes the log; it is kept for the grace period
        (REPLY_RETENTION_SECONDS) and then forgotten. Raises ReplyNotFound for an unknown or
        expired log and ReplyClosed after the terminal event.
        """
        ...

    async def reply_owner(self, reply_id: str) -> str | None:
        """The owner's user id, or None when the reply is unknown or expired."""
        ...

    def reply_events(self, reply_id: str, *, after: int = 0) -> AsyncIterator[tuple[int, Event]]:
        """Every event with seq > after, exactly once and in order: the stored ones first,
        then live ones as they are appended, ending after the terminal event.

        Ends at once (yielding nothing) for an unknown or expired reply, or when `after`
        is already at or past a closed log's terminal event. Ends without a terminal event
        only if an open log expires (its producer died) or the broker closes."""
        ...

    # --- connection counting across workers (/health active_connections) ---
    async def reply_closed(self, reply_id: str) -> bool:
        """True once the reply's terminal event is in its (still kept) log."""
        ...

    async def connections_add(self, delta: int) -> None: ...

    async def connections_count(self) -> int: ...

    async def healthy(self) -> bool:
        """True when the backend is usable (Redis answers PING); never raises."""
        ...

    async def aclose(self) -> None:
        """Stop background tasks, end every subscription, release connections."""
        ...
