"""In-process broker for a single worker (the `Broker` of base.py, without Redis)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from resolvers.kit.broker.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_OPEN_TTL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    DEFAULT_SUBSCRIBER_BUFFER,
    BrokerClosed,
    Event,
    OnMessage,
    ReplyClosed,
    ReplyExists,
    ReplyInfo,
    ReplyNotFound,
    Subscription,
    check_durations,
    encode,
)


@dataclass(eq=False)
class _ReplyLog:
    owner_id: str
    # time.monotonic() deadline: open_ttl after the last append, retention once closed.
    expires_at: float
    # A closed log is packed (`pack()`) once its readers have had time to read it: its events
    # then live in `packed`, and `events` is a fresh empty list. Readers hold their own
    # reference to the list they read (`entries()`), so packing never cuts one short.
    events: list[str] = field(default_factory=list)
    packed: bytes | None = None
    count: int = 0  # events appended (the last seq)
    closed_at: float = 0.0
    closed: bool = False
    meta: str = "{}"  # JSON, so each reader gets its own copy (as with Redis)
    holder: str | None = None  # the lease's holder; None: not leased (or closed)
    lease_until: float = 0.0  # time.monotonic() deadline of the lease
    leased: bool = False
    # Replaced (after being set) on every append, so each waiter wakes exactly once per
    # change without a lock or a Condition.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        waiter, self.changed = self.changed, asyncio.Event()
        waiter.set()

    def entries(self) -> list[str]:
        """Every event so far, as JSON text (a closed log's list never changes)."""
        if self.packed is None:
            return self.events
        return zlib.decompress(self.packed).decode().split("\n")

    def pack(self) -> None:
        # JSON text never holds a raw newline (encode() escapes it): one joins them all.
        # A reply's chunks repeat their type and request id, so they compress ~10×.
        self.packed = zlib.compress("\n".join(self.events).encode(), 1)
        self.events = []


class MemoryBroker:
    """In-process broker for a single worker. Nothing here crosses process boundaries.

    Expiry: a log past its deadline is dropped when it is next looked up, and by a sweep
    that runs on a timer while any log is kept (no task to leak; `aclose` cancels it), so
    that a server that goes idle after a burst of replies gives their memory back. The
    sweep also packs each log closed for `PACK_AFTER_SECONDS` (a compressed copy: what a
    late reader or a resume after reconnecting needs, at a tenth of the memory).
    """

    SWEEP_SECONDS = 5.0
    PACK_AFTER_SECONDS = 5.0

    def __init__(
        self,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        open_ttl_seconds: float = DEFAULT_OPEN_TTL_SECONDS,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    ) -> None:
        check_durations(retention_seconds, open_ttl_seconds)
        self.retention_seconds = retention_seconds
        self.open_ttl_seconds = open_ttl_seconds
        self.subscriber_buffer = subscriber_buffer
        self._channels: dict[str, set[Subscription]] = {}
        self._logs: dict[str, _ReplyLog] = {}
        self._next_sweep = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._connections = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("broker is closed")

    # --- pub/sub ---
    async def publish(self, channel: str, message: Event) -> None:
        self._check_open()
        raw = encode(message)
        for sub in tuple(self._channels.get(channel, ())):
            sub._deliver(raw)

    def subscribe(self, channel: str, *, on_message: OnMessage | None = None) -> Subscription:
        self._check_open()
        # Registered right here, synchronously: live before the caller can publish.
        sub = Subscription(
            channel, buffer=self.subscriber_buffer, on_open=None, on_close=self._unsubscribe,
            on_message=on_message,
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
        for log in self._logs.values():
            if log.closed and log.packed is None and now >= log.closed_at + \
                    self.PACK_AFTER_SECONDS:
                log.pack()

    def _tick(self) -> None:
        self._sweeper = None
        if self._closed:
            return
        self._next_sweep = 0.0
        self._sweep()
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        if self._sweeper is None and self._logs and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.SWEEP_SECONDS,
                                                                  self._tick)

    async def reply_start(self, reply_id: str, *, owner_id: str, meta: Event | None = None,
                          holder: str | None = None,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._check_open()
        self._sweep()
        if self._live_log(reply_id) is not None:
            raise ReplyExists(reply_id)
        now = time.monotonic()
        self._logs[reply_id] = _ReplyLog(
            owner_id=owner_id, expires_at=now + self.open_ttl_seconds,
            meta=encode(meta or {}), holder=holder, leased=holder is not None,
            lease_until=now + lease_seconds,
        )
        self._schedule_sweep()

    @staticmethod
    def _lapsed(log: _ReplyLog) -> bool:
        return log.leased and not log.closed and time.monotonic() >= log.lease_until

    async def reply_renew(self, reply_id: str, *, holder: str,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        self._check_open()
        log = self._live_log(reply_id)
        if log is None or log.closed or log.holder != holder or self._lapsed(log):
            return False
        log.lease_until = time.monotonic() + lease_seconds
        return True

    async def reply_take_over(self, reply_id: str, *, holder: str,
                              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        self._check_open()
        log = self._live_log(reply_id)
        # No await in here: of concurrent callers exactly one wins.
        if log is None or not self._lapsed(log):
            return False
        log.holder = holder
        log.lease_until = time.monotonic() + lease_seconds
        return True

    async def reply_info(self, reply_id: str) -> ReplyInfo | None:
        self._check_open()
        log = self._live_log(reply_id)
        if log is None:
            return None
        meta: Event = json.loads(log.meta)
        return ReplyInfo(owner_id=log.owner_id, meta=meta, last_seq=log.count,
                         closed=log.closed, lease_lapsed=self._lapsed(log))

    async def reply_append(self, reply_id: str, event: Event, *, terminal: bool = False) -> int:
        self._check_open()
        raw = encode(event)
        log = self._live_log(reply_id)
        if log is None:
            raise ReplyNotFound(reply_id)
        if log.closed:
            raise ReplyClosed(reply_id)
        # No await between reading and growing the list: concurrent appends from several
        # tasks cannot get the same number.
        log.events.append(raw)
        log.count += 1
        if terminal:
            log.closed = True
            log.holder = None
            log.closed_at = time.monotonic()
            log.expires_at = log.closed_at + self.retention_seconds
        else:
            log.expires_at = time.monotonic() + self.open_ttl_seconds
        log.notify()
        return log.count

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
            # Our own reference: the log may be packed while we wait at a `yield`.
            events = log.entries()
            while seq < len(events):
                event: Event = json.loads(events[seq])
                seq += 1
                yield seq, event
                if log.closed and seq == len(events):
                    return  # the terminal event is always the log's last
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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for subs in list(self._channels.values()):
            for sub in list(subs):
                sub._end()
        self._channels.clear()
        logs = list(self._logs.values())
        self._logs.clear()
        for log in logs:
            log.notify()
