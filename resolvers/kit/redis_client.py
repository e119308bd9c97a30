"""The Redis client every Redis user of ours builds (broker, rate limiter): redis-py's, with
connection failures raised as `Unavailable` (503 with Retry-After on every face) and reported
once per outage (kit/outages.py).

`RedisUnavailable` is also a `redis.exceptions.ConnectionError`, so code that already catches
redis errors (the broker's heartbeat, its best-effort cleanup) behaves exactly as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.client
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resolvers.kit.errors import Unavailable
from resolvers.kit.outages import outage

REDIS = outage("redis")
T = TypeVar("T")


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


def is_connection_failure(exc: BaseException) -> bool:
    """A failure to reach Redis, as opposed to an error Redis answered."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    # uvloop raises RuntimeError, not a ConnectionError, when a write meets a transport the
    # peer has just closed (Redis died during a fresh connection's handshake).
    return isinstance(exc, RuntimeError) and str(exc).startswith("unable to perform operation on")


async def _once_more(attempt: Callable[[], Awaitable[T]], *, retry: Callable[[], bool]) -> T:
    """`attempt()`, tried once more after a connection failure when `retry()` says so at that
    moment (after a Redis restart every pooled connection is broken once), then
    `RedisUnavailable`."""
    try:
        try:
            result = await attempt()
        except Exception as exc:
            if not (is_connection_failure(exc) and retry()):
                raise
            result = await attempt()
    except Exception as exc:
        if is_connection_failure(exc):
            raise unavailable(exc) from exc
        raise
    REDIS.up()
    return result


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
        async def attempt() -> Any:
            return await super(Redis, self).execute_command(  # type: ignore[no-untyped-call]
                *args, **options)

        # Nothing is retried once aclose() has begun: it cuts blocked reads on purpose.
        return await _once_more(attempt, retry=lambda: not self._closing)

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
        tries = 0

        async def attempt() -> list[Any]:
            nonlocal tries
            if tries:
                # redis-py's reset() emptied the stack; nothing ran on a connection that
                # failed before answering, and our pipelines are idempotent.
                self.command_stack = list(stack)
            tries += 1
            result: list[Any] = await super(Pipeline, self).execute(raise_on_error)
            return result

        return await _once_more(attempt, retry=lambda: True)
