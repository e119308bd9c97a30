"""What counts as 'Redis is unreachable' (503, retried once) and what does not."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from resolvers.kit.redis_client import RedisUnavailable, _once_more, is_connection_failure

CLOSED_TRANSPORT = RuntimeError(
    "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is "
    "closed")


def test_connection_failures_are_told_from_other_errors() -> None:
    assert is_connection_failure(RedisConnectionError("Connection closed by server."))
    assert is_connection_failure(ConnectionRefusedError(111, "refused"))
    # uvloop's way of saying the peer closed the socket under a write (Redis died mid-handshake)
    assert is_connection_failure(CLOSED_TRANSPORT)
    assert not is_connection_failure(RuntimeError("a bug of ours"))
    assert not is_connection_failure(ResponseError("WRONGTYPE"))


async def test_a_closed_transport_is_retried_once_then_unavailable() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise CLOSED_TRANSPORT
        return "PONG"

    assert await _once_more(flaky, retry=lambda: True) == "PONG"

    async def down() -> str:
        raise CLOSED_TRANSPORT

    with pytest.raises(RedisUnavailable):
        await _once_more(down, retry=lambda: True)


async def test_a_bug_is_not_an_outage() -> None:
    async def broken() -> str:
        raise RuntimeError("a bug of ours")

    with pytest.raises(RuntimeError, match="a bug of ours"):
        await _once_more(broken, retry=lambda: True)
