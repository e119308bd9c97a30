"""The Redis broker's one shared pub/sub connection across a Redis restart, while
subscriptions are opened and closed concurrently (every running reply and every /ws socket
does this). Afterwards every channel delivers again, and nothing but the outage lines is
logged: no second reader on the connection, no leaked socket (warnings are errors here).
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from resolvers.kit.broker.base import Subscription
from resolvers.kit.broker.redis import RedisBroker
from resolvers.kit.redis_client import RedisUnavailable
from tests.faults.conftest import OwnRedis

pytestmark = pytest.mark.slow

CHANNELS = [f"stop:r{i}" for i in range(12)]
DOWN_SECONDS = (0.15, 0.3, 0.45, 0.6, 0.8, 1.0)


async def _churn(broker: RedisBroker, channel: str, stop: asyncio.Event,
                 failures: list[BaseException]) -> None:
    """Open and close subscriptions to `channel` until told to stop, as replies do."""
    while not stop.is_set():
        sub = broker.subscribe(channel)
        try:
            await sub.ready()
            await asyncio.sleep(0.002)
        except (RedisUnavailable, TimeoutError):
            await asyncio.sleep(0.01)  # Redis is down: the answer the faces turn into 503
        except Exception as exc:  # anything else is a bug
            failures.append(exc)
        finally:
            await sub.aclose()


async def _delivers(broker: RedisBroker, sub: Subscription, channel: str) -> None:
    # Pub/sub is fire-and-forget: publish until one gets through.
    async with asyncio.timeout(10):
        while True:
            await broker.publish(channel, {"channel": channel})
            try:
                async with asyncio.timeout(0.3):
                    assert await anext(sub) == {"channel": channel}
                return
            except TimeoutError:
                continue


async def test_pubsub_survives_restarts_under_subscription_churn(
        own_redis: OwnRedis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    broker = RedisBroker(own_redis.url, key_prefix="restart:", subscribe_timeout_seconds=1.0)
    stop = asyncio.Event()
    failures: list[BaseException] = []
    # Long-lived subscribers, opened before the outage, like an open /ws socket.
    held = [await broker.subscribe(channel).ready() for channel in CHANNELS[:4]]
    churn = [asyncio.create_task(_churn(broker, channel, stop, failures))
             for channel in CHANNELS for _ in range(3)]
    try:
        # Each outage ends at a different point of the reader's backoff.
        for down_seconds in DOWN_SECONDS:
            await asyncio.sleep(0.2)
            own_redis.kill()
            await asyncio.sleep(down_seconds)
            own_redis.start()
            await asyncio.sleep(0.7)  # churn goes on across the recovery
        stop.set()
        await asyncio.gather(*churn)
        assert failures == []

        for sub, channel in zip(held, CHANNELS, strict=False):
            await _delivers(broker, sub, channel)
        for channel in CHANNELS:  # a fresh subscriber to every channel
            async with broker.subscribe(channel) as sub:
                await _delivers(broker, sub, channel)
    finally:
        stop.set()
        await asyncio.gather(*churn, return_exceptions=True)
        for sub in held:
            await sub.aclose()
        await broker.aclose()
    gc.collect()  # a leaked socket's ResourceWarning surfaces now, inside this test

    # One line each time Redis went down and came back (the pub/sub reconnect says so too:
    # nothing else talks to Redis during the churn); nothing else worth a warning.
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    outage_lines = [r.getMessage() for r in noisy if r.name == "chat_studio.outages"]
    others = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in noisy
              if r.name != "chat_studio.outages"]
    assert others == []
    assert len(outage_lines) == 2 * len(DOWN_SECONDS), outage_lines
    for down, back in zip(outage_lines[::2], outage_lines[1::2], strict=True):
        assert "redis is unavailable" in down and "redis is back" in back
