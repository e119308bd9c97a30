"""Budgets cannot be overspent: 50 concurrent requests against a budget that allows 10, on
SQLite and PostgreSQL (one server), and across two worker processes sharing PostgreSQL and
Redis. Refusals come before any provider call, in each face's own vocabulary.

The price file makes every reply cost exactly its worst case: input is free, output costs
2500 $/M tokens, max_tokens is 4 and the fake generates 4 tokens — 10 000 µ$ = $0.01 per
reply, so a $0.10 budget allows exactly 10 replies, however the requests interleave.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread
from tests.conftest import LiveServer, bearer, register
from tests.fakes import FakeOpenAI
from tests.fakes.providers import Failure
from tests.gateway.conftest import key_user, price_file
from tests.realtime.test_multiworker import REDIS_URL, start_worker

MODEL = "gpt-4o-mini"
EXACT_PRICES = {MODEL: {"input": 0, "output": 2500}}
PER_REPLY = 0.01
CONCURRENT = 50
ALLOWED = 10
ASK = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def budget_server(request: pytest.FixtureRequest, tmp_path: Path,
                  fakes: FakeThread) -> Iterator[LiveServer]:
    """A server where every user may spend $0.10 a month."""
    url = (f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_database"))
    fakes.openai.chunk_delay = 0.01  # replies overlap: reservations are really concurrent
    settings = provider_settings(tmp_path, fakes, url, metrics_enabled=True,
                                 model_prices=price_file(tmp_path, EXACT_PRICES),
                                 default_monthly_budget_usd=ALLOWED * PER_REPLY)
    with LiveServer.running(settings) as server:
        yield server


def chat_calls(fake: Any) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def outcomes(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


async def spent(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    total: dict[str, Any] = (await http.get("/api/usage", headers=headers)).json()["total"]
    return total


async def test_fifty_concurrent_requests_never_overspend_a_monthly_budget(
        budget_server: LiveServer, fakes: FakeThread) -> None:
    async with httpx.AsyncClient(base_url=budget_server.url, timeout=60,
                                 limits=httpx.Limits(max_connections=CONCURRENT)) as http:
        headers = bearer((await register(http))["access_token"])
        calls_before = chat_calls(fakes.openai)
        responses = await asyncio.gather(*(
            http.post("/api/chat", json=ASK, headers=headers) for _ in range(CONCURRENT)))
        assert outcomes(responses) == {200: ALLOWED, 402: CONCURRENT - ALLOWED}
        refused = [r.json() for r in responses if r.status_code == 402]
        assert {r["code"] for r in refused} == {"budget_exceeded"}
        # Refused before generation: the provider saw only the allowed ones.
        assert chat_calls(fakes.openai) - calls_before == ALLOWED
        total = await spent(http, headers)
        assert total["requests"] == ALLOWED
        assert total["cost_usd"] == pytest.approx(ALLOWED * PER_REPLY)
        assert total["cost_usd"] <= ALLOWED * PER_REPLY + 1e-9
        stats = (await http.get("/api/stats", headers=headers)).json()
        assert stats["total_cost_usd"] == pytest.approx(ALLOWED * PER_REPLY)
        budget = (await http.get("/api/usage", headers=headers)).json()["budget"]
        assert budget == {"monthly_usd": pytest.approx(ALLOWED * PER_REPLY),
                          "spent_usd": pytest.approx(ALLOWED * PER_REPLY),
                          "reserved_usd": 0.0, "remaining_usd": 0.0}
        graph_budget = (await http.post("/graphql", headers=headers, json={
            "query": "{ usage { budget { monthlyUsd spentUsd reservedUsd remainingUsd } } }"})
        ).json()["data"]["usage"]["budget"]
        assert graph_budget == {"monthlyUsd": pytest.approx(ALLOWED * PER_REPLY),
                                "spentUsd": pytest.approx(ALLOWED * PER_REPLY),
                                "reservedUsd": 0.0, "remainingUsd": 0.0}
        # Every face refuses once it is spent, in its own vocabulary.
        graphql = (await http.post("/graphql", headers=headers, json={
            "query": "mutation($i: ChatInput!) { chat(input: $i) { content } }",
            "variables": {"i": {"messages": [{"role": "user", "content": "hi"}],
                                "model": MODEL, "maxTokens": 4}}})).json()
        assert graphql["errors"][0]["extensions"]["code"] == "BUDGET_EXCEEDED"
        v1 = await http.post("/v1/chat/completions", headers=headers, json=ASK)
        assert v1.status_code == 429
        assert v1.json()["error"]["code"] == "insufficient_quota"
        assert v1.json()["error"]["type"] == "insufficient_quota"
        metrics = (await http.get("/metrics")).text
        assert f'chat_budget_refusals_total{{budget="user",model="{MODEL}"}}' in metrics
        assert f'chat_cost_usd_micros_total{{model="{MODEL}"}}' in metrics
        # Another user has a budget of their own.
        other = bearer((await register(http))["access_token"])
        assert (await http.post("/api/chat", json=ASK, headers=other)).status_code == 200


async def test_a_keys_lifetime_budget_holds_under_concurrency_on_v1(
        budget_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=budget_server.url, timeout=60,
                                 limits=httpx.Limits(max_connections=20)) as http:
        owner = await key_user(http)
        key = await owner.make_key(budget_usd=3 * PER_REPLY)
        responses = await asyncio.gather(*(
            http.post("/v1/chat/completions", json=ASK, headers=bearer(key["key"]))
            for _ in range(20)))
        assert outcomes(responses) == {200: 3, 429: 17}
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
            "insufficient_quota"}
        by_key = (await http.get("/api/usage?group_by=key", headers=owner.headers)).json()
        assert by_key["rows"] == [{"key_id": key["id"], "requests": 3, "prompt_tokens": 21 * 3,
                                   "completion_tokens": 12, "cost_usd": 3 * PER_REPLY}]
        # The user's own session still has the rest of the month's budget.
        assert (await http.post("/api/chat", json=ASK, headers=owner.headers)).status_code \
            == 200


async def test_a_request_whose_worst_case_exceeds_the_budget_is_refused_up_front(
        budget_server: LiveServer, fakes: FakeThread) -> None:
    async with httpx.AsyncClient(base_url=budget_server.url, timeout=30) as http:
        headers = bearer((await register(http))["access_token"])
        before = chat_calls(fakes.openai)
        # 41 tokens at most would cost $0.1025 > $0.10, although the fake would write 4.
        too_big = await http.post("/api/chat", headers=headers, json={**ASK, "max_tokens": 41})
        assert too_big.status_code == 402 and too_big.json()["code"] == "budget_exceeded"
        assert chat_calls(fakes.openai) == before
        assert (await http.post("/api/chat", headers=headers, json={**ASK, "max_tokens": 40})
                ).status_code == 200


async def test_a_stopped_reply_pays_for_what_it_generated(
        budget_server: LiveServer, fakes: FakeThread) -> None:
    fakes.openai.chunks = [f"w{i} " for i in range(40)]
    fakes.openai.completion_tokens = 40
    fakes.openai.chunk_delay = 0.05
    async with httpx.AsyncClient(base_url=budget_server.url, timeout=30) as http:
        headers = bearer((await register(http))["access_token"])
        request_id = f"r{uuid.uuid4().hex[:8]}"
        async with http.stream("POST", "/api/chat", headers=headers, json={
                **ASK, "max_tokens": 40, "stream": True, "request_id": request_id}) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:") and '"chat_chunk"' in line:
                    break
            await http.post(f"/api/chat/{request_id}/stop", headers=headers)
            async for _line in lines:
                pass
        total = await spent(http, headers)
        generated = total["completion_tokens"]
        assert 1 <= generated < 40
        assert total["cost_usd"] == pytest.approx(generated * 2500 / 1e6)
        # The reservation of the stopped reply was released: the rest is spendable.
        left = ALLOWED * PER_REPLY - total["cost_usd"]
        assert left > 0.09
        assert (await http.post("/api/chat", headers=headers, json={**ASK, "max_tokens": 36})
                ).status_code == 200


async def test_a_failed_reply_pays_for_what_it_generated_and_frees_the_rest(
        budget_server: LiveServer, fakes: FakeThread) -> None:
    fakes.openai.fail = Failure(status=500, message="down")
    async with httpx.AsyncClient(base_url=budget_server.url, timeout=30) as http:
        headers = bearer((await register(http))["access_token"])
        failed = await http.post("/api/chat", headers=headers, json={**ASK, "max_tokens": 40})
        assert failed.status_code == 502
        fakes.openai.fail = None
        # Nothing was generated: nothing paid, and the whole budget is there again.
        assert (await spent(http, headers))["cost_usd"] == 0
        assert (await http.post("/api/chat", headers=headers, json={**ASK, "max_tokens": 40})
                ).status_code == 200


# ---------------------------------------------------------------- two workers, one budget

@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
async def test_two_workers_sharing_postgres_and_redis_never_overspend(
        tmp_path: Path, postgres_database: str) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc})")
    async with FakeOpenAI(chunks=["a", "b", "c", "d"], completion_tokens=4,
                          chunk_delay=0.01) as llm:
        env = {
            **os.environ, "ENVIRONMENT": "test",
            "SECRET_KEY": "budget-secret-" + uuid.uuid4().hex,
            "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": postgres_database,
            "REDIS_URL": REDIS_URL, "EMBEDDED_MODEL_ENABLED": "false",
            "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.api_base,
            "OPENAI_MODELS": MODEL, "DEFAULT_MODEL": MODEL,
            "MODEL_PRICES": price_file(tmp_path, EXACT_PRICES),
            "DEFAULT_MONTHLY_BUDGET_USD": str(ALLOWED * PER_REPLY),
            "RATE_LIMIT_CHAT_PER_MINUTE": "0", "RATE_LIMIT_AUTH_PER_ADDRESS": "0",
            "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1",
            "LOG_LEVEL": "WARNING",
        }
        workers = []
        try:
            for name in ("a", "b"):
                workers.append(start_worker(name, env, tmp_path))
            a, b = workers
            async with (httpx.AsyncClient(base_url=a.url, timeout=60) as http_a,
                        httpx.AsyncClient(base_url=b.url, timeout=60) as http_b):
                headers = bearer((await register(http_a))["access_token"])
                key = (await http_a.post("/api/keys", headers=headers,
                                         json={"name": "w"})).json()["key"]
                calls = [
                    (http_a if i % 2 else http_b).post(
                        "/api/chat" if i % 3 else "/v1/chat/completions", json=ASK,
                        headers=headers if i % 4 else bearer(key))
                    for i in range(CONCURRENT)]
                responses = await asyncio.gather(*calls)
                succeeded = [r for r in responses if r.status_code == 200]
                refused = [r for r in responses if r.status_code in (402, 429)]
                assert len(succeeded) == ALLOWED, outcomes(responses)
                assert len(refused) == CONCURRENT - ALLOWED
                total = await spent(http_b, headers)
                assert total["requests"] == ALLOWED
                assert total["cost_usd"] == pytest.approx(ALLOWED * PER_REPLY)
                assert chat_calls(llm) == ALLOWED
        finally:
            for worker in workers:
                worker.process.terminate()
            for worker in workers:
                worker.process.wait(timeout=15)
