"""Message broker: pub/sub for live events and resumable reply logs.

`base.py` holds the interface (`Broker`, `Subscription`, the errors); `memory.py` and
`redis.py` implement it. `make_broker()` picks one.
"""

from __future__ import annotations

from resolvers.kit.broker.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    Broker,
    BrokerClosed,
    Event,
    OnMessage,
    ReplyClosed,
    ReplyExists,
    ReplyInfo,
    ReplyNotFound,
    Subscription,
    decode_shared,
)
from resolvers.kit.broker.memory import MemoryBroker

__all__ = ["DEFAULT_LEASE_SECONDS", "Broker", "BrokerClosed", "Event", "MemoryBroker",
           "OnMessage", "ReplyClosed", "ReplyExists", "ReplyInfo", "ReplyNotFound",
           "Subscription", "decode_shared", "make_broker"]


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
        from resolvers.kit.broker.redis import RedisBroker

        return RedisBroker(redis_url, retention_seconds=retention_seconds, key_prefix=key_prefix)
    return MemoryBroker(retention_seconds=retention_seconds)
