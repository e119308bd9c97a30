"""Rate limits and the daily token quota: the limiter implementations (memory and real Redis),
the client address, and what a client sees on each transport (429 + Retry-After on REST,
RATE_LIMITED on GraphQL)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from models import TokenUsage
from resolvers import auth
from resolvers.chat.limits import ChatLimits, check_chat_allowed, day_bounds
from resolvers.kit.errors import RateLimited, Unavailable
from resolvers.kit.ratelimit import MemoryRateLimiter, RedisRateLimiter, client_address
from resolvers.services import Services
from tests.chat.support import FakeThread
from tests.conftest import bearer, register
from tests.production.conftest import Serve, fake_openai_settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_sliding_window() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    results = [(await limiter.hit("k", limit=3, window=60)).allowed for _ in range(4)]
    assert results == [True, True, True, False]
    clock.now += 30
    refused = await limiter.hit("k", limit=3, window=60)
    assert not refused.allowed and refused.retry_after == pytest.approx(30)
    clock.now += 30.001  # the first three hits leave the window
    assert (await limiter.hit("k", limit=3, window=60)).allowed
    await limiter.reset("k")
    assert (await limiter.hit("k", limit=1, window=60)).remaining == 0


async def test_memory_limiter_forgets_idle_keys() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for i in range(100):
        await limiter.hit(f"k{i}", limit=5, window=10)
    clock.now += 11
    await limiter.hit("fresh", limit=5, window=10)
    assert set(limiter._hits) == {"fresh"}


@pytest.fixture
async def redis_limiter() -> RedisRateLimiter:
    limiter = RedisRateLimiter(REDIS_URL, key_prefix=f"test:{uuid.uuid4().hex}:")
    try:
        await limiter._redis.ping()
    except Exception as exc:
        await limiter.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable ({exc})")
        pytest.skip(f"Redis is not reachable ({exc})")
    return limiter


@pytest.mark.redis
async def test_redis_limiter_is_atomic_and_shared(redis_limiter: RedisRateLimiter) -> None:
    # Two "workers" (two clients) racing for 10 slots: exactly 10 win.
    other = RedisRateLimiter(REDIS_URL, key_prefix=redis_limiter.key_prefix)
    try:
        decisions = await asyncio.gather(*[
            (redis_limiter if i % 2 else other).hit("login", limit=10, window=60)
            for i in range(40)])
        assert sum(d.allowed for d in decisions) == 10
        refused = [d for d in decisions if not d.allowed]
        assert all(0 < d.retry_after <= 60 for d in refused)
        await other.reset("login")
        assert (await redis_limiter.hit("login", limit=10, window=60)).allowed
    finally:
        await other.aclose()
        await redis_limiter.aclose()


async def test_redis_unreachable_fails_closed_quickly() -> None:
    """A dead Redis answers 503 (Unavailable, with Retry-After) within about a second: the
    login limits are never lifted by an outage (tests/faults/ covers it end to end)."""
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await limiter.hit("k", limit=1, window=60)
        assert time.monotonic() - started < 2
        assert caught.value.http_status == 503 and caught.value.retry_after >= 1
    finally:
        await limiter.aclose()


def test_client_address_trusts_only_configured_proxies() -> None:
    assert client_address("203.0.113.9", "1.2.3.4", []) == "203.0.113.9"
    # Not a trusted proxy: its X-Forwarded-For is whatever the client wrote.
    assert client_address("203.0.113.9", "1.2.3.4", ["10.0.0.0/8"]) == "203.0.113.9"
    # A trusted proxy: the right-most address it did not add itself.
    assert client_address("10.0.0.2", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"]) == "1.2.3.4"
    assert client_address("10.0.0.2", "1.2.3.4, 10.0.0.7", ["10.0.0.0/8"]) == "1.2.3.4"
    assert client_address("10.0.0.2", "not-an-ip", ["10.0.0.0/8"]) == "10.0.0.2"
    assert client_address(None, None, []) == "unknown"


# ---------------------------------------------------------------- over the transports


async def login(http: httpx.AsyncClient, username: str, password: str,
                headers: dict[str, str] | None = None) -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username, "password": password},
                           headers=headers or {})


async def test_login_brute_force_per_username(serve: Serve) -> None:
    server = serve(rate_limit_auth_per_username=3)
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = await register(http)
        statuses = [(await login(http, user["username"], "wrong password!")).status_code
                    for _ in range(3)]
        assert statuses == [401, 401, 401]
        refused = await login(http, user["username"], "correct horse battery")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        assert "Too many attempts" in refused.json()["detail"]
        # GraphQL gets the same limit (one rule in resolvers/auth.py).
        body = (await http.post("/graphql", json={
            "query": "mutation($u: String!) { login(input: {username: $u, password: \"x\"}) "
                     "{ accessToken } }", "variables": {"u": user["username"]}})).json()
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert body["errors"][0]["extensions"]["retryAfter"] >= 1
        # Other usernames are not affected.
        other = await register(http)
        assert (await login(http, other["username"], "correct horse battery")).status_code == 200


async def test_successful_login_resets_the_username_count(serve: Serve) -> None:
    server = serve(rate_limit_auth_per_username=3)
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = await register(http)
        for _ in range(5):
            assert (await login(http, user["username"], "wrong password!")).status_code == 401
            assert (await login(http, user["username"],
                                "correct horse battery")).status_code == 200


async def test_per_address_limit_and_trusted_proxies(serve: Serve) -> None:
    server = serve(rate_limit_auth_per_address=4, trusted_proxies="127.0.0.1")
    async with httpx.AsyncClient(base_url=server.url) as http:
        client_a = {"X-Forwarded-For": "198.51.100.1"}
        statuses = [(await login(http, f"nobody{i}", "whatever1", client_a)).status_code
                    for i in range(5)]
        assert statuses == [401, 401, 401, 401, 429]
        # Registering counts too, from the same address.
        refused = await http.post("/api/auth/register", headers=client_a, json={
            "username": "newcomer", "email": "n@example.com", "password": "long enough!"})
        assert refused.status_code == 429 and "retry-after" in refused.headers
        # Another client behind the same trusted proxy has its own budget.
        client_b = {"X-Forwarded-For": "198.51.100.2"}
        assert (await login(http, "nobody", "whatever1", client_b)).status_code == 401


async def test_chat_requests_per_minute(serve: Serve, provider_fakes: FakeThread) -> None:
    server = serve(rate_limit_chat_per_minute=2, **fake_openai_settings(provider_fakes))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        headers = bearer(user["access_token"])
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        assert (await http.post("/api/chat", json=chat, headers=headers)).status_code == 200
        assert (await http.post("/api/chat", json=chat, headers=headers)).status_code == 200
        refused = await http.post("/api/chat", json=chat, headers=headers)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        body = (await http.post("/graphql", headers=headers, json={"query": (
            'mutation { chat(input: {messages: [{role: user, content: "hi"}]}) { content } }'
        )})).json()
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # Another user is not affected.
        other = await register(http)
        ok = await http.post("/api/chat", json=chat, headers=bearer(other["access_token"]))
        assert ok.status_code == 200


async def test_daily_token_quota(services: Services) -> None:
    pair = await _user(services)
    limits = ChatLimits(daily_tokens=100)
    now = datetime(2030, 5, 17, 23, 0, tzinfo=UTC)
    start, _ = day_bounds(now)
    async with services.db.session() as session:
        # Yesterday's usage does not count; today's does (prompt + completion).
        session.add(TokenUsage(user_id=pair.user.id, model="m", prompt_tokens=500,
                               completion_tokens=500, created_at=start - 1))
        session.add(TokenUsage(user_id=pair.user.id, model="m", prompt_tokens=40,
                               completion_tokens=59, created_at=start + 10))
        await session.commit()
    await check_chat_allowed(services.db, pair.user, limiter=None, limits=limits, now=now)
    async with services.db.session() as session:
        session.add(TokenUsage(user_id=pair.user.id, model="m", prompt_tokens=0,
                               completion_tokens=1, created_at=start + 20))
        await session.commit()
    with pytest.raises(RateLimited) as refused:
        await check_chat_allowed(services.db, pair.user, limiter=None, limits=limits, now=now)
    assert refused.value.retry_after == 3600  # until 00:00 UTC
    assert "Daily token quota" in refused.value.message
    # The next day starts fresh; 0 means unlimited.
    tomorrow = now + timedelta(hours=2)
    await check_chat_allowed(services.db, pair.user, limiter=None, limits=limits, now=tomorrow)
    await check_chat_allowed(services.db, pair.user, limiter=None, limits=ChatLimits(), now=now)


async def test_daily_quota_over_rest(serve: Serve, provider_fakes: FakeThread) -> None:
    # The fake reports 21 prompt + 4 completion tokens per reply: 25 per chat.
    server = serve(daily_token_quota=40, **fake_openai_settings(provider_fakes))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        headers = bearer(user["access_token"])
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        assert (await http.post("/api/chat", json=chat, headers=headers)).status_code == 200
        assert (await http.post("/api/chat", json=chat, headers=headers)).status_code == 200
        refused = await http.post("/api/chat", json=chat, headers=headers)
        assert refused.status_code == 429
        assert "Daily token quota" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) <= 86_400


async def _user(services: Services) -> auth.TokenPair:
    async with services.db.session() as session:
        return await auth.register(session, services.security,
                                   username=f"u{uuid.uuid4().hex[:8]}",
                                   email=f"{uuid.uuid4().hex[:8]}@example.com",
                                   password="correct horse battery")
