"""The Redis client every Redis user of ours builds (broker, rate limiter): redis-py's, with
connection failures raised as `Unavailable` (503 with Retry-After on every face) and reported
once per outage (kit/outages.py).

`RedisUnavailable` is also a `redis.exceptions.ConnectionError`, so code that already catches
redis errors (the broker's heartbeat, its best-effort cleanup) behaves exactly as before.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.asyncio.client
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resolvers.kit.errors import Unavailable
from resolvers.kit.outages import outage

REDIS = outage("redis")


class RedisUnavailable(Unavailable, RedisConnectionError):
    default_message = "The service is temporarily unavailable (Redis); retry shortly"


def unavailable(exc: BaseException) -> RedisUnavailable:
    """`exc` (a connection failure) as the error the faces answer 503 for; logs the outage
    once."""
    if isinstance(exc, RedisUnavailable):
        return exc
    REDIS.down(exc)
    error = RedisUnavailable(retry_after=2)
    error.__cause__ = exc
    return error


CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class Redis(redis.asyncio.Redis):
    """redis-py's client; a command that fails on a broken connection is tried once more on
    a new one (after a Redis restart every pooled connection is broken once: without this,
    each would fail one request), then raises `RedisUnavailable`. Nothing is retried once
    `aclose()` has begun: it cuts blocked reads on purpose.

    redis-py's own retry policy is not used for this: a client built by `from_url` takes the
    pool's policy, which is none, and with one the blocked reads `aclose()` cuts would
    reconnect and block again.
    """

    _closing = False

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            try:
                result = await super().execute_command(  # type: ignore[no-untyped-call]
                    *args, **options)
            except CONNECTION_ERRORS:
                if self._closing:
                    raise
                result = await super().execute_command(  # type: ignore[no-untyped-call]
                    *args, **options)
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc
        REDIS.up()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        # Pipelines send their commands without execute_command: they map failures in
        # their own execute().
        return Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        self._closing = True
        await super().aclose(close_connection_pool)


class Pipeline(redis.asyncio.client.Pipeline):
    """redis-py's pipeline, with the same failure handling as every single command of `Redis`:
    tried once more on a new connection (after a Redis restart a pooled connection is broken
    once), then `RedisUnavailable`."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        if not stack:  # an empty pipeline answers without asking Redis
            return await super().execute(raise_on_error)
        try:
            try:
                result: list[Any] = await super().execute(raise_on_error)
            except CONNECTION_ERRORS:
                # redis-py's reset() emptied the stack; nothing ran on a connection that
                # failed before answering, and our pipelines are idempotent.
                self.command_stack = stack
                result = await super().execute(raise_on_error)
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc
        REDIS.up()
        return result
