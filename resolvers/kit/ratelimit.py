"""Rate limiting: a sliding-window counter per key, in memory (one worker) or in Redis
(several workers share the counts).

`hit()` is atomic: it counts the attempt and says whether it was within the limit, so two
concurrent requests can never both take the last slot. Neither implementation blocks the
event loop (memory: a few dict operations; Redis: one round trip of a Lua script). When Redis
is unreachable the limiter fails closed, quickly: `Unavailable` (503 with Retry-After), logged
once per outage. Failing open would lift the login and registration limits exactly while
Redis is down — an outage anyone able to exhaust Redis could then use to guess passwords —
and with several workers chat cannot work without Redis anyway. `/health` says 503 meanwhile.

The operations (`resolvers/auth.py`, `resolvers/chat.py`) call `enforce()`, so every transport
gets the same limits; the faces only say who is asking (`client_address()`).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from resolvers.kit import metrics
from resolvers.kit.errors import RateLimited

log = logging.getLogger("chat_studio.ratelimit")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: float  # seconds until the next attempt would be allowed (0 when allowed)


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: float) -> Decision:
        """Count one attempt for `key`; allowed while at most `limit` fell in the last
        `window` seconds. A refused attempt is not counted."""
        ...

    async def reset(self, key: str) -> None:
        """Forget `key`'s attempts (e.g. a successful login clears its failures)."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Sliding-window log per key, for one worker. Keys whose window has passed are swept."""

    def __init__(self, *, clock: Callable[[], float] | None = None,
                 max_keys: int = 100_000) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._hits: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._max_keys = max_keys
        self._last_sweep = self._clock()

    async def hit(self, key: str, *, limit: int, window: float) -> Decision:
        now = self._clock()
        self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        self._windows[key] = window
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return Decision(False, 0, max(0.0, hits[0] + window - now))
        hits.append(now)
        return Decision(True, limit - len(hits), 0.0)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)
        self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        # Bounded memory: drop keys whose newest hit left its window (at most once a second,
        # or whenever the table is full).
        if now - self._last_sweep < 1.0 and len(self._hits) < self._max_keys:
            return
        self._last_sweep = now
        for key in [k for k, hits in self._hits.items()
                    if not hits or hits[-1] <= now - self._windows.get(k, 0.0)]:
            self._hits.pop(key, None)
            self._windows.pop(key, None)

    async def aclose(self) -> None:
        self._hits.clear()


# KEYS[1]: the key's sorted set; ARGV: window (ms), limit, member (unique per attempt).
# Members are scored by attempt time (Redis's own clock: workers' clocks may differ); the
# oldest one tells when a slot frees up.
_HIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = window
  if oldest[2] then retry = tonumber(oldest[2]) + window - now end
  return {0, 0, retry}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, limit - count - 1, 0}
"""


class RedisRateLimiter:
    """The same sliding window in Redis, shared by every worker: one atomic Lua script per
    attempt. Short timeouts: a slow Redis delays a request by at most ~1 s, then answers
    503."""

    def __init__(self, url: str, *, key_prefix: str = "chatstudio:rl:",
                 timeout: float = 1.0) -> None:
        from resolvers.kit.redis_client import Redis

        self.key_prefix = key_prefix
        self._redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     client_name=f"{key_prefix}limiter")
        self._script = self._redis.register_script(_HIT_LUA)
        self._counter = 0
        self._instance = uuid.uuid4().hex  # members must be unique across workers

    async def hit(self, key: str, *, limit: int, window: float) -> Decision:
        self._counter += 1
        member = f"{self._instance}:{self._counter}"
        # A connection failure raises Unavailable (kit/redis_client.py): fail closed, see the
        # module docstring.
        allowed, remaining, retry_ms = await self._script(
            keys=[self.key_prefix + key], args=[int(window * 1000), limit, member],
        )
        return Decision(bool(allowed), int(remaining), max(0.0, float(retry_ms) / 1000))

    async def reset(self, key: str) -> None:
        try:
            await self._redis.delete(self.key_prefix + key)
        except Exception as exc:  # a reset is a courtesy (a successful login): never fail it
            log.debug("rate limiter: could not reset %s: %s", key, exc)

    async def aclose(self) -> None:
        await self._redis.aclose()


def make_limiter(redis_url: str | None) -> RateLimiter:
    """Redis when REDIS_URL is set (counts shared by all workers), else memory."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()


async def enforce(limiter: RateLimiter | None, key: str, *, limit: int, window: float,
                  scope: str, message: str = "Too many requests") -> None:
    """Count an attempt; raise RateLimited (with Retry-After) when over the limit.
    `limit` 0 (or no limiter) means unlimited."""
    if limiter is None or limit <= 0:
        return
    decision = await limiter.hit(key, limit=limit, window=window)
    if not decision.allowed:
        metrics.RATE_LIMITED.labels(scope=scope).inc()
        retry_after = max(1, math.ceil(decision.retry_after))
        raise RateLimited(f"{message}; retry in {retry_after} s", retry_after=retry_after)


# ---------------------------------------------------------------- who is asking


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(item.strip(), strict=False)
                         for item in items if item.strip()))

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


@functools.lru_cache(maxsize=16)
def trusted_proxies(items: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies.parse(items)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: TrustedProxies | Iterable[str]) -> str:
    """The client's address: the connection's peer, unless that peer is a trusted proxy, in
    which case X-Forwarded-For is read from the right, skipping trusted proxies (the left
    part of the header is whatever the client chose to send, so it is never believed)."""
    if not isinstance(trusted, TrustedProxies):
        trusted = trusted_proxies(tuple(trusted))
    address = peer or "unknown"
    if not forwarded_for or not trusted.networks or address not in trusted:
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if not hop:
            continue
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # garbage in the header: fall back to the proxy itself
    return address

