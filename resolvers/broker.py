"""Message broker: pub/sub for live events and resumable reply logs.

Two implementations behind one interface: `MemoryBroker` (default, one worker) and
`RedisBroker` (resolvers/broker_redis.py, when REDIS_URL is set) so that typing, reply
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
- A reply log numbers its events 1, 2, 3, …; the first TERMINAL_TYPES event closes it.
  A closed log is kept `retention_seconds` (so late or reconnecting readers still get the
  tail), then forgotten. An open log that receives nothing for `open_ttl_seconds` (its
  producer died without appending a terminal event) is forgotten too, and its readers end
  without a terminal event — callers should then report an error to their client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

Event = dict[str, Any]

# A reply's log ends with one of these event types.
TERMINAL_TYPES = frozenset({"chat_complete", "error"})

DEFAULT_RETENTION_SECONDS = 300
# Long enough for the slowest generation; short enough that a crashed producer's log does
# not live forever.
DEFAULT_OPEN_TTL_SECONDS = 3600
DEFAULT_SUBSCRIBER_BUFFER = 256


class ReplyNotFound(LookupError):
    """The reply log was never started, or has expired."""


class ReplyExists(ValueError):
    """`reply_start` with an id that is already in use."""


class ReplyClosed(ValueError):
    """`reply_append` after the log's terminal event."""


class BrokerClosed(RuntimeError):
    """The broker was closed (`aclose()`); it cannot be used any more."""


def is_terminal(event: Event) -> bool:
    return event.get("type") in TERMINAL_TYPES


def _encode(message: Event) -> str:
    if not isinstance(message, dict):
        raise TypeError(f"broker messages are dicts, got {type(message).__name__}")
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _check_durations(retention_seconds: float, open_ttl_seconds: float) -> None:
    # Zero would delete a finished log together with its terminal event, before any
    # reader could see it.
    if retention_seconds <= 0 or open_ttl_seconds <= 0:
        raise ValueError("retention_seconds and open_ttl_seconds must be positive")


