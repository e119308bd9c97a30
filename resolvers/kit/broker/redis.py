"""Redis broker: the `Broker` protocol shared by several workers (see base.py).

Layout (every key and channel starts with `key_prefix`, default "chatstudio:"):

- pub/sub: channel `<prefix>ps:<channel>`. One pub/sub connection per process; a reader task
  fans each message out to the local `Subscription` buffers, so ten thousand WebSockets cost
  one Redis connection, not ten thousand. A Redis channel is subscribed while at least one
  local subscriber wants it.
- reply log: stream `<prefix>reply:{<id>}:log` and hash `<prefix>reply:{<id>}:meta`
  (owner, last seq, closed flag, the caller's meta JSON, whether it is leased), and the
  lease `<prefix>reply:{<id>}:lease` (the holder's id, with a PX TTL of the lease: Redis's
  own clock decides when it lapses, so workers' clocks never have to agree). The braces
  are a hash tag: all three keys land in the same cluster slot, as the Lua scripts need.
  Entry ids are `0-<seq>`, so resuming after seq N
  is a plain `XREAD … 0-N`, with no scan for where N was; `seq` is also stored as a field.
  Both keys get a safety TTL (`open_ttl_seconds`, renewed by each append) while the log is
  open and `retention_seconds` after the terminal event.
- connection counts: `<prefix>conns:<worker>` holds each worker's count with a TTL that a
  heartbeat renews, and the set `<prefix>conns:workers` names the workers; the total is
  their sum. A global INCRBY counter would keep a crashed worker's connections forever;
  here they vanish with its key within `3 × heartbeat_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

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
from resolvers.kit.redis_client import CONNECTION_ERRORS, REDIS, Redis, unavailable

log = logging.getLogger(__name__)

# Atomic so that a duplicate id can never overwrite a live reply.
_START_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
local leased = 0
if ARGV[4] ~= '' then
  leased = 1
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'seq', 0, 'closed', 0, 'meta', ARGV[3],
           'leased', leased)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# The holder keeps its lease only while the lease key still names it.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Atomic: of the workers that see a lapsed lease at the same moment, exactly one gets it.
_TAKE_OVER_LUA = """
if redis.call('HGET', KEYS[1], 'closed') ~= '0' then return 0 end
if redis.call('HGET', KEYS[1], 'leased') ~= '1' then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# Atomic so that concurrent appenders (any worker) get unique, increasing numbers and the
# stream's ids stay in step with them. ARGV: event JSON, '1' if terminal, retention ms,
# open TTL ms, append token. The token makes a retried call (redis-py retries after a
# dropped connection, possibly after the script already ran) return the number it got
# instead of appending the event twice.
_APPEND_LUA = """
local closed = redis.call('HGET', KEYS[1], 'closed')
if not closed then return -1 end
if redis.call('HGET', KEYS[1], 'token') == ARGV[5] then
  return tonumber(redis.call('HGET', KEYS[1], 'seq'))
end
if closed == '1' then return -2 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], '0-' .. seq, 'seq', seq, 'event', ARGV[1], 'end', ARGV[2])
local ttl = ARGV[4]
if ARGV[2] == '1' then
  ttl = ARGV[3]
  redis.call('HSET', KEYS[1], 'closed', 1, 'token', ARGV[5])
  redis.call('DEL', KEYS[3])
else
  redis.call('HSET', KEYS[1], 'token', ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return seq
"""


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _stream_entries(response: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD's entries for our single stream, for both RESP2 (list) and RESP3 (dict)."""
    if not response:
        return []
    if isinstance(response, dict):
        streams = list(response.values())
        entries = streams[0] if streams else []
        # RESP3 wraps the entry list once more: {stream: [[entries]]}.
        if entries and isinstance(entries[0], list):
            entries = entries[0]
        return cast(list[tuple[str, dict[str, str]]], entries)
    return cast(list[tuple[str, dict[str, str]]], response[0][1])


class RedisBroker:
    """Broker on Redis for several workers. Connects lazily, on first use.

    `worker_id` names this process in the connection count (random by default).
    `read_block_seconds` bounds each `XREAD BLOCK`, after which a reader checks that its
    log still exists (an open log whose producer died expires and ends its readers).
    """

    def __init__(
        self,
        url: str,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        key_prefix: str = "chatstudio:",
        open_ttl_seconds: float = DEFAULT_OPEN_TTL_SECONDS,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
        heartbeat_seconds: float = 10.0,
        read_block_seconds: float = 5.0,
        subscribe_timeout_seconds: float = 10.0,
        worker_id: str | None = None,
    ) -> None:
        check_durations(retention_seconds, open_ttl_seconds)
        self.retention_seconds = retention_seconds
        self.open_ttl_seconds = open_ttl_seconds
        self.subscriber_buffer = subscriber_buffer
        self.key_prefix = key_prefix
        self.worker_id = worker_id or uuid.uuid4().hex
        self._heartbeat_seconds = heartbeat_seconds
        self._read_block_ms = max(1, int(read_block_seconds * 1000))
        self._subscribe_timeout = subscribe_timeout_seconds
        # redis-py's default socket_timeout (5 s) also bounds blocking commands: an
        # `XREAD BLOCK 5000` then fails with TimeoutError exactly when the block ends, which
        # turned every 5 s pause of a model into a 500 (redis-py issues #2807, #3138). The
        # timeout must outlast the block; it still notices a dead server. The pub/sub
        # reader blocks without any timeout (get_message(timeout=None)), keepalive covers it.
        self.socket_timeout = read_block_seconds + 10.0
        # Named so that CLIENT LIST shows whose connections these are.
        self.client_name = f"{key_prefix}broker:{self.worker_id}"
        self._redis = Redis.from_url(
            url, decode_responses=True, socket_keepalive=True, client_name=self.client_name,
            socket_timeout=self.socket_timeout, socket_connect_timeout=5.0,
        )
        self._start_script = self._redis.register_script(_START_LUA)
        self._append_script = self._redis.register_script(_APPEND_LUA)
        self._renew_script = self._redis.register_script(_RENEW_LUA)
        self._take_over_script = self._redis.register_script(_TAKE_OVER_LUA)
        self._closed = False

        # pub/sub state; writes on the pub/sub connection and (re)connecting it are
        # serialised by _sub_lock (see _ensure_reader).
        self._conn: AbstractConnection | None = None
        self._ready = False  # connected and subscribed to every wanted channel
        self._attempt: asyncio.Future[BaseException | None] | None = None  # next connect's
        self._wake = asyncio.Event()  # cuts the reader's backoff: a subscriber waits
        self._reader: asyncio.Task[None] | None = None
        self._sub_lock = asyncio.Lock()
        self._subs: dict[str, set[Subscription]] = {}  # Redis channel → local subscribers
        # The waiters of each SUBSCRIBE sent and not yet confirmed, oldest first: Redis
        # confirms a connection's commands in order, so the next "subscribe" reply is the
        # oldest's.
        self._acks: dict[str, deque[list[asyncio.Future[None]]]] = {}

        # connection counting
        self._local_connections = 0
        self._count_lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None

    # --- keys ---
    def _channel(self, channel: str) -> str:
        return f"{self.key_prefix}ps:{channel}"

    def _reply_keys(self, reply_id: str) -> tuple[str, str]:
        base = f"{self.key_prefix}reply:{{{reply_id}}}"
        return f"{base}:meta", f"{base}:log"

    def _lease_key(self, reply_id: str) -> str:
        return f"{self.key_prefix}reply:{{{reply_id}}}:lease"

    @property
    def _workers_key(self) -> str:
        return f"{self.key_prefix}conns:workers"

    def _worker_key(self, worker_id: str) -> str:
        return f"{self.key_prefix}conns:{worker_id}"

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("broker is closed")

    @property
    def subscribed(self) -> bool:
        """Connected and subscribed to every wanted channel: False from a lost connection
        until the reader has subscribed again (messages published meanwhile are lost)."""
        return self._ready and not self._closed

    # --- pub/sub ---
    async def publish(self, channel: str, message: Event) -> None:
        self._check_open()
        await self._redis.publish(self._channel(channel), encode(message))

    def subscribe(self, channel: str, *, on_message: OnMessage | None = None) -> Subscription:
        self._check_open()
        return Subscription(
            self._channel(channel),
            buffer=self.subscriber_buffer,
            on_open=self._open_subscription,
            on_close=self._close_subscription,
            on_message=on_message,
        )

    async def _open_subscription(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        async with self._sub_lock:
            self._check_open()
            self._ensure_reader()
            assert self._conn is not None
            channel = sub.channel
            subs = self._subs.setdefault(channel, set())
            first = not subs
            subs.add(sub)
            ack: asyncio.Future[None] = loop.create_future()
            attempt: asyncio.Future[BaseException | None] | None = None
            if first:
                # Queued before sending: the reader may see the reply before send returns.
                self._acks.setdefault(channel, deque()).append([ack])
                if self._ready:
                    try:
                        await self._send("SUBSCRIBE", channel)
                    except CONNECTION_ERRORS:
                        attempt = self._await_reconnect()
                else:
                    # The reader subscribes every wanted channel when it (re)connects.
                    attempt = self._await_reconnect()
            elif channel in self._acks:
                # The channel's SUBSCRIBE is in flight: wait for the same confirmation.
                self._acks[channel][-1].append(ack)
                if not self._ready:
                    attempt = self._await_reconnect()
            else:
                return  # already confirmed
        async with asyncio.timeout(self._subscribe_timeout):
            if attempt is not None:
                # Shielded: one waiter giving up must not cancel what others wait on.
                failure = await asyncio.shield(attempt)
                if failure is not None:
                    if isinstance(failure, CONNECTION_ERRORS):
                        raise unavailable(failure) from failure  # 503, not 500
                    raise failure
            await asyncio.shield(ack)
        self._check_open()  # aclose() releases waiters by resolving their futures

    async def _close_subscription(self, sub: Subscription) -> None:
        async with self._sub_lock:
            subs = self._subs.get(sub.channel)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            if subs or self._conn is None or self._closed:
                return
            del self._subs[sub.channel]
            if not self._ready:
                return  # the reader's reconnect subscribes only what is still wanted
            try:
                await self._send("UNSUBSCRIBE", sub.channel)
            except CONNECTION_ERRORS as exc:
                unavailable(exc)  # Redis is down: logged once per outage

    # Why the pub/sub connection is ours and not a redis-py `PubSub`: every method of a
    # PubSub may (re)connect its connection — get_message, subscribe and unsubscribe all
    # go through `_execute`, whose failure callback disconnects and reconnects even with
    # no retries, and `connect()` reconnects a closed connection. A reconnect reads the
    # handshake's replies (CLIENT SETNAME …) and then resubscribes from its `on_connect`
    # callback. With the reader blocked in get_message and replies, /ws sockets and
    # GraphQL subscriptions (un)subscribing at any time, two coroutines reconnected the
    # one connection at once after a Redis restart: two sockets (one leaked, unclosed),
    # and two readers on one stream ("readuntil() called while another coroutine is
    # already waiting"), which broke the fresh connection again. Here only the reader task
    # ever connects or reads; others only write a command, under `_sub_lock`, and only
    # while the reader reports the connection ready. A reconnect subscribes every channel
    # that is wanted at that moment.

    def _ensure_reader(self) -> None:
        if self._conn is not None:
            return
        # Not taken from the pool: this connection lives as long as the broker.
        self._conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        self._attempt = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(self._conn), name="broker-pubsub")

    def _await_reconnect(self) -> asyncio.Future[BaseException | None]:
        """The outcome of the reader's next connection attempt, woken now (under the lock)."""
        self._ready = False
        self._wake.set()
        assert self._attempt is not None
        return self._attempt

    async def _send(self, *args: str) -> None:
        """Write one (UN)SUBSCRIBE on the ready connection; never connects (the caller
        holds `_sub_lock` and checked `_ready`). A failure leaves the reconnect to the
        reader."""
        assert self._conn is not None
        if not self._conn.is_connected:
            self._ready = False
            raise RedisConnectionError("the pub/sub connection is being re-established")
        try:
            await self._conn.send_command(*args, check_health=False)
        except BaseException:
            self._ready = False  # send_command closed the connection: the reader's read ends
            raise

    async def _connect(self, conn: AbstractConnection) -> None:
        """(Re)connect and subscribe every wanted channel; resolves the pending attempt."""
        async with self._sub_lock:
            self._check_open()
            attempt = self._attempt
            self._attempt = asyncio.get_running_loop().create_future()
            try:
                await conn.disconnect(nowait=True)
                await conn.connect()  # type: ignore[no-untyped-call]
                # Confirmations from the old connection never come: the one SUBSCRIBE
                # below answers every waiter of a channel, and unwanted ones are dropped.
                acks, self._acks = self._acks, {}
                for channel, pending in acks.items():
                    waiters = [ack for group in pending for ack in group]
                    if channel in self._subs:
                        self._acks[channel] = deque([waiters])
                    else:
                        _resolve(waiters)
                if self._subs:
                    await conn.send_command("SUBSCRIBE", *self._subs, check_health=False)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                if attempt is not None and not attempt.done():
                    attempt.set_result(exc)
                raise
            self._ready = True
            if attempt is not None and not attempt.done():
                attempt.set_result(None)
        REDIS.up()

    async def _read_loop(self, conn: AbstractConnection) -> None:
        backoff = 0.1
        while not self._closed:  # see _beat: cancellation alone is not enough
            try:
                if not self._ready:
                    await self._connect(conn)
                    backoff = 0.1
                # math.inf: block without the socket timeout (keepalive notices a dead
                # server); the connection stays for _connect to reset, not for the parser.
                response = await conn.read_response(
                    timeout=math.inf, disconnect_on_error=False, push_request=True)
            except Exception as exc:
                if self._closed:
                    return
                async with self._sub_lock:
                    was_ready, self._ready = self._ready, False
                # Messages published while the connection is down are lost, as pub/sub
                # promises nothing more. An outage is logged once, not per retry.
                if isinstance(exc, CONNECTION_ERRORS):
                    unavailable(exc)
                else:
                    log.warning("pub/sub connection failed; retrying", exc_info=True)
                if not was_ready:  # a failed connect: wait, unless a subscriber asks now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(backoff):
                            await self._wake.wait()
                    backoff = min(backoff * 2, 2.0)
                self._wake.clear()
                continue
            self._dispatch(response)

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 3:
            return
        kind, channel = response[0], response[1]
        if kind == "message":
            for sub in tuple(self._subs.get(channel, ())):
                sub._deliver(response[2])
        elif kind == "subscribe":
            acks = self._acks.get(channel)
            if acks:
                _resolve(acks.popleft())
                if not acks:
                    del self._acks[channel]

    # --- reply logs ---
    async def reply_start(self, reply_id: str, *, owner_id: str, meta: Event | None = None,
                          holder: str | None = None,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._check_open()
        meta_key, stream = self._reply_keys(reply_id)
        created = await self._start_script(
            keys=[meta_key, stream, self._lease_key(reply_id)],
            args=[owner_id, int(self.open_ttl_seconds * 1000), encode(meta or {}),
                  holder or "", max(1, int(lease_seconds * 1000))],
        )
        if not created:
            raise ReplyExists(reply_id)

    async def reply_renew(self, reply_id: str, *, holder: str,
                          lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        self._check_open()
        renewed = await self._renew_script(
            keys=[self._lease_key(reply_id)], args=[holder, max(1, int(lease_seconds * 1000))])
        return bool(renewed)

    async def reply_take_over(self, reply_id: str, *, holder: str,
                              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        self._check_open()
        meta_key, _ = self._reply_keys(reply_id)
        taken = await self._take_over_script(
            keys=[meta_key, self._lease_key(reply_id)],
            args=[holder, max(1, int(lease_seconds * 1000))])
        return bool(taken)

    async def reply_info(self, reply_id: str) -> ReplyInfo | None:
        self._check_open()
        meta_key, _ = self._reply_keys(reply_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(meta_key, ["owner", "seq", "closed", "meta", "leased"])
            pipe.exists(self._lease_key(reply_id))
            (owner, seq, closed, meta, leased), lease_exists = await pipe.execute()
        if owner is None:
            return None
        return ReplyInfo(owner_id=str(owner), meta=json.loads(meta or "{}"),
                         last_seq=int(seq or 0), closed=closed == "1",
                         lease_lapsed=leased == "1" and closed != "1" and not lease_exists)

    async def reply_append(self, reply_id: str, event: Event, *, terminal: bool = False) -> int:
        self._check_open()
        meta, stream = self._reply_keys(reply_id)
        seq = int(
            await self._append_script(
                keys=[meta, stream, self._lease_key(reply_id)],
                args=[
                    encode(event),
                    "1" if terminal else "0",
                    int(self.retention_seconds * 1000),
                    int(self.open_ttl_seconds * 1000),
                    uuid.uuid4().hex,
                ],
            )
        )
        if seq == -1:
            raise ReplyNotFound(reply_id)
        if seq == -2:
            raise ReplyClosed(reply_id)
        return seq

    async def reply_owner(self, reply_id: str) -> str | None:
        self._check_open()
        meta, _ = self._reply_keys(reply_id)
        owner = await self._redis.hget(meta, "owner")
        return cast(str | None, owner)

    async def reply_closed(self, reply_id: str) -> bool:
        self._check_open()
        meta, _ = self._reply_keys(reply_id)
        return bool(await self._redis.hget(meta, "closed") == "1")

    async def reply_events(
        self, reply_id: str, *, after: int = 0
    ) -> AsyncIterator[tuple[int, Event]]:
        self._check_open()
        meta, stream = self._reply_keys(reply_id)
        after = max(after, 0)
        last_seq, closed = await self._redis.hmget(meta, ["seq", "closed"])
        if last_seq is None:
            return  # unknown or expired
        if closed == "1" and after >= int(last_seq):
            return  # the caller has already seen the terminal event
        last_id = f"0-{after}"
        while True:
            try:
                response = await self._redis.xread(
                    {stream: last_id}, count=100, block=self._read_block_ms
                )
                entries = _stream_entries(response)
                if not entries and not await self._redis.exists(meta):
                    return  # expired while open: its producer died
            except (RedisError, OSError):
                if self._closed:
                    return  # aclose() cut the connection under us
                raise
            for entry_id, fields in entries:
                last_id = entry_id
                event: Event = json.loads(fields["event"])
                yield int(fields["seq"]), event
                if fields.get("end") == "1":
                    return
            if self._closed:
                return

    # --- connection counting across workers ---
    async def connections_add(self, delta: int) -> None:
        self._local_connections += delta
        if self._closed:
            return
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="broker-heartbeat")
        try:
            await self._store_count()
        except CONNECTION_ERRORS as exc:
            # A statistic must never break a chat connection; the heartbeat catches up. An
            # outage is logged once (kit/redis_client.py), not per connection.
            unavailable(exc)
        except RedisError:
            log.warning("could not store the connection count", exc_info=True)

    async def _store_count(self) -> None:
        # Serialised: otherwise an older SET could land after a newer one.
        async with self._count_lock:
            ttl_ms = int(self._heartbeat_seconds * 3000)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._worker_key(self.worker_id), self._local_connections, px=ttl_ms)
                pipe.sadd(self._workers_key, self.worker_id)
                await pipe.execute()

    async def _beat(self) -> None:
        # The flag as well as cancellation: redis-py can swallow a CancelledError that lands
        # mid-command, and the loop must still end once aclose() has begun.
        while not self._closed:
            await asyncio.sleep(self._heartbeat_seconds)
            if self._closed:
                return
            try:
                await self._store_count()
            except CONNECTION_ERRORS as exc:
                unavailable(exc)  # logged once per outage (kit/redis_client.py)
            except RedisError:
                log.warning("connection-count heartbeat failed", exc_info=True)

    async def connections_count(self) -> int:
        self._check_open()
        # decode_responses=True: members are str (the stubs also allow bytes).
        workers = sorted(str(w) for w in await self._redis.smembers(self._workers_key))
        if not workers:
            return 0
        counts = await self._redis.mget([self._worker_key(w) for w in workers])
        gone = [w for w, count in zip(workers, counts, strict=True) if count is None]
        if gone:
            # Crashed workers: their key expired, forget them.
            await self._redis.srem(self._workers_key, *gone)
        return sum(int(count) for count in counts if count is not None)

    async def healthy(self) -> bool:
        if self._closed:
            return False
        try:
            async with asyncio.timeout(2.0):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub._end()
        self._subs.clear()
        for acks in self._acks.values():
            for group in acks:
                _resolve(group)
        self._acks.clear()
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(BrokerClosed("broker is closed"))
        tasks = [t for t in (self._reader, self._heartbeat) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() rather than awaiting each: it does not swallow our own cancellation. A
            # bound, because shutdown must not hang on a task that missed its cancellation.
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                log.warning("broker task %s did not stop within 5 s", task.get_name())
        if self._heartbeat is not None:
            # Leave at once rather than when the key's TTL runs out.
            with contextlib.suppress(RedisError, OSError):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.delete(self._worker_key(self.worker_id))
                    pipe.srem(self._workers_key, self.worker_id)
                    await pipe.execute()
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
        await self._redis.aclose()
