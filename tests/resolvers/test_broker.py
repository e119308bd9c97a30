"""The broker contract, one body over both backends (memory, Redis).

Redis: TEST_REDIS_URL, default redis://127.0.0.1:6379/0. Without a reachable Redis the Redis
cases skip — except in CI (CI=true), where they fail: CI must exercise the multi-worker path.
Every test uses its own random key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import RedisError

from resolvers.kit.broker import (
    Broker,
    BrokerClosed,
    Event,
    MemoryBroker,
    ReplyClosed,
    ReplyExists,
    ReplyNotFound,
    decode_shared,
    make_broker,
)
from resolvers.kit.broker.redis import RedisBroker

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Options only the Redis backend has; the memory factory ignores them.
REDIS_ONLY = {"read_block_seconds", "heartbeat_seconds", "worker_id"}


@functools.cache
def redis_problem() -> str | None:
    """Why Redis is unusable, or None; asked once per run, not once per test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"
    finally:
        client.close()
    return None


def redis_url_or_skip() -> str:
    problem = redis_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI is set but {problem}")
        pytest.skip(f"{problem}; start redis-server or set TEST_REDIS_URL")
    return REDIS_URL


async def delete_prefix(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class Factory:
    """Makes brokers of one backend; all of a test's Redis brokers share one prefix, like
    the workers of one deployment. `aclose()` closes everything made and deletes the keys."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.prefix = f"test-broker:{uuid.uuid4().hex}:"
        self.url = redis_url_or_skip() if backend == "redis" else None
        self.made: list[Broker] = []

    def __call__(self, **kwargs: Any) -> Broker:
        if self.url is None:
            memory = MemoryBroker(**{k: v for k, v in kwargs.items() if k not in REDIS_ONLY})
            self.made.append(memory)
            return memory
        return self.redis(**kwargs)

    def redis(self, **kwargs: Any) -> RedisBroker:
        assert self.url is not None
        broker = RedisBroker(self.url, key_prefix=self.prefix, **kwargs)
        self.made.append(broker)
        return broker

    async def aclose(self) -> None:
        for broker in self.made:
            await broker.aclose()
        if self.url is not None:
            await delete_prefix(self.url, self.prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    factory = Factory(request.param)
    yield factory
    await factory.aclose()


@pytest.fixture
async def broker(make: Factory) -> Broker:
    return make()


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis)])
async def make_redis(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Several workers on one Redis (the memory broker is one worker by design)."""
    factory = Factory(request.param)
    yield factory
    await factory.aclose()


async def wait_until(condition: Callable[[], bool], within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        # Polling is plain here: the conditions are about lists a reader task fills.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def collect(
    broker: Broker, reply_id: str, *, after: int = 0, within: float = 5.0
) -> list[tuple[int, Event]]:
    async with asyncio.timeout(within):
        return [item async for item in broker.reply_events(reply_id, after=after)]


async def next_message(sub: AsyncIterator[Event], within: float = 3.0) -> Event:
    async with asyncio.timeout(within):
        return await anext(sub)


async def nothing_arrives(sub: AsyncIterator[Event], wait: float = 0.2) -> bool:
    try:
        await next_message(sub, within=wait)
    except TimeoutError:
        return True
    return False


def chunk(i: int) -> Event:
    return {"type": "chat_chunk", "content": f"c{i}"}


COMPLETE: Event = {"type": "chat_complete", "tokens": 7, "model": "m"}


def background(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    async def run() -> Any:
        return await coro

    return asyncio.create_task(run())


# --- pub/sub ---


async def test_pubsub_reaches_every_subscriber_of_its_channel_only(broker: Broker) -> None:
    async with (
        broker.subscribe("typing:c1") as first,
        broker.subscribe("typing:c1") as second,
        broker.subscribe("typing:c2") as other,
    ):
        # Live on entering the block: a publish right away is not missed.
        await broker.publish("typing:c1", {"type": "user_typing", "user_id": "u1"})
        await broker.publish("typing:c1", {"type": "user_typing", "user_id": "u2"})
        for sub in (first, second):
            assert await next_message(sub) == {"type": "user_typing", "user_id": "u1"}
            assert await next_message(sub) == {"type": "user_typing", "user_id": "u2"}
        assert await nothing_arrives(other)

        # Each subscriber gets its own copy.
        await broker.publish("typing:c2", {"type": "stop", "ids": [1]})
        got = await next_message(other)
        got["ids"].append(2)
        assert got == {"type": "stop", "ids": [1, 2]}

    # Closed subscriptions end their iteration; a new one on the same channel still works.
    assert [m async for m in first] == []
    async with broker.subscribe("typing:c1") as again:
        await broker.publish("typing:c1", {"n": 3})
        assert await next_message(again) == {"n": 3}


async def test_subscription_without_context_manager(broker: Broker) -> None:
    sub = broker.subscribe("stop:r1")
    await sub.ready()
    await broker.publish("stop:r1", {"type": "stop"})
    assert await next_message(sub) == {"type": "stop"}
    await sub.aclose()
    assert [m async for m in sub] == []


async def test_slow_subscriber_loses_oldest_messages_not_the_publisher(make: Factory) -> None:
    broker = make(subscriber_buffer=4)
    async with broker.subscribe("busy") as slow, broker.subscribe("marker") as marker:
        async with asyncio.timeout(3):  # publishing never waits for the reader
            for i in range(10):
                await broker.publish("busy", {"n": i})
        await broker.publish("marker", {"done": True})
        # Delivery is in publish order, so once the marker is here all ten were offered.
        assert await next_message(marker) == {"done": True}
        assert [await next_message(slow) for _ in range(4)] == [{"n": i} for i in range(6, 10)]
        assert slow.dropped == 6
        assert await nothing_arrives(slow)


async def test_listeners_hear_each_message_in_place_and_share_its_text(broker: Broker) -> None:
    """A listener (on_message) costs no buffer or task: the broker calls it with the JSON
    text; every listener of the channel gets the same text, one failing listener does not
    stop the others, and a closed listener hears nothing more."""
    heard: dict[str, list[str]] = {"a": [], "b": [], "other": []}

    def failing(_text: str) -> None:
        raise RuntimeError("a broken listener")

    a = broker.subscribe("typing:l1", on_message=heard["a"].append)
    broken = broker.subscribe("typing:l1", on_message=failing)
    b = broker.subscribe("typing:l1", on_message=heard["b"].append)
    other = broker.subscribe("typing:l2", on_message=heard["other"].append)
    for listener in (a, broken, b, other):
        await listener.ready()
    await broker.publish("typing:l1", {"type": "user_typing", "user_id": "u1"})
    await broker.publish("typing:l1", {"n": 2})
    await wait_until(lambda: len(heard["a"]) == 2 and len(heard["b"]) == 2)
    assert [json.loads(t) for t in heard["a"]] == [{"type": "user_typing", "user_id": "u1"},
                                                  {"n": 2}]
    assert all(x is y for x, y in zip(heard["a"], heard["b"], strict=True))
    assert heard["other"] == []

    decoded: list[Any] = []

    def times_ten(event: Event) -> int:
        decoded.append(event)
        return int(event["n"]) * 10

    decode = decode_shared(times_ten)
    assert decode(heard["a"][1]) == decode(heard["b"][1]) == 20
    assert len(decoded) == 1  # once per message, however many listeners ask

    await a.aclose()
    await broker.publish("typing:l1", {"n": 3})
    await wait_until(lambda: len(heard["b"]) == 3)
    assert len(heard["a"]) == 2
    for listener in (broken, b, other):
        await listener.aclose()


# --- reply logs ---


async def test_reply_log_numbers_events_and_resumes_after_k(broker: Broker) -> None:
    await broker.reply_start("r1", owner_id="u1")
    assert [await broker.reply_append("r1", chunk(i)) for i in range(1, 6)] == [1, 2, 3, 4, 5]

    seen: list[tuple[int, Event]] = []

    async def read() -> None:
        async for item in broker.reply_events("r1", after=2):
            seen.append(item)

    reader = asyncio.create_task(read())
    await wait_until(lambda: len(seen) == 3)
    assert seen == [(3, chunk(3)), (4, chunk(4)), (5, chunk(5))]

    # Live events reach the waiting reader, which stops after the terminal one.
    assert await broker.reply_append("r1", chunk(6)) == 6
    await wait_until(lambda: len(seen) == 4)
    assert await broker.reply_append("r1", COMPLETE, terminal=True) == 7
    async with asyncio.timeout(3):
        await reader
    assert seen == [(3, chunk(3)), (4, chunk(4)), (5, chunk(5)), (6, chunk(6)), (7, COMPLETE)]

    # After completion: any resume point gives exactly the rest, nothing after the end.
    assert await collect(broker, "r1", after=5) == [(6, chunk(6)), (7, COMPLETE)]
    assert await collect(broker, "r1", after=7) == []
    assert await collect(broker, "r1", after=70) == []

    with pytest.raises(ReplyClosed):
        await broker.reply_append("r1", chunk(8))


async def test_mid_stream_and_late_readers_get_the_whole_tail_once(broker: Broker) -> None:
    await broker.reply_start("r2", owner_id="u1")
    for i in range(1, 4):
        await broker.reply_append("r2", chunk(i))
    mid = background(collect(broker, "r2"))
    resumed = background(collect(broker, "r2", after=1))
    await asyncio.sleep(0.05)
    for i in range(4, 7):
        await broker.reply_append("r2", chunk(i))
    await broker.reply_append(
        "r2", {"type": "error", "code": "provider_error", "message": "x"}, terminal=True)

    expected = [(i, chunk(i)) for i in range(1, 7)]
    expected.append((7, {"type": "error", "code": "provider_error", "message": "x"}))
    assert await mid == expected
    assert await resumed == expected[1:]
    assert await collect(broker, "r2") == expected  # joined after completion


async def test_owner_and_unknown_replies(broker: Broker) -> None:
    await broker.reply_start("r3", owner_id="alice")
    assert await broker.reply_owner("r3") == "alice"
    assert await broker.reply_owner("nope") is None
    assert await collect(broker, "nope", within=1) == []
    with pytest.raises(ReplyExists):
        await broker.reply_start("r3", owner_id="mallory")
    assert await broker.reply_owner("r3") == "alice"
    with pytest.raises(ReplyNotFound):
        await broker.reply_append("nope", chunk(1))


async def test_finished_log_expires_after_the_grace_period(make: Factory) -> None:
    broker = make(retention_seconds=1)
    await broker.reply_start("r4", owner_id="u1")
    await broker.reply_append("r4", chunk(1))
    await broker.reply_append("r4", COMPLETE, terminal=True)
    await asyncio.sleep(0.5)
    assert await broker.reply_owner("r4") == "u1"
    assert await collect(broker, "r4") == [(1, chunk(1)), (2, COMPLETE)]
    await asyncio.sleep(0.7)
    assert await broker.reply_owner("r4") is None
    assert await collect(broker, "r4", within=1) == []
    with pytest.raises(ReplyNotFound):
        await broker.reply_append("r4", chunk(3))
    await broker.reply_start("r4", owner_id="u2")  # the id is free again
    assert await broker.reply_owner("r4") == "u2"


async def test_a_packed_log_replays_exactly_and_an_idle_broker_forgets_expired_logs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory backend packs closed logs and sweeps on a timer: a reader in the middle of
    a log, a resume and a late reader see every event once, in order, across the packing;
    and an expired log is gone with no further call (an idle server gives memory back)."""
    monkeypatch.setattr(MemoryBroker, "SWEEP_SECONDS", 0.05)
    monkeypatch.setattr(MemoryBroker, "PACK_AFTER_SECONDS", 0.0)
    broker = MemoryBroker(retention_seconds=1)
    try:
        await broker.reply_start("p1", owner_id="u1")
        for i in range(1, 6):
            await broker.reply_append("p1", chunk(i))
        await broker.reply_append("p1", {"type": "chat_complete", "text": "a\nb"},
                                  terminal=True)
        expected = [(i, chunk(i)) for i in range(1, 6)]
        expected.append((6, {"type": "chat_complete", "text": "a\nb"}))
        reader = broker.reply_events("p1")
        first = [await anext(reader), await anext(reader)]  # paused mid-log
        await wait_until(lambda: broker._logs["p1"].packed is not None)
        rest = [item async for item in reader]
        assert first + rest == expected
        assert await collect(broker, "p1", after=3) == expected[3:]
        assert await collect(broker, "p1") == expected
        info = await broker.reply_info("p1")
        assert info is not None and info.last_seq == 6 and info.closed
        await wait_until(lambda: not broker._logs, within=3)
    finally:
        await broker.aclose()


async def test_reader_of_a_dead_producer_ends_when_the_log_expires(make: Factory) -> None:
    broker = make(open_ttl_seconds=0.5, read_block_seconds=0.2)
    await broker.reply_start("r5", owner_id="u1")
    await broker.reply_append("r5", chunk(1))
    # Nobody appends the terminal event: the reader must not hang forever.
    assert await collect(broker, "r5", within=3) == [(1, chunk(1))]
    assert await broker.reply_owner("r5") is None


async def test_concurrent_appends_get_unique_increasing_numbers(broker: Broker) -> None:
    await broker.reply_start("r6", owner_id="u1")
    reader = background(collect(broker, "r6"))

    async def producer(p: int) -> list[int]:
        seqs = []
        for i in range(20):
            seqs.append(await broker.reply_append("r6", {"type": "chat_chunk", "p": p, "i": i}))
        return seqs

    per_task = await asyncio.gather(*(producer(p) for p in range(5)))
    for seqs in per_task:
        assert seqs == sorted(seqs)
    assert sorted(s for seqs in per_task for s in seqs) == list(range(1, 101))
    await broker.reply_append("r6", COMPLETE, terminal=True)

    events = await reader
    assert [seq for seq, _ in events] == list(range(1, 102))
    for p, seqs in enumerate(per_task):  # each number names the event appended with it
        for i, seq in enumerate(seqs):
            assert events[seq - 1][1] == {"type": "chat_chunk", "p": p, "i": i}


# --- connections, health, shutdown ---


async def test_connection_count_and_health(broker: Broker) -> None:
    assert await broker.connections_count() == 0
    await broker.connections_add(1)
    await broker.connections_add(2)
    await broker.connections_add(-1)
    assert await broker.connections_count() == 2
    assert await broker.healthy() is True


async def test_aclose_ends_everything_and_leaves_nothing_pending(make: Factory) -> None:
    broker = make()
    await broker.reply_start("r7", owner_id="u1")
    await broker.reply_append("r7", chunk(1))
    await broker.connections_add(1)
    sub = await broker.subscribe("typing:c9").ready()
    messages = background(_drain(sub))
    events = background(collect(broker, "r7"))
    await asyncio.sleep(0.1)  # both are now waiting

    await broker.aclose()
    async with asyncio.timeout(3):
        assert await messages == []
        assert await events == [(1, chunk(1))]
    assert await broker.healthy() is False
    with pytest.raises(BrokerClosed):
        await broker.publish("typing:c9", {})
    with pytest.raises(BrokerClosed):
        await broker.reply_owner("r7")
    await broker.aclose()  # idempotent
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def _drain(sub: AsyncIterator[Event]) -> list[Event]:
    return [m async for m in sub]


async def test_make_broker_picks_the_backend() -> None:
    memory = make_broker(None, retention_seconds=5)
    assert isinstance(memory, MemoryBroker)
    assert memory.retention_seconds == 5
    await memory.aclose()
    # Building a RedisBroker opens no connection, so this needs no server.
    remote = make_broker("redis://127.0.0.1:1/0", key_prefix="x:")
    assert isinstance(remote, RedisBroker)
    assert remote.key_prefix == "x:"
    assert await remote.healthy() is False
    await remote.aclose()


# --- several workers on one Redis ---


async def test_two_workers_share_replies_pubsub_and_counts(make_redis: Factory) -> None:
    a = make_redis.redis(worker_id="worker-a")
    b = make_redis.redis(worker_id="worker-b")

    # A reply generated on A is read live, and resumed, on B.
    await a.reply_start("r8", owner_id="u1")
    await a.reply_append("r8", chunk(1))
    assert await b.reply_owner("r8") == "u1"
    on_b = background(collect(b, "r8"))
    await asyncio.sleep(0.05)
    await a.reply_append("r8", chunk(2))
    await a.reply_append("r8", COMPLETE, terminal=True)
    assert await on_b == [(1, chunk(1)), (2, chunk(2)), (3, COMPLETE)]
    assert await collect(b, "r8", after=2) == [(3, COMPLETE)]

    # Typing and stop signals cross workers both ways.
    async with b.subscribe("stop:r9") as stop_on_b, a.subscribe("typing:c1") as typing_on_a:
        await a.publish("stop:r9", {"type": "stop", "request_id": "q1"})
        await b.publish("typing:c1", {"type": "user_typing", "user_id": "u1"})
        assert await next_message(stop_on_b) == {"type": "stop", "request_id": "q1"}
        assert await next_message(typing_on_a) == {"type": "user_typing", "user_id": "u1"}

    # Counts are summed over the live workers.
    await a.connections_add(2)
    await b.connections_add(3)
    assert await a.connections_count() == await b.connections_count() == 5
    await a.aclose()  # a clean shutdown leaves the sum at once
    assert await b.connections_count() == 3


async def test_crashed_workers_connections_fade_out(make_redis: Factory) -> None:
    broker = make_redis.redis(heartbeat_seconds=0.1)
    await broker.connections_add(2)
    # A worker that died without cleaning up: its key has a TTL nobody renews any more.
    raw = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        prefix = make_redis.prefix
        await raw.set(f"{prefix}conns:dead", 4, px=300)
        await raw.sadd(f"{prefix}conns:workers", "dead")
        assert await broker.connections_count() == 6
        await asyncio.sleep(0.5)  # longer than 3 heartbeats: the live worker's key survives
        assert await broker.connections_count() == 2
        assert await raw.smembers(f"{prefix}conns:workers") == {broker.worker_id.encode()}
    finally:
        await raw.aclose()


async def test_many_subscribers_share_one_pubsub_connection(make_redis: Factory) -> None:
    broker = make_redis.redis()
    subs = [await broker.subscribe(f"typing:c{i % 10}").ready() for i in range(200)]
    raw = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        clients = await raw.client_list(_type="pubsub")
    finally:
        await raw.aclose()
    assert [c["name"] for c in clients].count(broker.client_name) == 1
    await broker.publish("typing:c3", {"n": 1})
    for sub in subs[3::10]:
        assert await next_message(sub) == {"n": 1}
    assert await nothing_arrives(subs[4], wait=0.05)
    for sub in subs:
        await sub.aclose()


async def test_subscriptions_survive_a_dropped_pubsub_connection(make_redis: Factory) -> None:
    broker = make_redis.redis()
    async with broker.subscribe("stop:r10") as sub:
        raw = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            clients = await raw.client_list(_type="pubsub")
            (mine,) = [c for c in clients if c["name"] == broker.client_name]
            await raw.client_kill_filter(_id=mine["id"])
        finally:
            await raw.aclose()
        # The reader reconnects and resubscribes; pub/sub is fire-and-forget, so keep
        # publishing until one gets through.
        async with asyncio.timeout(5):
            while True:
                await broker.publish("stop:r10", {"type": "stop"})
                try:
                    assert await next_message(sub, within=0.2) == {"type": "stop"}
                    break
                except TimeoutError:
                    continue


async def test_reply_closed_tells_a_finished_reply_from_a_running_one(broker: Broker) -> None:
    reply = f"closed-{uuid.uuid4().hex}"
    assert not await broker.reply_closed(reply)  # unknown
    await broker.reply_start(reply, owner_id="u1")
    await broker.reply_append(reply, {"type": "chat_chunk", "content": "a"})
    assert not await broker.reply_closed(reply)
    await broker.reply_append(reply, {"type": "chat_complete", "tokens": 1}, terminal=True)
    assert await broker.reply_closed(reply)


# --- leases: a reply outlives the worker that produced it ---


async def test_a_renewed_lease_holds_and_a_lapsed_one_goes_to_exactly_one_taker(
        make: Factory) -> None:
    # Two brokers on one backend: for Redis, two workers of one deployment.
    first, second = make(), make() if make.backend == "redis" else None
    other = second or first
    reply = f"lease-{uuid.uuid4().hex}"
    meta = {"conversation_id": "conv_1", "model": "m", "request_id": "r1"}
    await first.reply_start(reply, owner_id="u1", meta=meta, holder="w1", lease_seconds=0.4)
    await first.reply_append(reply, chunk(1))
    for _ in range(4):  # renewed past several lease lengths: never lapses
        await asyncio.sleep(0.2)
        assert await first.reply_renew(reply, holder="w1", lease_seconds=0.4)
        info = await other.reply_info(reply)
        assert info is not None and not info.lease_lapsed
    assert not await other.reply_take_over(reply, holder="w2")
    assert not await first.reply_renew(reply, holder="w2")  # only the holder renews

    await asyncio.sleep(0.6)  # the holder "died": no renewal
    info = await other.reply_info(reply)
    assert info is not None
    assert (info.owner_id, info.meta, info.last_seq, info.closed, info.lease_lapsed) == (
        "u1", meta, 1, False, True)
    takers = await asyncio.gather(*(
        (first if i % 2 else other).reply_take_over(reply, holder=f"t{i}", lease_seconds=5)
        for i in range(8)))
    assert takers.count(True) == 1
    assert not await first.reply_renew(reply, holder="w1")  # the old holder lost it
    info = await first.reply_info(reply)
    assert info is not None and not info.lease_lapsed  # held by the taker now
    winner = f"t{takers.index(True)}"
    assert await other.reply_renew(reply, holder=winner, lease_seconds=5)

    await other.reply_append(reply, {"type": "error", "code": "interrupted"}, terminal=True)
    info = await first.reply_info(reply)
    assert info is not None and info.closed and not info.lease_lapsed and info.last_seq == 2
    assert not await other.reply_renew(reply, holder=winner)  # the lease ends with the log
    assert not await first.reply_take_over(reply, holder="late")


async def test_a_log_without_holder_never_lapses_and_unknown_ones_have_no_info(
        broker: Broker) -> None:
    reply = f"nolease-{uuid.uuid4().hex}"
    assert await broker.reply_info(reply) is None
    assert not await broker.reply_take_over(reply, holder="w")
    assert not await broker.reply_renew(reply, holder="w")
    await broker.reply_start(reply, owner_id="u1", lease_seconds=0.1)
    await asyncio.sleep(0.3)
    info = await broker.reply_info(reply)
    assert info is not None and info.meta == {} and not info.lease_lapsed
    assert not await broker.reply_take_over(reply, holder="w")


async def test_a_reader_waits_longer_than_the_redis_socket_timeout(make: Factory) -> None:
    # Defaults on purpose: with redis-py's 5 s socket timeout and a 5 s XREAD BLOCK, any
    # pause of 5 s or more between events (a slow model's first token) was a TimeoutError.
    broker = make()
    reply = f"slow-{uuid.uuid4().hex}"
    await broker.reply_start(reply, owner_id="u1")
    reader = background(collect(broker, reply, within=20))
    await asyncio.sleep(6.5)
    assert not reader.done()
    await broker.reply_append(reply, chunk(1))
    await broker.reply_append(reply, COMPLETE, terminal=True)
    assert await reader == [(1, chunk(1)), (2, COMPLETE)]