SubscriptionHook = Callable[["Subscription"], Awaitable[None]]


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
    """

    def __init__(
        self,
        channel: str,
        *,
        buffer: int,
        on_open: SubscriptionHook | None,
        on_close: SubscriptionHook,
    ) -> None:
        if buffer < 1:
            raise ValueError("subscriber buffer must hold at least one message")
        self.channel = channel
        # Messages dropped because this subscriber fell `buffer` messages behind.
        self.dropped = 0
        # Raw JSON, decoded on the way out: each subscriber gets its own copy.
        self._pending: deque[str] = deque(maxlen=buffer)
        self._wakeup = asyncio.Event()
        self._on_open = on_open
        self._on_close = on_close
        self._live = on_open is None
        self._closed = False
        self._open_lock = asyncio.Lock()

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
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1  # the deque drops the oldest one itself
        self._pending.append(raw)
        self._wakeup.set()

    def _end(self) -> None:
        """Stop iteration (used by aclose and by the broker's shutdown)."""
        self._closed = True
        self._pending.clear()
        self._wakeup.set()

    # --- consumer side ---
    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if not self._live and not self._closed:
            await self.ready()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                message: Event = json.loads(self._pending.popleft())
                return message
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

    def subscribe(self, channel: str) -> Subscription:
        """Messages published on `channel` after the subscription is live, until closed.

        The returned `Subscription` is an async iterator and an async context manager;
        `async with broker.subscribe(ch) as sub:` is live (on every worker) when the block
        starts. See `Subscription` for use without `async with`.
        """
        ...

    # --- resumable reply logs (numbered chunks) ---
    async def reply_start(self, reply_id: str, *, owner_id: str) -> None:
        """Open a new, empty log. Raises ReplyExists if the id is taken."""
        ...

    async def reply_append(self, reply_id: str, event: Event) -> int:
        """Append an event, return its sequence number (1, 2, 3, …).

        Appending a TERMINAL_TYPES event closes the log; it is kept for the grace period
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


@dataclass(eq=False)
class _ReplyLog:
    owner_id: str
    # time.monotonic() deadline: open_ttl after the last append, retention once closed.
    expires_at: float
    events: list[str] = field(default_factory=list)
    closed: bool = False
    # Replaced (after being set) on every append, so each waiter wakes exactly once per
    # change without a lock or a Condition.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        waiter, self.changed = self.changed, asyncio.Event()
        waiter.set()


class MemoryBroker:
    """In-process broker for a single worker. Nothing here crosses process boundaries.

    Expiry is lazy: a log past its deadline is dropped when it is next looked up and by a
    sweep that `reply_start` runs at most once a second — no timers or tasks to leak.
    """

    def __init__(
        self,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        open_ttl_seconds: float = DEFAULT_OPEN_TTL_SECONDS,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    ) -> None:
        _check_durations(retention_seconds, open_ttl_seconds)
        self.retention_seconds = retention_seconds
        self.open_ttl_seconds = open_ttl_seconds
        self.subscriber_buffer = subscriber_buffer
        self._channels: dict[str, set[Subscription]] = {}
        self._logs: dict[str, _ReplyLog] = {}
        self._next_sweep = 0.0
        self._connections = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("broker is closed")

    # --- pub/sub ---
    async def publish(self, channel: str, message: Event) -> None:
        self._check_open()
        raw = _encode(message)
        for sub in tuple(self._channels.get(channel, ())):
            sub._deliver(raw)

    def subscribe(self, channel: str) -> Subscription:
        self._check_open()
        # Registered right here, synchronously: live before the caller can publish.
        sub = Subscription(
            channel, buffer=self.subscriber_buffer, on_open=None, on_close=self._unsubscribe
        )
        self._channels.setdefault(channel, set()).add(sub)
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._channels[sub.channel]

    # --- reply logs ---
    def _live_log(self, reply_id: str) -> _ReplyLog | None:
        log = self._logs.get(reply_id)
        if log is not None and time.monotonic() >= log.expires_at:
            del self._logs[reply_id]
            log.notify()  # readers of an expired open log stop waiting
            return None
        return log

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for reply_id in [r for r, log in self._logs.items() if now >= log.expires_at]:
            self._logs.pop(reply_id).notify()

    async def reply_start(self, reply_id: str, *, owner_id: str) -> None:
        self._check_open()
        self._sweep()
        if self._live_log(reply_id) is not None:
            raise ReplyExists(reply_id)
        self._logs[reply_id] = _ReplyLog(
            owner_id=owner_id, expires_at=time.monotonic() + self.open_ttl_seconds
        )

    async def reply_append(self, reply_id: str, event: Event) -> int:
        self._check_open()
        raw = _encode(event)
        log = self._live_log(reply_id)
        if log is None:
            raise ReplyNotFound(reply_id)
        if log.closed:
            raise ReplyClosed(reply_id)
        # No await between reading and growing the list: concurrent appends from several
        # tasks cannot get the same number.
        log.events.append(raw)
        if is_terminal(event):
            log.closed = True
            log.expires_at = time.monotonic() + self.retention_seconds
        else:
            log.expires_at = time.monotonic() + self.open_ttl_seconds
        log.notify()
        return len(log.events)

    async def reply_owner(self, reply_id: str) -> str | None:
        self._check_open()
        log = self._live_log(reply_id)
        return None if log is None else log.owner_id

    async def reply_closed(self, reply_id: str) -> bool:
        self._check_open()
        log = self._live_log(reply_id)
        return log is not None and log.closed

    async def reply_events(
        self, reply_id: str, *, after: int = 0
    ) -> AsyncIterator[tuple[int, Event]]:
        self._check_open()
        log = self._live_log(reply_id)
        if log is None:
            return
        seq = max(after, 0)
        while True:
            while seq < len(log.events):
                event: Event = json.loads(log.events[seq])
                seq += 1
                yield seq, event
                if is_terminal(event):
                    return
            if log.closed or self._closed or self._logs.get(reply_id) is not log:
                return
            waiter = log.changed
            # Wake up at the deadline too: a producer that died never notifies.
            try:
                async with asyncio.timeout(log.expires_at - time.monotonic()):
                    await waiter.wait()
            except TimeoutError:
                if self._live_log(reply_id) is not log:
                    return

    # --- connection counting (this process only: one worker) ---
    async def connections_add(self, delta: int) -> None:
        self._connections += delta

    async def connections_count(self) -> int:
        self._check_open()
        return self._connections

    async def healthy(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subs in list(self._channels.values()):
            for sub in list(subs):
                sub._end()
        self._channels.clear()
        logs = list(self._logs.values())
        self._logs.clear()
        for log in logs:
            log.notify()


def make_broker(
    redis_url: str | None,
    *,
    retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    key_prefix: str = "chatstudio:",
) -> Broker:
    """A RedisBroker when `redis_url` is set (several workers), else a MemoryBroker.

    Building either opens no connection; RedisBroker connects on first use.
    """
    if redis_url:
        # Imported lazily: a single-worker install never needs redis-py loaded.
        from resolvers.broker_redis import RedisBroker

        return RedisBroker(redis_url, retention_seconds=retention_seconds, key_prefix=key_prefix)
    return MemoryBroker(retention_seconds=retention_seconds)
