"""Two real uvicorn worker processes sharing one database and one Redis: typing, resumable
replies, revocations and /health's connection count cross the process boundary.

Redis: TEST_REDIS_URL (default redis://127.0.0.1:6379/11). With CI set this must run: an
unreachable Redis fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from tests.conftest import IN_CI, bearer, free_port, register, wait_until_serving
from tests.fakes import FakeOpenAI
from tests.realtime.clients import close_code, recv_json, recv_until, reply, user_id
from tests.realtime.conftest import CHUNKS, MODEL

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {REDIS_URL} ({exc})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the Redis suites")
        pytest.skip(f"{message}; start Redis (or set TEST_REDIS_URL) to run these tests")
    return REDIS_URL


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Worker:
    port = free_port()
    with (log_dir / f"{name}.log").open("wb") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = Worker(name, port, process)
    wait_until_serving(process, worker.url, log_dir / f"{name}.log", name=name)
    return worker


@pytest.fixture
async def slow_llm() -> AsyncIterator[FakeOpenAI]:
    # Slow enough that a reply is still running when the client reconnects elsewhere.
    async with FakeOpenAI(chunks=list(CHUNKS), completion_tokens=len(CHUNKS),
                          chunk_delay=0.15) as fake:
        yield fake


@pytest.fixture
def workers(tmp_path: Path, redis_url: str, slow_llm: FakeOpenAI) -> Iterator[list[Worker]]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": "multiworker-secret-" + uuid.uuid4().hex,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "REDIS_URL": redis_url,
        "EMBEDDED_MODEL_ENABLED": "false",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": slow_llm.api_base,
        "OPENAI_MODELS": MODEL,
        "DEFAULT_MODEL": MODEL,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
    }
    started: list[Worker] = []
    try:
        # One after the other: the first one migrates the shared database.
        for name in ("a", "b"):
            started.append(start_worker(name, env, tmp_path))
        yield started
    finally:
        for worker in started:
            worker.process.terminate()
        for worker in started:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


async def test_two_workers_share_typing_replies_revocations_and_counts(
        workers: list[Worker], slow_llm: FakeOpenAI) -> None:
    a, b = workers
    async with (httpx.AsyncClient(base_url=a.url, timeout=30) as http_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as http_b):
        token = (await register(http_a))["access_token"]
        uid = await user_id(http_b, token)  # the token works on the other worker too

        async def connections(http: httpx.AsyncClient) -> int:
            count: int = (await http.get("/health")).json()["active_connections"]
            return count

        baseline = await connections(http_a)
        async with (connect(f"{a.ws_url}/ws/{uid}?token={token}&conversation_id=conv_x")
                    as tab_a,
                    connect(f"{b.ws_url}/ws/{uid}?token={token}") as tab_b):
            await tab_b.send(json.dumps({"type": "join", "conversation_id": "conv_x"}))
            await recv_until(tab_b, "joined")
            await tab_a.send(json.dumps({"type": "ping"}))
            await recv_until(tab_a, "pong")

            # /health counts both workers' sockets, whichever worker answers.
            assert await connections(http_a) == baseline + 2
            assert await connections(http_b) == baseline + 2

            # Typing on worker A reaches the same user's tab on worker B.
            await tab_a.send(json.dumps({"type": "typing", "conversation_id": "conv_x"}))
            event = await recv_until(tab_b, "user_typing")
            assert event["user_id"] == uid and event["conversation_id"] == "conv_x"

            # A reply started on A, the client drops, and resumes on B.
            await tab_a.send(json.dumps({"type": "chat", "content": "hi", "request_id": "mw1"}))
            seen = [await recv_until(tab_a, "chat_chunk") for _ in range(2)]
        async with connect(f"{b.ws_url}/ws/{uid}?token={token}") as tab_b2:
            await tab_b2.send(json.dumps({"type": "resume", "request_id": "mw1",
                                          "after": seen[-1]["seq"]}))
            rest = await reply(tab_b2, "mw1")
        events = seen + rest
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert "".join(e["content"] for e in events[:-1]) == "".join(CHUNKS)
        assert events[-1]["type"] == "chat_complete"

        # Logging out everywhere on B closes a socket that lives on A.
        async with (connect(f"{a.ws_url}/ws/{uid}?token={token}") as tab_a2,
                    connect(f"{b.ws_url}/ws/{uid}?token={token}") as tab_b3):
            for ws in (tab_a2, tab_b3):
                await ws.send(json.dumps({"type": "ping"}))
                assert (await recv_json(ws))["type"] == "pong"
            # The guide's bare typing (no conversation anywhere) crosses workers too.
            await tab_a2.send(json.dumps({"type": "typing"}))
            event = await recv_until(tab_b3, "user_typing")
            assert event["user_id"] == uid and "conversation_id" not in event
            response = await http_b.post("/graphql", headers=bearer(token), json={
                "query": "mutation { logout(everywhere: true) }"})
            assert response.json() == {"data": {"logout": True}}
            assert await close_code(tab_a2, 5) == 4401

        for _ in range(50):  # closed sockets leave the count a moment later
            if await connections(http_b) == baseline:
                break
            await asyncio.sleep(0.05)
        assert await connections(http_b) == baseline
