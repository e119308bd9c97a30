"""The token check's per-process user cache (resolvers/kit/usercache.py): a change published by
one worker reaches another worker's cache through real Redis; a lookup that raced a change is
not kept; nothing is served while the cache cannot hear about changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from resolvers.kit import usercache
from resolvers.kit.broker import MemoryBroker, make_broker
from resolvers.kit.usercache import UserCache
from tests.resolvers.test_broker import delete_prefix, redis_url_or_skip


async def until(predicate: Callable[[], bool]) -> None:
    """Poll until `predicate` holds (a message crossing Redis, an entry expiring); 5 s at most."""
    async with asyncio.timeout(5):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on: the cache is polled
            await asyncio.sleep(0.01)


async def test_a_change_on_one_worker_empties_the_other_workers_cache() -> None:
    url = redis_url_or_skip()
    prefix = f"test-usercache:{uuid.uuid4().hex}:"
    a, b = make_broker(url, key_prefix=prefix), make_broker(url, key_prefix=prefix)
    cache_b = UserCache(b)
    try:
        await cache_b.start()
        assert cache_b.listening
        cache_b.put("user_1", "row", epoch=cache_b.epoch)
        cache_b.put("user_2", "row", epoch=cache_b.epoch)
        assert cache_b.get("user_1") == "row"
        # Worker A publishes what usercache.changed() publishes after its commit.
        await a.publish(usercache.CHANNEL, {"user_id": "user_1"})
        await until(lambda: cache_b.get("user_1") is None)
        assert cache_b.get("user_2") == "row"  # only that user
    finally:
        await cache_b.aclose()
        await a.aclose()
        await b.aclose()
        await delete_prefix(url, prefix)


async def test_changed_empties_every_cache_of_the_process_at_once() -> None:
    broker = MemoryBroker()
    first, second = UserCache(broker), UserCache(MemoryBroker())
    try:
        for cache in (first, second):
            await cache.start()
            cache.put("user_1", "row", epoch=cache.epoch)
        await usercache.changed("user_1")
        # No waiting: the next request after the change's response must miss.
        assert first.get("user_1") is None and second.get("user_1") is None
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_lookup_that_raced_a_change_is_not_kept() -> None:
    cache = UserCache(MemoryBroker())
    await cache.start()
    try:
        epoch = cache.epoch  # a lookup starts, reads the row …
        usercache.forget_here("user_1")  # … a change commits meanwhile …
        cache.put("user_1", "old row", epoch=epoch)  # … and its result comes back
        assert cache.get("user_1") is None
    finally:
        await cache.aclose()


@pytest.mark.parametrize("started", [False, True])
async def test_nothing_is_served_without_the_change_channel(started: bool) -> None:
    broker = MemoryBroker()
    cache = UserCache(broker)
    if started:
        await cache.start()
        await broker.aclose()  # the subscription ends: changes could no longer arrive
        await until(lambda: not cache.listening)
    cache.put("user_1", "row", epoch=cache.epoch)
    assert cache.get("user_1") is None
    await cache.aclose()


async def test_entries_expire() -> None:
    cache = UserCache(MemoryBroker(), ttl=0.05)
    await cache.start()
    try:
        cache.put("user_1", "row", epoch=cache.epoch)
        assert cache.get("user_1") == "row"
        await until(lambda: cache.get("user_1") is None)
    finally:
        await cache.aclose()
